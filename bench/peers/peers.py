#!/usr/bin/env python3
"""Peer unsupervised anomaly-detection baselines (IsolationForest, PCA, DAE).

Protocol (per seed in --seeds, default 0,1,2):
  * stratified 70/30 split: train_test_split(stratify=y, test_size=0.3, random_state=seed)
  * fit on the 70% WITHOUT labels, score the 30%
  * AUPRC = average_precision_score, plus ROC-AUC
  * features: numerics standardised (StandardScaler fitted on train), categoricals
    one-hot over the 50 most frequent train levels + one "other" column.

Feature spec (--features):  "num=COL,hour(COL),weekday(COL);cat=COL,COL"
  hour(COL)/weekday(COL) parse COL as a datetime and give the hour of day (0-23)
  and weekday (Monday=0 .. Sunday=6) as plain numbers.

Examples (run from /work/main):
  python3 bench/peers/peers.py --input ../shared/data/fraud_handbook_2018-04.csv --label label \
      --drop TX_FRAUD_SCENARIO,TX_TIME_SECONDS,TX_TIME_DAYS,TRANSACTION_ID \
      --features "num=TX_AMOUNT,hour(TX_DATETIME),weekday(TX_DATETIME);cat=CUSTOMER_ID,TERMINAL_ID"
  python3 bench/peers/peers.py --speed
"""
import argparse
import os
import re
import statistics
import sys
import time

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

try:
    import torch
    from torch import nn

    HAVE_TORCH = True
except Exception:  # torch is optional
    HAVE_TORCH = False

TOP_LEVELS = 50


# ---------------------------------------------------------------- features
def parse_spec(spec):
    num, cat = [], []
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        kind, _, cols = part.partition("=")
        cols = [c.strip() for c in cols.split(",") if c.strip()]
        if kind.strip() == "num":
            num += cols
        elif kind.strip() == "cat":
            cat += cols
        else:
            sys.exit(f"bad feature spec part {part!r}: want num=... or cat=...")
    return num, cat


def spec_source(col):
    m = re.fullmatch(r"(hour|weekday)\((.+)\)", col)
    return (m.group(1), m.group(2)) if m else (None, col)


def build_raw(df, num, cat):
    """Numeric matrix (float64) and categorical frame (str), before any fitting."""
    numeric = {}
    for col in num:
        fn, src = spec_source(col)
        if fn is None:
            numeric[col] = pd.to_numeric(df[src], errors="coerce").astype("float64")
        else:
            ts = pd.to_datetime(df[src])
            numeric[col] = (ts.dt.hour if fn == "hour" else ts.dt.day_of_week).astype("float64")
    nums = pd.DataFrame(numeric, index=df.index)
    cats = pd.DataFrame({c: df[c].astype(str) for c in cat}, index=df.index)
    return nums, cats


class Encoder:
    """StandardScaler on numerics + top-50-levels-plus-other one-hot, fitted on train."""

    def fit(self, nums, cats):
        self.medians = nums.median()
        self.scaler = StandardScaler().fit(nums.fillna(self.medians).to_numpy())
        self.levels = {c: cats[c].value_counts().index[:TOP_LEVELS].tolist() for c in cats}
        return self

    def transform(self, nums, cats):
        parts = [self.scaler.transform(nums.fillna(self.medians).to_numpy())]
        for c, lv in self.levels.items():
            pos = cats[c].map({v: i for i, v in enumerate(lv)}).fillna(len(lv))  # unseen -> "other"
            oh = np.zeros((len(cats), len(lv) + 1))
            oh[np.arange(len(cats)), pos.to_numpy(dtype=np.int64)] = 1.0
            parts.append(oh)
        return np.hstack(parts).astype(np.float32)


# ---------------------------------------------------------------- models
def score_iforest(Xtr, Xte, seed):
    m = IsolationForest(n_estimators=100, random_state=seed).fit(Xtr)
    return -m.score_samples(Xte)


def score_pca(Xtr, Xte, seed):
    m = PCA(n_components=0.9, svd_solver="full").fit(Xtr)
    rec = m.inverse_transform(m.transform(Xte))
    return ((Xte - rec) ** 2).sum(axis=1)


if HAVE_TORCH:

    def make_dae(d):
        return nn.Sequential(
            nn.Linear(d, 64), nn.ReLU(),
            nn.Linear(64, 16), nn.ReLU(),
            nn.Linear(16, 64), nn.ReLU(),
            nn.Linear(64, d),
        )

    def train_dae(X, seed, epochs=30, batch=256, swap=0.15, gauss=0.1, lr=1e-3):
        torch.manual_seed(seed)
        torch.set_num_threads(2)
        X = torch.as_tensor(X, dtype=torch.float32)
        n, d = X.shape
        model = make_dae(d)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        lossf = nn.MSELoss()
        cols = torch.arange(d)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(n)
            for i in range(0, n, batch):
                xb = X[perm[i:i + batch]]
                # swap noise: each cell w.p. `swap` takes the same column's value from a random row
                mask = torch.rand(xb.shape) < swap
                donors = X[torch.randint(0, n, xb.shape), cols]
                xn = torch.where(mask, donors, xb) + gauss * torch.randn(xb.shape)
                opt.zero_grad()
                loss = lossf(model(xn), xb)
                loss.backward()
                opt.step()
        model.eval()
        return model

    def dae_scores(model, X, batch=1024):
        X = torch.as_tensor(X, dtype=torch.float32)
        out = []
        with torch.inference_mode():
            for i in range(0, len(X), batch):
                xb = X[i:i + batch]
                out.append(((model(xb) - xb) ** 2).mean(dim=1))
        return torch.cat(out).numpy()

    def score_dae(Xtr, Xte, seed):
        return dae_scores(train_dae(Xtr, seed), Xte)


MODELS = {"IsolationForest": score_iforest, "PCA90": score_pca}
if HAVE_TORCH:
    MODELS["DAE"] = score_dae


# ---------------------------------------------------------------- eval mode
def run_eval(a):
    num, cat = parse_spec(a.features)
    drop = [c for c in a.drop.split(",") if c.strip()] if a.drop else []
    df = pd.read_csv(a.input, low_memory=False).drop(columns=drop)
    used = {spec_source(c)[1] for c in num} | set(cat)
    bad = used & (set(drop) | {a.label})
    if bad:
        sys.exit(f"feature spec uses dropped/label columns: {sorted(bad)}")
    y = df[a.label].astype(int).to_numpy()
    nums, cats = build_raw(df, num, cat)
    models = a.models.split(",") if a.models else list(MODELS)
    seeds = [int(s) for s in a.seeds.split(",")]
    name = a.name or os.path.basename(a.input)
    print(f"# {name}: rows={len(df)} positives={y.sum()} numerics={num} categoricals={cat}"
          f" torch={'yes ' + torch.__version__ if HAVE_TORCH else 'no'} loadavg={os.getloadavg()[0]:.2f}",
          flush=True)
    res = {m: [] for m in models}
    idx = np.arange(len(y))
    for seed in seeds:
        tr, te = train_test_split(idx, stratify=y, test_size=0.3, random_state=seed)
        enc = Encoder().fit(nums.iloc[tr], cats.iloc[tr])
        Xtr = enc.transform(nums.iloc[tr], cats.iloc[tr])
        Xte = enc.transform(nums.iloc[te], cats.iloc[te])
        for m in models:
            t0 = time.perf_counter()
            s = MODELS[m](Xtr, Xte, seed)
            ap, auc = average_precision_score(y[te], s), roc_auc_score(y[te], s)
            res[m].append((ap, auc))
            print(f"  seed={seed} dim={Xtr.shape[1]} train={len(tr)} test={len(te)} "
                  f"test_pos={y[te].sum()} {m:<16} AUPRC={ap:.4f} ROC-AUC={auc:.4f} "
                  f"({time.perf_counter() - t0:.1f}s)", flush=True)
    print()
    print(f"| data | model | AUPRC mean ± std (seeds {a.seeds}) | ROC-AUC mean | prevalence |")
    print("|---|---|---|---|---|")
    prev = y.mean()
    for m in models:
        aps = np.array([r[0] for r in res[m]])
        aucs = np.array([r[1] for r in res[m]])
        print(f"| {name} | {m} | {aps.mean():.4f} ± {aps.std(ddof=1) if len(aps) > 1 else 0:.4f} "
              f"| {aucs.mean():.4f} | {prev:.4f} |")


# ---------------------------------------------------------------- speed mode
def run_speed(a):
    if not HAVE_TORCH:
        sys.exit("--speed needs torch")
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100_000, 30)).astype(np.float32)
    print(f"# speed: torch {torch.__version__}, threads={torch.get_num_threads()}, "
          f"X={X.shape}, 20 epochs batch 256, loadavg={os.getloadavg()[0]:.2f}", flush=True)
    train_s, batch_rps, single_rps = [], [], []
    Xt = torch.as_tensor(X)
    n_single = a.single_n
    for r in range(3):
        t0 = time.perf_counter()
        model = train_dae(X, seed=r, epochs=20, batch=256)
        train_s.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        dae_scores(model, Xt, batch=1024)
        batch_rps.append(len(X) / (time.perf_counter() - t0))

        with torch.inference_mode():
            t0 = time.perf_counter()
            for i in range(n_single):
                xb = Xt[i:i + 1]
                ((model(xb) - xb) ** 2).mean()
            single_rps.append(n_single / (time.perf_counter() - t0))
        print(f"  run {r}: train {train_s[-1]:.2f}s  score@1024 {batch_rps[-1]:,.0f} rec/s  "
              f"score@1 {single_rps[-1]:,.0f} rec/s", flush=True)
    print(f"median: train_s={statistics.median(train_s):.2f} "
          f"batch1024_rps={statistics.median(batch_rps):.0f} "
          f"single_rps={statistics.median(single_rps):.0f} loadavg_end={os.getloadavg()[0]:.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input")
    p.add_argument("--label", default="label")
    p.add_argument("--drop", default="", help="comma-separated columns to drop before anything")
    p.add_argument("--features", help='e.g. "num=amt,hour(ts),weekday(ts);cat=merchant"')
    p.add_argument("--name", help="label for the data column of the table")
    p.add_argument("--models", help=f"comma list from {list(MODELS)} (default all available)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--speed", action="store_true", help="DAE training/scoring timing on synthetic data")
    p.add_argument("--single-n", type=int, default=20000, help="records scored one at a time in --speed")
    a = p.parse_args()
    if a.speed:
        run_speed(a)
    elif a.input and a.features:
        run_eval(a)
    else:
        p.error("need --input and --features, or --speed")


if __name__ == "__main__":
    main()
