#!/usr/bin/env python3
"""Reference fits of BG/NBD and Gamma-Gamma with custval's penalizer on the
CDNOW sample, written to tests/data/penalized_reference.csv.

Run once with the bench virtualenv (lifetimes 0.11.3, scipy 1.17.1,
autograd 1.9.1):
    ~/.cache/custval-tools/bench-venv/bin/python scripts/penalized_reference.py
The Rust tests `udf::bgnbd::tests::penalised_fits_match_the_reference` and
`udf::gamma_gamma::tests::penalised_fits_match_the_reference` assert the rows
`custval` to 1e-5 relative.

custval's penalizer (SPEC: "L2 on the log-parameters") adds
    penalizer * sum((ln theta_i - ln unit_i)^2)
to the mean negative log-likelihood per customer, where unit_i is 1 for the
unit-free parameters and the data's scale for the one carrying a unit:
BG/NBD's alpha relative to the customers' mean T, Gamma-Gamma fitted on spend
divided by its mean (so v relative to the mean spend). The likelihoods here are
lifetimes' own (`BetaGeoFitter._negative_log_likelihood`,
`GammaGammaFitter._negative_log_likelihood` with penalizer_coef = 0), minimised
by scipy's L-BFGS-B with autograd gradients from several starts.

lifetimes' own `penalizer_coef` is a different penalty: in 0.11.3 both fitters
add `penalizer_coef * sum(params ** 2)` on the natural parameters
(beta_geo_fitter.py line 196, gamma_gamma_fitter.py line 113; BG/NBD's alpha
in lifetimes' rescaled time, T * 10 / max(T)), which shrinks parameters
towards 0 rather than 1 and depends on the scale of the data. Its fits with the
same coefficients are written as rows `lifetimes_penalizer_coef` for
comparison; custval does not match them and the tests do not assert them.
"""
import csv
import os

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad
from lifetimes import BetaGeoFitter, GammaGammaFitter
from scipy.optimize import minimize

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")
PENALIZERS = [0.001, 0.01, 0.1]


def load():
    rows = list(csv.DictReader(open(os.path.join(DATA, "cdnow_sample_summary.csv"))))
    x = np.array([float(r["x"]) for r in rows])
    tx = np.array([float(r["t_x"]) for r in rows])
    t = np.array([float(r["T"]) for r in rows])
    m = np.array([float(r["zbar"]) for r in rows])
    return x, tx, t, m


def best(objective, starts):
    f = value_and_grad(objective)
    fits = [
        minimize(f, np.log(s), jac=True, method="L-BFGS-B",
                 options={"gtol": 1e-13, "ftol": 1e-16, "maxiter": 10000})
        for s in starts
    ]
    return min(fits, key=lambda r: r.fun)


def bgnbd(x, tx, t, pen):
    w = np.ones_like(x)
    centre = anp.array([0.0, np.log(t.mean()), 0.0, 0.0])
    nll = BetaGeoFitter._negative_log_likelihood

    def objective(lp):
        return nll(lp, x.astype(int), tx, t, w, 0.0) + pen * anp.sum((lp - centre) ** 2)

    scale = t.mean()
    r = best(objective, [[1, 1, 1, 1], [0.5, 0.1 * scale, 0.8, 2.5], [1, scale, 0.5, 1]])
    return np.exp(r.x)


def gamma_gamma(x, m, pen):
    keep = x > 0
    x, m = x[keep], m[keep]
    scale = m.mean()
    w = np.ones_like(x)
    nll = GammaGammaFitter._negative_log_likelihood

    def objective(lp):
        return nll(lp, x, m / scale, w, 0.0) + pen * anp.sum(lp ** 2)

    p, q, v = np.exp(best(objective, [[1, 1, 1], [5, 3, 1], [0.5, 2, 0.1]]).x)
    return np.array([p, q, v * scale])


def main():
    x, tx, t, m = load()
    out = []
    for pen in PENALIZERS:
        out.append(["bgnbd", "custval", pen, *bgnbd(x, tx, t, pen)])
        out.append(["gamma_gamma", "custval", pen, *gamma_gamma(x, m, pen), ""])
        bg = BetaGeoFitter(penalizer_coef=pen).fit(x, tx, t)
        out.append(["bgnbd", "lifetimes_penalizer_coef", pen, *bg.params_.values])
        keep = x > 0
        gg = GammaGammaFitter(penalizer_coef=pen).fit(x[keep], m[keep])
        out.append(["gamma_gamma", "lifetimes_penalizer_coef", pen, *gg.params_.values, ""])
    with open(os.path.join(DATA, "penalized_reference.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["model", "kind", "penalizer", "p1", "p2", "p3", "p4"])
        for row in out:
            wr.writerow([row[0], row[1], row[2]] + [v if v == "" else repr(float(v)) for v in row[3:]])
    for row in out:
        print(row)


if __name__ == "__main__":
    main()
