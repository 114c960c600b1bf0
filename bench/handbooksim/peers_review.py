#!/usr/bin/env python3
"""Peers of `review simulate` on the handbook's columns, on issue 9's protocol:
each day after the first seven, a detector is refitted on the previous 7
days and scores the day; the analyst reviews the day's 100 highest-scored
transactions, and each review's true label becomes known 7 days later.
Features are causal per-customer and per-terminal history (the handbook's:
transaction counts and mean amounts over 1, 7 and 30 days up to and
including the transaction) plus the amount, the hour and the weekend.

- iforest: scikit-learn's IsolationForest, no labels;
- aad: coniferest's AADForest, fitted with the labels known so far in its
  window (fraud as anomaly, legitimate as regular);
- pine: coniferest's PineForest, the same;
- rule: the amount over the customer's mean amount of the previous 30 days.

    pip install coniferest scikit-learn pandas
    python3 bench/handbooksim/peers_review.py --input ../shared/data/fraud_handbook_2018-04.csv --peers rule,iforest,aad
"""
import argparse
import time

import numpy as np
import pandas as pd


def features(df):
    df = df.sort_values("TX_DATETIME", kind="stable").reset_index(drop=True)
    t = df.set_index("TX_DATETIME")
    out = pd.DataFrame(index=df.index)
    out["amount"] = df.TX_AMOUNT.values
    out["hour"] = df.TX_DATETIME.dt.hour.values
    out["weekend"] = (df.TX_DATETIME.dt.day_of_week >= 5).astype(float).values
    for ent, name in (("CUSTOMER_ID", "cust"), ("TERMINAL_ID", "term")):
        g = t.groupby(ent)["TX_AMOUNT"]
        for w in (1, 7, 30):
            out[f"{name}_n{w}"] = g.transform(lambda s: s.rolling(f"{w}D").count()).values
            if name == "cust":
                out[f"{name}_mean{w}"] = g.transform(lambda s: s.rolling(f"{w}D").mean()).values
    mean30 = t.groupby("CUSTOMER_ID")["TX_AMOUNT"].transform(lambda s: s.rolling("30D", closed="left").mean())
    rule = (df.TX_AMOUNT.values / mean30.values)
    return df, out.to_numpy(dtype=np.float64), np.nan_to_num(rule, nan=0.0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True)
    p.add_argument("--peers", default="rule,iforest,aad,pine")
    p.add_argument("--reviews-per-day", type=int, default=100)
    p.add_argument("--delay-days", type=int, default=7)
    p.add_argument("--train-days", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    df = pd.read_csv(a.input, parse_dates=["TX_DATETIME"])
    df, X, rule = features(df)
    day = df.TX_DATETIME.dt.floor("D").to_numpy()
    days = np.unique(day)
    y = df.label.to_numpy().astype(bool)
    scen = df.TX_FRAUD_SCENARIO.to_numpy()
    for peer in a.peers.split(","):
        start = time.time()
        reviewed = np.zeros(len(df), dtype=bool)
        review_day = np.full(len(df), -1)
        found, by = 0, {}
        for di in range(a.train_days, len(days)):
            today = np.flatnonzero(day == days[di])
            if peer == "rule":
                s = rule[today]
            else:
                win = np.flatnonzero((day >= days[di - a.train_days]) & (day < days[di]))
                if peer == "iforest":
                    from sklearn.ensemble import IsolationForest
                    m = IsolationForest(random_state=a.seed, n_jobs=2).fit(X[win])
                    s = -m.score_samples(X[today])
                else:
                    from coniferest.label import Label
                    known = reviewed[win] & (review_day[win] >= 0) & (review_day[win] + a.delay_days <= di)
                    lab = np.full(len(win), Label.UNKNOWN, dtype=np.int64)
                    lab[known & y[win]] = Label.ANOMALY
                    lab[known & ~y[win]] = Label.REGULAR
                    if peer == "aad":
                        from coniferest.aadforest import AADForest
                        m = AADForest(n_jobs=2, random_seed=a.seed)
                    else:
                        from coniferest.pineforest import PineForest
                        m = PineForest(n_jobs=2, random_seed=a.seed)
                    m.fit(X[win], lab if known.any() else None)
                    s = -m.score_samples(X[today])
            top = today[np.argsort(-s, kind="stable")[: a.reviews_per_day]]
            reviewed[top] = True
            review_day[top] = di
            found += int(y[top].sum())
            for sc in scen[top][y[top]]:
                by[int(sc)] = by.get(int(sc), 0) + 1
        print(f"{peer}: {int(reviewed.sum())} reviews, {found} frauds found, by scenario {dict(sorted(by.items()))} ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
