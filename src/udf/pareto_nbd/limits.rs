//! Pareto/NBD's limiting models where either gamma distribution
//! concentrates on one value: one purchase rate for everyone (r, alpha ->
//! infinity with r/alpha = lambda fixed: Poisson purchases) and one dropout
//! rate for everyone (s, beta -> infinity with s/beta = mu fixed:
//! exponential lifetimes), alone or together; with nobody dropping out
//! too (s = 0 and one purchase rate: a Poisson process). Their
//! likelihoods, the slopes of the full likelihood off them, and the
//! integral they share.
//!
//! With lambda given, a customer's likelihood is (the note's eq. 11 before
//! integrating) lambda^x [e^(-lambda T) S(T) + integral over (t_x, T] of
//! e^(-lambda tau) f(tau) dtau], S and f the survival function and density
//! of the lifetime. Averaging e^(-lambda tau) over lambda ~ Gamma(r, alpha)
//! gives (alpha+tau)^-(r+x) times the constants, and averaging S, f over
//! mu ~ Gamma(s, beta) gives (beta/(beta+tau))^s and s beta^s
//! (beta+tau)^-(s+1). In every limit at most one such power is left beside
//! an exponential, so the dead-in-(t_x, T] term is
//! J(k, c, m) = integral over (t_x, T] of (c+tau)^-k e^(-m tau) dtau
//! ([`exp_tail`]), with (k, c) = (s+1, beta) or (r+x, alpha) or k = 0, and
//! m the sum of the rates held fixed.

use std::sync::OnceLock;

use super::{Index, ParetoNbdParams};
use crate::numeric::quad::{tanh_sinh_rule, Node};
use crate::numeric::special::{digamma, ln_gamma, log_sum_exp};

/// The fixed tanh-sinh rule of [`exp_tail`] (step 1/16, 113 nodes).
fn rule() -> &'static [Node] {
    static RULE: OnceLock<Vec<Node>> = OnceLock::new();
    RULE.get_or_init(|| tanh_sinh_rule(1.0 / 16.0))
}

/// ln J(k, c, m) over (lo, hi] (module docs) and moments of tau under the
/// normalised integrand: E ln(c+tau), E 1/(c+tau), E tau, E tau^2.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail {
    /// ln J; -infinity when lo = hi.
    pub ln: f64,
    /// E ln(c + tau) (d ln J / dk = -this).
    pub ln_c: f64,
    /// E 1 / (c + tau) (d ln J / dc = -k this).
    pub inv_c: f64,
    /// E tau (d ln J / dm = -this).
    pub tau: f64,
    /// E tau^2.
    pub tau2: f64,
}

/// J(k, c, m) = integral over (lo, hi] of (c+tau)^-k e^(-m tau) dtau
/// (k >= 0, c > 0, m >= 0) with its moments. Substituting
/// u = e^(-m (tau - lo)), uniform on (e^(-m (hi - lo)), 1], absorbs the
/// exponential (however fast it decays); what is left, ((c+tau)/(c+lo))^-k,
/// is bounded by 1 and smooth, integrated on the fixed tanh-sinh rule.
pub(crate) fn exp_tail(k: f64, c: f64, m: f64, lo: f64, hi: f64) -> Tail {
    let d = hi - lo;
    if !(d > 0.0) {
        return Tail {
            ln: f64::NEG_INFINITY,
            ln_c: 0.0,
            inv_c: 0.0,
            tau: 0.0,
            tau2: 0.0,
        };
    }
    let md = m * d;
    // (1 - e^(-m d)) / m, the measure's mass; d when m = 0.
    let width = if m > 0.0 { -(-md).exp_m1() / m } else { d };
    let ln_c0 = (c + lo).ln();
    let (mut v, mut e_ln, mut e_inv, mut e1, mut e2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(ln_phi, ln_rest, weight) in rule() {
        // u = phi + e^(-m d) (1 - phi); tau = lo - ln(u) / m.
        let tau = if m > 0.0 {
            (lo - log_sum_exp(ln_phi, ln_rest - md) / m).clamp(lo, hi)
        } else {
            lo + d * ln_rest.exp()
        };
        let lc = (c + tau).ln();
        let f = weight * (-k * (lc - ln_c0)).exp();
        v += f;
        e_ln += f * lc;
        e_inv += f / (c + tau);
        e1 += f * tau;
        e2 += f * tau * tau;
    }
    Tail {
        ln: -k * ln_c0 - m * lo + width.ln() + v.ln(),
        ln_c: e_ln / v,
        inv_c: e_inv / v,
        tau: e1 / v,
        tau2: e2 / v,
    }
}

/// Which limit a set of parameters is in (see [`ParetoNbdParams`]'s
/// constructors): one purchase rate, one dropout rate, or both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Limit {
    /// Poisson purchases at rate lambda, dropout rates Gamma(s, beta).
    OneRate,
    /// Purchase rates Gamma(r, alpha), exponential lifetimes at rate mu.
    OneDropout,
    /// Poisson purchases at lambda, exponential lifetimes at mu.
    Both,
}

/// One customer's likelihood terms in a limit: ln of the alive and dead
/// terms (with the common factors in `base`), the tail, and the gradient
/// pieces. Coordinates: (ln lambda or ln r, ln alpha, ln mu or ln s,
/// ln beta); the unused ones 0.
pub(crate) struct Terms {
    /// Everything outside the bracket: ln Gamma(r+x) - ln Gamma(r) +
    /// r ln alpha or x ln lambda, plus s ln beta.
    pub base: f64,
    /// ln of the alive-at-T term.
    pub alive: f64,
    /// ln of the dead-in-(t_x, T] term (-infinity when t_x = T).
    pub dead: f64,
    /// The tail integral of the dead term.
    pub tail: Tail,
    /// d base, d alive, d dead in the four coordinates.
    pub d: [[f64; 4]; 3],
}

/// [`Terms`] of one customer (x, t_x, T) under `p` in `limit`.
pub(crate) fn terms(p: &ParetoNbdParams, limit: Limit, x: f64, tx: f64, t: f64) -> Terms {
    let ParetoNbdParams { r, alpha, s, beta } = *p;
    let mut d = [[0.0; 4]; 3];
    // Purchase side: Gamma(r, alpha) or Poisson at lambda = 1 / alpha.
    let (mut base, mut alive, mut k, mut c, mut m) = (0.0, 0.0, 0.0, 1.0, 0.0);
    if limit == Limit::OneDropout {
        base += ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        alive -= (r + x) * (alpha + t).ln();
        (k, c) = (r + x, alpha);
        d[0][0] = r * (digamma(r + x) - digamma(r) + alpha.ln());
        d[0][1] = r;
        d[1][0] = -r * (alpha + t).ln();
        d[1][1] = -(r + x) * alpha / (alpha + t);
    } else {
        let lambda = 1.0 / alpha;
        base += x * lambda.ln();
        alive -= lambda * t;
        m += lambda;
        d[0][0] = x;
        d[1][0] = -lambda * t;
    }
    // Dropout side: Gamma(s, beta) or exponential at mu = 1 / beta.
    let ln_pref = if limit == Limit::OneRate {
        base += s * beta.ln();
        alive -= s * (beta + t).ln();
        (k, c) = (s + 1.0, beta);
        d[0][2] = s * beta.ln();
        d[0][3] = s;
        d[1][2] = -s * (beta + t).ln();
        d[1][3] = -s * beta / (beta + t);
        s.ln()
    } else {
        let mu = 1.0 / beta;
        alive -= mu * t;
        m += mu;
        d[1][2] = -mu * t;
        mu.ln()
    };
    let tail = exp_tail(k, c, m, tx, t);
    // d ln J: -E ln(c+tau) dk, -k E 1/(c+tau) dc, -E tau dm.
    let dead_d = match limit {
        Limit::OneRate => [
            -tail.tau / alpha,
            0.0,
            1.0 - s * tail.ln_c,
            -k * beta * tail.inv_c,
        ],
        Limit::OneDropout => [
            -r * tail.ln_c,
            -k * alpha * tail.inv_c,
            1.0 - tail.tau / beta,
            0.0,
        ],
        Limit::Both => [-tail.tau / alpha, 0.0, 1.0 - tail.tau / beta, 0.0],
    };
    d[2] = dead_d;
    Terms {
        base,
        alive,
        dead: ln_pref + tail.ln,
        tail,
        d,
    }
}

/// One customer's log-likelihood in `limit` and its gradient in the
/// coordinates of [`Terms`].
pub(crate) fn log_likelihood(
    p: &ParetoNbdParams,
    limit: Limit,
    x: f64,
    tx: f64,
    t: f64,
) -> (f64, [f64; 4]) {
    let tm = terms(p, limit, x, tx, t);
    let l = log_sum_exp(tm.alive, tm.dead);
    let (wa, wd) = ((tm.alive - l).exp(), (tm.dead - l).exp());
    let g = std::array::from_fn(|j| {
        tm.d[0][j] + wa * tm.d[1][j] + if wd > 0.0 { wd * tm.d[2][j] } else { 0.0 }
    });
    (tm.base + l, g)
}

/// The parameters of the limit's free log parameters `theta`: (ln lambda,
/// ln s, ln beta), (ln r, ln alpha, ln mu) or (ln lambda, ln mu).
pub(crate) fn params_of(limit: Limit, theta: &[f64]) -> ParetoNbdParams {
    match limit {
        Limit::OneRate => ParetoNbdParams::one_rate(theta[0].exp(), theta[1].exp(), theta[2].exp()),
        Limit::OneDropout => {
            ParetoNbdParams::one_dropout_rate(theta[0].exp(), theta[1].exp(), theta[2].exp())
        }
        Limit::Both => ParetoNbdParams {
            s: f64::INFINITY,
            beta: (-theta[1]).exp(),
            ..ParetoNbdParams::one_rate(theta[0].exp(), 0.0, 1.0)
        },
    }
}

/// The coordinates of [`Terms`] that are the limit's free parameters, in
/// the order of [`params_of`].
fn free(limit: Limit) -> &'static [usize] {
    match limit {
        Limit::OneRate => &[0, 2, 3],
        Limit::OneDropout => &[0, 1, 2],
        Limit::Both => &[0, 2],
    }
}

/// Mean negative log-likelihood of `limit` over the indexed patterns and
/// its gradient in the limit's free log parameters (see [`params_of`]).
pub(crate) fn objective(limit: Limit, theta: &[f64], ix: &Index, grad: &mut [f64]) -> f64 {
    let p = params_of(limit, theta);
    let rows = &ix.base.rows;
    let (xs, times) = (&ix.base.xs, &ix.base.times);
    let chunk = |rows: &[(u32, u32, u32, f64)]| -> (f64, [f64; 4]) {
        let (mut ll, mut g) = (0.0, [0.0f64; 4]);
        for &(xi, txi, ti, w) in rows {
            let (x, tx, t) = (xs[xi as usize], times[txi as usize], times[ti as usize]);
            let (l, d) = log_likelihood(&p, limit, x, tx, t);
            ll += w * l;
            for j in 0..4 {
                g[j] += w * d[j];
            }
        }
        (ll, g)
    };
    let (ll, g) = crate::numeric::fit::parallel_sum(rows, chunk);
    for (out, &j) in grad.iter_mut().zip(free(limit)) {
        *out = -g[j] / ix.base.total;
    }
    -ll / ix.base.total
}

/// The largest slope of the mean log-likelihood leaving `limit` at the
/// limit's log parameters `theta`, per unit of the spread that leaves it:
/// - leaving one purchase rate (1/r > 0 at r/alpha = lambda fixed): the
///   likelihood is a mixture over lambda of terms lambda^x e^(-lambda tau),
///   so E f(Lambda) = f(lambda) + f''(lambda) lambda^2 / (2 r) + O(1/r^2),
///   and lambda^2 f''/f of one term is (x - lambda tau)^2 - x: per
///   customer the shares' average of it over tau (T for the alive term,
///   the tail's moments for the dead one), halved, per unit of the mean
///   lambda T (as BG/NBD's Poisson face, so the slope does not depend on
///   the time unit);
/// - leaving one dropout rate (1/s > 0 at s/beta = mu fixed): the terms
///   are e^(-mu T) and mu e^(-mu tau), whose mu^2 f''/f are (mu T)^2 and
///   (mu tau)^2 - 2 mu tau; their shares' average, halved.
///
/// NaN verifies nothing.
pub(crate) fn spread_slope(limit: Limit, theta: &[f64], ix: &Index) -> f64 {
    let (purchase, dropout) = spread_slope_parts(limit, theta, ix);
    if purchase.is_nan() || dropout.is_nan() {
        return f64::NAN;
    }
    purchase.max(dropout)
}

/// [`spread_slope`]'s two directions (leaving one purchase rate, leaving
/// one dropout rate), -infinity for one the limit does not have.
pub(crate) fn spread_slope_parts(limit: Limit, theta: &[f64], ix: &Index) -> (f64, f64) {
    let p = params_of(limit, theta);
    let (xs, times) = (&ix.base.xs, &ix.base.times);
    let (mut purchase, mut dropout, mut mean) = (0.0, 0.0, 0.0);
    for &(xi, txi, ti, w) in &ix.base.rows {
        let (x, tx, t) = (xs[xi as usize], times[txi as usize], times[ti as usize]);
        let tm = terms(&p, limit, x, tx, t);
        let l = log_sum_exp(tm.alive, tm.dead);
        let (wa, wd) = ((tm.alive - l).exp(), (tm.dead - l).exp());
        let (e1, e2) = if wd > 0.0 {
            (tm.tail.tau, tm.tail.tau2)
        } else {
            (0.0, 0.0)
        };
        if limit != Limit::OneDropout {
            let lambda = 1.0 / p.alpha;
            let alive = (x - lambda * t).powi(2) - x;
            let dead = x * x - 2.0 * x * lambda * e1 + lambda * lambda * e2 - x;
            purchase += w * (wa * alive + wd * dead) / 2.0;
            mean += w * lambda * t;
        }
        if limit != Limit::OneRate {
            let mu = 1.0 / p.beta;
            let dead = mu * mu * e2 - 2.0 * mu * e1;
            dropout += w * (wa * (mu * t).powi(2) + wd * dead) / 2.0;
        }
    }
    let n = ix.base.total;
    let purchase = if limit == Limit::OneDropout {
        f64::NEG_INFINITY
    } else {
        purchase / n / (mean / n).max(1e-300)
    };
    let dropout = if limit == Limit::OneRate {
        f64::NEG_INFINITY
    } else {
        dropout / n
    };
    (purchase, dropout)
}

/// The slope of the mean log-likelihood leaving the Poisson process at
/// rate `lambda` into dropout at `beta`, per unit of s ([`poisson_slope`]);
/// `beta` infinite: towards beta -> infinity, per unit of s/beta.
fn poisson_dropout_slope_at(lambda: f64, beta: f64, ix: &Index) -> f64 {
    let times = &ix.base.times;
    let infinite = beta == f64::INFINITY;
    let (k, c) = if infinite { (0.0, 1.0) } else { (1.0, beta) };
    ix.base
        .rows
        .iter()
        .map(|&(_, txi, ti, w)| {
            let (tx, t) = (times[txi as usize], times[ti as usize]);
            let term = (lambda * t + exp_tail(k, c, lambda, tx, t).ln).exp();
            if infinite {
                w * (-t + term)
            } else {
                w * ((beta / (beta + t)).ln() + term)
            }
        })
        .sum::<f64>()
        / ix.base.total
}

/// The largest slope of the mean log-likelihood leaving the Poisson
/// process (s = 0, one purchase rate lambda = e^`theta[0]`), over every
/// direction off it:
/// - into heterogeneity in purchasing: [`spread_slope`] of the one-rate
///   limit at s = 0 (the dead term vanishes);
/// - into dropout s > 0 at a given beta: d ln L / ds at s = 0 is, per
///   customer, ln(beta/(beta+T)) + e^(lambda T) J(1, beta, lambda) (the
///   derivative of the one-rate likelihood of the module docs), maximised
///   over beta from e^-8 to e^12 times the mean age `scale` (1 apart in
///   ln beta); towards beta -> infinity at s/beta fixed, per unit of
///   s/beta, -T + e^(lambda T) J(0, 1, lambda) = -T + (e^(lambda (T -
///   t_x)) - 1) / lambda (as the NBD face's slope in that limit).
///
/// NaN verifies nothing.
pub(crate) fn poisson_slope(theta: &[f64], ix: &Index, scale: f64) -> f64 {
    let lambda = theta[0].exp();
    let het = spread_slope(Limit::OneRate, &[theta[0], f64::NEG_INFINITY, 0.0], ix);
    (0..=20)
        .map(|k| poisson_dropout_slope_at(lambda, scale * (-8.0 + k as f64).exp(), ix))
        .chain([poisson_dropout_slope_at(lambda, f64::INFINITY, ix), het])
        .fold(f64::NEG_INFINITY, |m, v| {
            if m.is_nan() || v.is_nan() {
                f64::NAN
            } else {
                m.max(v)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numeric::quad::tanh_sinh;
    use crate::udf::bgnbd::tests::patterns;
    use crate::udf::pareto_nbd::log_likelihood as full_ll;
    use crate::udf::shapes;

    /// J(k, c, m) by the adaptive rule on a plain linear map of (lo, hi]
    /// (no substitution): an independent evaluation.
    fn j_direct(k: f64, c: f64, m: f64, lo: f64, hi: f64) -> f64 {
        let d = hi - lo;
        d * tanh_sinh(
            |l, _| {
                let tau = lo + d * l.exp();
                (c + tau).powf(-k) * (-m * tau).exp()
            },
            1e-14,
        )
    }

    #[test]
    fn the_exponential_tail_matches_closed_forms_and_direct_quadrature() {
        // k = 0: (e^(-m lo) - e^(-m hi)) / m; m = 0: ((c+lo)^(1-k) -
        // (c+hi)^(1-k)) / (k-1) (exact); otherwise the adaptive rule on
        // the untransformed integrand. 1e-11 relative; moments E tau
        // against the adaptive rule of tau times the integrand, 1e-9.
        for (m, lo, hi) in [
            (0.2f64, 0.0f64, 30.0f64),
            (3.0, 5.0, 80.0),
            (1e-5, 1.0, 2.0),
        ] {
            let want = ((-m * lo).exp() - (-m * hi).exp()) / m;
            let got = exp_tail(0.0, 1.0, m, lo, hi).ln.exp();
            assert!(
                (got / want - 1.0).abs() < 1e-11,
                "{m} {lo} {hi}: {got} vs {want}"
            );
        }
        for (k, c, lo, hi) in [(1.6f64, 11.7f64, 0.0f64, 39.0f64), (30.0, 2.0, 3.0, 70.0)] {
            let want = ((c + lo).powf(1.0 - k) - (c + hi).powf(1.0 - k)) / (k - 1.0);
            let got = exp_tail(k, c, 0.0, lo, hi).ln.exp();
            assert!((got / want - 1.0).abs() < 1e-11, "{k} {c}: {got} vs {want}");
        }
        for (k, c, m, lo, hi) in [
            (1.6, 11.7, 0.19, 10.0, 39.0),
            (12.0, 60.0, 0.014, 0.0, 100.0),
            (0.5, 0.3, 2.0, 0.0, 50.0),
        ] {
            let want = j_direct(k, c, m, lo, hi);
            let t = exp_tail(k, c, m, lo, hi);
            assert!(
                (t.ln.exp() / want - 1.0).abs() < 1e-11,
                "{k} {c} {m}: {t:?} vs {want}"
            );
            let d = hi - lo;
            let tau = d * tanh_sinh(
                |l, _| {
                    let tau = lo + d * l.exp();
                    tau * (c + tau).powf(-k) * (-m * tau).exp()
                },
                1e-14,
            ) / want;
            assert!((t.tau / tau - 1.0).abs() < 1e-9, "{t:?} vs E tau {tau}");
        }
        assert_eq!(exp_tail(1.0, 1.0, 1.0, 5.0, 5.0).ln, f64::NEG_INFINITY);
    }

    /// A limit's parameters and the full model's close to it (the
    /// concentrating shapes at 1e8).
    fn near(limit: Limit) -> (ParetoNbdParams, ParetoNbdParams) {
        let (r, alpha, s, beta, lambda, mu): (f64, f64, f64, f64, f64, f64) =
            (0.8, 6.0, 0.6, 11.0, 0.15, 0.02);
        let k = 1e8;
        match limit {
            Limit::OneRate => (
                ParetoNbdParams::one_rate(lambda, s, beta),
                ParetoNbdParams {
                    r: k,
                    alpha: k / lambda,
                    s,
                    beta,
                },
            ),
            Limit::OneDropout => (
                ParetoNbdParams::one_dropout_rate(r, alpha, mu),
                ParetoNbdParams {
                    r,
                    alpha,
                    s: k,
                    beta: k / mu,
                },
            ),
            Limit::Both => (
                params_of(Limit::Both, &[lambda.ln(), mu.ln()]),
                ParetoNbdParams {
                    r: k,
                    alpha: k / lambda,
                    s: k,
                    beta: k / mu,
                },
            ),
        }
    }

    /// The individual-level Pareto/NBD (Fader & Hardie's note, eq. 3, and
    /// its eqs. for P(alive) and E[Y(h)] at one lambda and mu): ln L,
    /// P(alive), E[Y(h)], in closed form; the limit with both rates fixed.
    fn individual(lambda: f64, mu: f64, h: f64, x: f64, tx: f64, t: f64) -> (f64, f64, f64) {
        let m = lambda + mu;
        let ll =
            x * lambda.ln() + ((-m * t).exp() + mu / m * ((-m * tx).exp() - (-m * t).exp())).ln();
        let alive = 1.0 / (1.0 + mu / m * ((m * (t - tx)).exp() - 1.0));
        (ll, alive, lambda * -(-mu * h).exp_m1() / mu * alive)
    }

    #[test]
    fn each_limit_is_the_full_model_at_a_concentrated_gamma() {
        // The full likelihood (the 2F1 tails) with one pair of shapes at
        // 1e8 and its rate fixed approaches the one-rate and
        // one-dropout-rate limits' own formulas: 1e-5 absolute on ln L
        // (the gap is O(1/shape) times terms like (x - lambda T)^2, and
        // r ln alpha at r = 1e8 rounds to about 1e-7); so do their
        // P(alive) and E[Y(52)] (the module's scalars), 1e-5. With both
        // pairs at 1e8 the tails' quadrature loses the dead term, so the
        // limit with both rates fixed is checked against the closed
        // form of the individual-level model instead (1e-12).
        for limit in [Limit::OneRate, Limit::OneDropout] {
            let (lim, full) = near(limit);
            assert_eq!(lim.limit(), Some(limit));
            for (x, tx, t) in [
                (0.0, 0.0, 30.0),
                (3.0, 20.0, 40.0),
                (12.0, 70.0, 70.0),
                (2.0, 1.0, 90.0),
            ] {
                let (a, b) = (
                    log_likelihood(&lim, limit, x, tx, t).0,
                    full_ll(&full, x, tx, t),
                );
                assert!((a - b).abs() < 1e-5, "{limit:?} {x} {tx} {t}: {a} vs {b}");
                let (a, b) = (
                    super::super::p_alive(&lim, x, tx, t),
                    super::super::p_alive(&full, x, tx, t),
                );
                assert!((a - b).abs() < 1e-5, "{limit:?} P(alive) {a} vs {b}");
                let e = |p| super::super::expected_purchases(p, 52.0, x, tx, t);
                let (a, b) = (e(&lim), e(&full));
                assert!((a - b).abs() < 1e-5 * b.max(1.0), "{limit:?} E {a} vs {b}");
            }
        }
        let (lambda, mu): (f64, f64) = (0.15, 0.02);
        let both = params_of(Limit::Both, &[lambda.ln(), mu.ln()]);
        assert_eq!(both.limit(), Some(Limit::Both));
        for (x, tx, t) in [
            (0.0, 0.0, 30.0),
            (3.0, 20.0, 40.0),
            (12.0, 70.0, 70.0),
            (2.0, 1.0, 90.0),
        ] {
            let (ll, alive, e) = individual(lambda, mu, 52.0, x, tx, t);
            let got = [
                log_likelihood(&both, Limit::Both, x, tx, t).0,
                super::super::p_alive(&both, x, tx, t),
                super::super::expected_purchases(&both, 52.0, x, tx, t),
            ];
            for (g, w) in got.into_iter().zip([ll, alive, e]) {
                assert!(
                    (g - w).abs() < 1e-12 * w.abs().max(1.0),
                    "{x} {tx} {t}: {got:?} vs {ll} {alive} {e}"
                );
            }
        }
    }

    #[test]
    fn the_limits_gradients_match_finite_differences() {
        // Central differences of the mean objective, step 1e-6: 1e-6.
        let ix = Index::new(&patterns(true));
        for (limit, th) in [
            (Limit::OneRate, vec![-2.0, -0.5, 2.4]),
            (Limit::OneDropout, vec![-0.6, 2.3, -3.0]),
            (Limit::Both, vec![-2.5, -3.5]),
        ] {
            let mut g = vec![0.0; th.len()];
            objective(limit, &th, &ix, &mut g);
            for i in 0..th.len() {
                let h = 1e-6;
                let (mut up, mut dn) = (th.clone(), th.clone());
                up[i] += h;
                dn[i] -= h;
                let mut tmp = vec![0.0; th.len()];
                let d = (objective(limit, &up, &ix, &mut tmp)
                    - objective(limit, &dn, &ix, &mut tmp))
                    / (2.0 * h);
                assert!((d - g[i]).abs() < 1e-6, "{limit:?} {i}: {d} vs {}", g[i]);
            }
        }
    }

    /// Mean log-likelihood of the full model over the indexed patterns.
    fn mean_ll(p: &ParetoNbdParams, ix: &Index) -> f64 {
        let (xs, times) = (&ix.base.xs, &ix.base.times);
        ix.base
            .rows
            .iter()
            .map(|&(xi, txi, ti, w)| {
                w * full_ll(p, xs[xi as usize], times[txi as usize], times[ti as usize])
            })
            .sum::<f64>()
            / ix.base.total
    }

    #[test]
    fn the_slopes_off_the_faces_are_the_likelihood_s() {
        // The slope off each face at a point of it against the full
        // likelihood's difference quotient: leaving one dropout rate, per
        // unit of 1/s at s/beta fixed; leaving one purchase rate, per unit
        // of 1/r at r/alpha fixed, over the mean lambda T; with eps 1e-4
        // and 2e-4 extrapolated (Richardson: the O(eps) term cancels),
        // 1e-3 relative. On 2,000 customers of the one-dropout shop.
        let ix = Index::new(&shapes::one_dropout(2_000, 8, 0.1));
        let mean_t = ix
            .base
            .rows
            .iter()
            .map(|&(_, _, ti, w)| w * ix.base.times[ti as usize])
            .sum::<f64>()
            / ix.base.total;
        let (lambda, mu, r, alpha, s, beta): (f64, f64, f64, f64, f64, f64) =
            (0.17, 0.014, 10.0, 60.0, 0.6, 11.0);
        let cases: [(Limit, Vec<f64>, bool); 3] = [
            (Limit::OneDropout, vec![r.ln(), alpha.ln(), mu.ln()], false),
            (Limit::OneRate, vec![lambda.ln(), s.ln(), beta.ln()], true),
            (Limit::Both, vec![lambda.ln(), mu.ln()], true),
        ];
        for (limit, th, purchase) in cases {
            let p = params_of(limit, &th);
            let base = mean_ll(&p, &ix);
            let quotient = |eps: f64| {
                let q = if purchase {
                    ParetoNbdParams {
                        r: 1.0 / eps,
                        alpha: 1.0 / (eps * lambda),
                        ..p
                    }
                } else {
                    ParetoNbdParams {
                        s: 1.0 / eps,
                        beta: 1.0 / (eps * mu),
                        ..p
                    }
                };
                let q = if limit == Limit::Both {
                    // Leave one purchase rate only: dropout stays at its limit.
                    ParetoNbdParams {
                        s: f64::INFINITY,
                        beta: 1.0 / mu,
                        ..q
                    }
                } else {
                    q
                };
                let l = if q.limit().is_some() {
                    mean_ll_limit(&q, &ix)
                } else {
                    mean_ll(&q, &ix)
                };
                (l - base) / eps
            };
            let d = 2.0 * quotient(1e-4) - quotient(2e-4);
            let d = if purchase { d / (lambda * mean_t) } else { d };
            let parts = spread_slope_parts(limit, &th, &ix);
            let got = if purchase { parts.0 } else { parts.1 };
            assert!(
                (got - d).abs() < 1e-3 * d.abs().max(1e-3),
                "{limit:?}: {got} vs {d}"
            );
        }
    }

    /// Mean log-likelihood of a point in a limit.
    fn mean_ll_limit(p: &ParetoNbdParams, ix: &Index) -> f64 {
        let (xs, times) = (&ix.base.xs, &ix.base.times);
        let limit = p.limit().unwrap();
        ix.base
            .rows
            .iter()
            .map(|&(xi, txi, ti, w)| {
                w * log_likelihood(
                    p,
                    limit,
                    xs[xi as usize],
                    times[txi as usize],
                    times[ti as usize],
                )
                .0
            })
            .sum::<f64>()
            / ix.base.total
    }

    #[test]
    fn the_poisson_face_s_slope_into_dropout_is_the_likelihood_s() {
        // Leaving s = 0 at beta = 30 per unit of s (the formula at one
        // point of its grid), against the one-rate limit's likelihood at
        // s = eps (Richardson, 1e-5 and 2e-5): 1e-3 relative. The homogeneous Poisson shop, 2,000
        // customers, at its own rate.
        let ix = Index::new(&shapes::homogeneous_poisson(2_000, 9));
        let lambda: f64 = 20.0 / 104.0;
        let beta = 30.0;
        let p0 = ParetoNbdParams::one_rate(lambda, 0.0, beta);
        let base: f64 = ix
            .base
            .rows
            .iter()
            .map(|&(xi, _, ti, w)| {
                w * crate::udf::bgnbd::poisson_log_likelihood(
                    lambda,
                    ix.base.xs[xi as usize],
                    ix.base.times[ti as usize],
                )
            })
            .sum::<f64>()
            / ix.base.total;
        let quotient =
            |eps: f64| (mean_ll_limit(&ParetoNbdParams { s: eps, ..p0 }, &ix) - base) / eps;
        let d = 2.0 * quotient(1e-5) - quotient(2e-5);
        let got = poisson_dropout_slope_at(lambda, beta, &ix);
        assert!((got - d).abs() < 1e-3 * d.abs().max(1e-3), "{got} vs {d}");
    }
}
