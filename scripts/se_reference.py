#!/usr/bin/env python3
"""Reference standard errors of the BG/NBD and Gamma-Gamma parameters on the
CDNOW sample, written to tests/data/se_reference.csv.

Run once with the bench virtualenv (lifetimes 0.11.3, scipy 1.17.1,
autograd 1.9.1):
    ~/.cache/custval-tools/bench-venv/bin/python scripts/se_reference.py
The Rust tests `udf::bgnbd::tests::standard_errors_match_the_reference` and
`udf::gamma_gamma::tests::standard_errors_match_the_reference` assert them to
1e-4 relative.

Independent of custval's computation in every step: the likelihoods are
lifetimes' own (`BetaGeoFitter._negative_log_likelihood`,
`GammaGammaFitter._negative_log_likelihood`, mean per customer, no penalty),
minimised by scipy's L-BFGS-B with autograd gradients from several starts;
the Hessian of the total negative log-likelihood in the log parameters is
autograd's exact (automatic) second derivative, not a finite difference (custval
differences its analytic gradient); its inverse is the covariance of the log
parameters, and SE(theta) = theta * sqrt(var ln theta) (the delta method).
Gamma-Gamma is fitted on spend divided by its mean, as custval does; the unit
of money only shifts ln v, so the covariance is the same.
"""
import csv
import os

import autograd.numpy as anp
import numpy as np
from autograd import hessian, value_and_grad
from lifetimes import BetaGeoFitter, GammaGammaFitter
from scipy.optimize import minimize

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")


def load():
    rows = list(csv.DictReader(open(os.path.join(DATA, "cdnow_sample_summary.csv"))))
    x = np.array([float(r["x"]) for r in rows])
    tx = np.array([float(r["t_x"]) for r in rows])
    t = np.array([float(r["T"]) for r in rows])
    m = np.array([float(r["zbar"]) for r in rows])
    return x, tx, t, m


def fit(objective, starts):
    f = value_and_grad(objective)
    fits = [
        minimize(f, np.log(s), jac=True, method="L-BFGS-B",
                 options={"gtol": 1e-13, "ftol": 1e-16, "maxiter": 10000})
        for s in starts
    ]
    best = min(fits, key=lambda r: r.fun)
    return best.x


def standard_errors(objective, lp, n):
    cov = np.linalg.inv(n * hessian(objective)(lp))
    return np.exp(lp), np.exp(lp) * np.sqrt(np.diag(cov)), cov


def main():
    x, tx, t, m = load()
    out = []
    w = np.ones_like(x)
    nll = BetaGeoFitter._negative_log_likelihood

    def bg(lp):
        return nll(lp, x.astype(int), tx, t, w, 0.0)

    s = t.mean()
    lp = fit(bg, [[1, 1, 1, 1], [0.5, 0.1 * s, 0.8, 2.5], [1, s, 0.5, 1]])
    values, ses, _ = standard_errors(bg, lp, len(x))
    for name, v, e in zip(["r", "alpha", "a", "b"], values, ses):
        out.append(["bgnbd", name, v, e])

    keep = x > 0
    xk, mk = x[keep], m[keep]
    scale = mk.mean()
    wk = np.ones_like(xk)
    gnll = GammaGammaFitter._negative_log_likelihood

    def gg(lp):
        return gnll(lp, xk, mk / scale, wk, 0.0)

    lp = fit(gg, [[1, 1, 1], [5, 3, 1], [0.5, 2, 0.1]])
    values, ses, cov = standard_errors(gg, lp, len(xk))
    values[2] *= scale
    ses[2] *= scale
    for name, v, e in zip(["p", "q", "v"], values, ses):
        out.append(["gamma_gamma", name, v, e])
    var_ln_ratio = cov[1, 1] + cov[2, 2] - 2 * cov[1, 2]
    ratio = values[2] / values[1]
    out.append(["gamma_gamma", "v_over_q", ratio, ratio * np.sqrt(var_ln_ratio)])

    with open(os.path.join(DATA, "se_reference.csv"), "w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(["model", "param", "value", "se"])
        for row in out:
            wr.writerow([row[0], row[1], repr(float(row[2])), repr(float(row[3]))])
    for row in out:
        print(row)


if __name__ == "__main__":
    main()
