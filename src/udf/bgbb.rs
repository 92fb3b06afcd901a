//! BG/BB (Fader, Hardie & Shang 2010, "Customer-Base Analysis in a
//! Discrete-Time Noncontractual Setting", Marketing Science 29(6)) for
//! discrete purchase opportunities (one transaction at most per
//! opportunity: yearly donations, weekly visits): the likelihood, its
//! maximum-likelihood fit over weighted patterns, P(alive) and expected
//! purchases; then the SQL functions `bgbb_fit`, `bgbb_p_alive`,
//! `bgbb_expected_purchases`; then tests.
//!
//! While alive a customer transacts at each opportunity with probability
//! p ~ Beta(alpha, beta) and dies before each next one with probability
//! theta ~ Beta(gamma, delta). A pattern is (x, t_x, n): x transactions in
//! the n opportunities after the first, the last at opportunity t_x (0 when
//! x = 0). Its likelihood (eq. 5) is
//!   L = B(alpha+x, beta+n-x)/B(alpha, beta) B(gamma, delta+n)/B(gamma, delta)
//!     + sum over i = 0 .. n-t_x-1 of B(alpha+x, beta+t_x-x+i)/B(alpha, beta)
//!       B(gamma+1, delta+t_x+i)/B(gamma, delta),
//! the first term alive through n, the others dead after t_x + i.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};

use super::args::{fit_scalar, fit_type, null_struct, Collector, Weighted};
use super::Function;
use crate::numeric::fit;
use crate::numeric::optim::Options;
use crate::numeric::special::{digamma, ln_beta, ln_gamma};

/// Model parameters (unit-free: per opportunity).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgBbParams {
    /// First shape of the beta distribution of transaction probabilities.
    pub alpha: f64,
    /// Second shape of that beta distribution.
    pub beta: f64,
    /// First shape of the beta distribution of dropout probabilities.
    pub gamma: f64,
    /// Second shape of that beta distribution.
    pub delta: f64,
}

/// Customers sharing (x, t_x, n), with their count as weight.
#[derive(Debug, Clone, Copy)]
pub struct Pattern {
    /// Transactions x after the first opportunity (whole, 0..=n).
    pub frequency: f64,
    /// Opportunity t_x of the last transaction (whole, x..=n; 0 when x = 0).
    pub recency: f64,
    /// Opportunities n observed after the first.
    pub n: f64,
    /// Number of customers sharing the pattern.
    pub weight: f64,
}

/// Result of a fit.
pub type FitResult = fit::FitResult<BgBbParams>;

/// Opportunities at most: the likelihood sums up to n terms per pattern.
const MAX_OPPORTUNITIES: f64 = 100_000.0;

/// Check one customer's summary.
pub fn validate(x: f64, tx: f64, n: f64) -> std::result::Result<(), String> {
    let whole = |v: f64| v.is_finite() && v >= 0.0 && v.fract() == 0.0;
    if !(whole(n) && n <= MAX_OPPORTUNITIES) {
        return Err(format!(
            "n must be a whole number of opportunities from 0 to {MAX_OPPORTUNITIES}, got {n}"
        ));
    }
    if !(whole(x) && x <= n) {
        return Err(format!(
            "frequency must be a whole number from 0 to n = {n}, got {x}"
        ));
    }
    if !(whole(tx) && tx <= n && tx >= x && (x > 0.0 || tx == 0.0)) {
        return Err(format!(
            "recency must be a whole number from frequency = {x} to n = {n} (0 when frequency is 0), got {tx}"
        ));
    }
    Ok(())
}

/// The log terms of eq. 5 for (x, t_x, n): alive through n first, then
/// dead after t_x + i for i = 0 .. n-t_x-1, each with its gradient in the
/// log parameters.
fn terms(p: &BgBbParams, x: f64, tx: f64, n: f64, mut each: impl FnMut(f64, [f64; 4])) {
    let BgBbParams {
        alpha,
        beta,
        gamma,
        delta,
    } = *p;
    let (psi_a, psi_b, psi_ab) = (digamma(alpha), digamma(beta), digamma(alpha + beta));
    let (psi_g, psi_d, psi_gd) = (digamma(gamma), digamma(delta), digamma(gamma + delta));
    let (base_ab, base_gd) = (ln_beta(alpha, beta), ln_beta(gamma, delta));
    let psi_ax = digamma(alpha + x);
    let term = |y: f64, g: f64, d: f64| -> (f64, [f64; 4]) {
        // B(alpha+x, beta+y) B(gamma+g, delta+d) / (B(alpha, beta) B(gamma, delta)).
        let l = ln_beta(alpha + x, beta + y) - base_ab + ln_beta(gamma + g, delta + d) - base_gd;
        let s1 = digamma(alpha + beta + x + y);
        let s2 = digamma(gamma + delta + g + d);
        (
            l,
            [
                alpha * (psi_ax - s1 - psi_a + psi_ab),
                beta * (digamma(beta + y) - s1 - psi_b + psi_ab),
                gamma * (digamma(gamma + g) - s2 - psi_g + psi_gd),
                delta * (digamma(delta + d) - s2 - psi_d + psi_gd),
            ],
        )
    };
    let (l, g) = term(n - x, 0.0, n);
    each(l, g);
    let mut i = 0.0;
    while i < n - tx {
        let (l, g) = term(tx - x + i, 1.0, tx + i);
        each(l, g);
        i += 1.0;
    }
}

/// One customer's log-likelihood (eq. 5) and its gradient in log
/// parameters.
fn log_likelihood_grad(p: &BgBbParams, x: f64, tx: f64, n: f64) -> (f64, [f64; 4]) {
    let mut all = Vec::new();
    terms(p, x, tx, n, |l, g| all.push((l, g)));
    let top = all.iter().fold(f64::NEG_INFINITY, |m, t| m.max(t.0));
    let mut sum = 0.0;
    let mut grad = [0.0; 4];
    for (l, g) in &all {
        let w = (l - top).exp();
        sum += w;
        for j in 0..4 {
            grad[j] += w * g[j];
        }
    }
    (top + sum.ln(), grad.map(|v| v / sum))
}

/// One customer's log-likelihood (eq. 5).
pub fn log_likelihood(p: &BgBbParams, x: f64, tx: f64, n: f64) -> f64 {
    log_likelihood_grad(p, x, tx, n).0
}

/// Mean negative log-likelihood and its gradient over weighted patterns.
fn objective(theta: &[f64], patterns: &[Pattern], total: f64, grad: &mut [f64]) -> f64 {
    let p = BgBbParams {
        alpha: theta[0].exp(),
        beta: theta[1].exp(),
        gamma: theta[2].exp(),
        delta: theta[3].exp(),
    };
    let chunk = |rows: &[Pattern]| -> (f64, [f64; 4]) {
        let (mut ll, mut g) = (0.0, [0.0f64; 4]);
        for q in rows {
            let (l, d) = log_likelihood_grad(&p, q.frequency, q.recency, q.n);
            ll += q.weight * l;
            for j in 0..4 {
                g[j] += q.weight * d[j];
            }
        }
        (ll, g)
    };
    let (ll, g) = fit::parallel_sum(patterns, chunk);
    for i in 0..4 {
        grad[i] = -g[i] / total;
    }
    -ll / total
}

/// The no-dropout limit gamma -> 0 (every theta 0): the beta-binomial,
/// ln L = ln B(alpha+x, beta+n-x) - ln B(alpha, beta) (eq. 5 without its
/// dropout terms). Mean negative log-likelihood and gradient in
/// (ln alpha, ln beta).
fn no_dropout_objective(theta: &[f64], patterns: &[Pattern], total: f64, grad: &mut [f64]) -> f64 {
    let (alpha, beta) = (theta[0].exp(), theta[1].exp());
    let (psi_a, psi_b, psi_ab) = (digamma(alpha), digamma(beta), digamma(alpha + beta));
    let base = ln_beta(alpha, beta);
    let (mut ll, mut ga, mut gb) = (0.0, 0.0, 0.0);
    for q in patterns {
        let (x, n, w) = (q.frequency, q.n, q.weight);
        let s = digamma(alpha + beta + n);
        ll += w * (ln_beta(alpha + x, beta + n - x) - base);
        ga += w * alpha * (digamma(alpha + x) - s - psi_a + psi_ab);
        gb += w * beta * (digamma(beta + n - x) - s - psi_b + psi_ab);
    }
    grad[0] = -ga / total;
    grad[1] = -gb / total;
    -ll / total
}

/// The largest slope of the mean log-likelihood leaving the no-dropout
/// limit at (ln alpha, ln beta) = `theta`, per unit of gamma. At gamma = 0
/// towards a given delta, d ln L / d gamma is, per customer,
/// psi(delta) - psi(delta+n) + sum over i of R_i / (delta+t_x+i),
/// R_i = B(alpha+x, beta+t_x-x+i) / B(alpha+x, beta+n-x) (from
/// B(gamma+1, d)/B(gamma, delta) = gamma/d + O(gamma^2)); maximised over
/// delta from e^-10 to e^20 (0.25 apart in ln delta). Towards
/// delta -> infinity at fixed gamma/delta the slope per unit of
/// gamma/delta is sum R_i - n, also taken. NaN verifies nothing.
fn dropout_slope(theta: &[f64], patterns: &[Pattern], total: f64) -> f64 {
    let (alpha, beta) = (theta[0].exp(), theta[1].exp());
    // Per pattern: the ratios R_i with their t_x + i.
    let ratios: Vec<Vec<(f64, f64)>> = patterns
        .iter()
        .map(|q| {
            let (x, tx, n) = (q.frequency, q.recency, q.n);
            let alive = ln_beta(alpha + x, beta + n - x);
            (0..(n - tx) as usize)
                .map(|i| {
                    let i = i as f64;
                    let r = (ln_beta(alpha + x, beta + tx - x + i) - alive).exp();
                    (r, tx + i)
                })
                .collect()
        })
        .collect();
    let towards_infinity: f64 = patterns
        .iter()
        .zip(&ratios)
        .map(|(q, rs)| q.weight * (rs.iter().map(|r| r.0).sum::<f64>() - q.n))
        .sum::<f64>()
        / total;
    let at = |delta: f64| -> f64 {
        let psi_d = digamma(delta);
        patterns
            .iter()
            .zip(&ratios)
            .map(|(q, rs)| {
                let dead: f64 = rs.iter().map(|(r, k)| r / (delta + k)).sum();
                q.weight * (psi_d - digamma(delta + q.n) + dead)
            })
            .sum::<f64>()
            / total
    };
    (0..=120)
        .map(|k| at((-10.0 + 0.25 * k as f64).exp()))
        .fold(towards_infinity, |m, v| {
            if m.is_nan() || v.is_nan() {
                f64::NAN
            } else {
                m.max(v)
            }
        })
}

/// Maximum-likelihood fit over weighted patterns (L-BFGS in log-parameter
/// space from several starts; the no-dropout limit tried first).
pub fn fit(patterns: &[Pattern]) -> FitResult {
    fit_penalised(patterns, 0.0)
}

/// [`fit`] with the L2 penalty `penalizer` on the log parameters (all
/// unit-free, centred at 0).
pub fn fit_penalised(patterns: &[Pattern], penalizer: f64) -> FitResult {
    let total: f64 = patterns.iter().map(|p| p.weight).sum();
    let starts: Vec<Vec<f64>> = [
        [1.0, 1.0, 1.0, 1.0],
        [0.5, 2.0, 0.5, 3.0],
        [2.0, 0.5, 2.0, 0.5],
    ]
    .iter()
    .map(|s| s.iter().map(|v: &f64| v.ln()).collect())
    .collect();
    let opts = Options::model_fit();
    let centre = [0.0; 4];
    let full = fit::penalised(
        |th: &[f64], g: &mut [f64]| objective(th, patterns, total, g),
        penalizer,
        &centre,
    );
    let none = None::<fn(&[f64], &mut [f64]) -> f64>;
    let found = if !(total > 0.0) {
        fit::Found::nothing(4, "was not fitted: no customers")
    } else if penalizer > 0.0 {
        fit::minimise(full, none, &starts, &opts, PARAMS)
    } else {
        let limit = |th: &[f64], g: &mut [f64]| no_dropout_objective(th, patterns, total, g);
        let slope = |th: &[f64]| dropout_slope(th, patterns, total);
        let embed = |th: &[f64]| vec![th[0], th[1], f64::NEG_INFINITY, f64::NAN];
        let face = fit::Face {
            at_bound: "gamma = 0: nobody drops out (the beta-binomial; delta has no effect)".into(),
            names: &PARAMS[..2],
            starts: starts.iter().map(|s| s[..2].to_vec()).collect(),
            objective: &limit,
            off_face: &slope,
            embed: &embed,
        };
        fit::minimise_faces(full, none, &starts, &opts, PARAMS, &[face])
    };
    found.result(total, |v| BgBbParams {
        alpha: v[0],
        beta: v[1],
        gamma: v[2],
        delta: v[3],
    })
}

/// ln of the alive-through-n term of eq. 5 with m more opportunities
/// survived: B(alpha+x, beta+n-x)/B(alpha, beta) B(gamma, delta+n+m)/B(gamma, delta).
fn ln_alive_term(p: &BgBbParams, x: f64, n: f64, m: f64) -> f64 {
    ln_beta(p.alpha + x, p.beta + n - x) - ln_beta(p.alpha, p.beta) + ln_survival(p, n + m)
}

/// ln B(gamma, delta+k)/B(gamma, delta): the probability of being alive at
/// opportunity k; 0 in the no-dropout limit gamma = 0.
fn ln_survival(p: &BgBbParams, k: f64) -> f64 {
    if p.gamma == 0.0 {
        return 0.0;
    }
    ln_beta(p.gamma, p.delta + k) - ln_beta(p.gamma, p.delta)
}

/// P(alive at opportunity n + m | x, t_x, n) (eq. 11 for m = 1; lifetimes'
/// `conditional_probability_alive(m, ...)`): the alive term with m more
/// opportunities survived over the likelihood. 1 in the limit gamma = 0.
pub fn p_alive(p: &BgBbParams, m: f64, x: f64, tx: f64, n: f64) -> f64 {
    if p.gamma == 0.0 {
        return 1.0;
    }
    (ln_alive_term(p, x, n, m) - log_likelihood(p, x, tx, n))
        .exp()
        .min(1.0)
}

/// E[X(n, n + h) | x, t_x, n]: expected transactions in the next h
/// opportunities (eq. 13), as the sum it comes from: over j = 1..h,
/// E[p | data, alive] P(alive at n + j | data) =
/// B(alpha+x+1, beta+n-x)/B(alpha, beta) B(gamma, delta+n+j)/B(gamma, delta) / L.
/// The sum has no singularity (eq. 13's closed form divides by gamma - 1);
/// horizons beyond 10,000 opportunities use the closed form, with its
/// gamma -> 1 limit psi(1+delta+n+h) - psi(1+delta+n) near 1.
pub fn expected_purchases(p: &BgBbParams, h: f64, x: f64, tx: f64, n: f64) -> f64 {
    let ln_l = if p.gamma == 0.0 {
        ln_beta(p.alpha + x, p.beta + n - x) - ln_beta(p.alpha, p.beta)
    } else {
        log_likelihood(p, x, tx, n)
    };
    let ln_rate = ln_beta(p.alpha + x + 1.0, p.beta + n - x) - ln_beta(p.alpha, p.beta) - ln_l;
    if h <= 10_000.0 {
        let mut sum = 0.0;
        let mut j = 1.0;
        while j <= h {
            sum += (ln_rate + ln_survival(p, n + j)).exp();
            j += 1.0;
        }
        return sum;
    }
    if p.gamma == 0.0 {
        return h.floor() * ln_rate.exp();
    }
    let (g, d) = (p.gamma, p.delta);
    let u1 = ln_gamma(1.0 + d + n) - ln_gamma(g + d + n);
    let u2 = ln_gamma(1.0 + d + n + h) - ln_gamma(g + d + n + h);
    let bracket = if (g - 1.0).abs() < 1e-6 {
        digamma(1.0 + d + n + h) - digamma(1.0 + d + n)
    } else {
        u2.exp() * (u1 - u2).exp_m1() / (g - 1.0)
    };
    (ln_rate + d.ln() + ln_gamma(g + d) - ln_gamma(1.0 + d)).exp() * bracket
}

// ---------------------------------------------------------------------------
// DataFusion wrappers

const PARAMS: &[&str] = &["alpha", "beta", "gamma", "delta"];

#[derive(Debug)]
struct Fit;

impl Collector for Fit {
    const WIDTH: usize = 3;
    fn validate(row: &[f64]) -> std::result::Result<(), String> {
        validate(row[0], row[1], row[2])
    }
    fn return_type() -> DataType {
        fit_type(PARAMS)
    }
    fn finish(rows: &[Weighted], penalizer: f64) -> Result<ScalarValue> {
        if rows.is_empty() {
            return null_struct(&Self::return_type());
        }
        let patterns: Vec<Pattern> = rows
            .iter()
            .map(|(k, w)| Pattern {
                frequency: k[0],
                recency: k[1],
                n: k[2],
                weight: *w,
            })
            .collect();
        let f = fit_penalised(&patterns, penalizer);
        fit_scalar(
            &[
                ("alpha", f.params.alpha),
                ("beta", f.params.beta),
                ("gamma", f.params.gamma),
                ("delta", f.params.delta),
            ],
            &f,
        )
    }
}

/// The parameters of a struct's fields (NULL as NaN): `None` when one is
/// NULL, except delta in the no-dropout limit gamma = 0; an error when one
/// is not positive (gamma = 0 allowed).
fn params(v: &[f64]) -> std::result::Result<Option<BgBbParams>, String> {
    let limit = v[2] == 0.0;
    let p = BgBbParams {
        alpha: v[0],
        beta: v[1],
        gamma: v[2],
        delta: if limit && v[3].is_nan() { 1.0 } else { v[3] },
    };
    if [p.alpha, p.beta, p.gamma, p.delta]
        .iter()
        .any(|x| x.is_nan())
    {
        return Ok(None);
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if positive(p.alpha) && positive(p.beta) && positive(p.delta) && (limit || positive(p.gamma)) {
        Ok(Some(p))
    } else {
        Err(format!(
            "parameters must be positive, got alpha={}, beta={}, gamma={}, delta={}",
            p.alpha, p.beta, p.gamma, p.delta
        ))
    }
}

fn eval_p_alive(pv: &[f64], v: &[f64]) -> std::result::Result<Option<f64>, String> {
    let Some(p) = params(pv)? else {
        return Ok(None);
    };
    validate(v[0], v[1], v[2])?;
    Ok(Some(p_alive(&p, 1.0, v[0], v[1], v[2])))
}

fn eval_expected(pv: &[f64], v: &[f64]) -> std::result::Result<Option<f64>, String> {
    let Some(p) = params(pv)? else {
        return Ok(None);
    };
    if !(v[0] >= 0.0 && v[0].is_finite() && v[0].fract() == 0.0) {
        return Err(format!(
            "horizon must be a whole number of opportunities >= 0, got {}",
            v[0]
        ));
    }
    validate(v[1], v[2], v[3])?;
    let e = expected_purchases(&p, v[0], v[1], v[2], v[3]);
    Ok(Some(e))
}

/// The SQL functions of this model.
pub fn functions() -> Vec<Function> {
    vec![
        Function::fit::<Fit>(
            "bgbb_fit",
            &["frequency", "recency", "n"],
            "BG/BB maximum-likelihood fit for discrete purchase opportunities (Fader, Hardie & Shang 2010)",
        ),
        Function::scalar(
            "bgbb_p_alive",
            &[("params", PARAMS)],
            &["frequency", "recency", "n"],
            eval_p_alive,
            "BG/BB probability the customer is alive at the next opportunity n + 1",
        ),
        Function::scalar(
            "bgbb_expected_purchases",
            &[("params", PARAMS)],
            &["horizon", "frequency", "recency", "n"],
            eval_expected,
            "BG/BB expected transactions in the next horizon opportunities",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf::pareto_nbd::tests::lifetimes_reference;

    /// Fader, Hardie & Shang (2010), table 1 (lifetimes' donations.csv):
    /// 11,104 donors, n = 6 opportunities, (x, t_x, count).
    pub(crate) fn donations() -> Vec<Pattern> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/donations.csv"
        ))
        .unwrap();
        text.lines()
            .skip(1)
            .map(|l| {
                let v: Vec<f64> = l.split(',').map(|s| s.parse().unwrap()).collect();
                Pattern {
                    frequency: v[0],
                    recency: v[1],
                    n: v[2],
                    weight: v[3],
                }
            })
            .collect()
    }

    #[test]
    fn fits_the_donation_data_as_published() {
        // Fader, Hardie & Shang (2010), section 4: alpha 1.204, beta 0.750,
        // gamma 0.657, delta 2.783; tolerance 0.001 (3 decimals given); and
        // lifetimes 0.11.3's log-likelihood (scripts/
        // lifetimes_models_reference.py) within 0.01 (ours at least as high).
        let d = donations();
        assert_eq!(d.iter().map(|p| p.weight).sum::<f64>(), 11_104.0);
        let f = fit(&d);
        assert!(f.converged && f.status == "converged", "{f:?}");
        let BgBbParams {
            alpha,
            beta,
            gamma,
            delta,
        } = f.params;
        for (got, want) in [
            (alpha, 1.204),
            (beta, 0.750),
            (gamma, 0.657),
            (delta, 2.783),
        ] {
            assert!((got - want).abs() < 0.001, "{got} vs {want}: {f:?}");
        }
        let ll = lifetimes_reference("params", "bgbb")[0][4];
        assert!(
            (f.log_likelihood - ll).abs() < 0.01 && f.log_likelihood >= ll - 1e-6,
            "{f:?} vs {ll}"
        );
        println!("bgbb_fit on donations: {} iterations", f.iterations);
    }

    #[test]
    fn matches_lifetimes_per_pattern_at_its_parameters() {
        // The same script: P(alive at n + m) and E[X(n, n + h)] for m = h =
        // 1 and 5, every pattern of the table, at lifetimes' parameters;
        // 1e-9 relative (both are finite sums of beta functions; lifetimes
        // adds 1e-15 to its dead terms).
        let v = &lifetimes_reference("params", "bgbb")[0];
        let p = BgBbParams {
            alpha: v[0],
            beta: v[1],
            gamma: v[2],
            delta: v[3],
        };
        let rows = lifetimes_reference("customer", "bgbb");
        assert_eq!(rows.len(), 44);
        for v in rows {
            let (x, tx, n, h, alive, e) = (v[0], v[1], v[2], v[3], v[4], v[5]);
            let got = p_alive(&p, h, x, tx, n);
            assert!((got / alive - 1.0).abs() < 1e-9, "{v:?}: P(alive) {got}");
            let got = expected_purchases(&p, h, x, tx, n);
            assert!((got / e - 1.0).abs() < 1e-9, "{v:?}: E {got}");
        }
    }

    #[test]
    fn the_sum_and_the_closed_form_agree() {
        // Eq. 13's closed form (used beyond 10,000 opportunities) against
        // the sum over the same horizon, computed here term by term; 1e-9
        // relative, gamma away from and near 1.
        for gamma in [0.657, 1.0 + 1e-7, 2.5] {
            let p = BgBbParams {
                alpha: 1.204,
                beta: 0.75,
                gamma,
                delta: 2.783,
            };
            let (x, tx, n, h) = (3.0, 5.0, 6.0, 20_000.0);
            let ln_rate = ln_beta(p.alpha + x + 1.0, p.beta + n - x)
                - ln_beta(p.alpha, p.beta)
                - log_likelihood(&p, x, tx, n);
            let sum: f64 = (1..=20_000)
                .map(|j| (ln_rate + ln_survival(&p, n + j as f64)).exp())
                .sum();
            let closed = expected_purchases(&p, h, x, tx, n);
            let tol = if (gamma - 1.0).abs() < 1e-6 {
                1e-6
            } else {
                1e-9
            };
            assert!(
                (closed / sum - 1.0).abs() < tol,
                "{gamma}: {closed} vs {sum}"
            );
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let d = donations();
        let total: f64 = d.iter().map(|p| p.weight).sum();
        for th in [[0.0, 0.0, 0.0, 0.0], [0.2, -0.3, -0.4, 1.0]] {
            let mut g = [0.0; 4];
            objective(&th, &d, total, &mut g);
            for i in 0..4 {
                let h = 1e-6;
                let (mut up, mut dn) = (th, th);
                up[i] += h;
                dn[i] -= h;
                let mut tmp = [0.0; 4];
                let fd = (objective(&up, &d, total, &mut tmp)
                    - objective(&dn, &d, total, &mut tmp))
                    / (2.0 * h);
                assert!((fd - g[i]).abs() < 1e-6, "i={i}: {fd} vs {}", g[i]);
            }
        }
    }

    #[test]
    fn invalid_patterns_name_the_value() {
        assert!(validate(7.0, 7.0, 6.0).unwrap_err().contains("7"));
        assert!(validate(2.0, 1.0, 6.0).unwrap_err().contains("recency"));
        assert!(validate(0.0, 3.0, 6.0).unwrap_err().contains("recency"));
        assert!(validate(1.5, 3.0, 6.0).unwrap_err().contains("1.5"));
        assert!(validate(2.0, 4.0, 6.0).is_ok());
    }
}
