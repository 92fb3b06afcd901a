//! The aggregate's accumulators: each group's lines pushed into the line
//! store as rows arrive (order ids and line keys interned), summarised when
//! the group is emitted; partial states as lists of lines, merged back; and
//! the ungrouped form.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, Date32Array, Date32Builder,
    Float64Array, Float64Builder, Int64Builder, ListArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, Fields, Float64Type, Int64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{Accumulator, ColumnarValue, EmitTo, GroupsAccumulator};

use super::facts::{
    summarise, Line, SummaryBuilder, KEY_NULL, MARGIN_NULL, ORDER_NULL, VALUE_NULL,
};
use super::intern::{ColumnIds, LineKeys};
use super::lines::LineStore;
use super::NAME;
use crate::udf::args::to_f64_array;

pub(super) fn is_integer(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    )
}

/// The grouped accumulator: each group's lines, unsorted, until it is emitted.
#[derive(Debug)]
pub(super) struct SummaryGroups {
    lines: LineStore,
    /// Some(d) once seen; it must be the same on every row.
    calibration_end: Option<Option<i32>>,
    /// Integer order ids are stored as they are; others are interned.
    order_ids: Option<ColumnIds>,
    keys: LineKeys,
    types: (DataType, DataType),
}

impl SummaryGroups {
    pub(super) fn new(order_type: &DataType, key_type: &DataType) -> Result<Self> {
        let order_ids = if is_integer(order_type) || order_type == &DataType::Null {
            None
        } else {
            Some(ColumnIds::new(order_type, false)?)
        };
        Ok(SummaryGroups {
            lines: LineStore::default(),
            calibration_end: None,
            order_ids,
            keys: LineKeys::new(key_type)?,
            types: (order_type.clone(), key_type.clone()),
        })
    }

    fn set_calibration_end(&mut self, end: Option<i32>) -> Result<()> {
        match self.calibration_end {
            Some(seen) if seen != end => exec_err!(
                "{NAME}: calibration_end must be the same on every row ({} and {})",
                show_day(seen),
                show_day(end)
            ),
            _ => {
                self.calibration_end = Some(end);
                Ok(())
            }
        }
    }

    fn calibration_from(&mut self, arr: &ArrayRef) -> Result<()> {
        let d = arr.as_primitive::<Date32Type>();
        if d.null_count() == d.len() {
            return if d.is_empty() {
                Ok(())
            } else {
                self.set_calibration_end(None)
            };
        }
        let first = d.iter().flatten().next();
        if d.null_count() > 0 || d.values().iter().any(|&v| Some(v) != first) {
            let other = d.iter().find(|v| *v != first).flatten();
            return exec_err!(
                "{NAME}: calibration_end must be the same on every row ({} and {})",
                show_day(first),
                show_day(other)
            );
        }
        self.set_calibration_end(first)
    }

    /// Order keys of an order_id argument: integers as they are, anything
    /// else interned. None is NULL.
    fn order_keys(&mut self, a: &ArrayRef) -> Result<Vec<Option<u64>>> {
        match &mut self.order_ids {
            None => {
                let ints = cast(a, &DataType::Int64)?;
                Ok(ints
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.map(|v| v as u64))
                    .collect())
            }
            Some(ids) => {
                let mut out = Vec::with_capacity(a.len());
                ids.ids(a, &mut out)?;
                Ok(out.into_iter().map(|v| v.map(u64::from)).collect())
            }
        }
    }

    /// Append lines, in row order; `group_of` is None for rows a filter
    /// leaves out, and rows with a NULL day or amount are skipped.
    #[allow(clippy::too_many_arguments)]
    fn push_lines(
        &mut self,
        group_of: impl Fn(usize) -> Option<usize>,
        total_groups: usize,
        day: &Date32Array,
        orders: &[Option<u64>],
        amount: &Float64Array,
        margin: &Float64Array,
        value: &Float64Array,
        keys: &[Option<u64>],
    ) -> Result<()> {
        self.lines.ensure_groups(total_groups);
        for row in 0..day.len() {
            let Some(g) = group_of(row) else { continue };
            if day.is_null(row) || amount.is_null(row) {
                continue;
            }
            let mut flags = 0;
            let order = orders[row].unwrap_or_else(|| {
                flags |= ORDER_NULL;
                0
            });
            let key = keys[row].unwrap_or_else(|| {
                flags |= KEY_NULL;
                0
            });
            let margin_v = if margin.is_null(row) {
                flags |= MARGIN_NULL;
                0.0
            } else {
                margin.value(row)
            };
            let value_v = if value.is_null(row) {
                flags |= VALUE_NULL;
                0.0
            } else {
                value.value(row)
            };
            self.lines.push(
                g,
                Line {
                    day: day.value(row),
                    flags,
                    key,
                    order,
                    amount: amount.value(row),
                    margin: margin_v,
                    value: value_v,
                },
            )?;
        }
        Ok(())
    }
}

fn show_day(d: Option<i32>) -> String {
    match d {
        None => "NULL".into(),
        Some(d) => ScalarValue::Date32(Some(d)).to_string(),
    }
}

/// A numeric argument column as Float64 (the shared helper of the model
/// functions).
fn f64_column(a: &ArrayRef) -> Result<Float64Array> {
    to_f64_array(&ColumnarValue::Array(Arc::clone(a)), a.len())
}

/// The partial state: each group's lines as a list of structs (integer
/// order ids as integers, others as their interned bytes, line keys in the
/// portable form of [`LineKeys::to_bytes`]), and the calibration end.
pub(super) fn line_fields() -> Fields {
    Fields::from(vec![
        Field::new("day", DataType::Date32, false),
        Field::new("order_int", DataType::Int64, true),
        Field::new("order_bytes", DataType::Binary, true),
        Field::new("amount", DataType::Float64, false),
        Field::new("margin", DataType::Float64, true),
        Field::new("value", DataType::Float64, true),
        Field::new("key", DataType::Binary, true),
    ])
}

impl GroupsAccumulator for SummaryGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.calibration_from(&values[6])?;
        let day = values[0].as_primitive::<Date32Type>().clone();
        let (amount, margin, value) = (
            f64_column(&values[2])?,
            f64_column(&values[3])?,
            f64_column(&values[4])?,
        );
        let orders = self.order_keys(&values[1])?;
        let keys = self.keys.keys(&values[5])?;
        let group_of = |row: usize| -> Option<usize> {
            match opt_filter {
                Some(f) if !(f.is_valid(row) && f.value(row)) => None,
                _ => Some(group_indices[row]),
            }
        };
        self.push_lines(
            group_of,
            total_num_groups,
            &day,
            &orders,
            &amount,
            &margin,
            &value,
            &keys,
        )
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let end = self.calibration_end.flatten();
        let chains = self.lines.take(emit_to);
        let mut out = SummaryBuilder::new(chains.len());
        let mut lines = Vec::new();
        for c in &chains {
            self.lines.gather(*c, &mut lines);
            out.append(summarise(&mut lines, end).as_ref());
        }
        self.lines.release(&chains)?;
        out.finish()
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let chains = self.lines.take(emit_to);
        let n_lines: usize = chains.iter().map(|c| c.len as usize).sum();
        let mut offsets = Vec::with_capacity(chains.len() + 1);
        offsets.push(0i32);
        let mut day = Date32Builder::with_capacity(n_lines);
        let mut order_int = Int64Builder::with_capacity(n_lines);
        let mut order_bytes = BinaryBuilder::new();
        let mut amount = Float64Builder::with_capacity(n_lines);
        let mut margin = Float64Builder::with_capacity(n_lines);
        let mut value = Float64Builder::with_capacity(n_lines);
        let mut key = BinaryBuilder::new();
        let mut total = 0i32;
        let mut key_bytes = Vec::new();
        let mut lines = Vec::new();
        for c in &chains {
            self.lines.gather(*c, &mut lines);
            for l in &lines {
                day.append_value(l.day);
                match (&self.order_ids, l.has_order()) {
                    (_, false) => {
                        order_int.append_null();
                        order_bytes.append_null();
                    }
                    (None, true) => {
                        order_int.append_value(l.order as i64);
                        order_bytes.append_null();
                    }
                    (Some(ids), true) => {
                        order_int.append_null();
                        order_bytes.append_value(ids.interner.get(l.order as u32));
                    }
                }
                amount.append_value(l.amount);
                margin.append_option((l.flags & MARGIN_NULL == 0).then_some(l.margin));
                value.append_option((l.flags & VALUE_NULL == 0).then_some(l.value));
                if l.flags & KEY_NULL != 0 {
                    key.append_null();
                } else {
                    self.keys.to_bytes(l.key, &mut key_bytes);
                    key.append_value(&key_bytes);
                }
            }
            total = i32::try_from(total as usize + lines.len()).map_err(|_| {
                datafusion::error::DataFusionError::Execution(format!(
                    "{NAME}: more than 2^31 lines in one partial state"
                ))
            })?;
            offsets.push(total);
        }
        self.lines.release(&chains)?;
        let n_groups = offsets.len() - 1;
        let structs = StructArray::try_new(
            line_fields(),
            vec![
                Arc::new(day.finish()),
                Arc::new(order_int.finish()),
                Arc::new(order_bytes.finish()),
                Arc::new(amount.finish()),
                Arc::new(margin.finish()),
                Arc::new(value.finish()),
                Arc::new(key.finish()),
            ],
            None,
        )?;
        let list = ListArray::try_new(
            Arc::new(Field::new_list_field(
                DataType::Struct(line_fields()),
                false,
            )),
            OffsetBuffer::new(offsets.into()),
            Arc::new(structs),
            None,
        )?;
        let end = self.calibration_end.flatten();
        let ends = Date32Array::from(vec![end; n_groups]);
        Ok(vec![Arc::new(list), Arc::new(ends)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.calibration_from(&values[1])?;
        let list = values[0].as_list::<i32>();
        // Row r of the flattened lines belongs to the group of its list.
        let offsets = list.value_offsets();
        let base = offsets[0] as usize;
        let end = offsets[offsets.len() - 1] as usize;
        let mut owner = vec![usize::MAX; end - base];
        for (i, w) in offsets.windows(2).enumerate() {
            if list.is_valid(i) {
                for o in &mut owner[w[0] as usize - base..w[1] as usize - base] {
                    *o = group_indices[i];
                }
            }
        }
        let lines = list.values().slice(base, end - base);
        let s = lines.as_struct();
        let col = |i: usize| s.column(i).clone();
        let day = col(0).as_primitive::<Date32Type>().clone();
        let orders: Vec<Option<u64>> = match &mut self.order_ids {
            None => col(1)
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(|v| v as u64))
                .collect(),
            Some(ids) => col(2)
                .as_binary::<i32>()
                .iter()
                .map(|b| b.map(|b| ids.interner.intern(b).map(u64::from)).transpose())
                .collect::<Result<_>>()?,
        };
        let keys: Vec<Option<u64>> = col(6)
            .as_binary::<i32>()
            .iter()
            .map(|b| b.map(|b| self.keys.key_of_bytes(b)).transpose())
            .collect::<Result<_>>()?;
        self.push_lines(
            |r| (owner[r] != usize::MAX).then_some(owner[r]),
            total_num_groups,
            &day,
            &orders,
            col(3).as_primitive::<Float64Type>(),
            col(4).as_primitive::<Float64Type>(),
            col(5).as_primitive::<Float64Type>(),
            &keys,
        )
    }

    /// Each row as a group of its own: for DataFusion's skipped partial
    /// aggregation when groups are nearly as many as rows.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut one = SummaryGroups::new(&self.types.0, &self.types.1)?;
        let n = values.first().map_or(0, |v| v.len());
        let rows: Vec<usize> = (0..n).collect();
        one.update_batch(values, &rows, opt_filter, n)?;
        if one.calibration_end.is_none() {
            one.calibration_end = self.calibration_end;
        }
        one.state(EmitTo::All)
    }

    fn size(&self) -> usize {
        self.lines.size() + self.keys.size() + self.order_ids.as_ref().map_or(0, ColumnIds::size)
    }
}

/// The ungrouped form (no GROUP BY): one group.
#[derive(Debug)]
pub(super) struct SummaryOne(pub(super) SummaryGroups);

impl Accumulator for SummaryOne {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = values.first().map_or(0, |v| v.len());
        self.0.update_batch(values, &vec![0; n], None, 1)
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.0.lines.ensure_groups(1);
        ScalarValue::try_from_array(&self.0.evaluate(EmitTo::All)?, 0)
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.0.size()
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.0.lines.ensure_groups(1);
        self.0
            .state(EmitTo::All)?
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let n = states.first().map_or(0, |v| v.len());
        self.0.merge_batch(states, &vec![0; n], 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{StringArray, StructArray};
    use datafusion::arrow::buffer::NullBuffer;

    /// Arguments of update_batch for rows (customer, day, order id, amount, category).
    pub(in crate::udf::summary) fn args(rows: &[(i32, Option<&str>, f64, &str)]) -> Vec<ArrayRef> {
        let cat: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3)));
        let key = StructArray::try_new(
            Fields::from(vec![Field::new("category", DataType::Utf8, true)]),
            vec![cat],
            None,
        )
        .expect("struct");
        let n = rows.len();
        vec![
            Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Float64Array::from(vec![None::<f64>; n])),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(key),
            Arc::new(Date32Array::from(vec![Some(3); n])),
        ]
    }

    pub(in crate::udf::summary) fn new_groups() -> SummaryGroups {
        let key_type = DataType::Struct(Fields::from(vec![Field::new(
            "category",
            DataType::Utf8,
            true,
        )]));
        SummaryGroups::new(&DataType::Utf8, &key_type).expect("groups")
    }

    #[test]
    fn partial_states_merge_to_the_single_pass_result() {
        // Two customers; customer 0's repeat of order "a" arrives in another
        // partition than its first copy, so only the merge can drop it.
        let rows = [
            (1, Some("a"), 10.0, "x"),
            (1, Some("a"), 10.0, "x"),
            (2, None, 5.0, "y"),
            (4, Some("b"), -3.0, "x"),
            (1, Some("c"), 7.0, "y"),
            (5, Some("d"), 2.0, "y"),
        ];
        let groups = [0usize, 0, 0, 1, 1, 0];
        let mut direct = new_groups();
        direct
            .update_batch(&args(&rows), &groups, None, 2)
            .expect("update");
        let want = direct.evaluate(EmitTo::All).expect("evaluate");

        let (mut p1, mut p2, mut fin) = (new_groups(), new_groups(), new_groups());
        p1.update_batch(&args(&rows[..1]), &groups[..1], None, 1)
            .expect("p1");
        p2.update_batch(&args(&rows[1..]), &groups[1..], None, 2)
            .expect("p2");
        let s1 = p1.state(EmitTo::All).expect("state 1");
        let s2 = p2.state(EmitTo::All).expect("state 2");
        fin.merge_batch(&s2, &[0, 1], 2).expect("merge 2");
        fin.merge_batch(&s1, &[0], 2).expect("merge 1");
        let got = fin.evaluate(EmitTo::All).expect("evaluate");
        assert_eq!(got.as_ref(), want.as_ref());

        let s = got.as_struct();
        let col = |n: &str| s.column_by_name(n).expect(n).clone();
        // Customer 0: lines 10 (a), 5 (no order), 2 (d); the repeat dropped.
        assert_eq!(col("lines").as_primitive::<Int64Type>().values(), &[3, 2]);
        assert_eq!(
            col("duplicate_lines").as_primitive::<Int64Type>().values(),
            &[1, 0]
        );
        assert_eq!(
            col("revenue").as_primitive::<Float64Type>().values(),
            &[17.0, 4.0]
        );
        // Customer 1: day 4 nets -3 (no purchase), day 1 is its only purchase.
        assert_eq!(
            col("purchase_days").as_primitive::<Int64Type>().values(),
            &[3, 1]
        );
        assert_eq!(
            col("holdout_purchases")
                .as_primitive::<Int64Type>()
                .values(),
            &[1, 0]
        );
        assert!(col("margin").is_null(0));
    }

    #[test]
    fn wide_line_keys_of_any_type_survive_the_partial_state() {
        // A three-field key (text, integer, text with NULLs): ids are packed
        // as a tuple, the integer goes through the row format. Rows 0 and 1
        // are exact repeats (NULL equals NULL, as in DISTINCT); row 2 differs
        // only in the integer field, row 3 only by a NULL struct.
        let fields = Fields::from(vec![
            Field::new("category", DataType::Utf8, true),
            Field::new("size", DataType::Int64, true),
            Field::new("peer_group", DataType::Utf8View, true),
        ]);
        let key = StructArray::try_new(
            fields.clone(),
            vec![
                Arc::new(StringArray::from(vec!["x", "x", "x", "x"])),
                Arc::new(datafusion::arrow::array::Int64Array::from(vec![1, 1, 2, 1])),
                Arc::new(datafusion::arrow::array::StringViewArray::from(vec![
                    None,
                    None,
                    None,
                    Some("a rather long peer group name"),
                ])),
            ],
            Some(NullBuffer::from(vec![true, true, true, false])),
        )
        .expect("key");
        let mut a = args(&[(1, Some("o"), 5.0, ""); 4]);
        a[5] = Arc::new(key);
        let key_type = DataType::Struct(fields);
        let fresh = || SummaryGroups::new(&DataType::Utf8, &key_type).expect("groups");
        let mut direct = fresh();
        direct
            .update_batch(&a, &[0, 0, 0, 0], None, 1)
            .expect("update");
        let want = direct.evaluate(EmitTo::All).expect("evaluate");
        let lines = want
            .as_struct()
            .column_by_name("lines")
            .expect("lines")
            .clone();
        assert_eq!(lines.as_primitive::<Int64Type>().values(), &[3]);

        let mut p = fresh();
        p.update_batch(&a, &[0, 0, 0, 0], None, 1).expect("update");
        let state = p.state(EmitTo::All).expect("state");
        let mut fin = fresh();
        fin.merge_batch(&state, &[0], 1).expect("merge");
        fin.merge_batch(&state, &[0], 1).expect("merge again");
        // The same rows twice: every copy of the second batch is a repeat.
        let got = fin.evaluate(EmitTo::All).expect("evaluate");
        let s = got.as_struct();
        let col = |n: &str| {
            s.column_by_name(n)
                .expect(n)
                .as_primitive::<Int64Type>()
                .value(0)
        };
        assert_eq!((col("lines"), col("duplicate_lines")), (3, 5));
    }

    #[test]
    fn emitting_the_first_groups_keeps_the_rest() {
        let rows = [
            (1, Some("a"), 1.0, "x"),
            (2, Some("b"), 2.0, "x"),
            (3, None, 3.0, "x"),
        ];
        let mut g = new_groups();
        g.update_batch(&args(&rows), &[0, 1, 2], None, 3)
            .expect("update");
        let first = g.evaluate(EmitTo::First(2)).expect("first two");
        assert_eq!(first.len(), 2);
        let rest = g.evaluate(EmitTo::All).expect("rest");
        let rev = rest
            .as_struct()
            .column_by_name("revenue")
            .expect("revenue")
            .clone();
        assert_eq!(rev.as_primitive::<Float64Type>().values(), &[3.0]);
    }

    #[test]
    fn a_changing_calibration_end_is_an_error_naming_both_dates() {
        let mut a = args(&[(1, Some("a"), 1.0, "x"), (2, Some("b"), 1.0, "x")]);
        a[6] = Arc::new(Date32Array::from(vec![Some(3), Some(4)]));
        let err = new_groups().update_batch(&a, &[0, 0], None, 1).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("customer_summary")
                && msg.contains("1970-01-04")
                && msg.contains("1970-01-05"),
            "{msg}"
        );
    }
}
