//! BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way",
//! Marketing Science 24(2)): the likelihood, its maximum-likelihood fit over
//! weighted patterns, P(alive) and expected purchases; then the SQL functions
//! `bgnbd_fit`, `bgnbd_p_alive`, `bgnbd_expected_purchases`; then tests.

use std::collections::HashMap;

use foldhash::fast::FixedState;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};

use super::args::{fit_scalar_uncertain, fit_type_uncertain, null_struct, Collector, Weighted};
use super::Function;
use crate::numeric::fit;
use crate::numeric::memo;
use crate::numeric::optim::{stage_sample_size, systematic_sample, Options};
use crate::numeric::quad::{ln_logistic, tanh_sinh};
use crate::numeric::special::{digamma, hyp2f1_series, ln_beta, ln_gamma, log_sum_exp};

/// Model parameters (time-scale parameter alpha in the data's time unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbdParams {
    /// Shape of the gamma distribution of transaction rates across customers.
    pub r: f64,
    /// Scale of that gamma distribution, in the time unit of the data.
    pub alpha: f64,
    /// First shape of the beta distribution of dropout probabilities.
    pub a: f64,
    /// Second shape of that beta distribution; in the one-dropout limit
    /// (see [`BgNbdParams::one_dropout`]) the limit of b / a.
    pub b: f64,
}

impl BgNbdParams {
    /// The limit a, b -> infinity with a / (a + b) = `dropout` fixed: the
    /// Beta distribution of dropout probabilities concentrates on
    /// `dropout`, the same for every customer (no heterogeneity in
    /// dropout). Kept as a = infinity and b = the limit of b / a,
    /// (1 - dropout) / dropout; [`BgNbdParams::common_dropout`] reads it
    /// back, and every function of this module evaluates the limit itself.
    pub fn one_dropout(r: f64, alpha: f64, dropout: f64) -> BgNbdParams {
        BgNbdParams {
            r,
            alpha,
            a: f64::INFINITY,
            b: (1.0 - dropout) / dropout,
        }
    }

    /// The common dropout probability of the one-dropout limit, `None` for
    /// any other parameters.
    pub fn common_dropout(&self) -> Option<f64> {
        (self.a == f64::INFINITY).then(|| 1.0 / (1.0 + self.b))
    }

    /// The limit a -> 0 and r, alpha -> infinity with r / alpha = `rate`
    /// fixed: nobody drops out and every customer buys at the same rate
    /// (a Poisson process, no heterogeneity). Kept as r = infinity, alpha =
    /// the limit of alpha / r, 1 / rate, a = 0 and b = 1 (no effect);
    /// [`BgNbdParams::poisson_rate`] reads it back, and every function of
    /// this module evaluates the limit itself.
    pub fn poisson(rate: f64) -> BgNbdParams {
        BgNbdParams {
            r: f64::INFINITY,
            alpha: 1.0 / rate,
            a: 0.0,
            b: 1.0,
        }
    }

    /// The common purchase rate (per time unit) of the Poisson limit,
    /// `None` for any other parameters.
    pub fn poisson_rate(&self) -> Option<f64> {
        (self.r == f64::INFINITY).then(|| 1.0 / self.alpha)
    }

    /// The mean purchase rate r / alpha per time unit (the common one in
    /// the Poisson limit).
    pub fn mean_rate(&self) -> f64 {
        self.poisson_rate().unwrap_or(self.r / self.alpha)
    }

    /// The mean dropout probability a / (a + b) (0 in the NBD limit a = 0,
    /// the common one in the one-dropout limit).
    pub fn mean_dropout(&self) -> f64 {
        match self.common_dropout() {
            Some(d) => d,
            None if self.a == 0.0 => 0.0,
            None => self.a / (self.a + self.b),
        }
    }
}

/// Customers sharing (frequency, recency, t), with their count as weight.
#[derive(Debug, Clone, Copy)]
pub struct Pattern {
    /// Number of repeat purchases x (a whole number >= 0).
    pub frequency: f64,
    /// Time of the last repeat purchase t_x since the first purchase (0 when
    /// frequency is 0).
    pub recency: f64,
    /// Customer age T: time from the first purchase to the end of the
    /// observation period, >= recency.
    pub t: f64,
    /// Number of customers sharing the pattern.
    pub weight: f64,
}

/// Result of a fit.
pub type FitResult = fit::FitResult<BgNbdParams>;

/// Check one customer's summary.
pub fn validate(frequency: f64, recency: f64, t: f64) -> std::result::Result<(), String> {
    if !(frequency >= 0.0 && frequency.is_finite() && frequency.fract() == 0.0) {
        return Err(format!(
            "frequency must be a whole number >= 0, got {frequency}"
        ));
    }
    if !(recency >= 0.0 && recency.is_finite()) {
        return Err(format!("recency must be >= 0, got {recency}"));
    }
    if !(t.is_finite() && t >= recency) {
        return Err(format!(
            "t must be >= recency, got t = {t} with recency = {recency}"
        ));
    }
    if frequency == 0.0 && recency != 0.0 {
        return Err(format!(
            "recency must be 0 when frequency is 0, got {recency}"
        ));
    }
    Ok(())
}

/// One customer's log-likelihood (eq. 6 in log-sum-exp form).
pub fn log_likelihood(p: &BgNbdParams, x: f64, tx: f64, t: f64) -> f64 {
    if let Some(rate) = p.poisson_rate() {
        return poisson_log_likelihood(rate, x, t);
    }
    if let Some(d) = p.common_dropout() {
        return one_dropout_log_likelihood(p.r, p.alpha, d, x, tx, t);
    }
    let BgNbdParams { r, alpha, a, b } = *p;
    let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
    let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
    let a3 = -(r + x) * (alpha + t).ln();
    let l3 = if x > 0.0 {
        let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + tx).ln();
        log_sum_exp(a3, a4)
    } else {
        a3
    };
    a1 + a2 + l3
}

/// Patterns indexed for fast evaluation: terms that depend only on the
/// frequency, or only on one time value, are computed once per distinct
/// value per evaluation instead of once per pattern (frequencies take a few
/// dozen values, times a few hundred days).
pub(crate) struct Indexed {
    /// The distinct frequencies, ascending.
    pub(crate) xs: Vec<f64>,
    /// The distinct times (recency and T values), in order of appearance.
    pub(crate) times: Vec<f64>,
    /// (frequency index, recency index, T index, weight), grouped by frequency.
    pub(crate) rows: Vec<(u32, u32, u32, f64)>,
    /// The weights summed.
    pub(crate) total: f64,
}

impl Indexed {
    /// Index patterns sorted by frequency (as the fit aggregate gives them).
    pub(crate) fn new(patterns: &[Pattern]) -> Indexed {
        let mut times = Vec::new();
        let mut tm: HashMap<u64, u32, FixedState> = HashMap::default();
        let mut index = |v: f64| -> u32 {
            *tm.entry((v + 0.0).to_bits()).or_insert_with(|| {
                times.push(v);
                (times.len() - 1) as u32
            })
        };
        let mut xs: Vec<f64> = Vec::new();
        let mut rows = Vec::with_capacity(patterns.len());
        for p in patterns {
            if xs.last() != Some(&p.frequency) {
                xs.push(p.frequency);
            }
            rows.push((
                (xs.len() - 1) as u32,
                index(p.recency),
                index(p.t),
                p.weight,
            ));
        }
        // Unsorted input still gives one entry per distinct frequency.
        if xs.windows(2).any(|w| w[0] >= w[1]) {
            let mut sorted = patterns.to_vec();
            sorted.sort_by(|a, b| a.frequency.total_cmp(&b.frequency));
            return Indexed::new(&sorted);
        }
        let total = patterns.iter().map(|p| p.weight).sum();
        Indexed {
            xs,
            times,
            rows,
            total,
        }
    }
}

/// Per-frequency terms of one evaluation.
struct XTerms {
    lg: f64,
    psi_rx: f64,
    psi_abx: f64,
    psi_bx: f64,
    ln_bx1: f64,
}

/// Mean negative log-likelihood (eq. 6) and its gradient with respect to the
/// log parameters, summed in parallel chunks (in a fixed order, so the
/// result does not depend on thread timing).
fn objective_indexed(theta: &[f64], ix: &Indexed, grad: &mut [f64]) -> f64 {
    let (r, alpha, a, b) = (
        theta[0].exp(),
        theta[1].exp(),
        theta[2].exp(),
        theta[3].exp(),
    );
    let (psi_r, psi_ab, psi_b) = (digamma(r), digamma(a + b), digamma(b));
    let base = -ln_gamma(r) + r * alpha.ln() + ln_gamma(a + b) - ln_gamma(b);
    let (ln_a, ln_alpha) = (a.ln(), alpha.ln());
    let xt: Vec<XTerms> = ix
        .xs
        .iter()
        .map(|&x| XTerms {
            lg: ln_gamma(r + x) + ln_gamma(b + x) - ln_gamma(a + b + x),
            psi_rx: digamma(r + x),
            psi_abx: digamma(a + b + x),
            psi_bx: digamma(b + x),
            ln_bx1: if x > 0.0 { (b + x - 1.0).ln() } else { 0.0 },
        })
        .collect();
    let la: Vec<f64> = ix.times.iter().map(|u| (alpha + u).ln()).collect();
    let inv: Vec<f64> = ix.times.iter().map(|u| 1.0 / (alpha + u)).collect();
    let chunk = |rows: &[(u32, u32, u32, f64)]| -> (f64, [f64; 4]) {
        let mut ll = 0.0;
        let mut g = [0.0f64; 4];
        for &(xi, txi, ti, w) in rows {
            let x = ix.xs[xi as usize];
            let k = &xt[xi as usize];
            let (lt, it) = (la[ti as usize], inv[ti as usize]);
            let a3 = -(r + x) * lt;
            let (l3, w3, w4, ltx, itx) = if x > 0.0 {
                let (ltx, itx) = (la[txi as usize], inv[txi as usize]);
                let a4 = ln_a - k.ln_bx1 - (r + x) * ltx;
                // log(e^a3 + e^a4) and the two weights from one exp.
                let d = a4 - a3;
                let e = (-d.abs()).exp();
                let (hi, w_hi, w_lo) = (a3.max(a4), 1.0 / (1.0 + e), e / (1.0 + e));
                let (w3, w4) = if d > 0.0 { (w_lo, w_hi) } else { (w_hi, w_lo) };
                (hi + e.ln_1p(), w3, w4, ltx, itx)
            } else {
                (a3, 1.0, 0.0, 0.0, 0.0)
            };
            ll += w * (base + k.lg + l3);
            let dr = k.psi_rx - psi_r + ln_alpha - w3 * lt - w4 * ltx;
            let dalpha = r / alpha - (r + x) * (w3 * it + w4 * itx);
            let (da, db) = if x > 0.0 {
                (
                    psi_ab - k.psi_abx + w4 / a,
                    psi_ab + k.psi_bx - psi_b - k.psi_abx - w4 / (b + x - 1.0),
                )
            } else {
                (psi_ab - k.psi_abx, psi_ab + k.psi_bx - psi_b - k.psi_abx)
            };
            g[0] += w * dr * r;
            g[1] += w * dalpha * alpha;
            g[2] += w * da * a;
            g[3] += w * db * b;
        }
        (ll, g)
    };
    let (ll, g) = fit::parallel_sum(&ix.rows, chunk);
    for i in 0..4 {
        grad[i] = -g[i] / ix.total;
    }
    -ll / ix.total
}

/// Mean negative log-likelihood and gradient over plain patterns.
#[cfg(test)]
fn objective(theta: &[f64], patterns: &[Pattern], _total: f64, grad: &mut [f64]) -> f64 {
    objective_indexed(theta, &Indexed::new(patterns), grad)
}

/// Maximum-likelihood fit over weighted patterns (L-BFGS in log-parameter
/// space). Several starts are tried when one fails; the best fit is kept.
pub fn fit(patterns: &[Pattern]) -> FitResult {
    fit_with(patterns, 0.0, stage_sample_size)
}

/// [`fit`] with the L2 penalty `penalizer` on the log parameters
/// ([`fit::penalised`]; alpha relative to the customers' mean age T, the
/// others unit-free), so the penalised fit does not depend on the time
/// unit either.
pub fn fit_penalised(patterns: &[Pattern], penalizer: f64) -> FitResult {
    fit_with(patterns, penalizer, stage_sample_size)
}

/// [`fit_penalised`], starting on a sample of `sample(patterns)` customers
/// when that is given (`optim::staged`), drawn over the sorted patterns, so
/// stratified on frequency and times. Without a penalty the no-dropout
/// boundary (the NBD model, [`nbd_face`]) is tried first.
fn fit_with(
    patterns: &[Pattern],
    penalizer: f64,
    sample: impl Fn(usize) -> Option<usize>,
) -> FitResult {
    let total: f64 = patterns.iter().map(|p| p.weight).sum();
    let mean_t = patterns.iter().map(|p| p.t * p.weight).sum::<f64>() / total.max(1.0);
    let scale = mean_t.max(1e-6);
    let (starts, opts) = (starts(scale), Options::model_fit());
    let ix = Indexed::new(patterns);
    let sample = sample(patterns.len()).map(|size| {
        let reweight = |p: Pattern, weight| Pattern { weight, ..p };
        Indexed::new(&systematic_sample(patterns, |p| p.weight, reweight, size))
    });
    let centre = [0.0, scale.ln(), 0.0, 0.0];
    let sub = sample.as_ref().map(|s| {
        fit::penalised(
            |th: &[f64], g: &mut [f64]| objective_indexed(th, s, g),
            penalizer,
            &centre,
        )
    });
    let full = fit::penalised(|th, g| objective_indexed(th, &ix, g), penalizer, &centre);
    let found = if !(total > 0.0) {
        fit::Found::nothing(4, "was not fitted: no customers")
    } else if penalizer > 0.0 {
        fit::minimise(full, sub, &starts, &opts, PARAMS)
    } else {
        let model = FaceModel {
            dropout_slope,
            one_dropout_objective,
            dropout_spread_slope,
            poisson_slope,
        };
        minimise_on_faces(full, sub, &starts, &opts, &ix, &model)
    };
    let mut f = found.result(total, |v| BgNbdParams {
        r: v[0],
        alpha: v[1],
        a: v[2],
        b: v[3],
    });
    if let [ln_rate] = found.limit[..] {
        let rate = ln_rate.exp();
        f.params = BgNbdParams::poisson(rate);
        f.at_bound = f
            .at_bound
            .map(|b| format!("{b}; rate = {rate:.6e} per time unit"));
    }
    if let Some(&[ln_r, ln_alpha, logit_d]) = found.limit.get(..3) {
        let d = ln_logistic(logit_d).0.exp();
        f.params = BgNbdParams::one_dropout(ln_r.exp(), ln_alpha.exp(), d);
        f.at_bound = f.at_bound.map(|b| format!("{b}; dropout = {d:.6}"));
    }
    f
}

/// The covariance of (ln r, ln alpha, ln a, ln b) of a fit: the inverse
/// observed information at an interior optimum; at the boundary a = 0 that
/// of the NBD limit's (ln r, ln alpha), with NaN for a (at its bound: no
/// standard error, the likelihood is not smooth in ln a there) and b (no
/// effect in the limit); empty when not converged. The same for MBG/NBD
/// (a = 0) and Pareto/NBD (s = 0, beta), whose no-dropout limit is also
/// the NBD model of (r, alpha).
pub fn published_log_cov<P>(f: &fit::FitResult<P>) -> Vec<Vec<f64>> {
    match f.log_cov.len() {
        4 => f.log_cov.clone(),
        // The NBD limit's (ln r, ln alpha), or the one-dropout limit's
        // (ln r, ln alpha, logit dropout), whose a and b are infinite.
        2 | 3 => (0..4)
            .map(|i| {
                (0..4)
                    .map(|j| {
                        if i < 2 && j < 2 {
                            f.log_cov[i][j]
                        } else {
                            f64::NAN
                        }
                    })
                    .collect()
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The fit's start points (log parameters) for data whose mean age T is
/// `scale` time units.
fn starts(scale: f64) -> Vec<Vec<f64>> {
    [
        [1.0, 1.0, 1.0, 1.0],
        [0.5, 0.1 * scale, 0.8, 2.5],
        [1.0, scale, 0.5, 1.0],
        [0.1, 0.01 * scale, 1.5, 5.0],
    ]
    .iter()
    .map(|s| s.iter().map(|v: &f64| v.ln()).collect())
    .collect()
}

/// What differs between BG/NBD and MBG/NBD at their three faces (the
/// NBD limit a = 0, one dropout probability, the Poisson process); the
/// NBD and Poisson limits' own likelihoods are the same for both (nobody
/// drops out).
pub(crate) struct FaceModel {
    /// The slope off the NBD face into dropout (see [`dropout_slope`]).
    pub dropout_slope: fn(&[f64], &Indexed) -> f64,
    /// The one-dropout limit's objective in (ln r, ln alpha, logit p).
    pub one_dropout_objective: fn(&[f64], &Indexed, &mut [f64]) -> f64,
    /// The slope off the one-dropout face into heterogeneity of dropout.
    pub dropout_spread_slope: fn(&[f64], &Indexed) -> f64,
    /// The slope off the Poisson face (heterogeneity or dropout).
    pub poisson_slope: fn(&[f64], &Indexed) -> f64,
}

/// [`fit::minimise_faces`] over the BG/NBD family's faces, tried in
/// order: the Poisson process, the NBD model (a = 0), one dropout
/// probability (a, b -> infinity); `starts` in (ln r, ln alpha, ln a, ln b).
pub(crate) fn minimise_on_faces<F, G>(
    full: F,
    sub: Option<G>,
    starts: &[Vec<f64>],
    opts: &Options,
    ix: &Indexed,
    model: &FaceModel,
) -> fit::Found
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
    G: FnMut(&[f64], &mut [f64]) -> f64,
{
    let nbd = |th: &[f64], g: &mut [f64]| nbd_objective(th, ix, g);
    let slope = |th: &[f64]| (model.dropout_slope)(th, ix);
    let embed = |th: &[f64]| vec![th[0], th[1], f64::NEG_INFINITY, f64::NAN];
    let face = fit::Face {
        at_bound: "a = 0: nobody drops out (the NBD model; b has no effect)".into(),
        names: &PARAMS[..2],
        starts: starts.iter().map(|s| s[..2].to_vec()).collect(),
        objective: &nbd,
        off_face: &slope,
        embed: &embed,
    };
    let one = |th: &[f64], g: &mut [f64]| (model.one_dropout_objective)(th, ix, g);
    let spread = |th: &[f64]| (model.dropout_spread_slope)(th, ix);
    let embed_one = |th: &[f64]| vec![th[0], th[1], f64::INFINITY, f64::INFINITY];
    let one_face = fit::Face {
        at_bound: "a, b = infinity with a/(a+b) = dropout fixed: one dropout probability for everyone (no heterogeneity in dropout)".into(),
        names: &["r", "alpha", "dropout"],
        // logit(a/(a+b)) = ln a - ln b.
        starts: starts.iter().map(|s| vec![s[0], s[1], s[2] - s[3]]).collect(),
        objective: &one,
        off_face: &spread,
        embed: &embed_one,
    };
    let pois = |th: &[f64], g: &mut [f64]| poisson_objective(th, ix, g);
    let pois_slope = |th: &[f64]| (model.poisson_slope)(th, ix);
    let embed_pois = |_: &[f64]| vec![f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NAN];
    let pois_face = fit::Face {
        at_bound: "a = 0 and r, alpha = infinity with r/alpha = rate fixed: nobody drops out and everyone buys at one rate (a Poisson process, no heterogeneity)".into(),
        names: &["rate"],
        // The limit's own optimum, sum(x) / sum(T) (none without a
        // repeat purchase: the rate would be 0, not a Poisson process).
        starts: poisson_start(ix).into_iter().map(|v| vec![v]).collect(),
        objective: &pois,
        off_face: &pois_slope,
        embed: &embed_pois,
    };
    let faces = [pois_face, face, one_face];
    fit::minimise_faces(full, sub, starts, opts, PARAMS, &faces)
}

/// The BG/NBD likelihood's limit as a -> 0 (every dropout probability 0):
/// the NBD model,
/// ln L = ln Gamma(r+x) - ln Gamma(r) + r ln alpha - (r+x) ln(alpha+T)
/// (Fader, Hardie & Lee 2005, eq. 6 without its
/// dropout terms; the same limit as b -> infinity). Mean negative
/// log-likelihood and gradient in (ln r, ln alpha).
pub(crate) fn nbd_objective(theta: &[f64], ix: &Indexed, grad: &mut [f64]) -> f64 {
    let (r, alpha) = (theta[0].exp(), theta[1].exp());
    let (lg_r, psi_r, ln_alpha) = (ln_gamma(r), digamma(r), alpha.ln());
    let xt: Vec<(f64, f64)> = ix
        .xs
        .iter()
        .map(|&x| (ln_gamma(r + x) - lg_r, digamma(r + x) - psi_r))
        .collect();
    let (mut ll, mut gr, mut ga) = (0.0, 0.0, 0.0);
    for &(xi, _, ti, w) in &ix.rows {
        let x = ix.xs[xi as usize];
        let u = alpha + ix.times[ti as usize];
        let (lg, psi) = xt[xi as usize];
        let lu = u.ln();
        ll += w * (lg + r * ln_alpha - (r + x) * lu);
        gr += w * (psi + ln_alpha - lu) * r;
        ga += w * (r / alpha - (r + x) / u) * alpha;
    }
    grad[0] = -gr / ix.total;
    grad[1] = -ga / ix.total;
    -ll / ix.total
}

/// The largest slope of the mean BG/NBD log-likelihood leaving the NBD
/// limit at (ln r, ln alpha) = `theta`, per unit of dropout. Off the face
/// a = 0 towards a given b, d LL / da at a = 0 is, per customer,
/// psi(b) - psi(b+x) + [x > 0] R / (b+x-1), R = ((alpha+T)/(alpha+t_x))^(r+x)
/// (the derivatives of eq. 6's A2 and of ln(A3 + A4) at a = 0); it is the
/// maximum over b (a grid from e^-10 to e^20, 0.1 apart in ln b). Towards
/// b -> infinity at fixed a the likelihood moves by a/b times
/// sum(R [x > 0] - x) per customer, the limit of b times the first. The
/// larger of the two is returned; infinite when R overflows (customers
/// who look long gone: the data show dropout).
fn dropout_slope(theta: &[f64], ix: &Indexed) -> f64 {
    let (r, alpha) = (theta[0].exp(), theta[1].exp());
    let la: Vec<f64> = ix.times.iter().map(|u| (alpha + u).ln()).collect();
    slope_into_dropout(ix, |x, txi, ti| {
        (r + x) * (la[ti as usize] - la[txi as usize])
    })
}

/// [`dropout_slope`] given ln R per customer (of its frequency, recency
/// index and T index): the maximum over b of the slope into a > 0 at
/// fixed b, and the slope towards b -> infinity.
fn slope_into_dropout(ix: &Indexed, ln_r: impl Fn(f64, u32, u32) -> f64) -> f64 {
    // Per distinct frequency: customers, and the sum of their R.
    let mut by_x = vec![(0.0f64, 0.0f64); ix.xs.len()];
    for &(xi, txi, ti, w) in &ix.rows {
        let x = ix.xs[xi as usize];
        let e = &mut by_x[xi as usize];
        e.0 += w;
        if x > 0.0 {
            e.1 += w * ln_r(x, txi, ti).exp();
        }
    }
    let towards_infinity: f64 = ix
        .xs
        .iter()
        .zip(&by_x)
        .map(|(x, (w, s))| s - x * w)
        .sum::<f64>()
        / ix.total;
    let at = |b: f64| -> f64 {
        let psi_b = digamma(b);
        ix.xs
            .iter()
            .zip(&by_x)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, (w, s))| w * (psi_b - digamma(b + x)) + s / (b + x - 1.0))
            .sum::<f64>()
            / ix.total
    };
    (0..=300)
        .map(|k| at((-10.0 + 0.1 * k as f64).exp()))
        .fold(towards_infinity, |m, v| {
            // A NaN slope verifies nothing: it stays NaN.
            if m.is_nan() || v.is_nan() {
                f64::NAN
            } else {
                m.max(v)
            }
        })
}

/// One customer's log-likelihood in the Poisson limit (a = 0 and r, alpha
/// -> infinity with r / alpha = `rate`): x ln rate - rate T, the NBD
/// limit's ln Gamma(r+x) - ln Gamma(r) + r ln alpha - (r+x) ln(alpha+T)
/// as r -> infinity at alpha = r / rate (x ln r + x ln rate - x ln r -
/// r ln(1 + rate T / r) -> x ln rate - rate T), so the same constants.
pub(crate) fn poisson_log_likelihood(rate: f64, x: f64, t: f64) -> f64 {
    if x > 0.0 {
        x * rate.ln() - rate * t
    } else {
        -rate * t
    }
}

/// Mean negative log-likelihood of the Poisson limit and its gradient in
/// ln rate (one parameter): see [`poisson_log_likelihood`].
pub(crate) fn poisson_objective(theta: &[f64], ix: &Indexed, grad: &mut [f64]) -> f64 {
    let rate = theta[0].exp();
    let (mut x_sum, mut t_sum) = (0.0, 0.0);
    for &(xi, _, ti, w) in &ix.rows {
        x_sum += w * ix.xs[xi as usize];
        t_sum += w * ix.times[ti as usize];
    }
    grad[0] = -(x_sum - rate * t_sum) / ix.total;
    -(x_sum * theta[0] - rate * t_sum) / ix.total
}

/// ln(sum(x) / sum(T)) over the customers: the Poisson limit's maximum-
/// likelihood rate in closed form; `None` when nobody made a repeat
/// purchase or there is no time observed.
pub(crate) fn poisson_start(ix: &Indexed) -> Option<f64> {
    let (mut x_sum, mut t_sum) = (0.0, 0.0);
    for &(xi, _, ti, w) in &ix.rows {
        x_sum += w * ix.xs[xi as usize];
        t_sum += w * ix.times[ti as usize];
    }
    (x_sum > 0.0 && t_sum > 0.0).then(|| (x_sum / t_sum).ln())
}

/// The slope of the mean log-likelihood of an NBD-based model leaving its
/// Poisson limit (one purchase rate `rate`, nobody dropping out) into
/// heterogeneity in purchasing, 1/r > 0 at r/alpha = rate fixed: the NBD
/// log-likelihood's derivative in 1/r at 0 is ((x - rate T)^2 - x) / 2 per
/// customer, taken per unit of m / r, m the mean of rate T (see
/// [`poisson_slope`]). BG/NBD's and MBG/NBD's Poisson faces share it.
pub(crate) fn heterogeneity_slope(rate: f64, ix: &Indexed) -> f64 {
    let (mut het, mut m) = (0.0, 0.0);
    for &(xi, _, ti, w) in &ix.rows {
        let (x, mu) = (ix.xs[xi as usize], rate * ix.times[ti as usize]);
        het += w * ((x - mu) * (x - mu) - x) / 2.0;
        m += w * mu;
    }
    let m = m / ix.total;
    het / ix.total / m.max(1e-300)
}

/// The largest slope of the mean BG/NBD log-likelihood leaving the
/// Poisson limit at ln rate = `theta`, over both directions off it:
/// - into a > 0 (dropout): [`dropout_slope`] at the limit, where
///   R = ((alpha+T)/(alpha+t_x))^(r+x) tends to e^(rate (T - t_x));
/// - into heterogeneity 1/r > 0 at fixed rate: the NBD log-likelihood's
///   derivative in 1/r at 0 is ((x - rate T)^2 - x) / 2 per customer
///   (the negative binomial's first-order correction to the Poisson),
///   taken per unit of the dimensionless overdispersion m / r, m = the
///   mean of rate T, so the slope does not depend on the time unit.
fn poisson_slope(theta: &[f64], ix: &Indexed) -> f64 {
    let rate = theta[0].exp();
    let into_dropout = slope_into_dropout(ix, |_, txi, ti| {
        rate * (ix.times[ti as usize] - ix.times[txi as usize])
    });
    let into_heterogeneity = heterogeneity_slope(rate, ix);
    if into_dropout.is_nan() || into_heterogeneity.is_nan() {
        return f64::NAN;
    }
    into_dropout.max(into_heterogeneity)
}

/// One customer's log-likelihood in the one-dropout limit (everyone drops
/// out with probability `d` after each repeat purchase): eq. 6 with the
/// Beta distribution a point mass at d,
/// ln Gamma(r+x) - ln Gamma(r) + r ln alpha
///   + ln[(1-d)^x (alpha+T)^-(r+x) + [x > 0] d (1-d)^(x-1) (alpha+t_x)^-(r+x)].
fn one_dropout_log_likelihood(r: f64, alpha: f64, d: f64, x: f64, tx: f64, t: f64) -> f64 {
    let ln_q = (-d).ln_1p();
    let a3 = x * ln_q - (r + x) * (alpha + t).ln();
    let l3 = if x > 0.0 {
        log_sum_exp(a3, d.ln() + (x - 1.0) * ln_q - (r + x) * (alpha + tx).ln())
    } else {
        a3
    };
    ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + l3
}

/// ln(A + B) and the shares B / (A + B), A / (A + B) from ln A, ln B (one
/// exp).
fn log_sum_shares(ln_a: f64, ln_b: f64) -> (f64, f64, f64) {
    let d = ln_b - ln_a;
    let e = (-d.abs()).exp();
    let (hi, w_hi, w_lo) = (ln_a.max(ln_b), 1.0 / (1.0 + e), e / (1.0 + e));
    let (wa, wb) = if d > 0.0 { (w_lo, w_hi) } else { (w_hi, w_lo) };
    (hi + e.ln_1p(), wa, wb)
}

/// The BG/NBD likelihood's limit as a, b -> infinity with a/(a+b) = d
/// fixed (see [`one_dropout_log_likelihood`]): mean negative
/// log-likelihood and gradient in (ln r, ln alpha, logit d). With A and B
/// the two terms in the bracket and w_B = B / (A + B), d ln(A+B) / d logit d
/// = w_B - x d.
pub(crate) fn one_dropout_objective(theta: &[f64], ix: &Indexed, grad: &mut [f64]) -> f64 {
    let (r, alpha) = (theta[0].exp(), theta[1].exp());
    let (ln_d, ln_q) = ln_logistic(theta[2]);
    let d = ln_d.exp();
    let (lg_r, psi_r, ln_alpha) = (ln_gamma(r), digamma(r), alpha.ln());
    let xt: Vec<(f64, f64)> = ix
        .xs
        .iter()
        .map(|&x| (ln_gamma(r + x) - lg_r, digamma(r + x) - psi_r))
        .collect();
    let la: Vec<f64> = ix.times.iter().map(|u| (alpha + u).ln()).collect();
    let inv: Vec<f64> = ix.times.iter().map(|u| 1.0 / (alpha + u)).collect();
    let chunk = |rows: &[(u32, u32, u32, f64)]| -> (f64, [f64; 3]) {
        let (mut ll, mut g) = (0.0, [0.0f64; 3]);
        for &(xi, txi, ti, w) in rows {
            let x = ix.xs[xi as usize];
            let (lg, psi) = xt[xi as usize];
            let (lt, it) = (la[ti as usize], inv[ti as usize]);
            let a3 = x * ln_q - (r + x) * lt;
            let (l3, w3, w4, ltx, itx) = if x > 0.0 {
                let (ltx, itx) = (la[txi as usize], inv[txi as usize]);
                let a4 = ln_d + (x - 1.0) * ln_q - (r + x) * ltx;
                let (l3, w3, w4) = log_sum_shares(a3, a4);
                (l3, w3, w4, ltx, itx)
            } else {
                (a3, 1.0, 0.0, 0.0, 0.0)
            };
            ll += w * (lg + r * ln_alpha + l3);
            g[0] += w * (psi + ln_alpha - w3 * lt - w4 * ltx) * r;
            g[1] += w * (r / alpha - (r + x) * (w3 * it + w4 * itx)) * alpha;
            g[2] += w * (w4 - x * d);
        }
        (ll, g)
    };
    let (ll, g) = fit::parallel_sum(&ix.rows, chunk);
    for i in 0..3 {
        grad[i] = -g[i] / ix.total;
    }
    -ll / ix.total
}

/// The slope of the mean BG/NBD log-likelihood leaving the one-dropout
/// limit at (ln r, ln alpha, logit d) = `theta`, per unit of
/// s = 1 / (a + b + 1) at a / (a + b) = d fixed (the variance of the
/// dropout probability is d (1-d) s). A customer's likelihood is a
/// polynomial f(p) = (1-p)^x A0 + [x > 0] p (1-p)^(x-1) B0 in the dropout
/// probability, so E f(P) = f(d) + f''(d) d (1-d) s / 2 + O(s^2), and per
/// customer the slope is f''(d) d (1-d) / (2 f(d)) =
/// (x-1) [w_A x d + w_B (x d - 2)] / (2 (1-d)), w_A, w_B the shares of
/// the two terms: 0 for x <= 1 (one repeat purchase says nothing about
/// how dropout varies between customers).
fn dropout_spread_slope(theta: &[f64], ix: &Indexed) -> f64 {
    let (r, alpha) = (theta[0].exp(), theta[1].exp());
    let (ln_d, ln_q) = ln_logistic(theta[2]);
    let d = ln_d.exp();
    let la: Vec<f64> = ix.times.iter().map(|u| (alpha + u).ln()).collect();
    let sum: f64 = ix
        .rows
        .iter()
        .filter(|&&(xi, ..)| ix.xs[xi as usize] > 1.0)
        .map(|&(xi, txi, ti, w)| {
            let x = ix.xs[xi as usize];
            let a3 = x * ln_q - (r + x) * la[ti as usize];
            let a4 = ln_d + (x - 1.0) * ln_q - (r + x) * la[txi as usize];
            let (_, w3, w4) = log_sum_shares(a3, a4);
            w * (x - 1.0) * (w3 * x * d + w4 * (x * d - 2.0))
        })
        .sum();
    sum * 0.5 * (-ln_q).exp() / ix.total
}

/// ln of a/(b+x-1) ((alpha+T)/(alpha+tx))^(r+x), the odds of having dropped out.
/// `None` for x = 0 and in the NBD limit a = 0, where nobody drops out.
/// In the one-dropout limit a / (b+x-1) tends to d / (1-d).
fn log_dropout_odds(p: &BgNbdParams, x: f64, tx: f64, t: f64) -> Option<f64> {
    if x <= 0.0 || p.a == 0.0 {
        return None;
    }
    let ln_odds = match p.common_dropout() {
        Some(d) => d.ln() - (-d).ln_1p(),
        None => p.a.ln() - (p.b + x - 1.0).ln(),
    };
    Some(ln_odds + (p.r + x) * ((p.alpha + t).ln() - (p.alpha + tx).ln()))
}

/// P(alive | x, tx, T) (Hardie, note 021); 1 in the NBD limit a = 0.
pub fn p_alive(p: &BgNbdParams, x: f64, tx: f64, t: f64) -> f64 {
    match log_dropout_odds(p, x, tx, t) {
        None => 1.0,
        Some(l) if l > 700.0 => 0.0,
        Some(l) => 1.0 / (1.0 + l.exp()),
    }
}

/// Largest condition number (of the series times that of 1 - its product)
/// at which [`bracket_series`] is trusted: about 1e-12 relative error.
const SERIES_CONDITION: f64 = 1e4;

/// Eq. 10's bracket by its power series, when that is well conditioned:
/// (a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+h))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)],
/// z = h/(alpha+T+h). Euler's transformation (Abramowitz & Stegun 15.3.3)
/// turns the product into (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), whose
/// terms decay. `None` where the series is undefined (a+b+x-1 <= 0: one-time
/// buyers when a + b <= 1), slow (z > 0.9: long horizons, tiny alpha) or
/// cancels (a near 1, r large, short horizons); [`bracket_quadrature`]
/// holds everywhere.
fn bracket_series(p: &BgNbdParams, h: f64, x: f64, t: f64) -> Option<f64> {
    let BgNbdParams { r, alpha, a, b } = *p;
    let z = h / (alpha + t + h);
    let c = a + b + x - 1.0;
    if !(c > 0.0 && z <= 0.9) {
        return None;
    }
    let (f, condition) = hyp2f1_series(a + b - 1.0 - r, a - 1.0, c, z)?;
    // ln(1 - z) = -ln(1 + h/(alpha+T)), exact for small z.
    let prod = (-(a - 1.0) * (h / (alpha + t)).ln_1p()).exp() * f;
    let rest = 1.0 - prod;
    let cancellation = 1.0 + prod.abs() / rest.abs();
    if !(condition * cancellation <= SERIES_CONDITION) {
        return None;
    }
    Some(c / (a - 1.0) * rest)
}

/// Eq. 10's bracket without a hypergeometric function: given alive at T, a
/// customer with purchase rate lambda and dropout probability p makes
/// (1 - e^(-lambda p h)) / p purchases in the next h (Fader, Hardie & Lee
/// 2005, eq. 8's E[X(t) | lambda, p]); lambda | x, T ~ Gamma(r+x, alpha+T)
/// and p | alive ~ Beta(a, b+x), so the bracket is
/// E[(1 - (1 + p s)^-(r+x)) / p] over that Beta, s = h/(alpha+T). The
/// integral is finite for every a, b, r, alpha > 0, T >= 0, h >= 0.
///
/// Tanh-sinh quadrature on panels of the dropout probability: around the
/// Beta mass (its peak ln(a/(b+x)) on the logit scale, +-10 standard
/// widths, at most 12: the outer panels' substitutions absorb the
/// end-point powers but not a concentrated Beta's Gaussian tail, which
/// +-4 widths cut at 7e-7 relative for a = 66,267, b = 3,488), with a break at p = 1/(1+s) where the integrand bends; the
/// outer panels substitute u = p^a (near 0) and v = (1-p)^(b+x) (near 1), so
/// the Beta density's end-point singularities disappear; the inner ones are
/// integrated on the logit scale, where the integrand is analytic in a strip
/// of half-width pi. About 1e-12 relative error (checked against mpmath in
/// the tests).
pub fn bracket_quadrature(p: &BgNbdParams, h: f64, x: f64, t: f64) -> f64 {
    let BgNbdParams { r, alpha, a, b } = *p;
    let (beta, k) = (b + x, r + x);
    let s = h / (alpha + t);
    if !(s > 0.0) {
        return 0.0;
    }
    let ln_s = s.ln();
    // (1 - (1 + p s)^-k) / p = s phi(p s), phi(w) = (1 - (1 + w)^-k) / w.
    let integrand = |ln_p: f64| -> f64 {
        let ln_w = ln_p + ln_s;
        let phi = if ln_w < -700.0 {
            k
        } else {
            let w = ln_w.exp();
            -(-k * w.ln_1p()).exp_m1() / w
        };
        s * phi
    };
    let ln_b = ln_beta(a, beta);
    let peak = (a / beta).ln();
    let span = (10.0 * (1.0 / a + 1.0 / beta).sqrt()).min(12.0);
    let mut cuts = [peak - span, peak + span, -ln_s];
    cuts.sort_by(f64::total_cmp);
    const TOL: f64 = 1e-10;
    // [0, p0]: u = p^a, p^(a-1) dp = du / a.
    let (ln_p0, _) = ln_logistic(cuts[0]);
    // The panel's mass factor p0^a / B(a, b+x) goes into the exponent with
    // the rest: alone it overflows for large a and b (a = 66,267, b = 3,488:
    // e^10216) while the integral it multiplies underflows (inf x 0 = NaN).
    let left = tanh_sinh(
        |ln_phi, _| {
            let ln_p = ln_p0 + ln_phi / a;
            integrand(ln_p) * ((beta - 1.0) * (-ln_p.exp()).ln_1p() + a * ln_p0 - ln_b).exp()
        },
        TOL,
    ) / a;
    // Inner panels on the logit scale y: p^a (1-p)^beta dy / B is the density.
    let mut inner = 0.0;
    for w in cuts.windows(2) {
        let (y0, y1) = (w[0], w[1]);
        let d = y1 - y0;
        if !(d > 0.0) {
            continue;
        }
        inner += d * tanh_sinh(
            |ln_phi, ln_rest| {
                let y = if ln_phi < -0.7 {
                    y0 + d * ln_phi.exp()
                } else {
                    y1 - d * ln_rest.exp()
                };
                let (ln_p, ln_q) = ln_logistic(y);
                integrand(ln_p) * (a * ln_p + beta * ln_q - ln_b).exp()
            },
            TOL,
        );
    }
    // [p1, 1]: v = (1-p)^beta, (1-p)^(beta-1) dp = -dv / beta.
    let (_, ln_q1) = ln_logistic(cuts[2]);
    let right = tanh_sinh(
        |ln_phi, _| {
            let ln_q = ln_q1 + ln_phi / beta;
            let ln_p = (-ln_q.exp_m1()).ln();
            integrand(ln_p) * ((a - 1.0) * ln_p + beta * ln_q1 - ln_b).exp()
        },
        TOL,
    ) / beta;
    left + inner + right
}

/// Eq. 10's bracket, E[Y(h) | x, tx, T] / P(alive): the series where it is
/// well conditioned (fast), else the quadrature.
fn bracket(p: &BgNbdParams, h: f64, x: f64, t: f64) -> f64 {
    bracket_series(p, h, x, t).unwrap_or_else(|| bracket_quadrature(p, h, x, t))
}

/// E[Y(h) | x, tx, T]: expected repeat purchases in (T, T + h] (eq. 10).
pub fn expected_purchases(p: &BgNbdParams, h: f64, x: f64, tx: f64, t: f64) -> f64 {
    memo_bracket(p, h, x, t) * p_alive(p, x, tx, t)
}

/// [`conditional_bracket`] memoized per thread: customers share few (x, T)
/// pairs, and each costs a series or a quadrature. Dropped at 2^16 entries.
fn memo_bracket(p: &BgNbdParams, h: f64, x: f64, t: f64) -> f64 {
    thread_local! {
        static MEMO: memo::Memo<7> = memo::Memo::default();
    }
    let key = [p.r, p.alpha, p.a, p.b, h, x, t].map(f64::to_bits);
    memo::memoized(&MEMO, key, || conditional_bracket(p, h, x, t))
}

/// E[Y(h) | x, tx, T] / P(alive): the factor of eq. 10 that does not depend
/// on recency, so customers with the same (x, T) share it. Finite for every
/// valid argument (a = 1 included: the quadrature has no singularity there).
///
/// In the Poisson limit (a = 0, r and alpha infinite with r/alpha = rate)
/// it is rate * h: the NBD limit's (r+x) h / (alpha+T) as r -> infinity.
/// In the NBD limit a = 0 (a boundary fit: nobody drops out) it is
/// (r+x) h / (alpha+T), whatever b: the Gamma(r+x, alpha+T) posterior
/// mean rate times h (Fader, Hardie & Lee 2005, eq. 10 as a -> 0: with
/// a - 1 = -1 the series 2F1(., a-1; c; z) of [`bracket_series`] ends
/// after its linear term and the bracket reduces to (r+x) z/(1-z); the
/// tests check the limit against a small a). In the one-dropout limit
/// (a, b infinite, a/(a+b) = d) it is (1 - (1 + d s)^-(r+x)) / d,
/// s = h/(alpha+T): eq. 8's E[X(h) | lambda, p] at p = d averaged over the
/// Gamma(r+x, alpha+T) posterior rate.
pub fn conditional_bracket(p: &BgNbdParams, h: f64, x: f64, t: f64) -> f64 {
    if h <= 0.0 {
        return 0.0;
    }
    if let Some(rate) = p.poisson_rate() {
        // The Gamma(r+x, alpha+T) posterior concentrates on the rate.
        return rate * h;
    }
    if p.a == 0.0 {
        return (p.r + x) * h / (p.alpha + t);
    }
    if let Some(d) = p.common_dropout() {
        // The posterior Beta(a, b+x) is the point mass d: the quadrature's
        // integrand at p = d, (1 - (1 + d s)^-(r+x)) / d, s = h/(alpha+T).
        let s = h / (p.alpha + t);
        return -(-(p.r + x) * (d * s).ln_1p()).exp_m1() / d;
    }
    bracket(p, h, x, t)
}

/// E[X(t)] for a customer who just made a first purchase (eq. 7).
pub fn expected_purchases_new(p: &BgNbdParams, t: f64) -> f64 {
    expected_purchases(p, t, 0.0, 0.0, 0.0)
}

// ---------------------------------------------------------------------------
// DataFusion wrappers

const PARAMS: &[&str] = &["r", "alpha", "a", "b"];

/// The fields of a fit's struct: the parameters, the mean dropout
/// probability a / (a + b), which the one-dropout limit needs (a and b are
/// NULL there), and the mean purchase rate r / alpha per time unit, which
/// the Poisson limit needs (r, alpha and b are NULL there).
const FIT_FIELDS: &[&str] = &["r", "alpha", "a", "b", "dropout", "rate"];

/// The fields the scalar functions read: dropout and rate are optional, so
/// a `named_struct('r', .., 'alpha', .., 'a', .., 'b', ..)` works.
pub(crate) const SCALAR_FIELDS: &[&str] = &["r", "alpha", "a", "b", "dropout?", "rate?"];

#[derive(Debug)]
struct Fit;

impl Collector for Fit {
    const WIDTH: usize = 3;
    fn validate(row: &[f64]) -> std::result::Result<(), String> {
        validate(row[0], row[1], row[2])
    }
    fn return_type() -> DataType {
        fit_type_uncertain(FIT_FIELDS)
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
                t: k[2],
                weight: *w,
            })
            .collect();
        let f = fit_penalised(&patterns, penalizer);
        // The one-dropout limit's a and b are infinite: NULL beside dropout
        // (its b field holds b/a, not b).
        // The Poisson limit's r and alpha are infinite: NULL beside rate
        // (its alpha field holds alpha/r), and b has no effect there.
        let (a, b) = match (f.params.common_dropout(), f.params.poisson_rate()) {
            (Some(_), _) => (f64::NAN, f64::NAN),
            (_, Some(_)) => (0.0, f64::NAN),
            _ => (f.params.a, f.params.b),
        };
        let (r, alpha) = match f.params.poisson_rate() {
            Some(_) => (f64::NAN, f64::NAN),
            None => (f.params.r, f.params.alpha),
        };
        fit_scalar_uncertain(
            &[
                ("r", r),
                ("alpha", alpha),
                ("a", a),
                ("b", b),
                ("dropout", f.params.mean_dropout()),
                ("rate", f.params.mean_rate()),
            ],
            &struct_log_cov(&f),
            &f,
        )
    }
}

/// [`published_log_cov`] with a fifth row and column for ln dropout,
/// dropout = a / (a + b), by the delta method: its gradient is
/// (0, 0, b/(a+b), -b/(a+b)) in (ln r, ln alpha, ln a, ln b) at an
/// interior optimum and (0, 0, 1 - dropout) in the one-dropout limit's
/// (ln r, ln alpha, logit dropout); NaN in the NBD limit (dropout 0, at
/// its bound) and against a parameter that is NaN itself.
fn struct_log_cov(f: &FitResult) -> Vec<Vec<f64>> {
    let mut c = published_log_cov(f);
    let own = &f.log_cov;
    let j = match own.len() {
        4 => {
            let s = f.params.b / (f.params.a + f.params.b);
            vec![0.0, 0.0, s, -s]
        }
        3 => vec![0.0, 0.0, 1.0 - f.params.mean_dropout()],
        _ => Vec::new(),
    };
    if c.is_empty() {
        return c;
    }
    let mut row: Vec<f64> = (0..4)
        .map(|k| {
            if j.is_empty() || k >= own.len() || (own.len() == 3 && k >= 2) {
                return f64::NAN;
            }
            j.iter().zip(own).map(|(jl, r)| jl * r[k]).sum()
        })
        .collect();
    let var: f64 = if j.is_empty() {
        f64::NAN
    } else {
        (0..j.len())
            .flat_map(|l| (0..j.len()).map(move |m| (l, m)))
            .map(|(l, m)| j[l] * own[l][m] * j[m])
            .sum()
    };
    for (r, v) in c.iter_mut().zip(&row) {
        r.push(*v);
    }
    row.push(var);
    c.push(row);
    c
}

/// The parameters of a struct's fields (NULL fields as NaN): `None` when
/// one is NULL (a fit that did not converge publishes NULL for what ran
/// off, and its outputs are NULL), except b in the NBD limit a = 0, where b
/// has no effect and a boundary fit publishes it NULL, and a and b in the
/// one-dropout limit, given by a fifth field `dropout` (a / (a + b), in
/// (0, 1)), and r, alpha and b in the Poisson limit (a = 0), given by a
/// sixth field `rate` (r / alpha, positive); an error when one is not positive (a = 0 allowed).
pub(crate) fn params(v: &[f64]) -> std::result::Result<Option<BgNbdParams>, String> {
    let rate = v.get(5).copied().unwrap_or(f64::NAN);
    if v[0].is_nan() && v[1].is_nan() && v[2] == 0.0 && !rate.is_nan() {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!("rate must be positive, got {rate}"));
        }
        return Ok(Some(BgNbdParams::poisson(rate)));
    }
    let dropout = v.get(4).copied().unwrap_or(f64::NAN);
    if v[2].is_nan() && v[3].is_nan() && !dropout.is_nan() {
        if v[0].is_nan() || v[1].is_nan() {
            return Ok(None);
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !(positive(v[0]) && positive(v[1]) && dropout > 0.0 && dropout < 1.0) {
            return Err(format!(
                "parameters must be positive and dropout in (0, 1), got r={}, alpha={}, dropout={dropout}",
                v[0], v[1]
            ));
        }
        return Ok(Some(BgNbdParams::one_dropout(v[0], v[1], dropout)));
    }
    let limit = v[2] == 0.0;
    let p = BgNbdParams {
        r: v[0],
        alpha: v[1],
        a: v[2],
        // Any b gives the same model at a = 0 (nothing reads it there).
        b: if limit && v[3].is_nan() { 1.0 } else { v[3] },
    };
    if [p.r, p.alpha, p.a, p.b].iter().any(|x| x.is_nan()) {
        return Ok(None);
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if positive(p.r) && positive(p.alpha) && positive(p.b) && (limit || positive(p.a)) {
        Ok(Some(p))
    } else {
        Err(format!(
            "parameters must be positive, got r={}, alpha={}, a={}, b={}",
            p.r, p.alpha, p.a, p.b
        ))
    }
}

fn eval_p_alive(pv: &[f64], v: &[f64]) -> std::result::Result<Option<f64>, String> {
    let Some(p) = params(pv)? else {
        return Ok(None);
    };
    validate(v[0], v[1], v[2])?;
    Ok(Some(p_alive(&p, v[0], v[1], v[2])))
}

fn eval_expected(pv: &[f64], v: &[f64]) -> std::result::Result<Option<f64>, String> {
    let Some(p) = params(pv)? else {
        return Ok(None);
    };
    if !(v[0] >= 0.0 && v[0].is_finite()) {
        return Err(format!("horizon must be >= 0, got {}", v[0]));
    }
    validate(v[1], v[2], v[3])?;
    let e = expected_purchases(&p, v[0], v[1], v[2], v[3]);
    Ok(Some(e))
}

/// The SQL functions of this model.
pub fn functions() -> Vec<Function> {
    vec![
        Function::fit::<Fit>(
            "bgnbd_fit",
            &["frequency", "recency", "t"],
            "BG/NBD maximum-likelihood fit (Fader, Hardie & Lee 2005); customers sharing a pattern are fitted once",
        ),
        Function::scalar(
            "bgnbd_p_alive",
            &[("params", SCALAR_FIELDS)],
            &["frequency", "recency", "t"],
            eval_p_alive,
            "probability the customer is still alive at t",
        ),
        Function::scalar(
            "bgnbd_expected_purchases",
            &[("params", SCALAR_FIELDS)],
            &["horizon", "frequency", "recency", "t"],
            eval_expected,
            "expected repeat purchases in (t, t + horizon], horizon in the time unit of the fit",
        ),
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Hardie's CDNOW summary (x, t_x, T in weeks, zbar), 2,357 customers.
    pub(crate) fn cdnow_summary() -> Vec<(f64, f64, f64, f64)> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/cdnow_sample_summary.csv"
        ))
        .unwrap();
        text.lines()
            .skip(1)
            .map(|l| {
                let v: Vec<f64> = l.split(',').map(|s| s.trim().parse().unwrap()).collect();
                (v[1], v[2], v[3], v[4])
            })
            .collect()
    }

    pub(crate) fn patterns(weighted: bool) -> Vec<Pattern> {
        let rows = cdnow_summary();
        if !weighted {
            return rows
                .iter()
                .map(|r| Pattern {
                    frequency: r.0,
                    recency: r.1,
                    t: r.2,
                    weight: 1.0,
                })
                .collect();
        }
        let mut m = std::collections::BTreeMap::<(u64, u64, u64), f64>::new();
        for r in rows {
            *m.entry((r.0.to_bits(), r.1.to_bits(), r.2.to_bits()))
                .or_default() += 1.0;
        }
        m.into_iter()
            .map(|((x, tx, t), w)| Pattern {
                frequency: f64::from_bits(x),
                recency: f64::from_bits(tx),
                t: f64::from_bits(t),
                weight: w,
            })
            .collect()
    }

    const PUBLISHED: BgNbdParams = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    /// The rows of tests/data/se_reference.csv of one model: (parameter,
    /// value, standard error).
    pub(crate) fn se_reference(model: &str) -> Vec<(String, f64, f64)> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/se_reference.csv"
        ))
        .unwrap();
        text.lines()
            .skip(1)
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|v| v[0] == model)
            .map(|v| {
                (
                    v[1].to_string(),
                    v[2].parse().unwrap(),
                    v[3].parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn standard_errors_match_the_reference() {
        // scripts/se_reference.py: lifetimes 0.11.3's likelihood on CDNOW,
        // its exact Hessian by autograd, inverted, delta method (r 0.01256,
        // alpha 0.3782, a 0.1857, b 0.7053, as Fader, Hardie & Lee's
        // published fit is usually quoted). custval differences its
        // analytic gradient (step 1e-4): 1e-4 relative on the SEs, 1e-5
        // on the parameters.
        let f = fit(&patterns(true));
        let cov = published_log_cov(&f);
        let values = [f.params.r, f.params.alpha, f.params.a, f.params.b];
        let want = se_reference("bgnbd");
        assert_eq!(want.len(), 4);
        for (i, (name, v, se)) in want.iter().enumerate() {
            assert!((values[i] / v - 1.0).abs() < 1e-5, "{name}: {f:?}");
            let got = values[i] * cov[i][i].sqrt();
            assert!((got / se - 1.0).abs() < 1e-4, "{name}: se {got} vs {se}");
        }
        // Symmetric.
        for (i, row) in cov.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert_eq!(*v, cov[j][i]);
            }
        }
    }

    #[test]
    fn a_boundary_fit_has_no_standard_error_for_the_bounded_parameters() {
        // No dropout (a = 0): r and alpha have standard errors (the NBD
        // limit's information), a and b none (NaN, published NULL beside
        // at_bound). The NBD SEs are checked against the limit's own
        // Hessian by central differences of its objective's values (step
        // 1e-3, an independent route from the gradient): 1e-3 relative.
        let patterns = super::super::shapes::no_dropout(5_000, 11);
        let f = fit(&patterns);
        assert_eq!(f.status, "boundary", "{f:?}");
        let cov = published_log_cov(&f);
        assert!(cov[2][2].is_nan() && cov[3][3].is_nan() && cov[0][2].is_nan());
        assert!(cov[0][0] > 0.0 && cov[1][1] > 0.0, "{cov:?}");
        let ix = Indexed::new(&patterns);
        let th = [f.params.r.ln(), f.params.alpha.ln()];
        let val = |d0: f64, d1: f64| {
            let mut g = [0.0; 2];
            nbd_objective(&[th[0] + d0, th[1] + d1], &ix, &mut g)
        };
        let h = 1e-3;
        let f0 = val(0.0, 0.0);
        let h00 = (val(h, 0.0) - 2.0 * f0 + val(-h, 0.0)) / (h * h);
        let h11 = (val(0.0, h) - 2.0 * f0 + val(0.0, -h)) / (h * h);
        let h01 = (val(h, h) - val(h, -h) - val(-h, h) + val(-h, -h)) / (4.0 * h * h);
        let n = patterns.len() as f64;
        let det = n * n * (h00 * h11 - h01 * h01);
        let (v0, v1) = (n * h11 / det, n * h00 / det);
        assert!((cov[0][0] / v0 - 1.0).abs() < 1e-3, "{} vs {v0}", cov[0][0]);
        assert!((cov[1][1] / v1 - 1.0).abs() < 1e-3, "{} vs {v1}", cov[1][1]);
    }

    #[test]
    fn fits_cdnow_as_published() {
        // Fader, Hardie & Lee (2005): r = 0.243, alpha = 4.414, a = 0.793,
        // b = 2.426, LL = -9582.4. Tolerance 0.001 on parameters, 0.1 on LL.
        let p = patterns(true);
        assert!(p.len() < 2357, "patterns compress customers");
        let f = fit(&p);
        assert!(f.converged, "{f:?}");
        assert!((f.params.r - 0.243).abs() < 0.001, "{f:?}");
        assert!((f.params.alpha - 4.414).abs() < 0.001, "{f:?}");
        assert!((f.params.a - 0.793).abs() < 0.001, "{f:?}");
        assert!((f.params.b - 2.426).abs() < 0.001, "{f:?}");
        assert!((f.log_likelihood + 9582.4).abs() < 0.1, "{f:?}");
    }

    #[test]
    fn weighted_patterns_fit_like_one_row_per_customer() {
        // Same likelihood, so the same optimum; tolerance 1e-6 relative.
        let a = fit(&patterns(true));
        let b = fit(&patterns(false));
        for (x, y) in [
            (a.params.r, b.params.r),
            (a.params.alpha, b.params.alpha),
            (a.params.a, b.params.a),
            (a.params.b, b.params.b),
        ] {
            assert!((x / y - 1.0).abs() < 1e-6, "{a:?} {b:?}");
        }
    }

    #[test]
    fn starting_on_a_sample_reaches_the_same_optimum() {
        // The second stage on all the data decides convergence itself, so
        // the optimum is the direct fit's: 1e-6 relative (both stop at a
        // gradient of 1e-9), and still the published values within 0.001.
        let p = patterns(true);
        let direct = fit_with(&p, 0.0, |_| None);
        let staged = fit_with(&p, 0.0, |_| Some(500));
        assert!(direct.converged && staged.converged, "{staged:?}");
        for (x, y) in [
            (direct.params.r, staged.params.r),
            (direct.params.alpha, staged.params.alpha),
            (direct.params.a, staged.params.a),
            (direct.params.b, staged.params.b),
        ] {
            assert!((x / y - 1.0).abs() < 1e-6, "{direct:?} {staged:?}");
        }
        assert!((staged.params.r - PUBLISHED.r).abs() < 0.001, "{staged:?}");
        assert!((staged.params.b - PUBLISHED.b).abs() < 0.001, "{staged:?}");
        assert!((staged.log_likelihood + 9582.4).abs() < 0.1, "{staged:?}");
    }

    #[test]
    fn conditional_expectation_matches_hardies_spreadsheet() {
        // Hardie's BG/NBD spreadsheet: E[Y(39) | x=2, t_x=30.43, T=38.86] = 1.226; 0.001.
        let e = expected_purchases(&PUBLISHED, 39.0, 2.0, 30.43, 38.86);
        assert!((e - 1.226).abs() < 0.001, "{e}");
    }

    #[test]
    fn new_customer_expectation_matches_hardies_spreadsheet() {
        // Same spreadsheet: E[X(t)] for t = 1, 3, 32, 78 = 0.0532, 0.1506, 1.0437, 1.8576; 0.0005.
        // The spreadsheet evaluates at the unrounded MLE: at the 3-decimal
        // published parameters t = 32 moves by 0.0015, so use our fit.
        let fitted = fit(&patterns(true)).params;
        for (t, want) in [(1.0, 0.0532), (3.0, 0.1506), (32.0, 1.0437), (78.0, 1.8576)] {
            let e = expected_purchases_new(&fitted, t);
            assert!((e - want).abs() < 0.0005, "t={t}: {e} vs {want}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let p = patterns(true);
        let total: f64 = p.iter().map(|x| x.weight).sum();
        for th in [
            [0.0, 1.0, -0.2, 0.9],
            [-1.4, 1.5, -0.23, 0.89],
            [0.5, -0.5, 0.3, 2.0],
        ] {
            let mut g = [0.0; 4];
            objective(&th, &p, total, &mut g);
            for i in 0..4 {
                let h = 1e-6;
                let (mut up, mut dn) = (th, th);
                up[i] += h;
                dn[i] -= h;
                let mut tmp = [0.0; 4];
                let d = (objective(&up, &p, total, &mut tmp) - objective(&dn, &p, total, &mut tmp))
                    / (2.0 * h);
                assert!((d - g[i]).abs() < 1e-6, "i={i}: {d} vs {}", g[i]);
            }
        }
    }

    #[test]
    fn the_one_dropout_limit_is_eq_6_at_a_concentrated_beta() {
        // The limit a, b -> infinity with a/(a+b) = d: the log-likelihood,
        // P(alive) and E[Y(h)] at Beta(d K, (1-d) K), K = 1e6, differ from
        // the limit's by O(1/K) (the Beta's variance d(1-d)/(K+1) times
        // the second derivatives; 1e-4 relative for x <= 5 here); the
        // objective is the log-likelihood's mean and its gradient matches
        // central differences (1e-6), on CDNOW's patterns.
        let (r, alpha, d): (f64, f64, f64) = (0.8, 6.0, 0.15);
        let limit = BgNbdParams::one_dropout(r, alpha, d);
        assert_eq!(limit.common_dropout(), Some(d));
        let k = 1e6;
        let near = BgNbdParams {
            r,
            alpha,
            a: d * k,
            b: (1.0 - d) * k,
        };
        for (x, tx, t, h) in [
            (0.0, 0.0, 30.0, 52.0),
            (1.0, 5.0, 40.0, 10.0),
            (3.0, 20.0, 40.0, 10.0),
            (5.0, 85.0, 90.0, 500.0),
        ] {
            let rel = |u: f64, v: f64| (u / v - 1.0).abs();
            let (ll, ll_near) = (
                log_likelihood(&limit, x, tx, t),
                log_likelihood(&near, x, tx, t),
            );
            assert!(rel(ll, ll_near) < 1e-4, "x={x}: {ll} vs {ll_near}");
            let (pa, pa_near) = (p_alive(&limit, x, tx, t), p_alive(&near, x, tx, t));
            assert!(rel(pa, pa_near) < 1e-4, "x={x}: {pa} vs {pa_near}");
            let (e, e_near) = (
                expected_purchases(&limit, h, x, tx, t),
                expected_purchases(&near, h, x, tx, t),
            );
            assert!(rel(e, e_near) < 1e-4, "x={x}: {e} vs {e_near}");
        }
        // A century of days, a frequent buyer: finite, no overflow.
        let e = expected_purchases(&limit, 36_500.0, 60.0, 700.0, 730.0);
        assert!(e.is_finite() && e > 0.0, "{e}");
        let pats = patterns(true);
        let ix = Indexed::new(&pats);
        let th = [r.ln(), alpha.ln(), (d / (1.0 - d)).ln()];
        let mut g = [0.0; 3];
        let f = one_dropout_objective(&th, &ix, &mut g);
        let mean: f64 = pats
            .iter()
            .map(|p| -p.weight * log_likelihood(&limit, p.frequency, p.recency, p.t))
            .sum::<f64>()
            / ix.total;
        assert!((f / mean - 1.0).abs() < 1e-12, "{f} vs {mean}");
        for i in 0..3 {
            let h = 1e-6;
            let (mut up, mut dn) = (th, th);
            up[i] += h;
            dn[i] -= h;
            let mut tmp = [0.0; 3];
            let fd = (one_dropout_objective(&up, &ix, &mut tmp)
                - one_dropout_objective(&dn, &ix, &mut tmp))
                / (2.0 * h);
            assert!((fd - g[i]).abs() < 1e-6, "i={i}: {fd} vs {}", g[i]);
        }
    }

    #[test]
    fn the_slope_off_the_one_dropout_limit_is_the_likelihood_s() {
        // dropout_spread_slope is d(mean LL)/ds at s = 1/(a+b+1) = 0: the
        // mean log-likelihood at Beta(d K, (1-d) K), K = 1e5 (s = 1e-5),
        // minus the limit's, over s, agrees within 1e-3 relative (the
        // O(s) curvature term), on CDNOW's patterns.
        let pats = patterns(true);
        let ix = Indexed::new(&pats);
        let (r, alpha, d): (f64, f64, f64) = (0.24, 4.4, 0.25);
        let th = [r.ln(), alpha.ln(), (d / (1.0 - d)).ln()];
        let k = 1e5;
        let near = BgNbdParams {
            r,
            alpha,
            a: d * k,
            b: (1.0 - d) * k,
        };
        let limit = BgNbdParams::one_dropout(r, alpha, d);
        let mean_ll = |p: &BgNbdParams| {
            pats.iter()
                .map(|q| q.weight * log_likelihood(p, q.frequency, q.recency, q.t))
                .sum::<f64>()
                / ix.total
        };
        let fd = (mean_ll(&near) - mean_ll(&limit)) * (k + 1.0);
        let slope = dropout_spread_slope(&th, &ix);
        assert!((fd / slope - 1.0).abs() < 1e-3, "{fd} vs {slope}");
    }

    #[test]
    fn one_dropout_for_everyone_is_a_verified_boundary() {
        // The shop of udf::shapes::one_dropout (dropout 0.1 after each
        // repeat purchase, for everyone): the limit a, b = infinity at a
        // verified boundary, a and b published NULL beside dropout, which
        // is the generating 0.1 within 10% (sampling error of 20,000
        // customers), with a standard error; P(alive) and expected
        // purchases from the struct the SQL functions read are the
        // limit's.
        let pats = crate::udf::shapes::one_dropout(20_000, 8, 0.1);
        let f = fit(&pats);
        println!(
            "{} iterations, {}, {:?}",
            f.iterations, f.status, f.at_bound
        );
        assert!(f.converged && f.status == "boundary", "{f:?}");
        let d = f.params.common_dropout().unwrap_or(f64::NAN);
        assert!((d / 0.1 - 1.0).abs() < 0.1, "{f:?}");
        assert!(
            f.at_bound
                .as_deref()
                .unwrap_or("")
                .starts_with("a, b = infinity"),
            "{f:?}"
        );
        let cov = struct_log_cov(&f);
        assert!(cov[4][4] > 0.0 && cov[2][2].is_nan(), "{cov:?}");
        let q = params(&[f.params.r, f.params.alpha, f64::NAN, f64::NAN, d])
            .unwrap()
            .unwrap();
        assert_eq!(q, f.params);
        assert!(params(&[1.0, 1.0, f64::NAN, f64::NAN, 1.5]).is_err());
    }

    #[test]
    fn p_alive_is_a_probability() {
        assert_eq!(p_alive(&PUBLISHED, 0.0, 0.0, 38.86), 1.0);
        let p = p_alive(&PUBLISHED, 2.0, 30.43, 38.86);
        assert!(p > 0.0 && p < 1.0);
        // A frequent buyer who stopped long ago: near zero, never NaN.
        let p = p_alive(&PUBLISHED, 500.0, 1.0, 1000.0);
        assert!((0.0..1e-6).contains(&p), "{p}");
    }

    #[test]
    fn long_horizons_stay_finite_and_monotone() {
        let mut last = 0.0;
        for h in [1.0, 10.0, 100.0, 1e3, 1e4, 1e6] {
            let e = expected_purchases(&PUBLISHED, h, 5.0, 30.0, 38.86);
            assert!(e.is_finite() && e >= last, "h={h}: {e}");
            last = e;
        }
        // a = 1 is a removable singularity.
        let p = BgNbdParams {
            a: 1.0,
            ..PUBLISHED
        };
        let e = expected_purchases(&p, 39.0, 2.0, 30.43, 38.86);
        let lo = expected_purchases(
            &BgNbdParams {
                a: 0.999,
                ..PUBLISHED
            },
            39.0,
            2.0,
            30.43,
            38.86,
        );
        let hi = expected_purchases(
            &BgNbdParams {
                a: 1.001,
                ..PUBLISHED
            },
            39.0,
            2.0,
            30.43,
            38.86,
        );
        assert!(
            e.is_finite() && (lo.min(hi)..=lo.max(hi)).contains(&e),
            "{lo} {e} {hi}"
        );
    }

    /// The rows of tests/data/bgnbd_reference.csv of one kind, as numbers
    /// (empty fields as NaN).
    pub(crate) fn references(kind: &str) -> Vec<Vec<f64>> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/bgnbd_reference.csv"
        ))
        .unwrap();
        text.lines()
            .skip(1)
            .filter(|l| l.starts_with(&format!("{kind},")))
            .map(|l| {
                l.split(',')
                    .skip(1)
                    .map(|v| v.parse().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect()
    }

    /// The BG/NBD parameters of a reference row.
    pub(crate) fn reference_params(v: &[f64]) -> BgNbdParams {
        BgNbdParams {
            r: v[0],
            alpha: v[1],
            a: v[2],
            b: v[3],
        }
    }

    #[test]
    fn matches_high_precision_references() {
        // scripts/bgnbd_reference.py (mpmath 1.3.0, 50 digits, quadrature and
        // eq. 10 with hyp2f1 agreeing to 1e-25): a + b < 1 (c <= 0 for
        // one-time buyers), c = 0, a = 1, z -> 1 (100 years, tiny alpha),
        // large x and T, extreme a, b, r. Tolerance 1e-9 relative.
        let rows = references("expected_purchases");
        assert!(rows.len() >= 20);
        for v in rows {
            let p = reference_params(&v);
            let (h, x, tx, t, want_alive, want) = (v[4], v[5], v[6], v[7], v[10], v[11]);
            let alive = p_alive(&p, x, tx, t);
            assert!(
                (alive / want_alive - 1.0).abs() < 1e-9,
                "{v:?}: P(alive) {alive}"
            );
            let got = expected_purchases(&p, h, x, tx, t);
            assert!((got / want - 1.0).abs() < 1e-9, "{v:?}: {got} vs {want}");
            // Both methods, where the series applies, give the same value.
            let q = p_alive(&p, x, tx, t) * bracket_quadrature(&p, h, x, t);
            assert!(
                (q / want - 1.0).abs() < 1e-9,
                "{v:?}: quadrature {q} vs {want}"
            );
        }
    }

    #[test]
    fn one_time_buyers_with_a_plus_b_below_1_match_the_case() {
        // ../shared/cases/models/one-time-buyers-a-plus-b-below-1 (README,
        // independent computation): E[Y(360) | 0, 0, 200] = 0.4717649 at
        // r 0.4, alpha 16, a 0.35, b 0.37; 5e-8 (7 digits given).
        let p = BgNbdParams {
            r: 0.4,
            alpha: 16.0,
            a: 0.35,
            b: 0.37,
        };
        let e = expected_purchases(&p, 360.0, 0.0, 0.0, 200.0);
        assert!((e - 0.4717649).abs() < 5e-8, "{e}");
    }

    #[test]
    fn series_and_quadrature_agree_where_both_hold() {
        // Two independent evaluations of eq. 10 over a grid of ordinary
        // parameters (CDNOW-like, weeks and days): 1e-10 relative.
        for (r, alpha, a, b) in [
            (0.243, 4.414, 0.793, 2.426),
            (2.0, 30.0, 3.0, 8.0),
            (0.5, 100.0, 0.6, 0.9),
        ] {
            let p = BgNbdParams { r, alpha, a, b };
            for (x, t) in [(1.0, 40.0), (5.0, 300.0), (30.0, 700.0)] {
                for h in [4.0, 52.0, 365.0] {
                    if let Some(s) = bracket_series(&p, h, x, t) {
                        let q = bracket_quadrature(&p, h, x, t);
                        assert!(
                            (s / q - 1.0).abs() < 1e-10,
                            "{p:?} x={x} T={t} h={h}: {s} vs {q}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn data_that_identify_nothing_are_not_converged() {
        // ../shared/cases/models/all-first-purchases-on-as-of: every
        // customer bought once, on the as-of day (x = 0, T = 0), so every
        // parameter has likelihood 1 and the gradient is zero at the start.
        let f = fit(&[Pattern {
            frequency: 0.0,
            recency: 0.0,
            t: 0.0,
            weight: 10.0,
        }]);
        assert!(!f.converged, "{f:?}");
        assert!(
            f.status.contains("not identified") && f.status.contains("flat"),
            "{f:?}"
        );
        // Only one-time buyers, observed for a while: nothing says how
        // customers drop out after a purchase (a, b), and r runs off to 0.
        let f = fit(&[
            Pattern {
                frequency: 0.0,
                recency: 0.0,
                t: 10.0,
                weight: 10.0,
            },
            Pattern {
                frequency: 0.0,
                recency: 0.0,
                t: 30.0,
                weight: 5.0,
            },
        ]);
        assert!(!f.converged, "{f:?}");
    }

    #[test]
    fn a_cdnow_fit_is_a_verified_optimum() {
        let f = fit(&patterns(true));
        assert!(f.converged && f.status == "converged", "{f:?}");
    }

    #[test]
    fn invalid_input_names_the_value() {
        assert!(validate(-1.0, 0.0, 1.0).unwrap_err().contains("-1"));
        assert!(validate(2.0, 5.0, 3.0).unwrap_err().contains("recency"));
    }

    /// The rows of tests/data/penalized_reference.csv (scripts/
    /// penalized_reference.py: custval's penalty on lifetimes 0.11.3's
    /// likelihoods, minimised by scipy) of one model: (penalizer, params).
    pub(crate) fn penalized_reference(model: &str) -> Vec<(f64, Vec<f64>)> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/penalized_reference.csv"
        ))
        .unwrap();
        text.lines()
            .skip(1)
            .filter(|l| l.starts_with(&format!("{model},custval,")))
            .map(|l| {
                let v: Vec<f64> = l
                    .split(',')
                    .skip(2)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                (v[0], v[1..].to_vec())
            })
            .collect()
    }

    #[test]
    fn penalised_fits_match_the_reference() {
        // scripts/penalized_reference.py: penalizer 0.001, 0.01, 0.1 on
        // the CDNOW sample, 1e-5 relative (both optimizers stop at tight
        // gradients; the fixture's digits are scipy's).
        let rows = penalized_reference("bgnbd");
        assert_eq!(rows.len(), 3);
        for (pen, want) in rows {
            let f = fit_penalised(&patterns(true), pen);
            assert!(f.converged && f.status == "converged", "{pen}: {f:?}");
            let got = [f.params.r, f.params.alpha, f.params.a, f.params.b];
            for (g, w) in got.iter().zip(&want) {
                assert!((g / w - 1.0).abs() < 1e-5, "{pen}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn a_penalty_shrinks_the_log_parameters_and_zero_changes_nothing() {
        // Penalizer 0 is the plain fit, bit for bit. A larger penalizer
        // never lengthens the centred log-parameter vector (ln r, ln
        // alpha/mean T, ln a, ln b): at the penalised optimum its squared
        // length is non-increasing in the penalizer.
        let p = patterns(true);
        let plain = fit(&p);
        let zero = fit_penalised(&p, 0.0);
        assert_eq!(plain.params, zero.params);
        let mean_t =
            p.iter().map(|p| p.t * p.weight).sum::<f64>() / p.iter().map(|p| p.weight).sum::<f64>();
        let mut last = f64::INFINITY;
        for pen in [0.0, 0.001, 0.01, 0.1, 1.0] {
            let f = fit_penalised(&p, pen);
            assert!(f.converged, "{pen}: {f:?}");
            let q = f.params;
            let norm = [q.r, q.alpha / mean_t, q.a, q.b]
                .iter()
                .map(|v| v.ln().powi(2))
                .sum::<f64>();
            assert!(norm <= last + 1e-9, "{pen}: {norm} after {last}");
            last = norm;
        }
        assert!(last < 0.5, "penalizer 1 leaves |ln theta|^2 = {last}");
    }

    #[test]
    fn no_dropout_is_the_nbd_limit_verified() {
        // The no-dropout shop (udf::shapes, r = 10, alpha = 52 weeks):
        // a = 0 at a verified boundary, b NULL, and r, alpha the NBD
        // model's maximum: its score (d LL/d r, d LL/d alpha, computed
        // here from eq. 6 without dropout) is 0 within 1e-6 per customer,
        // and they are the generating values within 15% (sampling error of
        // 20,000 customers). BG/NBD at a = 1e-9 approaches the boundary's
        // log-likelihood from below (1e-6 relative).
        let pats = crate::udf::shapes::no_dropout(20_000, 1);
        let f = fit(&pats);
        assert!(f.converged && f.status == "boundary", "{f:?}");
        assert_eq!(f.params.a, 0.0);
        assert!(f.params.b.is_nan(), "{f:?}");
        assert!(
            f.at_bound.as_deref().unwrap_or("").starts_with("a = 0"),
            "{f:?}"
        );
        let BgNbdParams { r, alpha, .. } = f.params;
        let (mut dr, mut dalpha) = (0.0, 0.0);
        for p in &pats {
            dr += digamma(r + p.frequency) - digamma(r) + alpha.ln() - (alpha + p.t).ln();
            dalpha += r / alpha - (r + p.frequency) / (alpha + p.t);
        }
        let n = pats.len() as f64;
        assert!(
            (dr / n).abs() < 1e-6 && (dalpha / n).abs() < 1e-6,
            "{dr} {dalpha}"
        );
        assert!(
            (r / 10.0 - 1.0).abs() < 0.15 && (alpha / 52.0 - 1.0).abs() < 0.15,
            "{f:?}"
        );
        let near = BgNbdParams {
            a: 1e-9,
            b: 1.0,
            ..f.params
        };
        let ll: f64 = pats
            .iter()
            .map(|p| log_likelihood(&near, p.frequency, p.recency, p.t))
            .sum();
        assert!(
            ll <= f.log_likelihood && (ll / f.log_likelihood - 1.0).abs() < 1e-6,
            "{ll} {f:?}"
        );
    }

    #[test]
    fn one_rate_and_no_dropout_is_the_poisson_limit_verified() {
        // The homogeneous Poisson shop (udf::shapes, 20 orders per 104
        // weeks for everyone, nobody leaves): a boundary at the Poisson
        // face whose rate is the closed-form maximum sum(x) / sum(T)
        // (computed here, 1e-9 relative), within 5% of the generating
        // 20/104 (sampling error of 20,000 customers), and whose
        // log-likelihood is sum(x ln rate - rate T), which BG/NBD near the
        // limit (a = 1e-9, r = 1e6, alpha = r / rate) approaches from below
        // (1e-6 relative).
        let pats = crate::udf::shapes::homogeneous_poisson(20_000, 9);
        let f = fit(&pats);
        assert!(f.converged && f.status == "boundary", "{f:?}");
        assert!(f.iterations < 100, "{f:?}");
        assert!(
            f.at_bound.as_deref().unwrap_or("").contains("Poisson"),
            "{f:?}"
        );
        let rate = f.params.poisson_rate().expect("the Poisson limit");
        let xs: f64 = pats.iter().map(|p| p.frequency).sum();
        let ts: f64 = pats.iter().map(|p| p.t).sum();
        assert!((rate / (xs / ts) - 1.0).abs() < 1e-9, "{rate}");
        assert!((rate / (20.0 / 104.0) - 1.0).abs() < 0.05, "{rate}");
        let want: f64 = pats
            .iter()
            .map(|p| p.frequency * rate.ln() - rate * p.t)
            .sum();
        assert!((f.log_likelihood / want - 1.0).abs() < 1e-9, "{f:?}");
        let near = BgNbdParams {
            r: 1e6,
            alpha: 1e6 / rate,
            a: 1e-9,
            b: 1.0,
        };
        let ll: f64 = pats
            .iter()
            .map(|p| log_likelihood(&near, p.frequency, p.recency, p.t))
            .sum();
        assert!(
            ll <= f.log_likelihood && (ll / f.log_likelihood - 1.0).abs() < 1e-6,
            "{ll} {f:?}"
        );
    }

    #[test]
    fn scores_at_the_poisson_limit_are_its_own_and_finite() {
        // At the Poisson limit P(alive) = 1 and E[Y(h)] = rate h (a Poisson
        // process that never stops); BG/NBD near it (a = 1e-12, r = 1e9,
        // alpha = r / rate) agrees within 1e-6 relative, and the SQL
        // struct (r, alpha, b NULL, a = 0, rate) reads back as the limit.
        let rate = 0.19;
        let p = BgNbdParams::poisson(rate);
        let near = BgNbdParams {
            r: 1e9,
            alpha: 1e9 / rate,
            a: 1e-12,
            b: 1.0,
        };
        for (x, tx, t) in [(0.0, 0.0, 50.0), (3.0, 20.0, 60.0), (25.0, 100.0, 104.0)] {
            assert_eq!(p_alive(&p, x, tx, t), 1.0);
            for h in [1.0, 52.0, 520.0] {
                let e = expected_purchases(&p, h, x, tx, t);
                assert!((e / (rate * h) - 1.0).abs() < 1e-12, "{e}");
                let n = expected_purchases(&near, h, x, tx, t);
                assert!((n / e - 1.0).abs() < 1e-6, "{n} {e}");
            }
            let (l, ln) = (
                log_likelihood(&p, x, tx, t),
                log_likelihood(&near, x, tx, t),
            );
            assert!(l.is_finite() && (ln / l - 1.0).abs() < 1e-6, "{l} {ln}");
        }
        let nan = f64::NAN;
        let read = params(&[nan, nan, 0.0, nan, 0.0, rate]).unwrap().unwrap();
        assert_eq!(read, p);
        assert!(params(&[nan, nan, 0.0, nan, 0.0, -1.0]).is_err());
    }

    #[test]
    fn scores_at_a_tiny_a_approach_the_nbd_limit() {
        // As a -> 0 every dropout probability is 0 (Beta(a, b) puts its
        // mass at 0): P(alive) -> 1 and eq. 10 -> (r+x) h / (alpha+T), the
        // posterior mean rate times h, whatever b. At a = 1e-10 both are
        // within 1e-8 relative of the limit, which a = 0 gives exactly.
        // (Not uniformly in the customer: 1 - P(alive) is about
        // a R / (b+x-1), R = ((alpha+T)/(alpha+t_x))^(r+x), so a frequent
        // buyer silent for long needs a smaller a; here R < 10.)
        for b in [0.3, 2.4, 50.0] {
            let tiny = BgNbdParams {
                r: 0.8,
                alpha: 6.0,
                a: 1e-10,
                b,
            };
            let zero = BgNbdParams { a: 0.0, ..tiny };
            for (x, tx, t, h) in [
                (0.0, 0.0, 30.0, 52.0),
                (3.0, 20.0, 40.0, 10.0),
                (12.0, 85.0, 90.0, 500.0),
            ] {
                let want = (tiny.r + x) * h / (tiny.alpha + t);
                assert_eq!(p_alive(&zero, x, tx, t), 1.0);
                assert_eq!(expected_purchases(&zero, h, x, tx, t), want);
                let pa = p_alive(&tiny, x, tx, t);
                assert!((pa - 1.0).abs() < 1e-8, "b={b} x={x}: {pa}");
                let e = expected_purchases(&tiny, h, x, tx, t);
                assert!((e / want - 1.0).abs() < 1e-8, "b={b} x={x}: {e} vs {want}");
            }
        }
        // Through SQL's path: b NULL (NaN) is accepted only at a = 0.
        assert!(params(&[0.8, 6.0, 0.0, f64::NAN]).unwrap().is_some());
        assert!(params(&[0.8, 6.0, 0.5, f64::NAN]).unwrap().is_none());
        assert!(params(&[0.8, 6.0, -0.5, 1.0]).is_err());
    }

    #[test]
    fn fits_do_not_depend_on_the_time_unit() {
        // Times in days instead of weeks (x 7): r, a, b unchanged and alpha
        // x 7, converged both (1e-6 relative), and the log-likelihood lower
        // by ln 7 per repeat purchase (eq. 6 is a density of the x purchase
        // times); on the no-dropout shop the boundary is found in both.
        let weeks = patterns(true);
        let days: Vec<Pattern> = weeks
            .iter()
            .map(|p| Pattern {
                recency: p.recency * 7.0,
                t: p.t * 7.0,
                ..*p
            })
            .collect();
        let (w, d) = (fit(&weeks), fit(&days));
        assert!(w.converged && d.converged, "{w:?} {d:?}");
        for (x, y) in [
            (w.params.r, d.params.r),
            (w.params.alpha * 7.0, d.params.alpha),
            (w.params.a, d.params.a),
            (w.params.b, d.params.b),
        ] {
            assert!((x / y - 1.0).abs() < 1e-6, "{w:?} {d:?}");
        }
        let repeat: f64 = weeks.iter().map(|p| p.frequency * p.weight).sum();
        let ll = w.log_likelihood - repeat * 7f64.ln();
        assert!((d.log_likelihood / ll - 1.0).abs() < 1e-6, "{w:?} {d:?}");
        let shop = crate::udf::shapes::no_dropout(20_000, 1);
        let in_days: Vec<Pattern> = shop
            .iter()
            .map(|p| Pattern {
                recency: p.recency * 7.0,
                t: p.t * 7.0,
                ..*p
            })
            .collect();
        let (w, d) = (fit(&shop), fit(&in_days));
        assert!(
            w.status == "boundary" && d.status == "boundary",
            "{w:?} {d:?}"
        );
        assert!((w.params.r / d.params.r - 1.0).abs() < 1e-6, "{w:?} {d:?}");
        assert!(
            (w.params.alpha * 7.0 / d.params.alpha - 1.0).abs() < 1e-6,
            "{w:?} {d:?}"
        );
    }

    #[test]
    fn the_cdnow_fit_is_the_interior_search_s_bit_for_bit() {
        // CDNOW has dropout: the NBD face is no optimum (its slope is
        // positive), so the fit is the interior search alone, exactly as
        // before faces existed (fit::minimise from the same starts): the
        // same parameters to the last bit, only the face's iterations added.
        let p = patterns(true);
        let total: f64 = p.iter().map(|p| p.weight).sum();
        let scale = p.iter().map(|p| p.t * p.weight).sum::<f64>() / total;
        let ix = Indexed::new(&p);
        let plain = fit::minimise(
            |th, g| objective_indexed(th, &ix, g),
            None::<fn(&[f64], &mut [f64]) -> f64>,
            &starts(scale),
            &Options::model_fit(),
            PARAMS,
        );
        let f = fit_with(&p, 0.0, |_| None);
        let got = [f.params.r, f.params.alpha, f.params.a, f.params.b];
        let want: Vec<f64> = plain.theta.iter().map(|t| t.exp()).collect();
        assert_eq!(got.to_vec(), want, "{f:?}");
        assert!(f.status == "converged" && f.at_bound.is_none(), "{f:?}");
        assert!(f.iterations > plain.iterations, "{f:?} {plain:?}");
    }
}
