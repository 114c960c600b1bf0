"""An upper bound, with hindsight, on following compromised terminals through
the labels of `review simulate` (issue 9): how many more frauds would reviews
of the transactions at a terminal with a confirmed fraud find, and at what
cost in reviews?

    go run ./cmd/review simulate --input /tmp/hb-later.csv --label label \
        --pattern TX_FRAUD_SCENARIO --epochs 10 --reviews-out /tmp/reviews.csv
    python3 bench/handbooksim/terminal_leads.py --input /tmp/hb-later.csv --reviews /tmp/reviews.csv

Leads are the learning run's confirmed frauds, each from the day its label is
known (the review's day plus --delay days). Following a lead for W days reviews
every transaction at its terminal in those days that the run did not review
itself. The counts are what such reviews would find; they do not subtract what
the main queue would have found with the same reviews. A filter keeps leads
whose card has no other confirmed fraud by then (card-driven frauds, scenarios
1 and 3, are most confirmed frauds, and their terminals are innocent), and,
using the handbook's own rule, whose amount is at most 220 (scenario 1's
threshold): the second filter knows the simulator, so it is a bound, not a
method.
"""
import argparse
import collections

import pandas as pd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--reviews", required=True)
    ap.add_argument("--delay", type=int, default=7)
    a = ap.parse_args()
    df = pd.read_csv(a.input)
    rv = pd.read_csv(a.reviews)
    rv = rv[rv.run == "learned"]
    # A review names its record by its line in --input (the header is line
    # 1); this file has one line a record.
    rv = rv.assign(row=rv.line - 2)
    assert (df.label.values[rv.row.values] == rv.label.values).all(), "reviews do not match --input"
    day = df.TX_TIME_DAYS.values
    lab = df.label.values
    sc = df.TX_FRAUD_SCENARIO.values
    term = df.TERMINAL_ID.values
    cust = df.CUSTOMER_ID.values
    amt = df.TX_AMOUNT.values
    reviewed = set(rv.row)
    # a review's day in TX_TIME_DAYS units: its rows' own day
    rv = rv.assign(rday=day[rv.row.values])
    fr = rv[rv.label == 1]
    print(f"learned run: {len(rv)} reviews, {len(fr)} frauds, by scenario",
          {int(k): v for k, v in sorted(collections.Counter(sc[fr.row.values]).items())})
    # Reviews are listed in queue order within a day: what the queue's last
    # ranks find is what reviews given to leads would cost.
    rank = rv.groupby("day").cumcount()
    per_day = rv.groupby("day").size().max()
    print("the queue's precision by rank of the day:", ", ".join(
        f"{lo + 1}-{lo + 10} {rv.label[(rank >= lo) & (rank < lo + 10)].mean():.3f}" for lo in range(0, per_day, 10)))
    known = collections.defaultdict(list)  # card -> days its confirmed frauds are known
    for r in fr.itertuples():
        known[cust[r.row]].append(r.rday + a.delay)
    at_term = collections.defaultdict(list)
    for i, t in enumerate(term):
        at_term[t].append(i)
    leads = []
    for r in fr.itertuples():
        kd = r.rday + a.delay
        leads.append(dict(row=r.row, kd=kd, T=term[r.row], sc=sc[r.row], amt=amt[r.row],
                          card=sum(1 for k in known[cust[r.row]] if k <= kd)))
    if not leads:
        print("no confirmed frauds to follow")
        return
    L = pd.DataFrame(leads)
    print("leads by scenario and the card's confirmed frauds when the label is known (1, 2, 3+):")
    print(pd.crosstab(L.card.clip(upper=3), L.sc).to_string())
    filters = [("every lead", L.sc >= 0), ("card's only confirmed fraud", L.card == 1),
               ("card's only, amount <= 220 (knows the simulator)", (L.card == 1) & (L.amt <= 220))]
    print("\nfilter | days followed | reviews | frauds found | precision | of them compromised terminals'")
    for name, f in filters:
        for w in (1, 3, 7, 14, 28):
            seen = set()
            for l in L[f].itertuples():
                for j in at_term[l.T]:
                    if l.kd <= day[j] < l.kd + w and j not in reviewed:
                        seen.add(j)
            n = len(seen)
            k = sum(lab[j] for j in seen)
            k2 = sum(1 for j in seen if sc[j] == 2)
            print(f"{name} | {w} | {n} | {k} | {k / max(n, 1):.3f} | {k2}")


if __name__ == "__main__":
    main()
