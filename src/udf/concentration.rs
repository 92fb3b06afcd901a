//! Concentration measures over per-customer values: Gini, HHI, top-share,
//! the share of customers holding a share of the total, and the Lorenz curve;
//! then their SQL aggregates; then tests.
//!
//! Negative values (customers whose returns exceed their purchases) count as
//! 0: concentration is about who holds the positive total. An empty input or
//! a total of 0 gives NULL, never NaN.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{exec_err, Result, ScalarValue};

use super::args::struct_scalar;
use super::Function;

/// Clamp negatives to 0 and sort ascending; None when the total is not positive.
/// `values` are finite: the values aggregate refuses NaN and infinities before
/// this runs, so the clamp only turns returns-heavy customers into 0.
fn prepare(values: &[f64]) -> Option<(Vec<f64>, f64)> {
    let mut v: Vec<f64> = values.iter().map(|x| x.max(0.0)).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let total: f64 = v.iter().sum();
    (total > 0.0 && !v.is_empty()).then_some((v, total))
}

/// Sample Gini: sum_i (2i - n - 1) x_(i) / (n sum x), ascending order.
pub fn gini(values: &[f64]) -> Option<f64> {
    let (v, total) = prepare(values)?;
    let n = v.len() as f64;
    let s: f64 = v
        .iter()
        .enumerate()
        .map(|(i, x)| (2.0 * (i as f64 + 1.0) - n - 1.0) * x)
        .sum();
    Some(s / (n * total))
}

/// Herfindahl-Hirschman index: sum of squared shares.
pub fn hhi(values: &[f64]) -> Option<f64> {
    let (v, total) = prepare(values)?;
    Some(v.iter().map(|x| (x / total).powi(2)).sum())
}

/// Share of the total held by the top ceil(fraction * n) customers (at least
/// one when fraction > 0): for [5, 5, 5, 5] and 0.2 the top customer, 0.25.
pub fn top_share(values: &[f64], fraction: f64) -> Option<f64> {
    if !(0.0..=1.0).contains(&fraction) {
        return None;
    }
    let (v, total) = prepare(values)?;
    let n = v.len();
    let k = ((fraction * n as f64) - 1e-9).ceil().max(0.0) as usize;
    let k = if fraction > 0.0 { k.clamp(1, n) } else { 0 };
    Some(v[n - k..].iter().sum::<f64>() / total)
}

/// Smallest fraction of customers, largest first, whose values hold at least
/// `fraction` of the total (k / n).
pub fn share_for(values: &[f64], fraction: f64) -> Option<f64> {
    if !(0.0..=1.0).contains(&fraction) {
        return None;
    }
    let (v, total) = prepare(values)?;
    let n = v.len();
    let mut acc = 0.0;
    for (k, x) in v.iter().rev().enumerate() {
        acc += x;
        if acc >= fraction * total * (1.0 - 1e-12) {
            return Some((k + 1) as f64 / n as f64);
        }
    }
    Some(1.0)
}

/// Lorenz curve value at population share p (ascending values, linear
/// between customers).
fn lorenz_at(v: &[f64], total: f64, p: f64) -> f64 {
    let n = v.len() as f64;
    let pos = p * n;
    let k = pos.floor() as usize;
    let below: f64 = v[..k.min(v.len())].iter().sum();
    let part = if k < v.len() {
        (pos - k as f64) * v[k]
    } else {
        0.0
    };
    ((below + part) / total).clamp(0.0, 1.0)
}

/// `points + 1` evenly spaced points (population share, value share), (0,0) to (1,1).
pub fn lorenz(values: &[f64], points: usize) -> Option<Vec<(f64, f64)>> {
    let (v, total) = prepare(values)?;
    let points = points.max(1);
    Some(
        (0..=points)
            .map(|i| {
                let p = i as f64 / points as f64;
                (p, lorenz_at(&v, total, p))
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------
// DataFusion wrappers

fn f64_result(v: Option<f64>) -> Result<ScalarValue> {
    Ok(ScalarValue::Float64(v))
}

fn fraction(name: &str, arg: Option<f64>) -> Result<f64> {
    match arg {
        Some(f) if (0.0..=1.0).contains(&f) => Ok(f),
        Some(f) => exec_err!("{name}: fraction must be in [0, 1], got {f}"),
        None => Ok(0.0),
    }
}

fn lorenz_type() -> DataType {
    let fields: Fields = vec![
        Field::new("population_share", DataType::Float64, true),
        Field::new("value_share", DataType::Float64, true),
    ]
    .into();
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(fields),
        true,
    )))
}

fn lorenz_finish(values: &[f64], arg: Option<f64>) -> Result<ScalarValue> {
    let points = arg.unwrap_or(100.0);
    if !((1.0..=100_000.0).contains(&points) && points.fract() == 0.0) {
        return exec_err!("lorenz: points must be a whole number in 1..=100000, got {points}");
    }
    match lorenz(values, points as usize) {
        None => ScalarValue::try_from(&lorenz_type()),
        Some(curve) => {
            let items: Vec<ScalarValue> = curve
                .iter()
                .map(|(p, s)| {
                    struct_scalar(&[
                        ("population_share", ScalarValue::Float64(Some(*p))),
                        ("value_share", ScalarValue::Float64(Some(*s))),
                    ])
                })
                .collect::<Result<_>>()?;
            let DataType::List(field) = lorenz_type() else {
                return exec_err!("lorenz: internal type error");
            };
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &items,
                field.data_type(),
            )))
        }
    }
}

/// The SQL aggregates.
pub fn functions() -> Vec<Function> {
    vec![
        Function::values(
            "gini",
            &["x"],
            DataType::Float64,
            |v, _| f64_result(gini(v)),
            "sample Gini coefficient of x (negatives count as 0; NULL when the total is 0)",
        ),
        Function::values(
            "hhi",
            &["x"],
            DataType::Float64,
            |v, _| f64_result(hhi(v)),
            "Herfindahl-Hirschman index: sum of squared shares of x",
        ),
        Function::values(
            "top_share",
            &["x", "fraction"],
            DataType::Float64,
            |v, a| f64_result(top_share(v, fraction("top_share", a)?)),
            "share of the total held by the top fraction of rows (top_share(x, 0.2): the 80/20 check)",
        ),
        Function::values(
            "share_for",
            &["x", "fraction"],
            DataType::Float64,
            |v, a| f64_result(share_for(v, fraction("share_for", a)?)),
            "smallest fraction of rows, largest first, holding `fraction` of the total",
        ),
        Function::values(
            "lorenz",
            &["x", "points"],
            lorenz_type(),
            lorenz_finish,
            "Lorenz curve of x at points + 1 evenly spaced population shares",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    // Oracles: shared/data/README.md "Concentration"; exact cases to 1e-12.
    #[test]
    fn small_cases_match_the_oracles() {
        let a = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert!((gini(&a).unwrap() - 0.4).abs() < 1e-12);
        assert!((top_share(&a, 0.2).unwrap() - 0.5).abs() < 1e-12);
        assert!((hhi(&a).unwrap() - 0.325).abs() < 1e-12);
        let b = [5.0; 4];
        assert!(gini(&b).unwrap().abs() < 1e-12);
        assert!((top_share(&b, 0.2).unwrap() - 0.25).abs() < 1e-12);
        assert!((hhi(&b).unwrap() - 0.25).abs() < 1e-12);
        let c = [0.0, 0.0, 0.0, 5.0];
        assert!((gini(&c).unwrap() - 0.75).abs() < 1e-12);
        assert!((top_share(&c, 0.2).unwrap() - 1.0).abs() < 1e-12);
        assert!((hhi(&c).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn closed_forms_of_continuous_distributions() {
        // n = 100,000 evenly spaced quantiles; within 0.001 of the closed forms.
        let n = 100_000;
        let exp: Vec<f64> = (1..=n)
            .map(|i| -(1.0 - (i as f64 - 0.5) / n as f64).ln())
            .collect();
        assert!((gini(&exp).unwrap() - 0.5).abs() < 1e-3);
        assert!((top_share(&exp, 0.2).unwrap() - 0.2 * (1.0 + 5f64.ln())).abs() < 1e-3);
        let uni: Vec<f64> = (1..=n).map(|i| (i as f64 - 0.5) / n as f64).collect();
        assert!((gini(&uni).unwrap() - 1.0 / 3.0).abs() < 1e-3);
        assert!((top_share(&uni, 0.2).unwrap() - 0.36).abs() < 1e-3);
    }

    #[test]
    fn edge_cases_are_null_not_nan() {
        assert_eq!(gini(&[]), None);
        assert_eq!(gini(&[0.0, 0.0]), None);
        assert_eq!(hhi(&[-3.0, 0.0]), None);
        // One customer holds everything.
        assert_eq!(gini(&[7.0]), Some(0.0));
        assert_eq!(share_for(&[7.0], 0.8), Some(1.0));
        // Negatives count as zero.
        assert_eq!(gini(&[-5.0, 0.0, 0.0, 5.0]), gini(&[0.0, 0.0, 0.0, 5.0]));
    }

    #[test]
    fn share_for_and_lorenz() {
        let a = [1.0, 2.0, 3.0, 4.0, 10.0];
        // 10 + 4 = 14 of 20 is 70% < 80%; with 3 it is 85%: 3 of 5 customers.
        assert_eq!(share_for(&a, 0.8), Some(0.6));
        let l = lorenz(&a, 5).unwrap();
        assert_eq!(l.first(), Some(&(0.0, 0.0)));
        assert_eq!(l.last(), Some(&(1.0, 1.0)));
        assert!((l[4].1 - 0.5).abs() < 1e-12);
    }
}
