//! Generic DataFusion wrappers shared by the model files: argument coercion,
//! reading parameter structs, scalar functions of model parameters, and
//! aggregates that collect weighted patterns or value lists and merge their
//! partial states across partitions.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, ListArray, StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::numeric::fit::FitResult;

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

/// The named fields of a parameter-struct argument, as Float64 columns. A
/// field whose name ends in `?` is optional: a struct without it gives a
/// NULL column.
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
            let (f, optional) = match f.strip_suffix('?') {
                Some(name) => (name, true),
                None => (*f, false),
            };
            let Some(col) = s.column_by_name(f) else {
                if optional {
                    return Ok(Float64Array::new_null(n));
                }
                return exec_err!(
                    "{func}: argument {arg} has no field {f} (expected {}); pass the struct a fit returns or named_struct(...)",
                    fields.iter().filter(|f| !f.ends_with('?')).copied().collect::<Vec<_>>().join(", ")
                );
            };
            let col = cast(col, &DataType::Float64)?;
            let col = col.as_primitive::<Float64Type>();
            if s.null_count() == 0 {
                // The column as it is (no copy): the common case, a fit's
                // struct repeated on every row.
                return Ok(col.clone());
            }
            // A NULL struct row makes every field NULL.
            let merged: Float64Array = (0..n)
                .map(|i| if s.is_null(i) || col.is_null(i) { None } else { Some(col.value(i)) })
                .collect();
            Ok(merged)
        })
        .collect()
}

/// Evaluation function of a [`ModelScalar`]: parameter values (all struct
/// fields in order; a NULL field, or every field of a NULL struct, as NaN,
/// for the model to decide: a limiting model may leave a parameter NULL)
/// and argument values; `Ok(None)` is SQL NULL, `Err` a message the wrapper
/// prefixes with the function name.
pub type ScalarEval = fn(&[f64], &[f64]) -> std::result::Result<Option<f64>, String>;

/// Evaluation function of a [`ModelScalar`] returning a struct of doubles:
/// parameters and arguments as [`ScalarEval`]'s, the fields written into
/// the last slice (one per field, in order; `None` a NULL field);
/// `Ok(false)` is a NULL struct, `Err` a message the wrapper prefixes with
/// the function name.
pub type StructEval = fn(&[f64], &[f64], &mut [Option<f64>]) -> std::result::Result<bool, String>;

/// What a [`ModelScalar`] returns: one double, or a struct of doubles
/// computed together (e.g. both ends of an interval, from one gradient).
#[derive(Debug, Clone, Copy)]
pub enum Output {
    /// A double.
    Double(ScalarEval),
    /// A struct with these Float64 fields.
    Struct(&'static [&'static str], StructEval),
}

impl Output {
    /// The result's type: Float64, or the struct of nullable Float64 fields.
    pub fn data_type(&self) -> DataType {
        match self {
            Output::Double(_) => DataType::Float64,
            Output::Struct(names, _) => DataType::Struct(struct_output_fields(names)),
        }
    }

    fn width(&self) -> usize {
        match self {
            Output::Double(_) => 1,
            Output::Struct(names, _) => names.len(),
        }
    }

    fn field(&self, k: usize) -> &'static str {
        match self {
            Output::Double(_) => "result",
            Output::Struct(names, _) => names[k],
        }
    }

    /// Evaluates one row into `out`; `Ok(false)` is NULL.
    fn eval(
        &self,
        p: &[f64],
        v: &[f64],
        out: &mut [Option<f64>],
    ) -> std::result::Result<bool, String> {
        match self {
            Output::Double(f) => {
                out[0] = f(p, v)?;
                Ok(out[0].is_some())
            }
            Output::Struct(_, f) => f(p, v, out),
        }
    }
}

fn struct_output_fields(names: &[&str]) -> Fields {
    names
        .iter()
        .map(|n| Field::new(*n, DataType::Float64, true))
        .collect()
}

/// A scalar function of one or more parameter structs and numeric arguments,
/// returning Float64 or a struct of Float64 fields ([`Output`]). NULL in a
/// numeric argument gives NULL; NULL parameters reach the evaluation
/// function as NaN.
#[derive(Debug)]
pub struct ModelScalar {
    name: &'static str,
    structs: &'static [(&'static str, &'static [&'static str])],
    args: &'static [&'static str],
    output: Output,
    signature: Signature,
}

impl ModelScalar {
    /// SQL function `name(struct args..., args...)`: `structs` are the
    /// parameter-struct arguments first, each with the Float64 fields `eval`
    /// receives (in that order, all structs' fields concatenated); `args` the
    /// numeric arguments after them, coerced to Float64. A wrong argument
    /// count or kind is a planning error naming the argument.
    pub fn new(
        name: &'static str,
        structs: &'static [(&'static str, &'static [&'static str])],
        args: &'static [&'static str],
        eval: ScalarEval,
    ) -> Self {
        Self::with_output(name, structs, args, Output::Double(eval))
    }

    /// [`ModelScalar::new`] with any [`Output`].
    pub fn with_output(
        name: &'static str,
        structs: &'static [(&'static str, &'static [&'static str])],
        args: &'static [&'static str],
        output: Output,
    ) -> Self {
        ModelScalar {
            name,
            structs,
            args,
            output,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// The name of the k-th parameter field over all structs.
    fn field_name(&self, k: usize) -> &'static str {
        let f = self.structs.iter().flat_map(|(_, f)| f.iter()).nth(k);
        f.map_or("?", |f| f.trim_end_matches('?'))
    }

    /// "name=value, ..." of every parameter field and argument, for errors.
    fn describe_args(&self, params: &[f64], values: &[f64]) -> String {
        let fields = (0..params.len()).map(|k| format!("{}={:?}", self.field_name(k), params[k]));
        let args = self
            .args
            .iter()
            .zip(values)
            .map(|(n, v)| format!("{n}={v:?}"));
        fields.chain(args).collect::<Vec<_>>().join(", ")
    }

    /// Every argument's name, the structs' first.
    pub(crate) fn arg_names(&self) -> Vec<&'static str> {
        self.structs
            .iter()
            .map(|(n, _)| *n)
            .chain(self.args.iter().copied())
            .collect()
    }

    /// Row `row`'s parameters into `p` and arguments into `v`; `Ok(false)`
    /// when an argument is NULL (the result is NULL). A NaN parameter that
    /// is not NULL is an error.
    fn read_row(
        &self,
        params: &[Float64Array],
        values: &[Float64Array],
        row: usize,
        p: &mut [f64],
        v: &mut [f64],
    ) -> Result<bool> {
        for (k, c) in params.iter().enumerate() {
            let null = c.nulls().is_some_and(|n| n.is_null(row));
            let x = c.values()[row];
            p[k] = if null { f64::NAN } else { x };
            if !null && x.is_nan() {
                return exec_err!(
                    "{}: parameter {} is NaN (a NaN is never a parameter; NULL is)",
                    self.name,
                    self.field_name(k)
                );
            }
        }
        let mut null = false;
        for (k, c) in values.iter().enumerate() {
            null |= c.is_null(row);
            v[k] = c.value(row);
        }
        Ok(!null)
    }

    /// The result column of builders (one per output field) and the rows'
    /// validity: a Float64 array, or a struct array NULL where invalid.
    fn finish_output(&self, mut cols: Vec<Float64Builder>, valid: Vec<bool>) -> Result<ArrayRef> {
        Ok(match self.output {
            Output::Double(_) => Arc::new(cols[0].finish()),
            Output::Struct(names, _) => {
                let arrays: Vec<ArrayRef> = cols
                    .iter_mut()
                    .map(|c| Arc::new(c.finish()) as ArrayRef)
                    .collect();
                Arc::new(StructArray::try_new(
                    struct_output_fields(names),
                    arrays,
                    Some(NullBuffer::from(valid)),
                )?)
            }
        })
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
        Ok(self.output.data_type())
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
        let width = self.output.width();
        let mut cols: Vec<Float64Builder> = (0..width)
            .map(|_| Float64Builder::with_capacity(rows))
            .collect();
        let mut valid = Vec::with_capacity(rows);
        let (mut p, mut v) = (vec![0.0; params.len()], vec![0.0; values.len()]);
        let mut out = vec![None; width];
        for row in 0..rows {
            let some = self.read_row(&params, &values, row, &mut p, &mut v)?
                && match self.output.eval(&p, &v, &mut out) {
                    Ok(some) => some,
                    Err(msg) => return exec_err!("{}: {msg}", self.name),
                };
            // Every model output is checked here, whatever the model: a
            // NaN or an infinity is a defect to report (exit 1), never a
            // value, a NULL or a 0.
            let bad = |r: &Option<f64>| r.is_some_and(|r| !r.is_finite());
            if let Some(k) = (0..width).find(|&k| some && bad(&out[k])) {
                return exec_err!(
                    "{}: the {} is {} (not finite) for {}",
                    self.name,
                    self.output.field(k),
                    out[k].unwrap_or(f64::NAN),
                    self.describe_args(&p, &v)
                );
            }
            for (c, r) in cols.iter_mut().zip(&out) {
                c.append_option(if some { *r } else { None });
            }
            valid.push(some);
        }
        let arr = self.finish_output(cols, valid)?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&arr, 0)?))
        } else {
            Ok(ColumnarValue::Array(arr))
        }
    }
}

/// At most this many values per pattern (no allocation per row).
pub const MAX_WIDTH: usize = 4;

/// One distinct row (unused trailing values are 0) and the number of input
/// rows that share it.
pub type Weighted = ([f64; MAX_WIDTH], f64);

/// How a fit aggregate turns its collected rows into a result.
pub trait Collector: std::fmt::Debug + Send + Sync + 'static {
    /// Number of f64 values per row (the key of a pattern), at most 4.
    const WIDTH: usize;
    /// Validate one input row; `Err` is a message naming the bad value.
    fn validate(row: &[f64]) -> std::result::Result<(), String>;
    /// Return type of the aggregate.
    fn return_type() -> DataType;
    /// Turn weighted distinct rows, sorted by their values (first value
    /// first), into the result; `penalizer` is the optional last argument
    /// (the L2 penalty on log parameters, 0 when not given).
    fn finish(patterns: &[Weighted], penalizer: f64) -> Result<ScalarValue>;
}

/// An aggregate that compresses its rows into distinct patterns with
/// weights (customers sharing a pattern share a likelihood term), so memory
/// and fit cost follow the number of patterns, not of rows. Partial states
/// are lists of pattern columns plus weights, merged by summing weights,
/// and the optional last argument `penalizer` (one value for all rows).
#[derive(Debug)]
pub struct FitAggregate<C: Collector> {
    name: &'static str,
    args: &'static [&'static str],
    signature: Signature,
    _c: std::marker::PhantomData<C>,
}

impl<C: Collector> FitAggregate<C> {
    /// Aggregate `name(args...[, penalizer])`: `args` names the numeric
    /// arguments (one per pattern value, [`Collector::WIDTH`] of them),
    /// coerced to Float64; the optional last argument is the fit's
    /// penalizer (finite, >= 0, the same on every row; NULL or absent is 0).
    /// A row with a NULL is skipped; an invalid one (per
    /// [`Collector::validate`]) is an execution error.
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
        let with_penalizer: Vec<&str> = self.args.iter().copied().chain(["penalizer"]).collect();
        let names = if arg_types.len() == with_penalizer.len() {
            &with_penalizer[..]
        } else {
            self.args
        };
        let out = coerce(self.name, names, arg_types)?;
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
        f.push(Arc::new(Field::new(
            format!("{}_penalizer", args.name),
            DataType::Float64,
            true,
        )));
        Ok(f)
    }
    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(PatternAccumulator::<C>::new(self.name)))
    }
}

/// Accumulator behind [`FitAggregate`]. Rows are appended as they come and
/// compacted (sorted, equal rows merged into one weight) when the buffer
/// has doubled since the last compaction, so memory stays within twice the
/// number of distinct patterns (or [`MIN_BUFFER`] rows). Sorting beats
/// hashing here: with times in days most customers are patterns of their
/// own, and a hash table of a million rows misses the cache on every row.
/// The fit needs the sorted order anyway, so that its sums do not depend on
/// partitioning.
#[derive(Debug)]
struct PatternAccumulator<C: Collector> {
    name: &'static str,
    /// Rows as order keys (see [`order_key`]) with their weights.
    rows: Vec<(Key, f64)>,
    /// Compact when `rows` reaches this length.
    next_compaction: usize,
    /// The penalizer argument, once seen.
    penalizer: Option<f64>,
    _c: std::marker::PhantomData<C>,
}

type Key = [u64; MAX_WIDTH];

/// Rows buffered before the first compaction (40 MiB).
const MIN_BUFFER: usize = 1 << 20;

/// An f64 as a u64 whose unsigned order is `f64::total_cmp`'s order (the
/// sign bit set for positive numbers, all bits flipped for negative ones),
/// so rows sort as plain integer arrays. +0.0 and -0.0 are one pattern.
fn order_key(v: f64) -> u64 {
    let b = (v + 0.0).to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

fn from_order_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Buffers at least this long are sorted in two halves on two threads,
/// then merged.
const PARALLEL_SORT: usize = 1 << 18;

fn sort_rows(rows: &mut [(Key, f64)]) {
    if rows.len() >= PARALLEL_SORT {
        let half = rows.len() / 2;
        let (lo, hi) = rows.split_at_mut(half);
        std::thread::scope(|s| {
            s.spawn(|| lo.sort_unstable_by_key(|r| r.0));
            hi.sort_unstable_by_key(|r| r.0);
        });
    }
    // Merges sorted runs in linear time (the stable sort finds them).
    rows.sort_by_key(|r| r.0);
}

impl<C: Collector> PatternAccumulator<C> {
    fn new(name: &'static str) -> Self {
        PatternAccumulator {
            name,
            rows: Vec::new(),
            next_compaction: MIN_BUFFER,
            penalizer: None,
            _c: std::marker::PhantomData,
        }
    }

    /// Take the penalizer of a row: finite, >= 0, the same on every row.
    fn set_penalizer(&mut self, v: f64) -> Result<()> {
        if !(v.is_finite() && v >= 0.0) {
            return exec_err!("{}: penalizer must be finite and >= 0, got {v}", self.name);
        }
        match self.penalizer {
            Some(p) if p != v => exec_err!(
                "{}: penalizer must be the same on every row ({p} and {v})",
                self.name
            ),
            _ => {
                self.penalizer = Some(v);
                Ok(())
            }
        }
    }

    fn push(&mut self, row: &[f64; MAX_WIDTH], weight: f64) {
        self.rows.push((row.map(order_key), weight));
        if self.rows.len() >= self.next_compaction {
            self.compact();
        }
    }

    fn compact(&mut self) {
        sort_rows(&mut self.rows);
        self.rows.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
        self.next_compaction = (2 * self.rows.len()).max(MIN_BUFFER);
    }

    /// The distinct rows as values, sorted.
    fn patterns(&mut self) -> Vec<Weighted> {
        self.compact();
        self.rows
            .iter()
            .map(|(k, w)| (k.map(from_order_key), *w))
            .collect()
    }
}

impl<C: Collector> Accumulator for PatternAccumulator<C> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let cols: Vec<Float64Array> = values
            .iter()
            .map(|a| to_f64_array(&ColumnarValue::Array(a.clone()), a.len()))
            .collect::<Result<_>>()?;
        let n = cols.first().map(|c| c.len()).unwrap_or(0);
        if let Some(pen) = cols.get(C::WIDTH) {
            for v in pen.iter().flatten() {
                self.set_penalizer(v)?;
            }
        }
        let mut row = [0.0; MAX_WIDTH];
        'rows: for i in 0..n {
            for (k, c) in cols[..C::WIDTH].iter().enumerate() {
                if c.is_null(i) {
                    continue 'rows;
                }
                row[k] = c.value(i);
            }
            if let Err(msg) = C::validate(&row[..C::WIDTH]) {
                return exec_err!("{}: {msg}", self.name);
            }
            self.push(&row, 1.0);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let penalizer = self.penalizer.unwrap_or(0.0);
        C::finish(&self.patterns(), penalizer)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.rows.capacity() * std::mem::size_of::<(Key, f64)>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        // Compacted, not sorted again by the final accumulator: its sort
        // merges the runs.
        self.compact();
        let mut cols: Vec<Vec<f64>> = vec![Vec::with_capacity(self.rows.len()); C::WIDTH + 1];
        for (k, w) in &self.rows {
            for (j, o) in k[..C::WIDTH].iter().enumerate() {
                cols[j].push(from_order_key(*o));
            }
            cols[C::WIDTH].push(*w);
        }
        let mut state: Vec<ScalarValue> = cols
            .into_iter()
            .map(|c| {
                SingleRowListArrayBuilder::new(Arc::new(Float64Array::from(c))).build_list_scalar()
            })
            .collect();
        state.push(ScalarValue::Float64(self.penalizer));
        Ok(state)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let penalizers = states[C::WIDTH + 1].as_primitive::<Float64Type>();
        for v in penalizers.iter().flatten() {
            self.set_penalizer(v)?;
        }
        let lists: Vec<&ListArray> = states[..=C::WIDTH]
            .iter()
            .map(|s| s.as_list::<i32>())
            .collect();
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
            self.rows.reserve(m);
            let mut row = [0.0; MAX_WIDTH];
            for r in 0..m {
                for k in 0..C::WIDTH {
                    row[k] = cols[k].value(r);
                }
                self.push(&row, cols[C::WIDTH].value(r));
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

/// The struct type of a fit result: the parameters, then log_likelihood,
/// converged, iterations, status ("converged", "boundary", or why not) and
/// at_bound (for a boundary optimum, which parameters are at which bound;
/// NULL otherwise).
pub fn fit_type(params: &[&str]) -> DataType {
    let mut fs: Vec<Field> = params
        .iter()
        .map(|p| Field::new(*p, DataType::Float64, true))
        .collect();
    fs.push(Field::new("log_likelihood", DataType::Float64, true));
    fs.push(Field::new("converged", DataType::Boolean, true));
    fs.push(Field::new("iterations", DataType::Int64, true));
    fs.push(Field::new("status", DataType::Utf8, true));
    fs.push(Field::new("at_bound", DataType::Utf8, true));
    DataType::Struct(fs.into())
}

/// A fit result as the struct of [`fit_type`], `values` naming its
/// parameters in order. A value that is not finite is NULL: never a NaN or
/// an infinity in a published table.
pub fn fit_scalar<P>(values: &[(&str, f64)], f: &FitResult<P>) -> Result<ScalarValue> {
    let num = |v: f64| ScalarValue::Float64(v.is_finite().then_some(v));
    let mut fields: Vec<(&str, ScalarValue)> = values.iter().map(|(n, v)| (*n, num(*v))).collect();
    fields.push(("log_likelihood", num(f.log_likelihood)));
    fields.push(("converged", ScalarValue::Boolean(Some(f.converged))));
    fields.push(("iterations", ScalarValue::Int64(Some(f.iterations as i64))));
    fields.push(("status", ScalarValue::Utf8(Some(f.status.clone()))));
    fields.push(("at_bound", ScalarValue::Utf8(f.at_bound.clone())));
    struct_scalar(&fields)
}

/// [`fit_type`] with the parameters' uncertainty after `at_bound`:
/// `se_<p>` for each parameter (standard error, in the parameter's unit)
/// and `cov_<p>_<q>` for each pair p <= q in order (covariance of ln p and
/// ln q: the inverse observed information in log parameters), which the
/// interval functions read. NULL where a parameter is at its bound or not
/// fitted.
pub fn fit_type_uncertain(params: &[&str]) -> DataType {
    let DataType::Struct(base) = fit_type(params) else {
        return fit_type(params);
    };
    let mut fs: Vec<Field> = base.iter().map(|f| f.as_ref().clone()).collect();
    for p in params {
        fs.push(Field::new(format!("se_{p}"), DataType::Float64, true));
    }
    for (name, _, _) in cov_fields(params) {
        fs.push(Field::new(name, DataType::Float64, true));
    }
    DataType::Struct(fs.into())
}

/// The covariance fields of [`fit_type_uncertain`]: name and the two
/// parameters' indices, pairs i <= j in order.
pub fn cov_fields(params: &[&str]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for i in 0..params.len() {
        for j in i..params.len() {
            out.push((format!("cov_{}_{}", params[i], params[j]), i, j));
        }
    }
    out
}

/// A fit result as the struct of [`fit_type_uncertain`]: `values` as in
/// [`fit_scalar`], `log_cov` the covariance of their logs (NaN where not
/// defined). The standard error of a parameter v is v sqrt(var ln v) (the
/// delta method). Not-finite values are NULL.
pub fn fit_scalar_uncertain<P>(
    values: &[(&str, f64)],
    log_cov: &[Vec<f64>],
    f: &FitResult<P>,
) -> Result<ScalarValue> {
    let ScalarValue::Struct(base) = fit_scalar(values, f)? else {
        return exec_err!("a fit result is not a struct");
    };
    let num = |v: f64| ScalarValue::Float64(v.is_finite().then_some(v));
    let cov = |i: usize, j: usize| {
        log_cov
            .get(i)
            .and_then(|r| r.get(j))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let mut fields: Vec<(String, ScalarValue)> = Vec::new();
    for (k, field) in base.fields().iter().enumerate() {
        fields.push((
            field.name().clone(),
            ScalarValue::try_from_array(base.column(k), 0)?,
        ));
    }
    for (i, (name, v)) in values.iter().enumerate() {
        fields.push((format!("se_{name}"), num(v * cov(i, i).sqrt())));
    }
    let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
    for (name, i, j) in cov_fields(&names) {
        fields.push((name, num(cov(i, j))));
    }
    let refs: Vec<(&str, ScalarValue)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.clone()))
        .collect();
    struct_scalar(&refs)
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
    /// Aggregate `name(args...)` returning `return_type`: the first argument
    /// is the value (NULLs skipped, a non-finite value is an error), the
    /// optional second the constant passed to `finish` (an error if it
    /// differs between rows).
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns its patterns as text, to compare what two accumulators saw.
    #[derive(Debug)]
    struct Echo;
    impl Collector for Echo {
        const WIDTH: usize = 2;
        fn validate(row: &[f64]) -> std::result::Result<(), String> {
            if row[0].is_nan() {
                return Err("NaN".into());
            }
            Ok(())
        }
        fn return_type() -> DataType {
            DataType::Utf8
        }
        fn finish(patterns: &[Weighted], penalizer: f64) -> Result<ScalarValue> {
            Ok(ScalarValue::Utf8(Some(format!("{patterns:?} {penalizer}"))))
        }
    }

    fn batch(rows: &[(f64, f64)]) -> Vec<ArrayRef> {
        vec![
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ]
    }

    #[test]
    fn order_keys_sort_like_total_cmp_and_round_trip() {
        let mut v = vec![
            2.5,
            -1.5,
            f64::INFINITY,
            0.0,
            -3e300,
            1e-310,
            f64::NEG_INFINITY,
            7.0,
        ];
        let mut keys: Vec<u64> = v.iter().map(|x| order_key(*x)).collect();
        keys.sort_unstable();
        v.sort_by(f64::total_cmp);
        let back: Vec<f64> = keys.into_iter().map(from_order_key).collect();
        assert_eq!(back, v);
        assert_eq!(order_key(-0.0), order_key(0.0));
    }

    #[test]
    fn partial_states_merge_to_the_single_accumulators_patterns() {
        // Rows with repeats, split over two partial accumulators in another
        // order: the merged patterns must equal one accumulator's, weights
        // summed and rows sorted (negative values first).
        let rows: Vec<(f64, f64)> = (0..5000)
            .map(|i| (((i * 7919) % 13) as f64 - 6.0, ((i * 31) % 5) as f64))
            .collect();
        let mut one = PatternAccumulator::<Echo>::new("echo");
        one.update_batch(&batch(&rows)).unwrap();
        let (mut p1, mut p2) = (
            PatternAccumulator::<Echo>::new("echo"),
            PatternAccumulator::<Echo>::new("echo"),
        );
        let mut reversed = rows.clone();
        reversed.reverse();
        p1.update_batch(&batch(&reversed[..1234])).unwrap();
        p2.update_batch(&batch(&reversed[1234..])).unwrap();
        let mut fin = PatternAccumulator::<Echo>::new("echo");
        for p in [&mut p1, &mut p2] {
            let state: Vec<ArrayRef> = p
                .state()
                .unwrap()
                .iter()
                .map(|s| s.to_array().unwrap())
                .collect();
            fin.merge_batch(&state).unwrap();
        }
        let (a, b) = (one.evaluate().unwrap(), fin.evaluate().unwrap());
        assert_eq!(a, b);
        let pats = one.patterns();
        assert_eq!(pats.len(), 13 * 5);
        assert_eq!(pats.iter().map(|p| p.1).sum::<f64>(), 5000.0);
        assert_eq!(pats[0].0[..2], [-6.0, 0.0]);
        assert!(pats.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn invalid_rows_are_named_and_nulls_skipped() {
        let mut acc = PatternAccumulator::<Echo>::new("echo");
        let with_null: Vec<ArrayRef> = vec![
            Arc::new(Float64Array::from(vec![Some(1.0), None])),
            Arc::new(Float64Array::from(vec![Some(2.0), Some(3.0)])),
        ];
        acc.update_batch(&with_null).unwrap();
        assert_eq!(acc.patterns().len(), 1);
        let err = acc.update_batch(&batch(&[(f64::NAN, 1.0)])).unwrap_err();
        assert!(err.to_string().contains("echo: NaN"), "{err}");
    }
}
