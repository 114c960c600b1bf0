#!/usr/bin/env python3
"""The one-line peer of `review simulate`'s protocol: each day after the
first seven, review the reviews-per-day transactions whose amount is
highest over the customer's mean amount of the previous 30 days (its own
transaction left out), and count the frauds found, by scenario.

    python3 bench/handbooksim/rule.py --input /tmp/hb-later.csv
"""
import argparse

import pandas as pd


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True)
    p.add_argument("--reviews-per-day", type=int, default=100)
    p.add_argument("--train-days", type=int, default=7, help="leading days not reviewed, as review simulate")
    a = p.parse_args()
    df = pd.read_csv(a.input, parse_dates=["TX_DATETIME"]).sort_values("TX_DATETIME", kind="stable")
    df["day"] = df.TX_DATETIME.dt.floor("D")
    df = df.set_index("TX_DATETIME")
    mean = df.groupby("CUSTOMER_ID")["TX_AMOUNT"].transform(lambda s: s.rolling("30D", closed="left").mean())
    df["ratio"] = df.TX_AMOUNT / mean
    df = df.reset_index()
    reviews = found = 0
    by = {}
    for d in sorted(df.day.unique())[a.train_days:]:
        top = df[df.day == d].sort_values("ratio", ascending=False).head(a.reviews_per_day)
        reviews += len(top)
        found += int(top.label.sum())
        for s in top.TX_FRAUD_SCENARIO[top.label == 1]:
            by[int(s)] = by.get(int(s), 0) + 1
    print(f"{a.input}: {reviews} reviews, {found} frauds found, by scenario {dict(sorted(by.items()))}")


if __name__ == "__main__":
    main()
