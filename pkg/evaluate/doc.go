// Package evaluate measures how well anomaly scores separate two classes.
//
// Scores follow the convention "higher = more anomalous"; a label of true
// marks a positive (e.g. a fraudulent transaction). Every function copies
// what it needs and never modifies the caller's slices. The work is one
// sort of the scores (O(n log n)) followed by linear passes, so millions of
// scores are cheap.
//
// # Definitions
//
// Let P be the number of positives, N the number of negatives, and
// t1 > t2 > … > tm the distinct score values. For each threshold ti let
// TP(i) and FP(i) count the positives and negatives with score >= ti, and
// define recall R(i) = TP(i)/P and precision Prec(i) = TP(i)/(TP(i)+FP(i)).
// Items with equal scores always enter together (ties are grouped).
//
//   - ROC AUC is the trapezoidal area under the ROC curve through the
//     points (FP(i)/N, TP(i)/P). This equals the Mann–Whitney statistic:
//     the probability that a random positive scores higher than a random
//     negative, with tied pairs counted as 1/2. It is computed exactly in
//     integer arithmetic before the final division. This is the value of
//     sklearn.metrics.roc_auc_score.
//
//   - AUPRC is the average precision AP = Σi (R(i) − R(i−1))·Prec(i), with
//     R(0) = 0: the step-wise (not interpolated, not trapezoidal) area under
//     the precision–recall curve. This is the value of
//     sklearn.metrics.average_precision_score. A random ranking gives
//     about P/(P+N), the positive rate.
//
//   - Precision@K is the fraction of positives among the K highest scores.
//     K values greater than the number of scores are reduced to that number.
//
//   - Recall@rate alerts on the A = ceil(rate·n) highest scores (n = P+N)
//     and reports recall TP/P and precision TP/A for those alerts. If
//     rate·n is within 1e-9 (relative) of an integer, that integer is used,
//     so 0.07·100 gives 7 alerts even though it is 7.000000000000001 in
//     floating point.
//
// When the cut at K or A falls inside a group of tied scores, the items
// in that group are taken as if in random order: the group contributes
// its positives in proportion to the share of the group that is alerted.
// This is the expected value over random tie-breaking, so TP, and hence
// precision and recall, can be fractional. It does not depend on the
// order of the input.
//
// # Degenerate inputs
//
// With no positives, ROC AUC and AUPRC are NaN, as are recalls. With no
// negatives, ROC AUC is NaN and AUPRC is 1, because precision is 1 at every
// threshold. [Evaluate] returns these values without an error. It
// returns an error for empty input, for slices of different lengths, for
// NaN scores, for k < 1 and for alert rates outside (0, 1]. Scores of ±Inf
// are allowed and rank as expected.
//
// [ROCAUC] and [AveragePrecision] return NaN if the input is empty or holds a
// NaN score, and they panic if the slices differ in length, as gonum's stat
// functions do.
package evaluate
