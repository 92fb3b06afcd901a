//! MBG/NBD (Batislam, Denizel & Filiztekin 2007, "Empirical validation and
//! comparison of models for customer base analysis", International Journal
//! of Research in Marketing 24(3)): BG/NBD where a customer may also drop
//! out right after the first purchase, so one-time buyers are not all
//! alive. The likelihood, its maximum-likelihood fit over weighted
//! patterns, P(alive) and expected purchases; then the SQL functions
//! `mbgnbd_fit`, `mbgnbd_p_alive`, `mbgnbd_expected_purchases`; then tests.
//!
//! Dropout after each purchase (the first included) with probability
//! p ~ Beta(a, b). The likelihood of (x, t_x, T) is
//!   L = B(a, b+x+1)/B(a, b) Gamma(r+x) alpha^r / Gamma(r)
//!       [(alpha+T)^-(r+x) + a/(b+x) (alpha+t_x)^-(r+x)]
//! (Batislam et al. 2007, eq. 5; lifetimes' ModifiedBetaGeoFitter), for
//! every x >= 0.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};

use super::args::{fit_scalar_uncertain, fit_type_uncertain, null_struct, Collector, Weighted};
use super::bgnbd::{
    conditional_bracket, heterogeneity_slope, minimise_on_faces, BgNbdParams, FaceModel, Indexed,
};
pub use super::bgnbd::{validate, Pattern};
use super::Function;
use crate::numeric::fit;
use crate::numeric::optim::{stage_sample_size, systematic_sample, Options};
use crate::numeric::quad::ln_logistic;
use crate::numeric::special::{digamma, ln_gamma};

/// Model parameters (alpha in the data's time unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MbgNbdParams {
    /// Shape of the gamma distribution of purchase rates across customers.
    pub r: f64,
    /// Scale of that gamma distribution, in the time unit of the data.
    pub alpha: f64,
    /// First shape of the beta distribution of dropout probabilities.
    pub a: f64,
    /// Second shape of that beta distribution; in the one-dropout limit
    /// (a infinite, as [`BgNbdParams::one_dropout`]) the limit of b / a.
    pub b: f64,
}

impl MbgNbdParams {
    /// The limit a, b -> infinity with a / (a + b) = `dropout` fixed:
    /// everyone drops out with probability `dropout` after each purchase
    /// (the first included); kept as BG/NBD keeps it.
    pub fn one_dropout(r: f64, alpha: f64, dropout: f64) -> MbgNbdParams {
        let p = BgNbdParams::one_dropout(r, alpha, dropout);
        MbgNbdParams {
            r,
            alpha,
            a: p.a,
            b: p.b,
        }
    }

    /// The common dropout probability of the one-dropout limit, `None` for
    /// any other parameters.
    pub fn common_dropout(&self) -> Option<f64> {
        self.as_bgnbd().common_dropout()
    }

    /// The same numbers as BG/NBD parameters (their encodings agree).
    fn as_bgnbd(&self) -> BgNbdParams {
        BgNbdParams {
            r: self.r,
            alpha: self.alpha,
            a: self.a,
            b: self.b,
        }
    }
}

/// Result of a fit.
pub type FitResult = fit::FitResult<MbgNbdParams>;

/// One customer's log-likelihood (module docs, in log-sum-exp form).
pub fn log_likelihood(p: &MbgNbdParams, x: f64, tx: f64, t: f64) -> f64 {
    if let Some(d) = p.common_dropout() {
        // Beta(a, b) a point mass at d: B(a, b+x+1)/B(a, b) -> (1-d)^(x+1),
        // a/(b+x) -> d/(1-d).
        let (r, alpha) = (p.r, p.alpha);
        let a4 = d.ln() - (-d).ln_1p() + (r + x) * ((alpha + t).ln() - (alpha + tx).ln());
        return ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + (x + 1.0) * (-d).ln_1p()
            - (r + x) * (alpha + t).ln()
            + softplus(a4);
    }
    let MbgNbdParams { r, alpha, a, b } = *p;
    let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
    let a2 = ln_gamma(a + b) + ln_gamma(b + x + 1.0) - ln_gamma(b) - ln_gamma(a + b + x + 1.0);
    let a3 = -(r + x) * (alpha + t).ln();
    let a4 = a.ln() - (b + x).ln() + (r + x) * ((alpha + t).ln() - (alpha + tx).ln());
    a1 + a2 + a3 + softplus(a4)
}

/// ln(1 + e^v) without overflow.
fn softplus(v: f64) -> f64 {
    if v > 0.0 {
        v + (-v).exp().ln_1p()
    } else {
        v.exp().ln_1p()
    }
}

/// Mean negative log-likelihood and its gradient in log parameters.
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
    // Per frequency: log-gammas, digammas and ln(b+x).
    let xt: Vec<[f64; 5]> = ix
        .xs
        .iter()
        .map(|&x| {
            [
                ln_gamma(r + x) + ln_gamma(b + x + 1.0) - ln_gamma(a + b + x + 1.0),
                digamma(r + x),
                digamma(a + b + x + 1.0),
                digamma(b + x + 1.0),
                (b + x).ln(),
            ]
        })
        .collect();
    let la: Vec<f64> = ix.times.iter().map(|u| (alpha + u).ln()).collect();
    let inv: Vec<f64> = ix.times.iter().map(|u| 1.0 / (alpha + u)).collect();
    let chunk = |rows: &[(u32, u32, u32, f64)]| -> (f64, [f64; 4]) {
        let (mut ll, mut g) = (0.0, [0.0f64; 4]);
        for &(xi, txi, ti, w) in rows {
            let x = ix.xs[xi as usize];
            let [lg, psi_rx, psi_abx, psi_bx, ln_bx] = xt[xi as usize];
            let (lt, ltx) = (la[ti as usize], la[txi as usize]);
            let (it, itx) = (inv[ti as usize], inv[txi as usize]);
            let a4 = ln_a - ln_bx + (r + x) * (lt - ltx);
            // The dropout term's share of 1 + e^a4.
            let w4 = 1.0 / (1.0 + (-a4).exp());
            ll += w * (base + lg - (r + x) * lt + softplus(a4));
            let dr = psi_rx - psi_r + ln_alpha - lt + w4 * (lt - ltx);
            let dalpha = r / alpha - (r + x) * it + w4 * (r + x) * (it - itx);
            let da = psi_ab - psi_abx + w4 / a;
            let db = psi_ab + psi_bx - psi_b - psi_abx - w4 / (b + x);
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

/// The MBG/NBD likelihood's limit as a, b -> infinity with a/(a+b) = d
/// fixed (see [`log_likelihood`]): mean negative log-likelihood and
/// gradient in (ln r, ln alpha, logit d). With w the dropout term's share,
/// d ln L / d logit d = w - (x+1) d.
fn one_dropout_objective(theta: &[f64], ix: &Indexed, grad: &mut [f64]) -> f64 {
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
            let (lt, ltx) = (la[ti as usize], la[txi as usize]);
            let (it, itx) = (inv[ti as usize], inv[txi as usize]);
            let a4 = ln_d - ln_q + (r + x) * (lt - ltx);
            let w4 = 1.0 / (1.0 + (-a4).exp());
            ll += w * (lg + r * ln_alpha + (x + 1.0) * ln_q - (r + x) * lt + softplus(a4));
            g[0] += w * (psi + ln_alpha - lt + w4 * (lt - ltx)) * r;
            g[1] += w * (r / alpha - (r + x) * it + w4 * (r + x) * (it - itx)) * alpha;
            g[2] += w * (w4 - (x + 1.0) * d);
        }
        (ll, g)
    };
    let (ll, g) = fit::parallel_sum(&ix.rows, chunk);
    for i in 0..3 {
        grad[i] = -g[i] / ix.total;
    }
    -ll / ix.total
}

/// The slope of the mean MBG/NBD log-likelihood leaving the one-dropout
/// limit at (ln r, ln alpha, logit d) = `theta`, per unit of
/// s = 1 / (a + b + 1) at a/(a+b) = d fixed: BG/NBD's (its
/// `dropout_spread_slope`) with x + 1 dropout chances for x. A customer's
/// likelihood is f(p) = (1-p)^(x+1) A0 + p (1-p)^x B0, and
/// f''(d) d (1-d) / (2 f(d)) = x [w_A (x+1) d + w_B ((x+1) d - 2)] / (2 (1-d)),
/// w_A, w_B the two terms' shares: 0 for x = 0.
fn dropout_spread_slope(theta: &[f64], ix: &Indexed) -> f64 {
    let (r, alpha) = (theta[0].exp(), theta[1].exp());
    let (ln_d, ln_q) = ln_logistic(theta[2]);
    let d = ln_d.exp();
    let la: Vec<f64> = ix.times.iter().map(|u| (alpha + u).ln()).collect();
    let sum: f64 = ix
        .rows
        .iter()
        .filter(|&&(xi, ..)| ix.xs[xi as usize] > 0.0)
        .map(|&(xi, txi, ti, w)| {
            let x = ix.xs[xi as usize];
            let a4 = ln_d - ln_q + (r + x) * (la[ti as usize] - la[txi as usize]);
            let wb = 1.0 / (1.0 + (-a4).exp());
            w * x * ((1.0 - wb) * (x + 1.0) * d + wb * ((x + 1.0) * d - 2.0))
        })
        .sum();
    sum * 0.5 * (-ln_q).exp() / ix.total
}

/// Maximum-likelihood fit over weighted patterns (L-BFGS in log-parameter
/// space from several starts; the no-dropout limit tried first).
pub fn fit(patterns: &[Pattern]) -> FitResult {
    fit_with(patterns, 0.0, stage_sample_size)
}

/// [`fit`] with the L2 penalty `penalizer` on the log parameters (alpha
/// relative to the customers' mean age T, the others unit-free).
pub fn fit_penalised(patterns: &[Pattern], penalizer: f64) -> FitResult {
    fit_with(patterns, penalizer, stage_sample_size)
}

/// [`fit_penalised`], starting on a sample when `sample` gives a size.
/// Without a penalty the no-dropout boundary a = 0 (the NBD model) is tried
/// first.
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
    let mut f = found.result(total, |v| MbgNbdParams {
        r: v[0],
        alpha: v[1],
        a: v[2],
        b: v[3],
    });
    if let Some(&[ln_r, ln_alpha, logit_d]) = found.limit.get(..3) {
        let d = ln_logistic(logit_d).0.exp();
        f.params = MbgNbdParams::one_dropout(ln_r.exp(), ln_alpha.exp(), d);
        f.at_bound = f.at_bound.map(|b| format!("{b}; dropout = {d:.6}"));
    }
    if let [ln_rate] = found.limit[..] {
        // The same limit as BG/NBD's, kept the same way (r infinite, alpha
        // holding alpha / r); every function of this module reads it
        // through BG/NBD's.
        let rate = ln_rate.exp();
        let p = BgNbdParams::poisson(rate);
        f.params = MbgNbdParams {
            r: p.r,
            alpha: p.alpha,
            a: p.a,
            b: p.b,
        };
        f.at_bound = f
            .at_bound
            .map(|b| format!("{b}; rate = {rate:.6e} per time unit"));
    }
    f
}

/// Start points (log parameters) for data whose mean age T is `scale`.
fn starts(scale: f64) -> Vec<Vec<f64>> {
    [
        [0.5, 0.1 * scale, 0.8, 2.5],
        [1.0, scale, 0.5, 1.0],
        [0.1, 0.01 * scale, 1.5, 5.0],
    ]
    .iter()
    .map(|s| s.iter().map(|v: &f64| v.ln()).collect())
    .collect()
}

/// The largest slope of the mean log-likelihood leaving the NBD limit a = 0
/// at (ln r, ln alpha) = `theta`, per unit of a. Towards a given b,
/// d ln L / da at a = 0 is, per customer, psi(b) - psi(b+x+1) + R/(b+x),
/// R = ((alpha+T)/(alpha+t_x))^(r+x) (the derivatives of the module's A2
/// and of ln(1 + e^A4) at a = 0), maximised over b from e^-10 to e^20
/// (0.1 apart in ln b); towards b -> infinity at fixed a/b it is
/// R - (x+1) per unit of a/b. The larger is returned (infinite when R
/// overflows: customers who look long gone).
fn dropout_slope(theta: &[f64], ix: &Indexed) -> f64 {
    let (r, alpha) = (theta[0].exp(), theta[1].exp());
    let la: Vec<f64> = ix.times.iter().map(|u| (alpha + u).ln()).collect();
    slope_into_dropout(ix, |x, txi, ti| {
        (r + x) * (la[ti as usize] - la[txi as usize])
    })
}

/// The largest slope of the mean MBG/NBD log-likelihood leaving the
/// Poisson limit (a = 0 and r, alpha -> infinity at r/alpha = `rate`,
/// e^`theta[0]`), over both directions off it: into dropout,
/// [`dropout_slope`] at the limit, where R tends to e^(rate (T - t_x));
/// into heterogeneity in purchasing, BG/NBD's (the same NBD limit).
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

/// [`dropout_slope`] given ln R per customer (of its frequency, recency
/// index and T index).
fn slope_into_dropout(ix: &Indexed, ln_r: impl Fn(f64, u32, u32) -> f64) -> f64 {
    let mut by_x = vec![(0.0f64, 0.0f64); ix.xs.len()];
    for &(xi, txi, ti, w) in &ix.rows {
        let x = ix.xs[xi as usize];
        let e = &mut by_x[xi as usize];
        e.0 += w;
        e.1 += w * ln_r(x, txi, ti).exp();
    }
    let towards_infinity: f64 = ix
        .xs
        .iter()
        .zip(&by_x)
        .map(|(x, (w, s))| s - (x + 1.0) * w)
        .sum::<f64>()
        / ix.total;
    let at = |b: f64| -> f64 {
        let psi_b = digamma(b);
        ix.xs
            .iter()
            .zip(&by_x)
            .map(|(x, (w, s))| w * (psi_b - digamma(b + x + 1.0)) + s / (b + x))
            .sum::<f64>()
            / ix.total
    };
    (0..=300)
        .map(|k| at((-10.0 + 0.1 * k as f64).exp()))
        .fold(towards_infinity, |m, v| {
            if m.is_nan() || v.is_nan() {
                f64::NAN
            } else {
                m.max(v)
            }
        })
}

/// P(alive | x, t_x, T) = 1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x))
/// (Batislam et al. 2007, eq. 7); 1 in the NBD limit a = 0.
pub fn p_alive(p: &MbgNbdParams, x: f64, tx: f64, t: f64) -> f64 {
    if p.a == 0.0 {
        return 1.0;
    }
    // a/(b+x) tends to d/(1-d) in the one-dropout limit.
    let odds = match p.common_dropout() {
        Some(d) => d.ln() - (-d).ln_1p(),
        None => p.a.ln() - (p.b + x).ln(),
    };
    let l = odds + (p.r + x) * ((p.alpha + t).ln() - (p.alpha + tx).ln());
    if l > 700.0 {
        0.0
    } else {
        1.0 / (1.0 + l.exp())
    }
}

/// E[Y(h) | x, t_x, T]: expected purchases in (T, T + h] (Batislam et al.
/// 2007, eq. 8): (a+b+x)/(a-1) [1 - ((alpha+T)/(alpha+T+h))^(r+x)
/// 2F1(r+x, b+x+1; a+b+x; z)] P(alive). The bracket is BG/NBD's eq. 10
/// bracket with b + 1 for b (the dropout probability of a customer alive
/// after x + 1 purchases is Beta(a, b+x+1)), so it is evaluated by
/// [`conditional_bracket`], defined over the whole parameter space.
pub fn expected_purchases(p: &MbgNbdParams, h: f64, x: f64, tx: f64, t: f64) -> f64 {
    bracket(p, h, x, t) * p_alive(p, x, tx, t)
}

/// E[Y(h) | x, t_x, T] / P(alive): the factor of [`expected_purchases`]
/// that does not depend on recency.
/// In the one-dropout limit Beta(a, b+1) is the point mass at d too.
pub fn bracket(p: &MbgNbdParams, h: f64, x: f64, t: f64) -> f64 {
    let shifted = match p.common_dropout() {
        Some(_) => p.as_bgnbd(),
        None => BgNbdParams {
            r: p.r,
            alpha: p.alpha,
            a: p.a,
            b: p.b + 1.0,
        },
    };
    conditional_bracket(&shifted, h, x, t)
}

// ---------------------------------------------------------------------------
// DataFusion wrappers

const PARAMS: &[&str] = &["r", "alpha", "a", "b"];

/// The fields of a fit's struct: the parameters, the mean dropout
/// probability a / (a + b), which the one-dropout limit needs (a and b are
/// NULL there), and the mean purchase rate r / alpha, which the Poisson
/// limit needs (r, alpha and b are NULL there), as BG/NBD's.
const FIT_FIELDS: &[&str] = &["r", "alpha", "a", "b", "dropout", "rate"];

/// The fields the scalar functions read (dropout and rate optional).
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
        let p = f.params.as_bgnbd();
        // The one-dropout limit's a and b are infinite: NULL beside dropout;
        // the Poisson limit's r and alpha: NULL beside rate (b no effect).
        let (a, b) = match (p.common_dropout(), p.poisson_rate()) {
            (Some(_), _) => (f64::NAN, f64::NAN),
            (_, Some(_)) => (0.0, f64::NAN),
            _ => (p.a, p.b),
        };
        let (r, alpha) = match p.poisson_rate() {
            Some(_) => (f64::NAN, f64::NAN),
            None => (p.r, p.alpha),
        };
        fit_scalar_uncertain(
            &[
                ("r", r),
                ("alpha", alpha),
                ("a", a),
                ("b", b),
                ("dropout", p.mean_dropout()),
                ("rate", p.mean_rate()),
            ],
            &super::bgnbd::published_log_cov(&f),
            &f,
        )
    }
}

/// The parameters of a struct's fields (NULL as NaN), as BG/NBD's: `None`
/// when one is NULL except b at a = 0 and a, b beside a fifth field
/// `dropout` (the one-dropout limit); an error when one is not positive.
pub(crate) fn params(v: &[f64]) -> std::result::Result<Option<MbgNbdParams>, String> {
    Ok(super::bgnbd::params(v)?.map(|p| MbgNbdParams {
        r: p.r,
        alpha: p.alpha,
        a: p.a,
        b: p.b,
    }))
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
            "mbgnbd_fit",
            &["frequency", "recency", "t"],
            "MBG/NBD maximum-likelihood fit (Batislam, Denizel & Filiztekin 2007); customers sharing a pattern are fitted once",
        ),
        Function::scalar(
            "mbgnbd_p_alive",
            &[("params", SCALAR_FIELDS)],
            &["frequency", "recency", "t"],
            eval_p_alive,
            "MBG/NBD probability the customer is still alive at t",
        ),
        Function::scalar(
            "mbgnbd_expected_purchases",
            &[("params", SCALAR_FIELDS)],
            &["horizon", "frequency", "recency", "t"],
            eval_expected,
            "MBG/NBD expected purchases in (t, t + horizon], horizon in the time unit of the fit",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf::bgnbd::tests::patterns;
    use crate::udf::pareto_nbd::tests::lifetimes_reference;

    fn reference_params() -> (MbgNbdParams, f64) {
        let v = &lifetimes_reference("params", "mbgnbd")[0];
        let p = MbgNbdParams {
            r: v[0],
            alpha: v[1],
            a: v[2],
            b: v[3],
        };
        (p, v[4])
    }

    #[test]
    fn the_one_dropout_limit_is_the_likelihood_at_a_concentrated_beta() {
        // a, b -> infinity with a/(a+b) = d: the log-likelihood, P(alive)
        // and E[Y(h)] at Beta(d K, (1-d) K), K = 1e6, are the limit's
        // within O(1/K) (1e-4 relative for x <= 5); the objective's
        // gradient matches central differences (1e-6), and the slope off
        // the limit matches (LL(K = 1e5) - LL(limit)) (K + 1) within 1e-3
        // relative, on CDNOW's patterns.
        let (r, alpha, d): (f64, f64, f64) = (0.8, 6.0, 0.15);
        let limit = MbgNbdParams::one_dropout(r, alpha, d);
        let near = |k: f64| MbgNbdParams {
            r,
            alpha,
            a: d * k,
            b: (1.0 - d) * k,
        };
        let rel = |u: f64, v: f64| (u / v - 1.0).abs();
        for (x, tx, t, h) in [
            (0.0, 0.0, 30.0, 52.0),
            (1.0, 5.0, 40.0, 10.0),
            (5.0, 85.0, 90.0, 500.0),
        ] {
            let n = near(1e6);
            let pairs = [
                (
                    log_likelihood(&limit, x, tx, t),
                    log_likelihood(&n, x, tx, t),
                ),
                (p_alive(&limit, x, tx, t), p_alive(&n, x, tx, t)),
                (
                    expected_purchases(&limit, h, x, tx, t),
                    expected_purchases(&n, h, x, tx, t),
                ),
            ];
            for (u, v) in pairs {
                assert!(rel(u, v) < 1e-4, "x={x}: {u} vs {v}");
            }
        }
        let pats = patterns(true);
        let ix = Indexed::new(&pats);
        let th = [r.ln(), alpha.ln(), (d / (1.0 - d)).ln()];
        let mut g = [0.0; 3];
        let f = one_dropout_objective(&th, &ix, &mut g);
        let mean_ll = |p: &MbgNbdParams| {
            pats.iter()
                .map(|q| q.weight * log_likelihood(p, q.frequency, q.recency, q.t))
                .sum::<f64>()
                / ix.total
        };
        assert!(rel(-f, mean_ll(&limit)) < 1e-12, "{f}");
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
        let fd = (mean_ll(&near(1e5)) - mean_ll(&limit)) * (1e5 + 1.0);
        let slope = dropout_spread_slope(&th, &ix);
        assert!(rel(fd, slope) < 1e-3, "{fd} vs {slope}");
    }

    #[test]
    fn one_dropout_for_everyone_is_a_verified_boundary() {
        // udf::shapes::one_dropout_from_first's shop (MBG/NBD's story):
        // everyone leaves with probability 0.1 after each purchase, the
        // first included. The fit ends at the limit a, b =
        // infinity (verified boundary) with dropout 0.1 within 10%
        // (sampling error of 20,000 customers), within 100 iterations.
        let pats = crate::udf::shapes::one_dropout_from_first(20_000, 9, 0.1);
        let f = fit(&pats);
        println!(
            "{} iterations, {}, {:?}",
            f.iterations, f.status, f.at_bound
        );
        assert!(
            f.converged && f.status == "boundary" && f.iterations < 100,
            "{f:?}"
        );
        let d = f.params.common_dropout().unwrap_or(f64::NAN);
        assert!((d / 0.1 - 1.0).abs() < 0.1, "{f:?}");
        let q = params(&[f.params.r, f.params.alpha, f64::NAN, f64::NAN, d])
            .unwrap()
            .unwrap();
        assert_eq!(q, f.params);
    }

    #[test]
    fn fits_cdnow_as_lifetimes_does() {
        // scripts/lifetimes_models_reference.py: lifetimes 0.11.3's
        // ModifiedBetaGeoFitter on the CDNOW sample. Both maximise the same
        // likelihood; lifetimes stops at scipy's default tolerances, so
        // 1e-3 relative on parameters and 0.01 on the log-likelihood (ours
        // at least as high, less 1e-6).
        let (want, ll) = reference_params();
        let f = fit(&patterns(true));
        assert!(f.converged && f.status == "converged", "{f:?}");
        for (got, w) in [
            (f.params.r, want.r),
            (f.params.alpha, want.alpha),
            (f.params.a, want.a),
            (f.params.b, want.b),
        ] {
            assert!((got / w - 1.0).abs() < 1e-3, "{got} vs {w}: {f:?}");
        }
        assert!(
            (f.log_likelihood - ll).abs() < 0.01 && f.log_likelihood >= ll - 1e-6,
            "{f:?} vs {ll}"
        );
        println!("mbgnbd_fit on CDNOW: {} iterations", f.iterations);
    }

    #[test]
    fn matches_lifetimes_per_customer_at_its_parameters() {
        // The same script: P(alive) and E[Y(h)], h = 10, 52 weeks, at
        // lifetimes' parameters (every 10th customer, every x >= 15); the
        // log-likelihood there is lifetimes' (0.01). 1e-6 (absolute for
        // P(alive), relative for E[Y(h)] above 1): both are closed forms
        // but lifetimes' 2F1 is scipy's.
        let (p, ll) = reference_params();
        let rows = lifetimes_reference("customer", "mbgnbd");
        assert!(rows.len() > 400, "{}", rows.len());
        for v in rows {
            let (x, tx, t, h, alive, e) = (v[0], v[1], v[2], v[3], v[4], v[5]);
            let got = p_alive(&p, x, tx, t);
            assert!((got - alive).abs() < 1e-6, "{v:?}: P(alive) {got}");
            let got = expected_purchases(&p, h, x, tx, t);
            assert!((got - e).abs() < 1e-6 * e.abs().max(1.0), "{v:?}: E {got}");
        }
        let total: f64 = patterns(true)
            .iter()
            .map(|q| q.weight * log_likelihood(&p, q.frequency, q.recency, q.t))
            .sum();
        assert!((total - ll).abs() < 0.01, "{total} vs {ll}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let ix = Indexed::new(&patterns(true));
        for th in [[0.0, 1.0, -0.2, 0.9], [-1.4, 1.5, -0.23, 0.89]] {
            let mut g = [0.0; 4];
            objective_indexed(&th, &ix, &mut g);
            for i in 0..4 {
                let h = 1e-6;
                let (mut up, mut dn) = (th, th);
                up[i] += h;
                dn[i] -= h;
                let mut tmp = [0.0; 4];
                let d = (objective_indexed(&up, &ix, &mut tmp)
                    - objective_indexed(&dn, &ix, &mut tmp))
                    / (2.0 * h);
                assert!((d - g[i]).abs() < 1e-6, "i={i}: {d} vs {}", g[i]);
            }
        }
    }

    #[test]
    fn one_time_buyers_can_be_gone() {
        // Unlike BG/NBD, x = 0 long ago is not P(alive) = 1: at CDNOW-like
        // parameters 1 / (1 + a/b ((alpha+T)/alpha)^r) (computed here).
        let p = MbgNbdParams {
            r: 0.5,
            alpha: 6.0,
            a: 0.9,
            b: 2.0,
        };
        let want = 1.0 / (1.0 + 0.9 / 2.0 * (46.0f64 / 6.0).powf(0.5));
        assert!((p_alive(&p, 0.0, 0.0, 40.0) - want).abs() < 1e-15);
        let zero = MbgNbdParams { a: 0.0, ..p };
        assert_eq!(p_alive(&zero, 0.0, 0.0, 40.0), 1.0);
    }
}
