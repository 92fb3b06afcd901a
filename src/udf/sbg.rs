//! Shifted-beta-geometric model of contractual retention (Fader & Hardie
//! 2007, "How to Project Customer Retention", J. Interactive Marketing 21(1)):
//! fit from cohort survivor counts, survival and retention curves; then the
//! SQL functions `sbg_fit`, `sbg_survival`, `sbg_retention`; then tests.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};

use super::args::{fit_scalar, fit_type, null_struct, Collector, Weighted};
use super::Function;
use crate::numeric::fit;
use crate::numeric::optim::Options;
use crate::numeric::special::{digamma, ln_beta};

/// Parameters of the beta distribution of the per-period churn probability
/// across customers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SbgParams {
    /// First shape of the beta distribution.
    pub alpha: f64,
    /// Second shape of the beta distribution.
    pub beta: f64,
}

/// Result of a fit.
pub type FitResult = fit::FitResult<SbgParams>;

/// ln P(T = t) = ln B(alpha + 1, beta + t - 1) - ln B(alpha, beta) (eq. 2).
fn ln_p_churn(p: &SbgParams, t: f64) -> f64 {
    ln_beta(p.alpha + 1.0, p.beta + t - 1.0) - ln_beta(p.alpha, p.beta)
}

/// S(t) = B(alpha, beta + t) / B(alpha, beta) (eq. 3); 1 in the no-churn
/// limit alpha = 0 (every churn probability 0).
pub fn survival(p: &SbgParams, t: f64) -> f64 {
    if p.alpha == 0.0 {
        return 1.0;
    }
    (ln_beta(p.alpha, p.beta + t) - ln_beta(p.alpha, p.beta)).exp()
}

/// r_t = (beta + t - 1) / (alpha + beta + t - 1), t >= 1 (eq. 4); 1 in
/// the no-churn limit alpha = 0.
pub fn retention(p: &SbgParams, t: f64) -> f64 {
    if p.alpha == 0.0 {
        return 1.0;
    }
    (p.beta + t - 1.0) / (p.alpha + p.beta + t - 1.0)
}

/// What the no-churn boundary is, for `at_bound`.
const NO_CHURN: &str =
    "alpha = 0: nobody churns (every churn probability 0, survival 1; beta has no effect)";

fn d_ln_beta(x: f64, y: f64) -> (f64, f64) {
    let s = digamma(x + y);
    (digamma(x) - s, digamma(y) - s)
}

/// Negative mean log-likelihood and gradient in log-parameter space:
/// LL = sum_t (n_{t-1} - n_t) ln P(T=t) + n_last ln S(last) (eq. 5).
fn objective(theta: &[f64], n: &[f64], grad: &mut [f64]) -> f64 {
    let p = SbgParams {
        alpha: theta[0].exp(),
        beta: theta[1].exp(),
    };
    let (da0, db0) = d_ln_beta(p.alpha, p.beta);
    let mut ll = 0.0;
    let (mut ga, mut gb) = (0.0, 0.0);
    for t in 1..n.len() {
        let lost = n[t - 1] - n[t];
        if lost > 0.0 {
            let tt = t as f64;
            ll += lost * ln_p_churn(&p, tt);
            let (dx, dy) = d_ln_beta(p.alpha + 1.0, p.beta + tt - 1.0);
            ga += lost * (dx - da0);
            gb += lost * (dy - db0);
        }
    }
    let last = n.len() - 1;
    if n[last] > 0.0 && last > 0 {
        let tt = last as f64;
        ll += n[last] * survival(&p, tt).ln();
        let (dx, dy) = d_ln_beta(p.alpha, p.beta + tt);
        ga += n[last] * (dx - da0);
        gb += n[last] * (dy - db0);
    }
    let total = n[0].max(1.0);
    grad[0] = -ga * p.alpha / total;
    grad[1] = -gb * p.beta / total;
    -ll / total
}

/// Fit from survivors[t] = customers active at the start of period t
/// (survivors[0] = cohort size).
pub fn fit(survivors: &[f64]) -> std::result::Result<FitResult, String> {
    fit_penalised(survivors, 0.0)
}

/// [`fit`] with the L2 penalty `penalizer` on the (unit-free) log
/// parameters ([`fit::penalised`]). The likelihood reaches a boundary
/// only when nobody in the cohort churns: then every term of eq. 5 is
/// ln S(t) < 0, rising to its supremum 0 as alpha -> 0 (churn probability
/// 0 for everyone), the limiting model survival 1 with no parameter left
/// to fit. Without a penalty that is reported as such, at once: status
/// "boundary", converged, alpha 0, beta NaN (no effect), log-likelihood 0
/// (the largest a likelihood of probabilities can be, so verified), as
/// BG/NBD reports its a = 0 limit. A penalty keeps the fit interior.
pub fn fit_penalised(survivors: &[f64], penalizer: f64) -> std::result::Result<FitResult, String> {
    if survivors.len() < 2 {
        return Err("need survivors for at least periods 0 and 1".into());
    }
    for (t, v) in survivors.iter().enumerate() {
        if !(v.is_finite() && *v >= 0.0) {
            return Err(format!("survivors at period {t} must be >= 0, got {v}"));
        }
        if t > 0 && *v > survivors[t - 1] {
            return Err(format!(
                "survivors must not increase: period {t} has {v} after {}",
                survivors[t - 1]
            ));
        }
    }
    if survivors[0] <= 0.0 {
        return Err("cohort size (period 0) must be positive".into());
    }
    if penalizer == 0.0 && survivors.iter().all(|v| *v == survivors[0]) {
        return Ok(FitResult {
            params: SbgParams {
                alpha: 0.0,
                beta: f64::NAN,
            },
            log_likelihood: 0.0,
            converged: true,
            iterations: 0,
            status: "boundary".into(),
            at_bound: Some(NO_CHURN.into()),
            log_cov: Vec::new(),
        });
    }
    let opts = Options {
        grad_tol: 1e-10,
        ..Options::default()
    };
    let starts: Vec<Vec<f64>> = [[1.0f64, 1.0], [0.5, 3.0], [3.0, 0.5]]
        .iter()
        .map(|s| s.iter().map(|v| v.ln()).collect())
        .collect();
    let found = fit::minimise(
        fit::penalised(|th, g| objective(th, survivors, g), penalizer, &[0.0, 0.0]),
        None::<fn(&[f64], &mut [f64]) -> f64>,
        &starts,
        &opts,
        PARAMS,
    );
    // The objective is the mean over the cohort (at least 1).
    Ok(found.result(survivors[0].max(1.0), |v| SbgParams {
        alpha: v[0],
        beta: v[1],
    }))
}

// ---------------------------------------------------------------------------
// DataFusion wrappers

const PARAMS: &[&str] = &["alpha", "beta"];

#[derive(Debug)]
struct Fit;

impl Collector for Fit {
    const WIDTH: usize = 2;
    fn validate(row: &[f64]) -> std::result::Result<(), String> {
        if !(row[0] >= 0.0 && row[0].fract() == 0.0 && row[0] <= 100_000.0) {
            return Err(format!(
                "period must be a whole number >= 0, got {}",
                row[0]
            ));
        }
        if !(row[1] >= 0.0 && row[1].is_finite()) {
            return Err(format!("survivors must be >= 0, got {}", row[1]));
        }
        Ok(())
    }
    fn return_type() -> DataType {
        fit_type(PARAMS)
    }
    fn finish(rows: &[Weighted], penalizer: f64) -> Result<ScalarValue> {
        if rows.is_empty() {
            return null_struct(&Self::return_type());
        }
        // Rows are sorted by period; periods must be 0, 1, ..., n once each.
        let mut survivors = Vec::with_capacity(rows.len());
        for (i, (k, w)) in rows.iter().enumerate() {
            if k[0] != i as f64 || *w != 1.0 {
                return exec_err!("sbg_fit: periods must be 0, 1, 2, ... once each; period {} is missing or repeated", i);
            }
            survivors.push(k[1]);
        }
        match fit_penalised(&survivors, penalizer) {
            Ok(f) => fit_scalar(&[("alpha", f.params.alpha), ("beta", f.params.beta)], &f),
            Err(m) => exec_err!("sbg_fit: {m}"),
        }
    }
}

/// The parameters of a struct's fields (NULL as NaN): the no-churn limit
/// for alpha = 0 (beta, which has no effect there, may be NULL); `None`
/// when one is NULL (a fit that did not converge), an error when one is
/// not positive.
fn params(v: &[f64]) -> std::result::Result<Option<SbgParams>, String> {
    if v[0] == 0.0 && (v[1].is_nan() || v[1] > 0.0) {
        return Ok(Some(SbgParams {
            alpha: 0.0,
            beta: v[1],
        }));
    }
    if v[0].is_nan() || v[1].is_nan() {
        return Ok(None);
    }
    if v[0] > 0.0 && v[1] > 0.0 && v[0].is_finite() && v[1].is_finite() {
        Ok(Some(SbgParams {
            alpha: v[0],
            beta: v[1],
        }))
    } else {
        Err(format!(
            "alpha and beta must be positive, got {} and {}",
            v[0], v[1]
        ))
    }
}

fn eval_survival(pv: &[f64], v: &[f64]) -> std::result::Result<Option<f64>, String> {
    let Some(p) = params(pv)? else {
        return Ok(None);
    };
    if !(v[0] >= 0.0) {
        return Err(format!("period must be >= 0, got {}", v[0]));
    }
    Ok(Some(survival(&p, v[0])))
}

fn eval_retention(pv: &[f64], v: &[f64]) -> std::result::Result<Option<f64>, String> {
    let Some(p) = params(pv)? else {
        return Ok(None);
    };
    if !(v[0] >= 1.0) {
        return Err(format!("period must be >= 1, got {}", v[0]));
    }
    Ok(Some(retention(&p, v[0])))
}

/// The SQL functions of this model.
pub fn functions() -> Vec<Function> {
    vec![
        Function::fit::<Fit>(
            "sbg_fit",
            &["period", "survivors"],
            "shifted-beta-geometric fit (Fader & Hardie 2007) to one cohort's survivor counts, period 0 = cohort size",
        ),
        Function::scalar(
            "sbg_survival",
            &[("params", PARAMS)],
            &["period"],
            eval_survival,
            "projected share of the cohort still active at the start of period",
        ),
        Function::scalar(
            "sbg_retention",
            &[("params", PARAMS)],
            &["period"],
            eval_retention,
            "projected retention rate from period - 1 to period",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fader & Hardie (2007), Table 1: customers of 1,000 active at the start of year t.
    const REGULAR: [f64; 13] = [
        1000., 631., 468., 382., 326., 289., 262., 241., 223., 207., 194., 183., 173.,
    ];
    const HIGH_END: [f64; 13] = [
        1000., 869., 743., 653., 593., 551., 517., 491., 468., 445., 427., 409., 394.,
    ];

    fn check(data: &[f64; 13], alpha: f64, beta: f64, projected: [f64; 5], label: &str) {
        // Fitted on years 0..7 as in the paper; alpha, beta within 0.005.
        let f = fit(&data[..8]).unwrap();
        assert!(f.converged, "{f:?}");
        assert!((f.params.alpha - alpha).abs() < 0.005, "{label}: {f:?}");
        assert!((f.params.beta - beta).abs() < 0.005, "{label}: {f:?}");
        // Projected survivors for years 8..12 at the fitted parameters; within 0.5.
        for (i, want) in projected.iter().enumerate() {
            let t = 8 + i;
            let got = 1000.0 * survival(&f.params, t as f64);
            println!(
                "{label} year {t}: projected {got:.1} (expected {want}), observed {}",
                data[t]
            );
            assert!(
                (got - want).abs() < 0.5,
                "{label} year {t}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn regular_segment_matches_fader_hardie_2007() {
        check(
            &REGULAR,
            0.704,
            1.182,
            [220.1, 204.4, 191.2, 179.9, 170.0],
            "Regular",
        );
    }

    #[test]
    fn high_end_segment_matches_fader_hardie_2007() {
        check(
            &HIGH_END,
            0.668,
            3.806,
            [460.4, 435.8, 414.2, 395.1, 378.0],
            "High End",
        );
    }

    #[test]
    fn retention_rises_with_tenure_and_bad_input_is_named() {
        let p = SbgParams {
            alpha: 0.704,
            beta: 1.182,
        };
        assert!(retention(&p, 2.0) > retention(&p, 1.0));
        assert!((survival(&p, 0.0) - 1.0).abs() < 1e-12);
        assert!(fit(&[100.0, 120.0]).unwrap_err().contains("period 1"));
    }

    #[test]
    fn a_cohort_where_nobody_churns_is_the_no_churn_boundary() {
        // Survivors all 1,000: the likelihood (eq. 5) rises towards a churn
        // probability of 0, its supremum ln 1 = 0 (exact), with nothing
        // left to fit (survival 1): reported as the boundary alpha = 0,
        // converged, at once, and scored as survival and retention 1; a
        // penalizer makes it an interior fit.
        let f = fit(&[1000.0; 8]).unwrap();
        assert!(
            f.converged && f.status == "boundary" && f.iterations == 0,
            "{f:?}"
        );
        assert_eq!((f.params.alpha, f.log_likelihood), (0.0, 0.0));
        assert!(f.params.beta.is_nan() && f.at_bound.as_deref() == Some(NO_CHURN));
        // The plain likelihood approaches 0 from below as alpha -> 0:
        // at alpha = 1e-6 it is within 1e-3 of it, never above.
        let mut g = [0.0; 2];
        let near = -objective(&[1e-6f64.ln(), 0.0], &[1000.0; 8], &mut g) * 1000.0;
        assert!(near < 0.0 && near > -1e-3 * 1000.0, "{near}");
        let limit = params(&[0.0, f64::NAN]).unwrap().unwrap();
        assert_eq!((survival(&limit, 7.0), retention(&limit, 3.0)), (1.0, 1.0));
        let p = fit_penalised(&[1000.0; 8], 0.01).unwrap();
        assert!(p.converged, "{p:?}");
        // A penalizer of 0 is the plain fit.
        assert_eq!(
            fit_penalised(&REGULAR[..8], 0.0).unwrap().params,
            fit(&REGULAR[..8]).unwrap().params
        );
    }
}
