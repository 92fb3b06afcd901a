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
use crate::numeric::quad::ln_logistic;
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

impl BgBbParams {
    /// The limit alpha, beta -> infinity with alpha / (alpha + beta) = `p`
    /// fixed: one transaction probability for everyone (no heterogeneity);
    /// kept as alpha = infinity and beta = the limit of beta / alpha,
    /// (1 - p) / p. The same for the dropout side with
    /// [`BgBbParams::one_theta`]; every function of this module evaluates
    /// the limits themselves.
    pub fn one_p(p: f64, gamma: f64, delta: f64) -> BgBbParams {
        BgBbParams {
            alpha: f64::INFINITY,
            beta: (1.0 - p) / p,
            gamma,
            delta,
        }
    }

    /// The limit gamma, delta -> infinity with gamma / (gamma + delta) =
    /// `theta` fixed: one dropout probability for everyone; kept as gamma =
    /// infinity and delta = (1 - theta) / theta.
    pub fn one_theta(alpha: f64, beta: f64, theta: f64) -> BgBbParams {
        BgBbParams {
            alpha,
            beta,
            gamma: f64::INFINITY,
            delta: (1.0 - theta) / theta,
        }
    }

    /// The mean transaction probability alpha / (alpha + beta) (the common
    /// one in the one-p limit).
    pub fn mean_p(&self) -> f64 {
        Side::new(self.alpha, self.beta).mean()
    }

    /// The mean dropout probability gamma / (gamma + delta) (0 in the
    /// no-dropout limit gamma = 0, the common one in the one-theta limit).
    pub fn mean_theta(&self) -> f64 {
        if self.gamma == 0.0 {
            return 0.0;
        }
        Side::new(self.gamma, self.delta).mean()
    }
}

/// One of the model's two beta distributions, Beta(a, b), or its limit
/// a = infinity (a point mass at p = 1 / (1 + b): b holds the limit of
/// b / a), with what its ratios B(a+x, b+y) / B(a, b) need.
struct Side {
    a: f64,
    b: f64,
    /// ln p and ln(1 - p) of the point mass; `None` for a beta.
    point: Option<(f64, f64)>,
    /// psi(a), psi(b), psi(a+b) and ln B(a, b) of a beta.
    psi: (f64, f64, f64, f64),
}

impl Side {
    fn new(a: f64, b: f64) -> Side {
        if a == f64::INFINITY {
            let (ln_p, ln_q) = ln_logistic(-b.ln());
            return Side {
                a,
                b,
                point: Some((ln_p, ln_q)),
                psi: (0.0, 0.0, 0.0, 0.0),
            };
        }
        Side {
            a,
            b,
            point: None,
            psi: (digamma(a), digamma(b), digamma(a + b), ln_beta(a, b)),
        }
    }

    /// The mean a / (a + b), or the point.
    fn mean(&self) -> f64 {
        match self.point {
            Some((ln_p, _)) => ln_p.exp(),
            None => self.a / (self.a + self.b),
        }
    }

    /// ln of E[p^x (1-p)^y] = B(a+x, b+y) / B(a, b) as ln B(a+x, b+y) and
    /// ln B(a, b) (apart, so that a term adds them in eq. 5's order), and
    /// its gradient in (ln a, ln b); at a point mass x ln p + y ln(1-p)
    /// and 0, and its gradient in (logit p, -).
    fn ratio(&self, x: f64, y: f64) -> (f64, f64, [f64; 2]) {
        if let Some((ln_p, ln_q)) = self.point {
            let (p, q) = (ln_p.exp(), ln_q.exp());
            let l = if x > 0.0 { x * ln_p } else { 0.0 } + if y > 0.0 { y * ln_q } else { 0.0 };
            return (l, 0.0, [x * q - y * p, 0.0]);
        }
        let (a, b) = (self.a, self.b);
        let (psi_a, psi_b, psi_ab, base) = self.psi;
        let s = digamma(a + b + x + y);
        (
            ln_beta(a + x, b + y),
            base,
            [
                a * (digamma(a + x) - s - psi_a + psi_ab),
                b * (digamma(b + y) - s - psi_b + psi_ab),
            ],
        )
    }

    /// [`Side::ratio`]'s log ratio alone.
    fn ln_ratio(&self, x: f64, y: f64) -> f64 {
        let (l, base, _) = self.ratio(x, y);
        l - base
    }
}

/// The log terms of eq. 5 for (x, t_x, n): alive through n first, then
/// dead after t_x + i for i = 0 .. n-t_x-1, each with its gradient in the
/// log parameters (in a limit, the logit of its point in the shape's
/// first place) and its exponents (y, g, d): the term is
/// E[p^x (1-p)^y] E[theta^g (1-theta)^d].
fn terms(p: &BgBbParams, x: f64, tx: f64, n: f64, mut each: impl FnMut(f64, [f64; 4], [f64; 3])) {
    let (buy, die) = (Side::new(p.alpha, p.beta), Side::new(p.gamma, p.delta));
    let term = |y: f64, g: f64, d: f64| -> (f64, [f64; 4]) {
        let (l1, base1, g1) = buy.ratio(x, y);
        let (l2, base2, g2) = die.ratio(g, d);
        (l1 - base1 + l2 - base2, [g1[0], g1[1], g2[0], g2[1]])
    };
    let (l, g) = term(n - x, 0.0, n);
    each(l, g, [n - x, 0.0, n]);
    let mut i = 0.0;
    while i < n - tx {
        let e = [tx - x + i, 1.0, tx + i];
        let (l, g) = term(e[0], e[1], e[2]);
        each(l, g, e);
        i += 1.0;
    }
}

/// One customer's log-likelihood (eq. 5) and its gradient in log
/// parameters.
fn log_likelihood_grad(p: &BgBbParams, x: f64, tx: f64, n: f64) -> (f64, [f64; 4]) {
    let mut all = Vec::new();
    terms(p, x, tx, n, |l, g, _| all.push((l, g)));
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
    objective_at(&p, &[0, 1, 2, 3], patterns, total, grad)
}

/// Mean negative log-likelihood at `p` and its gradient in the
/// coordinates `free` of [`terms`]' gradient, in that order.
fn objective_at(
    p: &BgBbParams,
    free: &[usize],
    patterns: &[Pattern],
    total: f64,
    grad: &mut [f64],
) -> f64 {
    let p = *p;
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
    for (out, &j) in grad.iter_mut().zip(free) {
        *out = -g[j] / total;
    }
    -ll / total
}

/// Which of the model's distributions are point masses in a limit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Point {
    /// One transaction probability: (logit p, ln gamma, ln delta).
    P,
    /// One dropout probability: (ln alpha, ln beta, logit theta).
    Theta,
    /// Both: (logit p, logit theta).
    Both,
}

impl Point {
    /// The parameters at the limit's free coordinates `th`.
    fn params(self, th: &[f64]) -> BgBbParams {
        let inf = f64::INFINITY;
        match self {
            Point::P => BgBbParams {
                alpha: inf,
                beta: (-th[0]).exp(),
                gamma: th[1].exp(),
                delta: th[2].exp(),
            },
            Point::Theta => BgBbParams {
                alpha: th[0].exp(),
                beta: th[1].exp(),
                gamma: inf,
                delta: (-th[2]).exp(),
            },
            Point::Both => BgBbParams {
                alpha: inf,
                beta: (-th[0]).exp(),
                gamma: inf,
                delta: (-th[1]).exp(),
            },
        }
    }

    /// The coordinates of [`terms`]' gradient that are the free ones.
    fn free(self) -> &'static [usize] {
        match self {
            Point::P => &[0, 2, 3],
            Point::Theta => &[0, 1, 2],
            Point::Both => &[0, 2],
        }
    }

    /// The full log parameters of the limit's point `th` (infinite shapes;
    /// the second shape holds the limit of its ratio to the first).
    fn embed(self, th: &[f64]) -> Vec<f64> {
        let p = self.params(th);
        [p.alpha, p.beta, p.gamma, p.delta].map(f64::ln).to_vec()
    }
}

/// The limit's mean negative log-likelihood and gradient in its free
/// coordinates (see [`Point`]).
fn point_objective(
    point: Point,
    th: &[f64],
    patterns: &[Pattern],
    total: f64,
    g: &mut [f64],
) -> f64 {
    objective_at(&point.params(th), point.free(), patterns, total, g)
}

/// The slopes of the mean log-likelihood leaving a limit's point masses
/// (transaction side, dropout side; -infinity for a beta): per unit of
/// s = 1 / (a + b + 1) at a / (a + b) = m fixed (the variance of the
/// probability is m (1-m) s). Each term of a customer's likelihood is
/// m^x (1-m)^y in the point's probability, so E f(P) = f(m) + f''(m)
/// m (1-m) s / 2 + O(s^2), and per customer the slope is the terms'
/// shares' average of [x (x-1) (1-m)/m - 2 x y + y (y-1) m/(1-m)] / 2.
fn spread_slopes(point: Point, th: &[f64], patterns: &[Pattern], total: f64) -> (f64, f64) {
    let p = point.params(th);
    let (mp, mt) = (p.mean_p(), p.mean_theta());
    let second = |m: f64, x: f64, y: f64| {
        (x * (x - 1.0) * (1.0 - m) / m - 2.0 * x * y + y * (y - 1.0) * m / (1.0 - m)) / 2.0
    };
    let (mut buy, mut die) = (0.0, 0.0);
    for q in patterns {
        let x = q.frequency;
        let mut all = Vec::new();
        terms(&p, x, q.recency, q.n, |l, _, e| all.push((l, e)));
        let top = all.iter().fold(f64::NEG_INFINITY, |m, t| m.max(t.0));
        let sum: f64 = all.iter().map(|t| (t.0 - top).exp()).sum();
        for (l, [y, g, d]) in all {
            let w = q.weight * (l - top).exp() / sum;
            buy += w * second(mp, x, y);
            die += w * second(mt, g, d);
        }
    }
    let ninf = f64::NEG_INFINITY;
    (
        if p.alpha == f64::INFINITY {
            buy / total
        } else {
            ninf
        },
        if p.gamma == f64::INFINITY {
            die / total
        } else {
            ninf
        },
    )
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
///
/// Returned with its part towards delta -> infinity at fixed gamma/delta:
/// the slope into one small dropout probability for everyone.
fn dropout_slopes(theta: &[f64], patterns: &[Pattern], total: f64) -> (f64, f64) {
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
    let max =
        (0..=120)
            .map(|k| at((-10.0 + 0.25 * k as f64).exp()))
            .fold(towards_infinity, |m, v| {
                if m.is_nan() || v.is_nan() {
                    f64::NAN
                } else {
                    m.max(v)
                }
            });
    (max, towards_infinity)
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
        // The slope into one common dropout probability at the no-dropout
        // limit's optimum (NaN until that limit is verified).
        let into_one_theta = std::cell::Cell::new(f64::NAN);
        let slope = |th: &[f64]| {
            let (max, one) = dropout_slopes(th, patterns, total);
            into_one_theta.set(one);
            max
        };
        let embed = |th: &[f64]| vec![th[0], th[1], f64::NEG_INFINITY, f64::NAN];
        let face = fit::Face {
            at_bound: "gamma = 0: nobody drops out (the beta-binomial; delta has no effect)".into(),
            names: &PARAMS[..2],
            starts: starts.iter().map(|s| s[..2].to_vec()).collect(),
            objective: &limit,
            off_face: &slope,
            embed: &embed,
        };
        let mut faces = vec![face];
        // A limit with one dropout probability is searched only when
        // adding one to the no-dropout limit's optimum raises the
        // likelihood (or that limit was not verified): otherwise the
        // search runs theta -> 0, back to the no-dropout limit already
        // tried (nobody leaves), and is skipped (an infinite objective
        // stops it before its first step).
        let into_one_theta = &into_one_theta;
        let objectives = POINTS.map(|pt| {
            move |th: &[f64], g: &mut [f64]| {
                if pt != Point::P && into_one_theta.get() <= 0.0 {
                    g.iter_mut().for_each(|v| *v = 0.0);
                    return f64::INFINITY;
                }
                point_objective(pt, th, patterns, total, g)
            }
        });
        let slopes = POINTS.map(|pt| {
            move |th: &[f64]| {
                let (a, b) = spread_slopes(pt, th, patterns, total);
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.max(b)
                }
            }
        });
        let embeds = POINTS.map(|pt| move |th: &[f64]| pt.embed(th));
        for (k, pt) in POINTS.iter().enumerate() {
            // logit(a/(a+b)) = ln a - ln b of each start; theta from
            // logit -3 (0.05).
            let start = |s: &Vec<f64>| match pt {
                Point::P => vec![s[0] - s[1], s[2], s[3]],
                Point::Theta => vec![s[0], s[1], THETA_START],
                Point::Both => vec![s[0] - s[1], s[2] - s[3]],
            };
            faces.push(fit::Face {
                at_bound: POINT_BOUNDS[k].into(),
                names: POINT_NAMES[k],
                starts: starts.iter().map(start).collect(),
                objective: &objectives[k],
                off_face: &slopes[k],
                embed: &embeds[k],
            });
        }
        fit::minimise_faces(full, none, &starts, &opts, PARAMS, &faces)
    };
    with_points(found.result(total, |v| BgBbParams {
        alpha: v[0],
        beta: v[1],
        gamma: v[2],
        delta: v[3],
    }))
}

/// `f` with the probability of each point limit it is in added to its
/// `at_bound`.
fn with_points(mut f: FitResult) -> FitResult {
    if f.params.alpha == f64::INFINITY {
        let p = f.params.mean_p();
        f.at_bound = f.at_bound.map(|b| format!("{b}; p = {p:.6}"));
    }
    if f.params.gamma == f64::INFINITY {
        let t = f.params.mean_theta();
        f.at_bound = f.at_bound.map(|b| format!("{b}; theta = {t:.6}"));
    }
    f
}

/// The one-dropout-probability face's start in logit theta.
const THETA_START: f64 = -3.0;

/// BG/BB's limits with point masses, tried after the no-dropout limit
/// (see [`Point`]), with their `at_bound` and free parameters' names.
const POINTS: [Point; 3] = [Point::Theta, Point::P, Point::Both];
const POINT_BOUNDS: [&str; 3] = [
    "gamma, delta = infinity with gamma/(gamma+delta) = theta fixed: one dropout probability for everyone",
    "alpha, beta = infinity with alpha/(alpha+beta) = p fixed: one transaction probability for everyone",
    "alpha, beta, gamma, delta = infinity with p and theta fixed: one transaction and one dropout probability for everyone",
];
const POINT_NAMES: [&[&str]; 3] = [
    &["alpha", "beta", "theta"],
    &["p", "gamma", "delta"],
    &["p", "theta"],
];

/// ln of the alive-through-n term of eq. 5 with m more opportunities
/// survived: B(alpha+x, beta+n-x)/B(alpha, beta) B(gamma, delta+n+m)/B(gamma, delta).
fn ln_alive_term(p: &BgBbParams, x: f64, n: f64, m: f64) -> f64 {
    Side::new(p.alpha, p.beta).ln_ratio(x, n - x) + ln_survival(p, n + m)
}

/// ln B(gamma, delta+k)/B(gamma, delta): the probability of being alive at
/// opportunity k; 0 in the no-dropout limit gamma = 0.
fn ln_survival(p: &BgBbParams, k: f64) -> f64 {
    if p.gamma == 0.0 {
        return 0.0;
    }
    Side::new(p.gamma, p.delta).ln_ratio(0.0, k)
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
    let buy = Side::new(p.alpha, p.beta);
    let ln_l = if p.gamma == 0.0 {
        buy.ln_ratio(x, n - x)
    } else {
        log_likelihood(p, x, tx, n)
    };
    let ln_rate = buy.ln_ratio(x + 1.0, n - x) - ln_l;
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
    if p.gamma == f64::INFINITY {
        // One dropout probability theta: the sum of (1-theta)^(n+j) over
        // j = 1..h, geometric.
        let theta = p.mean_theta();
        let ln_q = (-theta).ln_1p();
        return (ln_rate + (n + 1.0) * ln_q).exp() * -(h.floor() * ln_q).exp_m1() / theta;
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

/// The fields of a fit's struct: the parameters, then the mean
/// transaction probability p = alpha / (alpha + beta) and the mean dropout
/// probability theta = gamma / (gamma + delta) (0 at gamma = 0), which the
/// point limits need (alpha, beta or gamma, delta are NULL there).
const FIT_FIELDS: &[&str] = &["alpha", "beta", "gamma", "delta", "p", "theta"];

/// The fields the scalar functions read (p and theta optional).
const SCALAR_FIELDS: &[&str] = &["alpha", "beta", "gamma", "delta", "p?", "theta?"];

#[derive(Debug)]
struct Fit;

impl Collector for Fit {
    const WIDTH: usize = 3;
    fn validate(row: &[f64]) -> std::result::Result<(), String> {
        validate(row[0], row[1], row[2])
    }
    fn return_type() -> DataType {
        fit_type(FIT_FIELDS)
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
        let q = f.params;
        // A point limit's shapes are infinite (the second holds their
        // ratio): NULL beside p or theta.
        let (alpha, beta) = match q.alpha {
            a if a == f64::INFINITY => (f64::NAN, f64::NAN),
            a => (a, q.beta),
        };
        let (gamma, delta) = match q.gamma {
            g if g == f64::INFINITY => (f64::NAN, f64::NAN),
            g => (g, q.delta),
        };
        fit_scalar(
            &[
                ("alpha", alpha),
                ("beta", beta),
                ("gamma", gamma),
                ("delta", delta),
                ("p", q.mean_p()),
                ("theta", q.mean_theta()),
            ],
            &f,
        )
    }
}

/// The parameters of a struct's fields (alpha, beta, gamma, delta, then
/// the optional p and theta; NULL as NaN): `None` when one is NULL, except
/// delta in the no-dropout limit gamma = 0, alpha and beta beside p (one
/// transaction probability for everyone) and gamma and delta beside theta
/// (one dropout probability); an error when one is not positive (gamma = 0
/// allowed) or p, theta not in (0, 1).
fn params(v: &[f64]) -> std::result::Result<Option<BgBbParams>, String> {
    let field = |k: usize| v.get(k).copied().unwrap_or(f64::NAN);
    let (mp, mt) = (field(4), field(5));
    let one_p = v[0].is_nan() && v[1].is_nan() && !mp.is_nan();
    let one_theta = v[2].is_nan() && v[3].is_nan() && !mt.is_nan();
    let unit = |x: f64| x > 0.0 && x < 1.0;
    if (one_p && !unit(mp)) || (one_theta && !unit(mt)) {
        return Err(format!(
            "p and theta must be in (0, 1), got p={mp}, theta={mt}"
        ));
    }
    let limit = v[2] == 0.0;
    let mut p = BgBbParams {
        alpha: v[0],
        beta: v[1],
        gamma: v[2],
        delta: if limit && v[3].is_nan() { 1.0 } else { v[3] },
    };
    if one_p {
        p = BgBbParams::one_p(mp, p.gamma, p.delta);
    }
    if one_theta {
        p = BgBbParams::one_theta(p.alpha, p.beta, mt);
    }
    if [p.alpha, p.beta, p.gamma, p.delta]
        .iter()
        .any(|x| x.is_nan())
    {
        return Ok(None);
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    let ok = (one_p || positive(p.alpha))
        && positive(p.beta)
        && positive(p.delta)
        && (limit || one_theta || positive(p.gamma));
    if ok {
        Ok(Some(p))
    } else {
        Err(format!(
            "parameters must be positive, got alpha={}, beta={}, gamma={}, delta={}",
            v[0], v[1], v[2], v[3]
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
            &[("params", SCALAR_FIELDS)],
            &["frequency", "recency", "n"],
            eval_p_alive,
            "BG/BB probability the customer is alive at the next opportunity n + 1",
        ),
        Function::scalar(
            "bgbb_expected_purchases",
            &[("params", SCALAR_FIELDS)],
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

    /// Each point limit against the full model with that Beta concentrated
    /// (a + b = 1e8 at the same mean): ln L, P(alive) and E[X(n, n+10)]
    /// (and the closed form beyond 10,000 opportunities against the sum
    /// at h = 10,000), 1e-6 (the gap is O(1/(a+b)) times x^2-sized terms).
    #[test]
    fn the_point_limits_are_the_model_at_a_concentrated_beta() {
        let k = 1e8;
        let (a, b, g, d, p, t) = (1.2, 0.8, 0.66, 2.8, 0.6, 0.2);
        let cases = [
            (
                BgBbParams::one_p(p, g, d),
                BgBbParams {
                    alpha: k * p,
                    beta: k * (1.0 - p),
                    gamma: g,
                    delta: d,
                },
            ),
            (
                BgBbParams::one_theta(a, b, t),
                BgBbParams {
                    alpha: a,
                    beta: b,
                    gamma: k * t,
                    delta: k * (1.0 - t),
                },
            ),
            (
                BgBbParams {
                    gamma: f64::INFINITY,
                    delta: (1.0 - t) / t,
                    ..BgBbParams::one_p(p, g, d)
                },
                BgBbParams {
                    alpha: k * p,
                    beta: k * (1.0 - p),
                    gamma: k * t,
                    delta: k * (1.0 - t),
                },
            ),
        ];
        for (lim, full) in cases {
            for (x, tx, n) in [
                (0.0, 0.0, 6.0),
                (3.0, 4.0, 6.0),
                (6.0, 6.0, 6.0),
                (2.0, 5.0, 30.0),
            ] {
                let pairs = [
                    (
                        log_likelihood(&lim, x, tx, n),
                        log_likelihood(&full, x, tx, n),
                    ),
                    (p_alive(&lim, 1.0, x, tx, n), p_alive(&full, 1.0, x, tx, n)),
                    (
                        expected_purchases(&lim, 10.0, x, tx, n),
                        expected_purchases(&full, 10.0, x, tx, n),
                    ),
                ];
                for (u, v) in pairs {
                    assert!(
                        (u - v).abs() < 1e-6 * v.abs().max(1.0),
                        "{lim:?} {x} {tx} {n}: {u} vs {v}"
                    );
                }
            }
        }
        // One theta beyond 10,000 opportunities: the geometric closed form
        // against the sum it replaces at h = 10,000 and 10,001 (the sum at
        // 10,000 plus the next term, exact).
        let p1 = BgBbParams::one_theta(a, b, 1e-4);
        let sum = expected_purchases(&p1, 10_000.0, 3.0, 4.0, 6.0);
        let next = expected_purchases(&p1, 10_001.0, 3.0, 4.0, 6.0);
        let step = expected_purchases(&p1, 1.0, 3.0, 4.0, 6.0) * (1.0f64 - 1e-4).powi(10_000);
        assert!(
            (next - (sum + step)).abs() < 1e-9 * next,
            "{next} vs {sum} + {step}"
        );
    }

    #[test]
    fn the_struct_s_p_and_theta_give_the_point_limits() {
        // alpha, beta NULL beside p: one transaction probability; gamma,
        // delta NULL beside theta: one dropout probability; out of (0, 1)
        // is an error naming the value.
        let n = f64::NAN;
        let p = params(&[n, n, 0.6, 2.8, 0.6, 0.1]).unwrap().unwrap();
        assert_eq!(p, BgBbParams::one_p(0.6, 0.6, 2.8));
        let p = params(&[1.2, 0.8, n, n, 0.6, 0.2]).unwrap().unwrap();
        assert_eq!(p, BgBbParams::one_theta(1.2, 0.8, 0.2));
        assert!(params(&[n, n, 0.6, 2.8, 1.5, 0.1])
            .unwrap_err()
            .contains("1.5"));
        assert_eq!(params(&[n, 0.8, 0.6, 2.8]).unwrap(), None);
    }

    #[test]
    fn the_point_limits_gradients_and_slopes_match_finite_differences() {
        // Gradients of each limit's mean objective (central differences,
        // step 1e-6: 1e-6); the slope leaving a point mass against the full
        // model's difference quotient in s = 1/(a+b+1) at the same mean
        // (Richardson on s = 1e-4, 2e-4: 1e-3 relative). Donation data.
        let pats = donations();
        let total: f64 = pats.iter().map(|p| p.weight).sum();
        for (pt, th) in [
            (Point::P, vec![0.4, -0.4, 1.0]),
            (Point::Theta, vec![0.2, -0.3, -1.2]),
            (Point::Both, vec![0.4, -1.2]),
        ] {
            let mut g = vec![0.0; th.len()];
            point_objective(pt, &th, &pats, total, &mut g);
            for i in 0..th.len() {
                let (mut up, mut dn) = (th.clone(), th.clone());
                up[i] += 1e-6;
                dn[i] -= 1e-6;
                let mut tmp = vec![0.0; th.len()];
                let fd = (point_objective(pt, &up, &pats, total, &mut tmp)
                    - point_objective(pt, &dn, &pats, total, &mut tmp))
                    / 2e-6;
                assert!((fd - g[i]).abs() < 1e-6, "{pt:?} {i}: {fd} vs {}", g[i]);
            }
            let p = pt.params(&th);
            let (buy, die) = spread_slopes(pt, &th, &pats, total);
            let mean_ll = |q: &BgBbParams| {
                pats.iter()
                    .map(|r| r.weight * log_likelihood(q, r.frequency, r.recency, r.n))
                    .sum::<f64>()
                    / total
            };
            let base = mean_ll(&p);
            let spread = |m: f64, s: f64| ((1.0 / s - 1.0) * m, (1.0 / s - 1.0) * (1.0 - m));
            let quotient = |s: f64, buying: bool| {
                let q = if buying {
                    let (a, b) = spread(p.mean_p(), s);
                    BgBbParams {
                        alpha: a,
                        beta: b,
                        ..p
                    }
                } else {
                    let (g, d) = spread(p.mean_theta(), s);
                    BgBbParams {
                        gamma: g,
                        delta: d,
                        ..p
                    }
                };
                (mean_ll(&q) - base) / s
            };
            for (buying, got) in [(true, buy), (false, die)] {
                if got == f64::NEG_INFINITY {
                    continue;
                }
                let want = 2.0 * quotient(1e-4, buying) - quotient(2e-4, buying);
                assert!(
                    (got - want).abs() < 1e-3 * want.abs().max(1e-3),
                    "{pt:?} {buying}: {got} vs {want}"
                );
            }
        }
    }
}
