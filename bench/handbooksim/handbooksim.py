#!/usr/bin/env python3
"""Card transactions with three fraud scenarios, after the Fraud Detection
Handbook's simulator (Le Borgne et al., "Reproducible Machine Learning for
Credit Card Fraud Detection - Practical Handbook", section 3.2), written
anew with numpy so that months other than the shared file's can be made
with other seeds.

What it draws (the handbook's design):
- customers: a location on a 100x100 square, a mean amount U(5, 100) with
  standard deviation half of it, a mean of U(0, 4) transactions a day;
- terminals: a location on the same square; a customer buys at terminals
  within radius 5 of them, uniformly;
- each day a customer makes Poisson(mean) transactions at N(noon, 20000 s)
  (times outside the day are dropped), amounts N(mean, std), a negative
  amount redrawn U(0, 2*mean);
- scenario 1: every amount over 220 is fraud;
- scenario 2 (compromised terminals): each day 2 terminals are drawn, and
  every transaction at them in the next 28 days is fraud;
- scenario 3 (compromised cards): each day 3 customers are drawn, and a
  third of their transactions in the next 14 days are fraud, with the
  amount multiplied by 5.

The columns are those of ../shared/data/fraud_handbook_2018-04.csv. With
--from-day the file starts later (the state of the world, compromised
terminals and cards included, is the same as in a file from day 0).

    python3 bench/handbooksim/handbooksim.py --seed 1 --days 130 --from-day 60 --out /tmp/hb-later.csv
"""
import argparse
import csv
import datetime

import numpy as np


def simulate(seed, n_customers, n_terminals, days, radius):
    rng = np.random.default_rng(seed)
    cxy = rng.uniform(0, 100, size=(n_customers, 2))
    mean_amount = rng.uniform(5, 100, size=n_customers)
    std_amount = mean_amount / 2
    mean_nb = rng.uniform(0, 4, size=n_customers)
    txy = rng.uniform(0, 100, size=(n_terminals, 2))

    rows = []  # (seconds, day, customer, terminal, amount)
    for c in range(n_customers):
        d2 = ((txy - cxy[c]) ** 2).sum(axis=1)
        near = np.flatnonzero(d2 < radius * radius)
        if len(near) == 0:
            continue
        nb = rng.poisson(mean_nb[c], size=days)
        total = int(nb.sum())
        if total == 0:
            continue
        day = np.repeat(np.arange(days), nb)
        t = rng.normal(86400 / 2, 20000, size=total).astype(np.int64)
        amt = rng.normal(mean_amount[c], std_amount[c], size=total)
        neg = amt < 0
        amt[neg] = rng.uniform(0, 2 * mean_amount[c], size=int(neg.sum()))
        term = near[rng.integers(0, len(near), size=total)]
        keep = (t > 0) & (t < 86400)
        for s, dd, te, a in zip(t[keep] + day[keep] * 86400, day[keep], term[keep], np.round(amt[keep], 2)):
            rows.append((int(s), int(dd), c, int(te), float(a)))
    rows.sort(key=lambda r: r[0])
    n = len(rows)
    sec = np.array([r[0] for r in rows])
    day = np.array([r[1] for r in rows])
    cust = np.array([r[2] for r in rows])
    term = np.array([r[3] for r in rows])
    amt = np.array([r[4] for r in rows])
    scen = np.zeros(n, dtype=np.int64)

    scen[amt > 220] = 1
    for d in range(days):
        bad = rng.choice(n_terminals, size=2, replace=False)
        scen[(day >= d) & (day < d + 28) & np.isin(term, bad)] = 2
    for d in range(days):
        bad = rng.choice(n_customers, size=3, replace=False)
        idx = np.flatnonzero((day >= d) & (day < d + 14) & np.isin(cust, bad))
        pick = rng.choice(idx, size=len(idx) // 3, replace=False) if len(idx) >= 3 else idx[:0]
        amt[pick] = np.round(amt[pick] * 5, 2)
        scen[pick] = 3
    return sec, day, cust, term, amt, scen


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--customers", type=int, default=5000)
    p.add_argument("--terminals", type=int, default=10000)
    p.add_argument("--days", type=int, default=130, help="days simulated")
    p.add_argument("--from-day", type=int, default=0, help="first day written")
    p.add_argument("--radius", type=float, default=5)
    p.add_argument("--start", default="2018-04-01", help="date of day 0")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    sec, day, cust, term, amt, scen = simulate(a.seed, a.customers, a.terminals, a.days, a.radius)
    start = datetime.datetime.fromisoformat(a.start)
    counts = {}
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT",
                    "TX_TIME_SECONDS", "TX_TIME_DAYS", "TX_FRAUD_SCENARIO", "label"])
        for i in np.flatnonzero(day >= a.from_day):
            at = start + datetime.timedelta(seconds=int(sec[i]))
            s = int(scen[i])
            counts[s] = counts.get(s, 0) + 1
            w.writerow([i, at.strftime("%Y-%m-%d %H:%M:%S"), cust[i], term[i], f"{amt[i]:.2f}",
                        sec[i], day[i], s, int(s > 0)])
    print(f"{a.out}: {sum(counts.values())} transactions, by scenario {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
