"""Rank-combines this DAE's scores with two detectors of the kind that wins
where the DAE falls behind (issue 10's private suite: anomalies that one or
two fields separate, dense clusters of near-identical records), on the same
splits: scikit-learn's IsolationForest, and the distance to the k-th nearest
neighbour among a random subsample of the training rows (ten subsamples,
summed: a subsample holds only a few members of a dense cluster, which is
how IsolationForest sees through them). Reads the files bench/scorecombine
writes with SCORECOMBINE_DUMP:

    mkdir -p /tmp/scd
    for f in wine wdbc olive hawks attrition cells digits email hpc churn lending_club diamonds; do
        SCORECOMBINE_DUMP=/tmp/scd go run ./bench/scorecombine --input /tmp/suite/$f.csv
    done
    python3 bench/suite/combine_peers.py

if100/if25: IsolationForest with 100/25 trees alone; knnM_K: the subsampled
k-NN distance (M rows a subsample, the K-th neighbour) alone; rank*: that
detector's rank and the DAE's added; maxrank*: the larger of the two ranks;
dae: this DAE alone. Inputs are standardised and one-hot encoded as
make_suite.py does for its baselines.
"""
import sys

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score as ap
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, "bench/suite")
from make_suite import Preprocessor  # noqa: E402

SETS = "wine wdbc olive hawks attrition cells digits email hpc churn lending_club diamonds".split()


def knn_subsampled(Atr, Ate, m, k, rng, rounds=10):
    s = np.zeros(len(Ate))
    for _ in range(rounds):
        idx = rng.choice(len(Atr), min(m, len(Atr)), replace=False)
        d, _ = NearestNeighbors(n_neighbors=k).fit(Atr[idx]).kneighbors(Ate)
        s += d[:, -1]
    return s


def main(suite="/tmp/suite", dumps="/tmp/scd"):
    tot = {}
    for name in SETS:
        X = pd.read_csv(f"{suite}/{name}.csv").drop(columns=["label"])
        res = {}
        for seed in range(3):
            tr, te, lab, dae = [], [], [], []
            with open(f"{dumps}/{name}_{seed}.tsv") as fh:
                dump = fh.read().splitlines()
            for line in dump:
                p = line.split("\t")
                if p[0] == "train":
                    tr.append(int(p[1]))
                else:
                    te.append(int(p[1]))
                    lab.append(p[2] == "true")
                    dae.append(float(p[3]))
            pp = Preprocessor().fit(X.iloc[tr])
            Atr, Ate = pp.transform(X.iloc[tr]), pp.transform(X.iloc[te])
            y, dae = np.array(lab), np.array(dae)
            rd = rankdata(dae)
            scores = {}
            for nt in (100, 25):
                scores[f"if{nt}"] = -IsolationForest(n_estimators=nt, random_state=seed).fit(Atr).score_samples(Ate)
            rng = np.random.default_rng(seed)
            for m, k in ((256, 5), (256, 1), (1024, 5)):
                scores[f"knn{m}_{k}"] = knn_subsampled(Atr, Ate, m, k, rng)
            v = {"dae": ap(y, dae)}
            for n, s in scores.items():
                r = rankdata(s)
                v[n], v["rank" + n], v["maxrank" + n] = ap(y, s), ap(y, rd + r), ap(y, np.maximum(rd, r))
            for kk, x in v.items():
                res.setdefault(kk, []).append(x)
        print(name + "\t" + "\t".join(f"{k} {np.mean(x):.3f}" for k, x in res.items()), flush=True)
        for k, x in res.items():
            tot.setdefault(k, []).append(np.mean(x))
    print("mean\t" + "\t".join(f"{k} {np.mean(x):.4f}" for k, x in tot.items()))


if __name__ == "__main__":
    main(*sys.argv[1:])
