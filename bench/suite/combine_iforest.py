"""Rank-combines this DAE's scores with scikit-learn's IsolationForest on the
same splits (issue 10: would an IsolationForest term close the gap where it
wins?). Reads the files bench/scorecombine writes with SCORECOMBINE_DUMP:

    mkdir -p /tmp/scd
    for f in wine wdbc olive hawks attrition cells digits email hpc churn lending_club diamonds; do
        SCORECOMBINE_DUMP=/tmp/scd go run ./bench/scorecombine --input /tmp/suite/$f.csv
    done
    python3 bench/suite/combine_iforest.py

if100/if25: IsolationForest with 100/25 trees alone; rank: the two ranks
added; maxrank: the larger rank; dae: this DAE alone.
"""
import sys, numpy as np, pandas as pd
sys.path.insert(0, "bench/suite")
from make_suite import Preprocessor
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score as ap
from scipy.stats import rankdata
sets="wine wdbc olive hawks attrition cells digits email hpc churn lending_club diamonds".split()
tot={}
for name in sets:
    df=pd.read_csv(f"/tmp/suite/{name}.csv")
    X=df.drop(columns=["label"])
    res={}
    for seed in range(3):
        tr=[];te=[];lab=[];dae=[]
        for line in open(f"/tmp/scd/{name}_{seed}.tsv"):
            p=line.rstrip("\n").split("\t")
            if p[0]=="train": tr.append(int(p[1]))
            else: te.append(int(p[1])); lab.append(p[2]=="true"); dae.append(float(p[3]))
        Xtr,Xte=X.iloc[tr],X.iloc[te]
        pp=Preprocessor().fit(Xtr)
        Atr,Ate=pp.transform(Xtr),pp.transform(Xte)
        for nt in (100,25):
            m=IsolationForest(n_estimators=nt,random_state=seed).fit(Atr)
            s=-m.score_samples(Ate)
            dae=np.array(dae); y=np.array(lab)
            rd,ri=rankdata(dae),rankdata(s)
            # z-combination using train-score stats
            strn=-m.score_samples(Atr)
            v={f"if{nt}":ap(y,s), f"rank{nt}":ap(y,rd+ri), f"maxrank{nt}":ap(y,np.maximum(rd,ri))}
            if nt==100: v["dae"]=ap(y,dae)
            for k,x in v.items(): res.setdefault(k,[]).append(x)
    line=name+"\t"+"\t".join(f"{k} {np.mean(x):.3f}" for k,x in res.items())
    print(line, flush=True)
    for k,x in res.items(): tot.setdefault(k,[]).append(np.mean(x))
print("mean\t"+"\t".join(f"{k} {np.mean(x):.4f}" for k,x in tot.items()))
