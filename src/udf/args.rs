//! Generic DataFusion wrappers shared by the model files: argument coercion,
//! reading parameter structs, scalar functions of model parameters, and
//! aggregates that collect weighted patterns or value lists and merge their
//! partial states across partitions.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Float64Builder, ListArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

/// Coerce numeric (and NULL) arguments to Float64, keep structs; anything
/// else is a planning error naming the function and argument.
fn coerce(name: &str, arg_names: &[&str], types: &[DataType]) -> Result<Vec<DataType>> {
    if types.len() != arg_names.len() {
        return plan_err!(
            "{name} takes {} arguments ({}), got {}",
            arg_names.len(),
            arg_names.join(", "),
            types.len()
        );
    }
    types
        .iter()
        .zip(arg_names)
        .map(|(t, a)| match t {
            DataType::Struct(_) => Ok(t.clone()),
            DataType::Null => Ok(DataType::Float64),
            t if t.is_numeric() => Ok(DataType::Float64),
            DataType::Dictionary(_, v) if v.is_numeric() => Ok(DataType::Float64),
            other => plan_err!("{name}: argument {a} must be numeric, got {other}"),
        })
        .collect()
}

/// Turn an argument into a Float64 array of `n` rows.
pub fn to_f64_array(v: &ColumnarValue, n: usize) -> Result<Float64Array> {
    let arr = v.to_array(n)?;
    let arr = if arr.data_type() == &DataType::Float64 {
        arr
    } else {
        cast(&arr, &DataType::Float64)?
    };
    Ok(arr.as_primitive::<Float64Type>().clone())
}

/// The named fields of a parameter-struct argument, as Float64 columns.
fn struct_fields(
    func: &str,
    arg: &str,
    v: &ColumnarValue,
    fields: &[&str],
    n: usize,
) -> Result<Vec<Float64Array>> {
    let arr = v.to_array(n)?;
    let Some(s) = arr.as_struct_opt() else {
        return exec_err!(
            "{func}: argument {arg} must be a struct with fields {}",
            fields.join(", ")
        );
    };
    fields
        .iter()
        .map(|f| {
            let Some(col) = s.column_by_name(f) else {
                return exec_err!(
                    "{func}: argument {arg} has no field {f} (expected {}); pass the struct a fit returns or named_struct(...)",
                    fields.join(", ")
                );
            };
            let col = cast(col, &DataType::Float64)?;
            let col = col.as_primitive::<Float64Type>();
            // A NULL struct row makes every field NULL.
            let merged: Float64Array = (0..n)
                .map(|i| if s.is_null(i) || col.is_null(i) { None } else { Some(col.value(i)) })
                .collect();
            Ok(merged)
        })
        .collect()
}

/// Evaluation function of a [`ModelScalar`]: parameter values (all struct
/// fields in order) and argument values; `Ok(None)` is SQL NULL, `Err` a
/// message the wrapper prefixes with the function name.
pub type ScalarEval = fn(&[f64], &[f64]) -> std::result::Result<Option<f64>, String>;

/// A scalar function of one or more parameter structs and numeric arguments,
/// returning Float64. NULL in any input gives NULL.
#[derive(Debug)]
pub struct ModelScalar {
    name: &'static str,
    structs: &'static [(&'static str, &'static [&'static str])],
    args: &'static [&'static str],
    eval: ScalarEval,
    signature: Signature,
}

impl ModelScalar {
    pub fn new(
        name: &'static str,
        structs: &'static [(&'static str, &'static [&'static str])],
        args: &'static [&'static str],
        eval: ScalarEval,
    ) -> Self {
        ModelScalar {
            name,
            structs,
            args,
            eval,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn arg_names(&self) -> Vec<&'static str> {
        self.structs
            .iter()
            .map(|(n, _)| *n)
            .chain(self.args.iter().copied())
            .collect()
    }
}

impl PartialEq for ModelScalar {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for ModelScalar {}
impl Hash for ModelScalar {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for ModelScalar {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let names = self.arg_names();
        let out = coerce(self.name, &names, arg_types)?;
        for (i, (arg, _)) in self.structs.iter().enumerate() {
            if !matches!(out[i], DataType::Struct(_)) {
                return plan_err!(
                    "{}: argument {arg} must be a parameter struct, got {}",
                    self.name,
                    arg_types[i]
                );
            }
        }
        for (j, t) in out.iter().enumerate().skip(self.structs.len()) {
            if matches!(t, DataType::Struct(_)) {
                return plan_err!(
                    "{}: argument {} must be numeric, got a struct",
                    self.name,
                    names[j]
                );
            }
        }
        Ok(out)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { n };
        let mut params: Vec<Float64Array> = Vec::new();
        for (i, (arg, fields)) in self.structs.iter().enumerate() {
            params.extend(struct_fields(self.name, arg, &args.args[i], fields, rows)?);
        }
        let values: Vec<Float64Array> = args.args[self.structs.len()..]
            .iter()
            .map(|a| to_f64_array(a, rows))
            .collect::<Result<_>>()?;
        let mut out = Float64Builder::with_capacity(rows);
        let mut p = vec![0.0; params.len()];
        let mut v = vec![0.0; values.len()];
        for row in 0..rows {
            let mut null = false;
            for (k, c) in params.iter().enumerate() {
                null |= c.is_null(row);
                p[k] = c.value(row);
            }
            for (k, c) in values.iter().enumerate() {
                null |= c.is_null(row);
                v[k] = c.value(row);
            }
            if null {
                out.append_null();
                continue;
            }
            match (self.eval)(&p, &v) {
                Ok(r) => out.append_option(r),
                Err(msg) => return exec_err!("{}: {msg}", self.name),
            }
        }
        let arr: ArrayRef = Arc::new(out.finish());
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&arr, 0)?))
        } else {
            Ok(ColumnarValue::Array(arr))
        }
    }
}

/// How a fit aggregate turns its collected rows into a result.
pub trait Collector: std::fmt::Debug + Send + Sync + 'static {
    /// Number of f64 values per row (the key of a pattern), at most 4.
    const WIDTH: usize;
    /// Validate one input row; `Err` is a message naming the bad value.
    fn validate(row: &[f64]) -> std::result::Result<(), String>;
    /// Return type of the aggregate.
    fn return_type() -> DataType;
    /// Turn weighted distinct rows into the result.
    fn finish(patterns: &[(Vec<f64>, f64)]) -> Result<ScalarValue>;
}

/// An aggregate that compresses its rows into distinct patterns with
/// weights (customers sharing a pattern share a likelihood term), so memory
/// and fit cost follow the number of patterns, not of rows. Partial states
/// are lists of pattern columns plus weights, merged by summing weights.
#[derive(Debug)]
pub struct FitAggregate<C: Collector> {
    name: &'static str,
    args: &'static [&'static str],
    signature: Signature,
    _c: std::marker::PhantomData<C>,
}

impl<C: Collector> FitAggregate<C> {
    pub fn new(name: &'static str, args: &'static [&'static str]) -> Self {
        FitAggregate {
            name,
            args,
            signature: Signature::user_defined(Volatility::Immutable),
            _c: std::marker::PhantomData,
        }
    }
}

impl<C: Collector> PartialEq for FitAggregate<C> {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl<C: Collector> Eq for FitAggregate<C> {}
impl<C: Collector> Hash for FitAggregate<C> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

fn list_field(name: &str) -> FieldRef {
    Arc::new(Field::new(
        name,
        DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true))),
        true,
    ))
}

impl<C: Collector> AggregateUDFImpl for FitAggregate<C> {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let out = coerce(self.name, self.args, arg_types)?;
        if out.iter().any(|t| matches!(t, DataType::Struct(_))) {
            return plan_err!("{}: arguments must be numeric", self.name);
        }
        Ok(out)
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(C::return_type())
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let mut f: Vec<FieldRef> = (0..C::WIDTH)
            .map(|i| {
                list_field(&format!(
                    "{}_{}",
                    args.name,
                    self.args.get(i).copied().unwrap_or("v")
                ))
            })
            .collect();
        f.push(list_field(&format!("{}_weight", args.name)));
        Ok(f)
    }
    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(PatternAccumulator::<C> {
            name: self.name,
            patterns: HashMap::new(),
            _c: std::marker::PhantomData,
        }))
    }
}

/// Accumulator behind [`FitAggregate`].
#[derive(Debug)]
struct PatternAccumulator<C: Collector> {
    name: &'static str,
    patterns: HashMap<Key, f64>,
    _c: std::marker::PhantomData<C>,
}

/// At most this many values per pattern (no allocation per row).
const MAX_WIDTH: usize = 4;
type Key = [u64; MAX_WIDTH];

fn key(row: &[f64]) -> Key {
    let mut k = [0u64; MAX_WIDTH];
    for (slot, v) in k.iter_mut().zip(row) {
        // +0.0 and -0.0 are one pattern.
        *slot = (v + 0.0).to_bits();
    }
    k
}

impl<C: Collector> Accumulator for PatternAccumulator<C> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let cols: Vec<Float64Array> = values
            .iter()
            .map(|a| to_f64_array(&ColumnarValue::Array(a.clone()), a.len()))
            .collect::<Result<_>>()?;
        let n = cols.first().map(|c| c.len()).unwrap_or(0);
        let mut row = vec![0.0; C::WIDTH];
        'rows: for i in 0..n {
            for (k, c) in cols.iter().enumerate() {
                if c.is_null(i) {
                    continue 'rows;
                }
                row[k] = c.value(i);
            }
            if let Err(msg) = C::validate(&row) {
                return exec_err!("{}: {msg}", self.name);
            }
            *self.patterns.entry(key(&row)).or_insert(0.0) += 1.0;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut patterns: Vec<(Vec<f64>, f64)> = self
            .patterns
            .iter()
            .map(|(k, w)| {
                (
                    k[..C::WIDTH].iter().map(|b| f64::from_bits(*b)).collect(),
                    *w,
                )
            })
            .collect();
        // Deterministic order: the fit's sum does not depend on hash order.
        patterns.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        C::finish(&patterns)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.patterns.capacity() * (8 * (C::WIDTH + 1) + 32)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut cols: Vec<Vec<f64>> = vec![Vec::with_capacity(self.patterns.len()); C::WIDTH + 1];
        for (k, w) in &self.patterns {
            for (j, b) in k[..C::WIDTH].iter().enumerate() {
                cols[j].push(f64::from_bits(*b));
            }
            cols[C::WIDTH].push(*w);
        }
        Ok(cols
            .into_iter()
            .map(|c| {
                SingleRowListArrayBuilder::new(Arc::new(Float64Array::from(c))).build_list_scalar()
            })
            .collect())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists: Vec<&ListArray> = states.iter().map(|s| s.as_list::<i32>()).collect();
        let n = lists.first().map(|l| l.len()).unwrap_or(0);
        for i in 0..n {
            if lists.iter().any(|l| l.is_null(i)) {
                continue;
            }
            let cols: Vec<ArrayRef> = lists.iter().map(|l| l.value(i)).collect();
            let cols: Vec<&Float64Array> = cols
                .iter()
                .map(|c| c.as_primitive::<Float64Type>())
                .collect();
            let m = cols[0].len();
            let mut row = vec![0.0; C::WIDTH];
            for r in 0..m {
                for k in 0..C::WIDTH {
                    row[k] = cols[k].value(r);
                }
                *self.patterns.entry(key(&row)).or_insert(0.0) += cols[C::WIDTH].value(r);
            }
        }
        Ok(())
    }
}

/// Build a one-row struct scalar from named Float64 / Boolean / Int64 values.
pub fn struct_scalar(fields: &[(&str, ScalarValue)]) -> Result<ScalarValue> {
    let fs: Fields = fields
        .iter()
        .map(|(n, v)| Field::new(*n, v.data_type(), true))
        .collect();
    let arrays: Vec<ArrayRef> = fields
        .iter()
        .map(|(_, v)| v.to_array())
        .collect::<Result<_>>()?;
    let s = datafusion::arrow::array::StructArray::try_new(fs, arrays, None)?;
    ScalarValue::try_from_array(&s, 0)
}

/// A NULL of a struct type (the result of a fit over no rows).
pub fn null_struct(t: &DataType) -> Result<ScalarValue> {
    ScalarValue::try_from(t)
}

/// The struct type of a fit result.
pub fn fit_type(params: &[&str], extra_int: bool) -> DataType {
    let mut fs: Vec<Field> = params
        .iter()
        .map(|p| Field::new(*p, DataType::Float64, true))
        .collect();
    fs.push(Field::new("log_likelihood", DataType::Float64, true));
    fs.push(Field::new("converged", DataType::Boolean, true));
    if extra_int {
        fs.push(Field::new("iterations", DataType::Int64, true));
    }
    DataType::Struct(fs.into())
}

/// Aggregate over a list of values with a final function of the sorted list
/// and one constant argument (fraction, points).
pub type ValuesFinish = fn(&[f64], Option<f64>) -> Result<ScalarValue>;

/// An aggregate that keeps the values it sees (one per customer, typically)
/// and computes its result from all of them at the end.
#[derive(Debug)]
pub struct ValuesAggregate {
    name: &'static str,
    args: &'static [&'static str],
    return_type: DataType,
    finish: ValuesFinish,
    signature: Signature,
}

impl ValuesAggregate {
    pub fn new(
        name: &'static str,
        args: &'static [&'static str],
        return_type: DataType,
        finish: ValuesFinish,
    ) -> Self {
        ValuesAggregate {
            name,
            args,
            return_type,
            finish,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl PartialEq for ValuesAggregate {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for ValuesAggregate {}
impl Hash for ValuesAggregate {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl AggregateUDFImpl for ValuesAggregate {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce(self.name, self.args, arg_types)
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.return_type.clone())
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            list_field(&format!("{}_values", args.name)),
            Arc::new(Field::new(
                format!("{}_arg", args.name),
                DataType::Float64,
                true,
            )),
        ])
    }
    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(ValuesAccumulator {
            name: self.name,
            values: Vec::new(),
            arg: None,
            finish: self.finish,
        }))
    }
}

#[derive(Debug)]
struct ValuesAccumulator {
    name: &'static str,
    values: Vec<f64>,
    arg: Option<f64>,
    finish: ValuesFinish,
}

impl ValuesAccumulator {
    fn set_arg(&mut self, v: f64) -> Result<()> {
        match self.arg {
            Some(a) if a != v => exec_err!(
                "{}: its second argument must be the same on every row ({a} and {v})",
                self.name
            ),
            _ => {
                self.arg = Some(v);
                Ok(())
            }
        }
    }
}

impl Accumulator for ValuesAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let x = to_f64_array(&ColumnarValue::Array(values[0].clone()), values[0].len())?;
        if let Some(a) = values.get(1) {
            let a = to_f64_array(&ColumnarValue::Array(a.clone()), a.len())?;
            for v in a.iter().flatten() {
                self.set_arg(v)?;
            }
        }
        for v in x.iter().flatten() {
            if !v.is_finite() {
                return exec_err!("{}: value {v} is not finite", self.name);
            }
            self.values.push(v);
        }
        Ok(())
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        (self.finish)(&self.values, self.arg)
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * 8
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let arr = Float64Array::from(std::mem::take(&mut self.values));
        Ok(vec![
            SingleRowListArrayBuilder::new(Arc::new(arr)).build_list_scalar(),
            ScalarValue::Float64(self.arg),
        ])
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        let args = states[1].as_primitive::<Float64Type>();
        for i in 0..lists.len() {
            if !args.is_null(i) {
                self.set_arg(args.value(i))?;
            }
            if lists.is_null(i) {
                continue;
            }
            let v = lists.value(i);
            self.values
                .extend(v.as_primitive::<Float64Type>().iter().flatten());
        }
        Ok(())
    }
}
