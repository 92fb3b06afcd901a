#!/usr/bin/env python3
"""High-precision reference values for BG/NBD P(alive), E[Y(h) | x, tx, T] and
the discounted CLV sum, written to tests/data/bgnbd_reference.csv.

Run once (python3 with mpmath 1.3.0): python3 scripts/bgnbd_reference.py
The Rust test `udf::bgnbd::tests::matches_high_precision_references` asserts the
file to 1e-9 relative.

E[Y(h) | x, tx, T] = P(alive) * E[(1 - (1 + p s)^-(r+x)) / p], p ~ Beta(a, b + x),
s = h / (alpha + T) (Fader, Hardie & Lee 2005, eq. 10 written as an integral over
the dropout probability). Each value is computed two independent ways at 50
digits: (1) mpmath.quad of that integral, split at the Beta mass and at p = 1/s,
with p = u^(1/a) near 0 and 1 - p = v^(1/(b+x)) near 1; (2) eq. 10 with
mpmath.hyp2f1 (skipped when c = a + b + x - 1 is 0 or a negative integer, where
eq. 10 has a removable singularity, or a = 1). The two must agree to 1e-25
(or quad at 40 and 50 digits must, where hyp2f1 is skipped), else the script
stops.
"""
import csv
import os
import mpmath as mp

DPS = 50


def p_alive(r, alpha, a, b, x, tx, T):
    if x == 0:
        return mp.mpf(1)
    return 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + tx)) ** (r + x))


def bracket_quad(r, alpha, a, b, h, x, T):
    s = h / (alpha + T)
    k = r + x
    beta = b + x

    def g(p):
        return -mp.expm1(-k * mp.log1p(p * s)) / p

    # Integrands are scaled by 1/B(a, b + x) so that they are of order one:
    # mpmath.quad's convergence test is absolute.
    lnB = mp.log(mp.beta(a, beta))
    mean = a / (a + beta)
    sd = mp.sqrt(a * beta / ((a + beta) ** 2 * (a + beta + 1)))
    lo = max(mean - 12 * sd, mean / 1000)
    hi = min(mean + 12 * sd, 1 - (1 - mean) / 1000)
    pts = sorted({lo, hi} | ({1 / s} if 0 < 1 / s < 1 else set()))
    # left panel [0, pts[0]]: u = p^a; right panel [pts[-1], 1]: v = (1-p)^beta
    ul = pts[0] ** a
    left = mp.quad(lambda w: g((w * ul) ** (1 / a)) * (1 - (w * ul) ** (1 / a)) ** (beta - 1), [0, 1]) * mp.exp(a * mp.log(pts[0]) - lnB) / a
    mid = mp.mpf(0)
    for p0, p1 in zip(pts[:-1], pts[1:]):
        mid += mp.quad(lambda p: g(p) * mp.exp((a - 1) * mp.log(p) + (beta - 1) * mp.log1p(-p) - lnB),
                       mp.linspace(p0, p1, 9))
    q1 = 1 - pts[-1]
    vr = q1 ** beta
    right = mp.quad(lambda w: g(1 - (w * vr) ** (1 / beta)) * (1 - (w * vr) ** (1 / beta)) ** (a - 1), [0, 1]) * mp.exp(beta * mp.log(q1) - lnB) / beta
    return left + mid + right


def bracket_hyp(r, alpha, a, b, h, x, T):
    c = a + b + x - 1
    if a == 1 or (c <= 0 and c == int(c)):
        return None
    z = h / (alpha + T + h)
    return c / (a - 1) * (1 - ((alpha + T) / (alpha + T + h)) ** (r + x) * mp.hyp2f1(r + x, b + x, c, z))


def bracket(r, alpha, a, b, h, x, T):
    mp.mp.dps = DPS
    args = [mp.mpf(v) for v in (r, alpha, a, b, h, x, T)]
    q = bracket_quad(*args)
    check = bracket_hyp(*args)
    if check is None:
        mp.mp.dps = 40
        check = bracket_quad(*[mp.mpf(v) for v in (r, alpha, a, b, h, x, T)])
        mp.mp.dps = DPS
    if abs(q / check - 1) > mp.mpf("1e-25"):
        raise SystemExit(f"methods disagree at {(r, alpha, a, b, h, x, T)}: {q} vs {check}")
    return q


def clv_per_unit(r, alpha, a, b, x, tx, T, months, rate, per_month):
    """P(alive) * sum_m (B(m u) - B((m-1) u)) / (1 + d)^m: CLV for an expected value of 1."""
    total, prev = mp.mpf(0), mp.mpf(0)
    for m in range(1, months + 1):
        e = bracket(r, alpha, a, b, m * per_month, x, T)
        total += (e - prev) / (1 + mp.mpf(rate)) ** m
        prev = e
    return p_alive(*[mp.mpf(v) for v in (r, alpha, a, b, x, tx, T)]) * total


# (r, alpha, a, b, h, x, tx, T): what each group covers is in its comment.
CASES = [
    # Hardie's CDNOW spreadsheet point and the published parameters (weeks).
    (0.243, 4.414, 0.793, 2.426, 39, 2, 30.43, 38.86),
    (0.243, 4.414, 0.793, 2.426, 52.14, 0, 0, 38.86),
    # The case one-time-buyers-a-plus-b-below-1: a + b < 1, so c = a + b - 1 < 0 at x = 0.
    (0.4, 16, 0.35, 0.37, 360, 0, 0, 200),
    (0.396479, 16.222451, 0.348339, 0.370058, 360, 0, 0, 112),
    (0.4, 16, 0.35, 0.37, 30, 1, 10, 200),
    (0.05, 0.5, 0.05, 0.1, 3650, 0, 0, 1000),
    # c = 0 exactly (a + b = 1, x = 0), c = -0.5 (a + b = 0.5), a = 1 (eq. 10 divides by a - 1).
    (0.7, 20, 0.4, 0.6, 365, 0, 0, 90),
    (0.7, 20, 0.2, 0.3, 365, 0, 0, 90),
    (0.7, 20, 1.0, 2.0, 365, 3, 50, 90),
    (0.7, 20, 1.0, 0.5, 365, 0, 0, 90),
    # z -> 1: tiny alpha and T, horizons up to 100 years in days.
    (0.5, 0.001, 0.8, 2.5, 36500, 0, 0, 0),
    (0.5, 0.001, 0.3, 0.4, 36500, 0, 0, 0),
    (2.0, 0.01, 0.02, 0.05, 36500, 1, 0.5, 1),
    (0.3, 1e-3, 5.0, 0.2, 36500, 0, 0, 0),
    # Large x and T.
    (0.243, 4.414, 0.793, 2.426, 52, 500, 9000, 10000),
    (1.5, 30, 0.5, 8.0, 365, 5000, 36000, 36500),
    (0.2, 100, 0.1, 0.2, 36500, 200, 30000, 36500),
    (25.0, 3, 40.0, 60.0, 100, 1000, 900, 1000),
    # Tiny and large a, b, r.
    (0.01, 5, 0.01, 0.01, 52, 0, 0, 10),
    (30.0, 5, 0.01, 50.0, 52, 3, 8, 10),
    (0.8, 2, 80.0, 0.05, 52, 2, 1, 10),
    # Large a and b together (a Beta(a, b + x) concentrated far from 0 and 1):
    # the quadrature's panel factors p^a / B(a, b) overflowed alone (NaN, left
    # open in issue 15); the first is that report's case.
    (3.142, 46.08, 66266.86, 3487.73, 52.14, 1, 4.43, 12.86),
    (3.142, 46.08, 66266.86, 3487.73, 52.14, 0, 0, 12.86),
    (0.5, 10, 1e5, 1e5, 365, 20, 300, 365),
    (1.2, 3, 2000.0, 1e5, 52, 4, 20, 30),
    # Short horizons (cancellation in 1 - (...)).
    (0.243, 4.414, 0.793, 2.426, 0.01, 2, 30.43, 38.86),
    (0.4, 16, 0.35, 0.37, 1, 0, 0, 200),
]

# (r, alpha, a, b, x, tx, T, months, rate, per_month)
CLV_CASES = [
    (0.4, 16, 0.35, 0.37, 0, 0, 200, 12, 0.01, 30),
    (0.243, 4.414, 0.793, 2.426, 2, 30.43, 38.86, 12, 0.01, 4.345),
    (0.5, 0.001, 0.3, 0.4, 0, 0, 0, 120, 0.01, 30),
    (0.7, 20, 0.4, 0.6, 0, 0, 90, 24, 0.0, 30),
]


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "bgnbd_reference.csv")
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["kind", "r", "alpha", "a", "b", "h_or_months", "x", "tx", "T", "rate", "per_month", "p_alive", "value"])
        for (r, alpha, a, b, h, x, tx, T) in CASES:
            mp.mp.dps = DPS
            pa = p_alive(*[mp.mpf(v) for v in (r, alpha, a, b, x, tx, T)])
            e = pa * bracket(r, alpha, a, b, h, x, T)
            w.writerow(["expected_purchases", r, alpha, a, b, h, x, tx, T, "", "", mp.nstr(pa, 20), mp.nstr(e, 20)])
            print("E", (r, alpha, a, b, h, x, tx, T), mp.nstr(e, 17), flush=True)
        for (r, alpha, a, b, x, tx, T, months, rate, per_month) in CLV_CASES:
            mp.mp.dps = DPS
            pa = p_alive(*[mp.mpf(v) for v in (r, alpha, a, b, x, tx, T)])
            c = clv_per_unit(r, alpha, a, b, x, tx, T, months, rate, per_month)
            w.writerow(["clv_per_unit", r, alpha, a, b, months, x, tx, T, rate, per_month, mp.nstr(pa, 20), mp.nstr(c, 20)])
            print("CLV", (r, alpha, a, b, x, tx, T, months), mp.nstr(c, 17), flush=True)


if __name__ == "__main__":
    main()
