#!/usr/bin/env python3
"""Reference values of Pareto/NBD, MBG/NBD and BG/BB from lifetimes, written
to tests/data/lifetimes_models_reference.csv. Generated ONCE; the Rust tests
compare custval's functions with the rows.

Run with the bench virtualenv (lifetimes 0.11.3, scipy 1.17.1, numpy 2.4.6):
    ~/.cache/custval-tools/bench-venv/bin/python scripts/lifetimes_models_reference.py

Rows (kind, model, values...):
- params,pareto_nbd,r,alpha,s,beta,log_likelihood: lifetimes' ParetoNBDFitter
  on the CDNOW sample (tests/data/cdnow_sample_summary.csv, weeks), the
  log-likelihood summed over customers, by lifetimes' own likelihood
  function at those parameters in weeks (the fitter's stored value is in its
  rescaled time).
- customer,pareto_nbd,x,t_x,T,h,p_alive,expected: every 10th customer and
  every customer with x >= 15, at lifetimes' own fitted parameters above:
  `conditional_probability_alive(x, t_x, T)` and
  `conditional_expected_number_of_purchases_up_to_time(h, x, t_x, T)` for
  h = 10 and 52 weeks. They test custval's scalar functions at those
  parameters, independent of custval's fit.
- params,mbgnbd,...: lifetimes' ModifiedBetaGeoFitter on the same data
  (r, alpha, a, b, log-likelihood); customer,mbgnbd rows as for Pareto/NBD.
- params,bgbb,alpha,beta,gamma,delta,log_likelihood: lifetimes'
  BetaGeoBetaBinomFitter on its donations data set (Fader, Hardie & Shang
  2010's table: 11,104 donors, n = 6); customer,bgbb,x,t_x,n,h,p_alive,
  expected for every pattern of that table at those parameters.
"""
import csv
import os

import numpy as np
import pandas as pd
import lifetimes
from lifetimes import BetaGeoBetaBinomFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from lifetimes.datasets import load_donations

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")


def main():
    assert lifetimes.__version__ == "0.11.3", lifetimes.__version__
    rows = list(csv.DictReader(open(os.path.join(DATA, "cdnow_sample_summary.csv"))))
    x = np.array([float(r["x"]) for r in rows])
    tx = np.array([float(r["t_x"]) for r in rows])
    t = np.array([float(r["T"]) for r in rows])
    pick = [i for i in range(len(x)) if i % 10 == 0 or x[i] >= 15]
    out = []
    for name, fitter, keys in [
        ("pareto_nbd", ParetoNBDFitter(), ["r", "alpha", "s", "beta"]),
        ("mbgnbd", ModifiedBetaGeoFitter(), ["r", "alpha", "a", "b"]),
    ]:
        fitter.fit(pd.Series(x), pd.Series(tx), pd.Series(t))
        params = [fitter.params_[k] for k in keys]
        if name == "pareto_nbd":
            ll = ParetoNBDFitter._conditional_log_likelihood(params, x, tx, t).sum()
        else:
            ll = -len(x) * ModifiedBetaGeoFitter._negative_log_likelihood(
                np.log(params), x, tx, t, np.ones_like(x), 0.0)
        out.append(["params", name] + params + [ll])
        for i in pick:
            for h in (10.0, 52.0):
                alive = fitter.conditional_probability_alive(x[i], tx[i], t[i])
                e = fitter.conditional_expected_number_of_purchases_up_to_time(h, x[i], tx[i], t[i])
                out.append(["customer", name, x[i], tx[i], t[i], h, np.asarray(alive).item(), np.asarray(e).item()])
    d = load_donations()
    bb = BetaGeoBetaBinomFitter()
    bb.fit(d["frequency"], d["recency"], d["periods"], weights=d["weights"])
    params = [bb.params_[k] for k in ["alpha", "beta", "gamma", "delta"]]
    ll = (BetaGeoBetaBinomFitter._loglikelihood(
        params, d["frequency"].values, d["recency"].values, d["periods"].values) * d["weights"].values).sum()
    out.append(["params", "bgbb"] + params + [ll])
    for _, r in d.iterrows():
        for h in (1.0, 5.0):
            alive = bb.conditional_probability_alive(h, r["frequency"], r["recency"], r["periods"])
            e = bb.conditional_expected_number_of_purchases_up_to_time(
                h, r["frequency"], r["recency"], r["periods"])
            out.append(["customer", "bgbb", r["frequency"], r["recency"], r["periods"], h,
                        np.asarray(alive).item(), np.asarray(e).item()])
    with open(os.path.join(DATA, "lifetimes_models_reference.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "model", "v1", "v2", "v3", "v4", "v5", "v6"])
        for row in out:
            w.writerow([row[0], row[1]] + [repr(float(v)) for v in row[2:]])


if __name__ == "__main__":
    main()
