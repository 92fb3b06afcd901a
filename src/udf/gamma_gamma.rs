//! Gamma-Gamma spend model (Fader & Hardie 2013, "The Gamma-Gamma Model of
//! Monetary Value"): likelihood, maximum-likelihood fit over weighted
//! patterns, conditional expected spend; then `gamma_gamma_fit` and
//! `gamma_gamma_expected_value`; then tests.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};

use super::args::{fit_scalar_uncertain, fit_type_uncertain, null_struct, Collector, Weighted};
use super::Function;
use crate::numeric::fit;
use crate::numeric::optim::{stage_sample_size, systematic_sample, Options};
use crate::numeric::special::{digamma, ln_gamma};

/// Parameters: shape p of spend per transaction, shape q and scale v
/// (the paper's gamma) of its rate across customers (Colombo & Jiang 1999;
/// Fader, Hardie & Lee 2005, "RFM and CLV").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGammaParams {
    /// Shape of the gamma distribution of one transaction's spend.
    pub p: f64,
    /// Shape of the gamma distribution of its rate across customers.
    pub q: f64,
    /// Scale of that distribution (the paper's gamma), in the unit of money.
    pub v: f64,
    /// v / q, in the unit of money: 1 / E[rate], so p v / q is the mean
    /// spend of a customer with the average rate. The one scale left in
    /// the limit q, v -> infinity with v / q fixed (every customer has the
    /// same rate: no heterogeneity), where q and v are infinite.
    pub v_over_q: f64,
}

impl GammaGammaParams {
    /// Interior parameters (v_over_q derived).
    pub fn new(p: f64, q: f64, v: f64) -> GammaGammaParams {
        GammaGammaParams {
            p,
            q,
            v,
            v_over_q: v / q,
        }
    }

    /// The limit q, v -> infinity with v / q = `v_over_q`: one spend rate
    /// for every customer.
    pub fn no_heterogeneity(p: f64, v_over_q: f64) -> GammaGammaParams {
        GammaGammaParams {
            p,
            q: f64::INFINITY,
            v: f64::INFINITY,
            v_over_q,
        }
    }
}

/// Customers sharing (frequency, mean repeat spend), with their count.
#[derive(Debug, Clone, Copy)]
pub struct Pattern {
    /// Number of repeat purchases x.
    pub frequency: f64,
    /// Mean spend m of the repeat purchases, in the unit of money.
    pub monetary_value: f64,
    /// Number of customers sharing the pattern.
    pub weight: f64,
}

/// Result of a fit.
pub type FitResult = fit::FitResult<GammaGammaParams>;

/// One customer's log-likelihood of mean spend m over x transactions
/// (Fader & Hardie 2013, eq. 3; as in `lifetimes`' GammaGammaFitter).
pub fn log_likelihood(g: &GammaGammaParams, x: f64, m: f64) -> f64 {
    let GammaGammaParams { p, q, v, .. } = *g;
    ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
        + q * v.ln()
        + (p * x - 1.0) * m.ln()
        + p * x * x.ln()
        - (p * x + q) * (x * m + v).ln()
}

/// Patterns with the logs that do not depend on the parameters taken once
/// per fit, grouped by frequency.
struct Prepared {
    /// (x, m, ln m, ln x, weight)
    rows: Vec<(f64, f64, f64, f64, f64)>,
    total: f64,
}

impl Prepared {
    fn new(pts: &[Pattern]) -> Prepared {
        let mut rows: Vec<(f64, f64, f64, f64, f64)> = pts
            .iter()
            .map(|p| {
                (
                    p.frequency,
                    p.monetary_value,
                    p.monetary_value.ln(),
                    p.frequency.ln(),
                    p.weight,
                )
            })
            .collect();
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        Prepared {
            total: pts.iter().map(|p| p.weight).sum(),
            rows,
        }
    }
}

/// Mean negative log-likelihood and its gradient in log-parameter space.
/// Terms of the frequency alone (the log-gammas and digammas) are computed
/// once per distinct frequency; the sum runs in parallel chunks, added in a
/// fixed order.
fn objective_prepared(theta: &[f64], pr: &Prepared, grad: &mut [f64]) -> f64 {
    let g = GammaGammaParams::new(theta[0].exp(), theta[1].exp(), theta[2].exp());
    let (psi_q, ln_v, lg_q) = (digamma(g.q), g.v.ln(), ln_gamma(g.q));
    let chunk = |rows: &[(f64, f64, f64, f64, f64)]| -> (f64, [f64; 3]) {
        let mut ll = 0.0;
        let mut d = [0.0f64; 3];
        let mut cur = f64::NAN;
        let (mut lg, mut psi_pxq, mut psi_px) = (0.0, 0.0, 0.0);
        for &(x, m, ln_m, ln_x, w) in rows {
            let px = g.p * x;
            if x != cur {
                cur = x;
                lg = ln_gamma(px + g.q) - ln_gamma(px) - lg_q;
                psi_pxq = digamma(px + g.q);
                psi_px = digamma(px);
            }
            let xmv = x * m + g.v;
            let lxmv = xmv.ln();
            ll += w * (lg + g.q * ln_v + (px - 1.0) * ln_m + px * ln_x - (px + g.q) * lxmv);
            d[0] += w * x * (psi_pxq - psi_px + ln_m + ln_x - lxmv);
            d[1] += w * (psi_pxq - psi_q + ln_v - lxmv);
            d[2] += w * (g.q / g.v - (px + g.q) / xmv);
        }
        (ll, d)
    };
    let (ll, d) = fit::parallel_sum(&pr.rows, chunk);
    grad[0] = -d[0] * g.p / pr.total;
    grad[1] = -d[1] * g.q / pr.total;
    grad[2] = -d[2] * g.v / pr.total;
    -ll / pr.total
}

/// The objective over plain patterns (the gradient test's entry point).
#[cfg(test)]
fn objective(theta: &[f64], pts: &[Pattern], _total: f64, grad: &mut [f64]) -> f64 {
    objective_prepared(theta, &Prepared::new(pts), grad)
}

/// Fit on customers with frequency > 0 and positive mean spend (others are
/// ignored: the model says nothing about them).
pub fn fit(patterns: &[Pattern]) -> FitResult {
    fit_with(patterns, 0.0, stage_sample_size)
}

/// [`fit`] with the L2 penalty `penalizer` on the log parameters
/// ([`fit::penalised`], v relative to the customers' mean spend, so the
/// penalised fit does not depend on the unit of money).
pub fn fit_penalised(patterns: &[Pattern], penalizer: f64) -> FitResult {
    fit_with(patterns, penalizer, stage_sample_size)
}

/// [`fit_penalised`], starting on a sample of `sample(n)` customers when
/// that is given for the n patterns fitted (`optim::staged`), drawn over
/// the patterns sorted by frequency and spend. Without a penalty the
/// no-heterogeneity boundary ([`same_rate_objective`]) is tried first.
///
/// The fit runs on spend divided by its weighted mean c, so it does not
/// depend on the unit of money (cents or millions, 1e-3 to 1e12 per
/// transaction): with m' = m / c, the likelihood at (p, q, v / c) is the
/// original at (p, q, v) times c per customer (eq. 3: the density of a mean
/// spend), so v = c v' and LL = LL' - W ln c over W customers.
fn fit_with(
    patterns: &[Pattern],
    penalizer: f64,
    sample: impl Fn(usize) -> Option<usize>,
) -> FitResult {
    let kept = || {
        patterns
            .iter()
            .filter(|p| p.frequency > 0.0 && p.monetary_value > 0.0 && p.monetary_value.is_finite())
    };
    let total: f64 = kept().map(|p| p.weight).sum();
    let scale = kept().map(|p| p.monetary_value * p.weight).sum::<f64>() / total;
    if !(total > 0.0 && scale.is_finite() && scale > 0.0) {
        return fit::Found::nothing(
            3,
            "is not identified: no customer has a repeat purchase with positive spend",
        )
        .result(0.0, |v| GammaGammaParams::new(v[0], v[1], v[2]));
    }
    let mut pts: Vec<Pattern> = kept()
        .map(|p| Pattern {
            monetary_value: p.monetary_value / scale,
            ..*p
        })
        .collect();
    // Grouped by frequency, so the objective computes its terms once per group.
    pts.sort_by(|a, b| a.frequency.total_cmp(&b.frequency));
    let prepared = Prepared::new(&pts);
    let (starts, opts) = (starts(), Options::model_fit());
    let sample = sample(pts.len()).map(|size| {
        let reweight = |p: Pattern, weight| Pattern { weight, ..p };
        Prepared::new(&systematic_sample(&pts, |p| p.weight, reweight, size))
    });
    // Spend is in units of its mean: every parameter is unit-free.
    let centre = [0.0; 3];
    let sub = sample.as_ref().map(|s| {
        fit::penalised(
            |th: &[f64], g: &mut [f64]| objective_prepared(th, s, g),
            penalizer,
            &centre,
        )
    });
    let full = fit::penalised(
        |th, g| objective_prepared(th, &prepared, g),
        penalizer,
        &centre,
    );
    let found = if penalizer > 0.0 {
        fit::minimise(full, sub, &starts, &opts, PARAMS)
    } else {
        let same = |th: &[f64], g: &mut [f64]| same_rate_objective(th, &prepared, g);
        let slope = |th: &[f64]| heterogeneity_slope(th, &prepared);
        let embed = |th: &[f64]| vec![th[0], f64::INFINITY, f64::INFINITY];
        let face = fit::Face {
            at_bound: "q, v = infinity with v/q fixed: every customer spends at one rate (no heterogeneity)".into(),
            names: &["p", "v_over_q"],
            starts: starts.iter().map(|s| vec![s[0], s[2] - s[1]]).collect(),
            objective: &same,
            off_face: &slope,
            embed: &embed,
        };
        fit::minimise_faces(full, sub, &starts, &opts, PARAMS, &[face])
    };
    let mut f = found.result(total, |v| GammaGammaParams::new(v[0], v[1], v[2]));
    if let Some(&[ln_p, ln_c]) = found.limit.get(..2) {
        f.params = GammaGammaParams::no_heterogeneity(ln_p.exp(), ln_c.exp());
    }
    f.params.v *= scale;
    f.params.v_over_q *= scale;
    f.log_likelihood -= total * scale.ln();
    f
}

/// The covariance of (ln p, ln q, ln v, ln v_over_q) of a fit (the unit of
/// money only shifts ln v, so it does not change it): at an interior
/// optimum J C J' from the inverse observed information C of (ln p, ln q,
/// ln v), ln(v/q) = ln v - ln q; in the no-heterogeneity limit that of the
/// limit's (ln p, ln v_over_q), NaN for q and v (at their bound,
/// infinity); empty when not converged.
pub fn published_log_cov(f: &FitResult) -> Vec<Vec<f64>> {
    let c = &f.log_cov;
    match c.len() {
        3 => {
            let j = [
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.0, 0.0, 1.0],
                [0.0, -1.0, 1.0],
            ];
            (0..4)
                .map(|a| {
                    (0..4)
                        .map(|b| {
                            (0..3)
                                .flat_map(|k| (0..3).map(move |l| (k, l)))
                                .map(|(k, l)| j[a][k] * c[k][l] * j[b][l])
                                .sum()
                        })
                        .collect()
                })
                .collect()
        }
        2 => {
            let at = [Some(0), None, None, Some(1)];
            (0..4)
                .map(|a| {
                    (0..4)
                        .map(|b| match (at[a], at[b]) {
                            (Some(k), Some(l)) => c[k][l],
                            _ => f64::NAN,
                        })
                        .collect()
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The fit's start points (log parameters, spend in units of its mean).
fn starts() -> Vec<Vec<f64>> {
    [
        [1.0, 1.0, 1.0],
        [5.0, 3.0, 1.0],
        [0.5, 2.0, 0.1],
        [20.0, 10.0, 5.0],
    ]
    .iter()
    .map(|s| s.iter().map(|v: &f64| v.ln()).collect())
    .collect()
}

/// The Gamma-Gamma likelihood's limit as q, v -> infinity with v/q = c:
/// every customer's rate is 1/c, so the mean of x spends is Gamma(p x,
/// rate x / c):
/// ln L = p x ln(x/c) + (p x - 1) ln m - x m / c - ln Gamma(p x)
/// (eq. 3's limit: q ln v - (p x + q) ln(x m + v) + ln Gamma(p x + q) -
/// ln Gamma(q) tends to -p x ln c - x m / c). Mean negative
/// log-likelihood and gradient in (ln p, ln c).
fn same_rate_objective(theta: &[f64], pr: &Prepared, grad: &mut [f64]) -> f64 {
    let (p, c) = (theta[0].exp(), theta[1].exp());
    let ln_c = c.ln();
    let (mut ll, mut dp, mut dc) = (0.0, 0.0, 0.0);
    let mut cur = f64::NAN;
    let (mut lg, mut psi) = (0.0, 0.0);
    for &(x, m, ln_m, ln_x, w) in &pr.rows {
        let px = p * x;
        if x != cur {
            cur = x;
            lg = ln_gamma(px);
            psi = digamma(px);
        }
        ll += w * (px * (ln_x - ln_c) + (px - 1.0) * ln_m - x * m / c - lg);
        dp += w * x * (ln_x - ln_c + ln_m - psi) * p;
        dc += w * (-px / c + x * m / (c * c)) * c;
    }
    grad[0] = -dp / pr.total;
    grad[1] = -dc / pr.total;
    -ll / pr.total
}

/// The slope of the mean Gamma-Gamma log-likelihood leaving the
/// no-heterogeneity limit at (ln p, ln c) = `theta`, per unit of s = 1/q
/// (the squared coefficient of variation of the rates across customers).
/// With rates of mean 1/c and variance s/c^2, E[L(rate)] = L(1/c) (1 +
/// s (L''/L)(1/c) / (2 c^2)) + O(s^2), and for L = rate^(p x) e^(-rate x m),
/// (L''/L)(1/c) = (p x c - x m)^2 - p x c^2: per customer the slope is
/// (x^2 (p - m/c)^2 - p x) / 2, the excess of the spread of customers'
/// mean spends over what one rate explains.
fn heterogeneity_slope(theta: &[f64], pr: &Prepared) -> f64 {
    let (p, c) = (theta[0].exp(), theta[1].exp());
    pr.rows
        .iter()
        .map(|&(x, m, _, _, w)| w * (x * x * (p - m / c).powi(2) - p * x) / 2.0)
        .sum::<f64>()
        / pr.total
}

/// E[M | x, m] = (p (v + x m)) / (p x + q - 1) (Fader & Hardie 2013, eq. 5);
/// x = 0 gives the population mean p v / (q - 1). `None` when q <= 1: the
/// population mean does not exist, and a negative "expectation" would be wrong.
/// In the no-heterogeneity limit (q, v infinite, v/q = c) it is p c for
/// every customer: eq. 5 with v = c q tends to p c as q -> infinity (one
/// rate, known exactly: a customer's own spends say nothing more).
pub fn expected_value(g: &GammaGammaParams, x: f64, m: f64) -> Option<f64> {
    if g.q.is_infinite() {
        return Some(g.p * g.v_over_q);
    }
    if g.q <= 1.0 {
        return None;
    }
    let (x, m) = if x > 0.0 && m > 0.0 {
        (x, m)
    } else {
        (0.0, 0.0)
    };
    Some(g.p * (g.v + x * m) / (g.p * x + g.q - 1.0))
}

// ---------------------------------------------------------------------------
// DataFusion wrappers

pub(crate) const PARAMS: &[&str] = &["p", "q", "v"];

/// The fields of a fit's struct: the parameters and v / q, which the
/// no-heterogeneity limit needs (q and v are NULL there).
const FIT_FIELDS: &[&str] = &["p", "q", "v", "v_over_q"];

/// The fields the scalar functions read: v_over_q is optional, so a
/// `named_struct('p', .., 'q', .., 'v', ..)` works.
pub(crate) const SCALAR_FIELDS: &[&str] = &["p", "q", "v", "v_over_q?"];

#[derive(Debug)]
struct Fit;

impl Collector for Fit {
    const WIDTH: usize = 2;
    fn validate(row: &[f64]) -> std::result::Result<(), String> {
        if !(row[0] >= 0.0 && row[0].is_finite()) {
            return Err(format!("frequency must be >= 0, got {}", row[0]));
        }
        if !row[1].is_finite() {
            return Err(format!("monetary_value must be finite, got {}", row[1]));
        }
        Ok(())
    }
    fn return_type() -> DataType {
        fit_type_uncertain(FIT_FIELDS)
    }
    fn finish(rows: &[Weighted], penalizer: f64) -> Result<ScalarValue> {
        if rows.is_empty() {
            return null_struct(&Self::return_type());
        }
        let pts: Vec<Pattern> = rows
            .iter()
            .map(|(k, w)| Pattern {
                frequency: k[0],
                monetary_value: k[1],
                weight: *w,
            })
            .collect();
        let f = fit_penalised(&pts, penalizer);
        fit_scalar_uncertain(
            &[
                ("p", f.params.p),
                ("q", f.params.q),
                ("v", f.params.v),
                ("v_over_q", f.params.v_over_q),
            ],
            &published_log_cov(&f),
            &f,
        )
    }
}

/// The parameters of a struct's fields p, q, v, v_over_q (NULL as NaN;
/// v_over_q may be absent): `None` when one is NULL (a fit that did not
/// converge), except q and v in the no-heterogeneity limit, which a
/// boundary fit publishes NULL beside v_over_q; an error when one is not
/// positive.
pub(crate) fn params(v: &[f64]) -> std::result::Result<Option<GammaGammaParams>, String> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if v[1].is_nan() && v[2].is_nan() && positive(v[3]) && positive(v[0]) {
        return Ok(Some(GammaGammaParams::no_heterogeneity(v[0], v[3])));
    }
    let g = GammaGammaParams::new(v[0], v[1], v[2]);
    if [g.p, g.q, g.v].iter().any(|x| x.is_nan()) {
        return Ok(None);
    }
    if [g.p, g.q, g.v].iter().all(|x| positive(*x)) {
        Ok(Some(g))
    } else {
        Err(format!(
            "parameters must be positive, got p={}, q={}, v={}",
            g.p, g.q, g.v
        ))
    }
}

fn eval_expected(pv: &[f64], v: &[f64]) -> std::result::Result<Option<f64>, String> {
    let Some(g) = params(pv)? else {
        return Ok(None);
    };
    if !(v[0] >= 0.0 && v[0].is_finite()) {
        return Err(format!("frequency must be >= 0, got {}", v[0]));
    }
    Ok(expected_value(&g, v[0], v[1]))
}

/// The SQL functions of this model.
pub fn functions() -> Vec<Function> {
    vec![
        Function::fit::<Fit>(
            "gamma_gamma_fit",
            &["frequency", "monetary_value"],
            "Gamma-Gamma spend model fit (Fader & Hardie 2013) on customers with frequency > 0 and positive spend",
        ),
        Function::scalar(
            "gamma_gamma_expected_value",
            &[("params", SCALAR_FIELDS)],
            &["frequency", "monetary_value"],
            eval_expected,
            "expected average transaction value; NULL when q <= 1 (no population mean)",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf::bgnbd::tests::cdnow_summary;

    fn patterns() -> Vec<Pattern> {
        cdnow_summary()
            .into_iter()
            .filter(|r| r.0 > 0.0)
            .map(|r| Pattern {
                frequency: r.0,
                monetary_value: r.3,
                weight: 1.0,
            })
            .collect()
    }

    #[test]
    fn fits_cdnow_as_published() {
        // Fader & Hardie (2013): p = 6.25, q = 3.74, gamma = 15.44 on the 946
        // customers with x > 0. Tolerance 0.01.
        let pts = patterns();
        assert_eq!(pts.len(), 946);
        let f = fit(&pts);
        assert!(f.converged, "{f:?}");
        assert!((f.params.p - 6.25).abs() < 0.01, "{f:?}");
        assert!((f.params.q - 3.74).abs() < 0.01, "{f:?}");
        assert!((f.params.v - 15.44).abs() < 0.01, "{f:?}");
    }

    #[test]
    fn standard_errors_match_the_reference() {
        // scripts/se_reference.py (lifetimes' likelihood, autograd's exact
        // Hessian, delta method): p 1.190, q 0.2902, v 4.160, v/q 0.8675.
        // 1e-4 relative (custval differences its analytic gradient).
        let f = fit(&patterns());
        let cov = published_log_cov(&f);
        let values = [f.params.p, f.params.q, f.params.v, f.params.v_over_q];
        let want = crate::udf::bgnbd::tests::se_reference("gamma_gamma");
        assert_eq!(want.len(), 4);
        for (i, (name, v, se)) in want.iter().enumerate() {
            assert!((values[i] / v - 1.0).abs() < 1e-5, "{name}: {f:?}");
            let got = values[i] * cov[i][i].sqrt();
            assert!((got / se - 1.0).abs() < 1e-4, "{name}: se {got} vs {se}");
        }
    }

    #[test]
    fn starting_on_a_sample_reaches_the_same_optimum() {
        // As for BG/NBD: the direct fit's optimum to 1e-6 relative, and the
        // published values within 0.01.
        let pts = patterns();
        let direct = fit_with(&pts, 0.0, |_| None);
        let staged = fit_with(&pts, 0.0, |_| Some(300));
        assert!(direct.converged && staged.converged, "{staged:?}");
        for (x, y) in [
            (direct.params.p, staged.params.p),
            (direct.params.q, staged.params.q),
            (direct.params.v, staged.params.v),
        ] {
            assert!((x / y - 1.0).abs() < 1e-6, "{direct:?} {staged:?}");
        }
        assert!((staged.params.q - 3.74).abs() < 0.01, "{staged:?}");
    }

    #[test]
    fn expected_spend_matches_hardies_note_025() {
        // Hardie, note 025 spreadsheet: E[M] for customers 1..10; 0.01. Evaluated
        // at the fitted parameters: the published p, q, gamma are rounded to 2
        // decimals, which alone moves customer 1 by 0.014.
        let want = [
            24.65, 18.91, 35.17, 35.17, 35.17, 71.46, 18.91, 35.17, 27.28, 35.17,
        ];
        let f = fit(&patterns());
        let rows = cdnow_summary();
        for (i, w) in want.iter().enumerate() {
            let (x, _, _, m) = rows[i];
            let e = expected_value(&f.params, x, m).unwrap();
            assert!((e - w).abs() < 0.01, "customer {}: {e} vs {w}", i + 1);
        }
    }

    #[test]
    fn fits_do_not_depend_on_the_unit_of_money() {
        // Eq. 3 is scale-free: amounts x 10^k give the same p and q and
        // v x 10^k, converged, and LL - W k ln 10 over the W customers
        // (the density of a mean spend), for k = -3..=12 (cents to
        // high-nominal currencies). 1e-6 relative to the k = 0 fit.
        let base = fit(&patterns());
        let w = patterns().len() as f64;
        for k in -3..=12 {
            let c = 10f64.powi(k);
            let pts: Vec<Pattern> = patterns()
                .into_iter()
                .map(|p| Pattern {
                    monetary_value: p.monetary_value * c,
                    ..p
                })
                .collect();
            let f = fit(&pts);
            assert!(f.converged, "k={k}: {f:?}");
            assert!(
                (f.params.p / base.params.p - 1.0).abs() < 1e-6,
                "k={k}: {f:?}"
            );
            assert!(
                (f.params.q / base.params.q - 1.0).abs() < 1e-6,
                "k={k}: {f:?}"
            );
            assert!(
                (f.params.v / (base.params.v * c) - 1.0).abs() < 1e-6,
                "k={k}: {f:?}"
            );
            let ll = base.log_likelihood - w * c.ln();
            assert!((f.log_likelihood / ll - 1.0).abs() < 1e-6, "k={k}: {f:?}");
        }
    }

    #[test]
    fn no_repeat_buyer_is_not_identified() {
        let f = fit(&[Pattern {
            frequency: 0.0,
            monetary_value: 0.0,
            weight: 5.0,
        }]);
        assert!(!f.converged);
        assert!(f.params.p.is_nan() && f.log_likelihood.is_nan(), "{f:?}");
        assert!(
            f.status.contains("no customer has a repeat purchase"),
            "{f:?}"
        );
    }

    #[test]
    fn no_population_mean_gives_none() {
        let g = GammaGammaParams::new(2.0, 0.9, 10.0);
        assert_eq!(expected_value(&g, 3.0, 20.0), None);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let pts = patterns();
        let total = pts.len() as f64;
        for th in [[1.8, 1.3, 2.7], [0.0, 0.5, 1.0]] {
            let mut g = [0.0; 3];
            objective(&th, &pts, total, &mut g);
            for i in 0..3 {
                let h = 1e-6;
                let (mut up, mut dn) = (th, th);
                up[i] += h;
                dn[i] -= h;
                let mut tmp = [0.0; 3];
                let d = (objective(&up, &pts, total, &mut tmp)
                    - objective(&dn, &pts, total, &mut tmp))
                    / (2.0 * h);
                assert!((d - g[i]).abs() < 1e-6, "i={i}: {d} vs {}", g[i]);
            }
        }
    }

    #[test]
    fn penalised_fits_match_the_reference() {
        // scripts/penalized_reference.py (custval's penalty on lifetimes
        // 0.11.3's Gamma-Gamma likelihood over spend / its mean, scipy):
        // penalizer 0.001, 0.01, 0.1 on CDNOW's 946 repeat buyers, 1e-5
        // relative.
        let rows = crate::udf::bgnbd::tests::penalized_reference("gamma_gamma");
        assert_eq!(rows.len(), 3);
        for (pen, want) in rows {
            let f = fit_penalised(&patterns(), pen);
            assert!(f.converged && f.status == "converged", "{pen}: {f:?}");
            let got = [f.params.p, f.params.q, f.params.v];
            for (g, w) in got.iter().zip(&want) {
                assert!((g / w - 1.0).abs() < 1e-5, "{pen}: {got:?} vs {want:?}");
            }
        }
        assert_eq!(
            fit_penalised(&patterns(), 0.0).params,
            fit(&patterns()).params
        );
    }

    #[test]
    fn spend_without_heterogeneity_is_the_one_rate_limit() {
        // udf::shapes::same_spend: every amount Gamma(3, mean 50), whatever
        // the customer. The optimum is q, v -> infinity with v/q fixed: a
        // verified boundary, q and v infinite (NULL in SQL), p the spend
        // shape 3 and p v/q the mean spend 50 (within 3% and 1%: sampling
        // error of about 200,000 amounts), in 1e-3 to 1e12 units of money
        // alike (v/q scales, p does not: 1e-6 relative).
        let pts = crate::udf::shapes::same_spend(20_000, 4);
        let f = fit(&pts);
        assert!(f.converged && f.status == "boundary", "{f:?}");
        assert!(
            f.params.q.is_infinite() && f.params.v.is_infinite(),
            "{f:?}"
        );
        assert!(
            f.at_bound
                .as_deref()
                .unwrap_or("")
                .starts_with("q, v = infinity"),
            "{f:?}"
        );
        assert!((f.params.p / 3.0 - 1.0).abs() < 0.03, "{f:?}");
        let mean = f.params.p * f.params.v_over_q;
        assert!((mean / 50.0 - 1.0).abs() < 0.01, "{f:?}");
        for k in [-3, 6, 12] {
            let c = 10f64.powi(k);
            let scaled: Vec<Pattern> = pts
                .iter()
                .map(|p| Pattern {
                    monetary_value: p.monetary_value * c,
                    ..*p
                })
                .collect();
            let g = fit(&scaled);
            assert!(g.status == "boundary", "k={k}: {g:?}");
            assert!((g.params.p / f.params.p - 1.0).abs() < 1e-6, "k={k}: {g:?}");
            assert!(
                (g.params.v_over_q / (f.params.v_over_q * c) - 1.0).abs() < 1e-6,
                "k={k}: {g:?}"
            );
        }
    }

    #[test]
    fn expected_spend_at_a_huge_q_approaches_the_one_rate_limit() {
        // Eq. 5 with v = c q: p (c q + x m) / (p x + q - 1) -> p c as
        // q -> infinity, for every customer: the relative gap is about
        // (x m / c - p x + 1) / q, under 1e-9 at q = 1e12 for these
        // customers (1e-8 asserted); the limit's parameters give p c exactly.
        let (p, c) = (3.0, 16.6);
        let limit = GammaGammaParams::no_heterogeneity(p, c);
        let near = GammaGammaParams::new(p, 1e12, c * 1e12);
        for (x, m) in [(0.0, 0.0), (1.0, 20.0), (30.0, 400.0)] {
            assert_eq!(expected_value(&limit, x, m), Some(p * c));
            let e = expected_value(&near, x, m).unwrap();
            assert!((e / (p * c) - 1.0).abs() < 1e-8, "x={x}: {e}");
        }
        // Through SQL's path: q, v NULL (NaN) with v_over_q is the limit;
        // without v_over_q, NULL; a non-positive value is an error.
        assert_eq!(params(&[p, f64::NAN, f64::NAN, c]).unwrap(), Some(limit));
        assert_eq!(params(&[p, f64::NAN, f64::NAN, f64::NAN]).unwrap(), None);
        assert!(params(&[p, -1.0, 2.0, f64::NAN]).is_err());
    }

    #[test]
    fn the_cdnow_fit_is_the_interior_search_s_bit_for_bit() {
        // CDNOW's spend is heterogeneous: the one-rate face is no optimum,
        // so the fit is the interior search alone, as before faces existed
        // (fit::minimise on spend / its mean from the same starts): the
        // same p, q and v / mean to the last bit.
        let pts = patterns();
        let scale = pts.iter().map(|p| p.monetary_value).sum::<f64>() / pts.len() as f64;
        let mut scaled: Vec<Pattern> = pts
            .iter()
            .map(|p| Pattern {
                monetary_value: p.monetary_value / scale,
                ..*p
            })
            .collect();
        scaled.sort_by(|a, b| a.frequency.total_cmp(&b.frequency));
        let pr = Prepared::new(&scaled);
        let plain = fit::minimise(
            |th, g| objective_prepared(th, &pr, g),
            None::<fn(&[f64], &mut [f64]) -> f64>,
            &starts(),
            &Options::model_fit(),
            PARAMS,
        );
        let f = fit_with(&pts, 0.0, |_| None);
        let want: Vec<f64> = plain.theta.iter().map(|t| t.exp()).collect();
        assert_eq!(
            [f.params.p, f.params.q].to_vec(),
            want[..2].to_vec(),
            "{f:?}"
        );
        assert_eq!(f.params.v, want[2] * scale, "{f:?}");
        assert!(f.status == "converged" && f.at_bound.is_none(), "{f:?}");
    }
}
