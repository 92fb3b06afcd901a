//! The wallet model (issue 20): `wallet_fit`, an aggregate fitting the
//! `tau` quantile of log 12-month spend given a customer's features by
//! linear quantile regression (Perlich, Rosset et al., "High-quantile
//! modeling for customer wallet estimation", KDD 2007; the solver is
//! `numeric::quantile`).
//!
//! It streams: each partition keeps at most `SAMPLE_CUSTOMERS` rows, those
//! with the smallest hash of the customer key (a bottom-k sample: the same
//! customers whatever the partitioning or row order, so a rerun gives the
//! same fit), and partial states merge by keeping the smallest again.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use super::args::struct_scalar;
use super::{signature, Function, Udf};
use crate::numeric::quantile::quantile_regression;

/// Customers the fit uses at most: a bounded sample keeps the fit's time and
/// memory flat at any size (the 0.9 quantile's sampling error from 20,000
/// customers is well below the spread between customers).
pub const SAMPLE_CUSTOMERS: usize = 20_000;
/// Fewer sampled customers than this per coefficient and the fit returns NULL
/// (the job then falls back to the peer-group quantile).
pub const MIN_CUSTOMERS_PER_COEFFICIENT: usize = 30;
/// Features a fit takes at most.
pub const MAX_FEATURES: usize = 12;

const NAME: &str = "wallet_fit";
const ARGS: &[&str] = &["customer_key", "spend", "tau", "feature..."];

/// The struct `wallet_fit` returns: `coefficients` (intercept first, then
/// one per feature, for log(1 + spend)), `customers` (sampled rows fitted),
/// `tau`, `loss` (pinball loss, summed), `iterations`, `converged`.
pub fn fit_type() -> DataType {
    DataType::Struct(
        vec![
            Field::new(
                "coefficients",
                DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true))),
                true,
            ),
            Field::new("customers", DataType::Int64, true),
            Field::new("tau", DataType::Float64, true),
            Field::new("loss", DataType::Float64, true),
            Field::new("iterations", DataType::Int64, true),
            Field::new("converged", DataType::Boolean, true),
        ]
        .into(),
    )
}

/// The wallet model's SQL functions.
pub fn functions() -> Vec<Function> {
    vec![Function {
        name: NAME,
        signature: signature(NAME, ARGS, Some(&fit_type())),
        description: "tau quantile regression of ln(1 + spend) on the features (an intercept \
                      added), over a fixed-hash sample of at most 20,000 customers; NULL with \
                      too few",
        udf: Udf::Aggregate(Arc::new(AggregateUDF::new_from_impl(WalletFit {
            signature: Signature::user_defined(Volatility::Immutable),
        }))),
    }]
}

/// The `wallet_fit` aggregate.
#[derive(Debug)]
struct WalletFit {
    signature: Signature,
}

impl PartialEq for WalletFit {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}
impl Eq for WalletFit {}
impl Hash for WalletFit {
    fn hash<H: Hasher>(&self, state: &mut H) {
        NAME.hash(state)
    }
}

impl AggregateUDFImpl for WalletFit {
    fn name(&self) -> &str {
        NAME
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < 4 || arg_types.len() > 3 + MAX_FEATURES {
            return plan_err!(
                "{NAME} takes a customer key, spend, tau and 1 to {MAX_FEATURES} features, got {} arguments",
                arg_types.len()
            );
        }
        let mut out = vec![DataType::Utf8];
        for (i, t) in arg_types.iter().enumerate().skip(1) {
            let numeric = t.is_numeric() || matches!(t, DataType::Null);
            if !numeric {
                return plan_err!("{NAME}: argument {} must be numeric, got {t}", i + 1);
            }
            out.push(DataType::Float64);
        }
        Ok(out)
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(fit_type())
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)));
        Ok(vec![
            Arc::new(Field::new(format!("{}_rows", args.name), list, true)),
            Arc::new(Field::new(
                format!("{}_tau", args.name),
                DataType::Float64,
                true,
            )),
        ])
    }
    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Sample::new(acc_args.exprs.len() - 3)))
    }
}

/// A 52-bit hash of a customer key (FNV-1a, then the splitmix64 finaliser),
/// exact as an f64 so it can travel in the Float64 state.
pub fn key_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (h ^ (h >> 31)) >> 12
}

/// The bottom-k sample: rows `[hash, ln(1 + spend), features...]`.
#[derive(Debug)]
struct Sample {
    features: usize,
    rows: Vec<Vec<f64>>,
    tau: Option<f64>,
}

impl Sample {
    fn new(features: usize) -> Self {
        Sample {
            features,
            rows: Vec::new(),
            tau: None,
        }
    }

    fn set_tau(&mut self, v: f64) -> Result<()> {
        if !(v > 0.0 && v < 1.0) {
            return exec_err!("{NAME}: tau must be between 0 and 1, got {v}");
        }
        match self.tau {
            Some(t) if t != v => {
                exec_err!("{NAME}: tau must be the same on every row ({t} and {v})")
            }
            _ => {
                self.tau = Some(v);
                Ok(())
            }
        }
    }

    fn push(&mut self, row: Vec<f64>) {
        self.rows.push(row);
        if self.rows.len() >= 2 * SAMPLE_CUSTOMERS {
            self.compact();
        }
    }

    /// Keep the `SAMPLE_CUSTOMERS` rows of smallest hash (ties by the rest
    /// of the row, so the kept set does not depend on arrival order).
    fn compact(&mut self) {
        self.rows.sort_by(|a, b| {
            a.iter()
                .zip(b.iter())
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        self.rows.truncate(SAMPLE_CUSTOMERS);
    }
}

fn f64_column(a: &ArrayRef) -> Result<Float64Array> {
    Ok(cast(a, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

impl Accumulator for Sample {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let keys = cast(&values[0], &DataType::Utf8)?;
        let keys: &StringArray = keys.as_string::<i32>();
        let spend = f64_column(&values[1])?;
        for t in f64_column(&values[2])?.iter().flatten() {
            self.set_tau(t)?;
        }
        let features: Vec<Float64Array> =
            values[3..].iter().map(f64_column).collect::<Result<_>>()?;
        'rows: for i in 0..keys.len() {
            if keys.is_null(i) || spend.is_null(i) {
                continue;
            }
            let s = spend.value(i);
            if !s.is_finite() {
                return exec_err!(
                    "{NAME}: spend {s} of customer {} is not finite",
                    keys.value(i)
                );
            }
            let mut row = Vec::with_capacity(self.features + 2);
            row.push(key_hash(keys.value(i)) as f64);
            row.push(s.max(0.0).ln_1p());
            for (k, f) in features.iter().enumerate() {
                if f.is_null(i) {
                    continue 'rows;
                }
                let v = f.value(i);
                if !v.is_finite() {
                    return exec_err!(
                        "{NAME}: feature {} of customer {} is {v}, not a finite number",
                        k + 1,
                        keys.value(i)
                    );
                }
                row.push(v);
            }
            self.push(row);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.compact();
        let coefficients = self.features + 1;
        let tau = match self.tau {
            Some(t) if self.rows.len() >= MIN_CUSTOMERS_PER_COEFFICIENT * coefficients => t,
            _ => return ScalarValue::try_from(&fit_type()),
        };
        // A feature the same for every sampled customer (no peer groups
        // mapped, one category) says nothing: it gets coefficient 0 and
        // stays out of the design, which it would make singular.
        let varies: Vec<usize> = (2..self.features + 2)
            .filter(|&k| self.rows.iter().any(|r| r[k] != self.rows[0][k]))
            .collect();
        let x: Vec<Vec<f64>> = self
            .rows
            .iter()
            .map(|r| {
                std::iter::once(1.0)
                    .chain(varies.iter().map(|&k| r[k]))
                    .collect()
            })
            .collect();
        let y: Vec<f64> = self.rows.iter().map(|r| r[1]).collect();
        let Some(fit) = quantile_regression(&x, &y, tau) else {
            return ScalarValue::try_from(&fit_type());
        };
        let mut all = vec![0.0; coefficients];
        all[0] = fit.coefficients[0];
        for (b, &k) in fit.coefficients[1..].iter().zip(&varies) {
            all[k - 1] = *b;
        }
        let coef = Float64Array::from(all);
        struct_scalar(&[
            (
                "coefficients",
                SingleRowListArrayBuilder::new(Arc::new(coef)).build_list_scalar(),
            ),
            (
                "customers",
                ScalarValue::Int64(Some(self.rows.len() as i64)),
            ),
            ("tau", ScalarValue::Float64(Some(tau))),
            ("loss", ScalarValue::Float64(Some(fit.loss))),
            (
                "iterations",
                ScalarValue::Int64(Some(fit.iterations as i64)),
            ),
            ("converged", ScalarValue::Boolean(Some(fit.converged))),
        ])
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.rows.len() * (self.features + 2) * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.compact();
        let flat: Vec<f64> = std::mem::take(&mut self.rows)
            .into_iter()
            .flatten()
            .collect();
        Ok(vec![
            SingleRowListArrayBuilder::new(Arc::new(Float64Array::from(flat))).build_list_scalar(),
            ScalarValue::Float64(self.tau),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        let taus = states[1].as_primitive::<Float64Type>();
        let width = self.features + 2;
        for i in 0..lists.len() {
            if !taus.is_null(i) {
                self.set_tau(taus.value(i))?;
            }
            if lists.is_null(i) {
                continue;
            }
            let v = lists.value(i);
            let v = v.as_primitive::<Float64Type>();
            for chunk in v.values().chunks(width) {
                self.push(chunk.to_vec());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    fn batch(ids: std::ops::Range<i64>) -> Vec<ArrayRef> {
        let n = ids.end - ids.start;
        let key: ArrayRef = Arc::new(StringArray::from_iter_values(
            ids.clone().map(|i| format!("c{i}")),
        ));
        // Spend e^(1 + x + u) - 1 with u uniform in [0, 1) by the id: the 0.9
        // quantile of ln(1 + spend) given x is 1.9 + x.
        let x: Vec<f64> = ids.clone().map(|i| (i % 7) as f64).collect();
        let spend: Vec<f64> = ids
            .clone()
            .map(|i| (1.0 + (i % 7) as f64 + ((i * 7919) % 1000) as f64 / 1000.0).exp() - 1.0)
            .collect();
        vec![
            key,
            Arc::new(Float64Array::from(spend)),
            Arc::new(Float64Array::from(vec![0.9; n as usize])),
            Arc::new(Int64Array::from(
                x.iter().map(|v| *v as i64).collect::<Vec<_>>(),
            )),
        ]
    }

    fn coefficients(s: ScalarValue) -> Vec<f64> {
        let ScalarValue::Struct(a) = s else {
            panic!("{s:?}")
        };
        let list = a.column(0).as_list::<i32>().value(0);
        list.as_primitive::<Float64Type>().values().to_vec()
    }

    /// The fit recovers the line the test data were made from (tolerance
    /// 0.02: the uniform's 0.9 quantile from a sample of 20,000), and the
    /// sample, hence the fit, is the same whether the rows arrive in one
    /// accumulator or in two merged ones.
    #[test]
    fn fits_the_quantile_line_the_same_however_partitioned() {
        let mut one = Sample::new(1);
        one.update_batch(&batch(0..30_000)).unwrap();
        let whole = one.evaluate().unwrap();
        let b = coefficients(whole.clone());
        assert!(
            (b[0] - 1.9).abs() < 0.02 && (b[1] - 1.0).abs() < 0.02,
            "{b:?}"
        );

        let (mut p, mut q) = (Sample::new(1), Sample::new(1));
        q.update_batch(&batch(15_000..30_000)).unwrap();
        p.update_batch(&batch(0..15_000)).unwrap();
        let state = q.state().unwrap();
        let arrays: Vec<ArrayRef> = state.iter().map(|s| s.to_array().unwrap()).collect();
        p.merge_batch(&arrays).unwrap();
        assert_eq!(p.evaluate().unwrap(), whole);
    }

    #[test]
    fn too_few_customers_give_null_and_bad_values_an_error() {
        let mut s = Sample::new(1);
        s.update_batch(&batch(0..40)).unwrap();
        assert!(s.evaluate().unwrap().is_null());
        let mut s = Sample::new(1);
        let mut b = batch(0..3);
        b[1] = Arc::new(Float64Array::from(vec![1.0, f64::NAN, 2.0]));
        let e = s.update_batch(&b).unwrap_err().to_string();
        assert!(e.contains("spend NaN of customer c1"), "{e}");
    }

    /// The sample must not change between releases: the hash is pinned to
    /// values computed independently (FNV-1a 64 then splitmix64's
    /// finaliser, shifted right 12, in Python).
    #[test]
    fn the_key_hash_is_fixed() {
        assert_eq!(key_hash("c1"), 1_085_027_078_557_066);
        assert_eq!(key_hash("42"), 2_887_922_676_601_187);
        assert!(key_hash("c2") < (1u64 << 52));
    }
}
