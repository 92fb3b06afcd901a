//! The facts of one customer: a transaction [`Line`], what a customer's
//! lines add up to ([`Summary`], by [`summarise`]: repeats dropped, orders
//! and days counted, returns netted within the day), and the struct column
//! the aggregate returns them in.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int64Builder, StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::Result;

/// Bits of [`Line::flags`].
pub(super) const ORDER_NULL: u8 = 1;
pub(super) const MARGIN_NULL: u8 = 2;
pub(super) const VALUE_NULL: u8 = 4;
pub(super) const KEY_NULL: u8 = 8;

/// One transaction line. `order` is the integer order id, or the id the
/// accumulator interned a non-integer one under; `key` the line key's ids
/// (the remaining columns that tell two lines of one order apart).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// Days since 1970-01-01.
    pub day: i32,
    /// NULL bits: `ORDER_NULL`, `MARGIN_NULL`, `VALUE_NULL`, `KEY_NULL`.
    pub flags: u8,
    /// Interned id of the line key.
    pub key: u64,
    /// Order id (integer, or interned).
    pub order: u64,
    /// Amount; negative for a return.
    pub amount: f64,
    /// Margin (gross profit), when not NULL.
    pub margin: f64,
    /// The measured value (revenue or margin), when not NULL.
    pub value: f64,
}

impl Line {
    /// Sort key: day, then order (NULL orders first), then the rest, so that
    /// a day's lines of one order, and exact repeats, are adjacent. Floats
    /// compare by bits: only equality matters here, not numeric order.
    fn sort_key(&self) -> (i32, u8, u64, u64, u8, u64, u8, u64, u8, u64) {
        let bits = |null: u8, x: f64| {
            if self.flags & null != 0 {
                0
            } else {
                x.to_bits()
            }
        };
        (
            self.day,
            self.flags & ORDER_NULL,
            self.order,
            self.amount.to_bits(),
            self.flags & MARGIN_NULL,
            bits(MARGIN_NULL, self.margin),
            self.flags & VALUE_NULL,
            bits(VALUE_NULL, self.value),
            self.flags & KEY_NULL,
            self.key,
        )
    }
    pub(super) fn has_order(&self) -> bool {
        self.flags & ORDER_NULL == 0
    }
}

/// What one customer's lines add up to. Days are days since 1970-01-01.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// Lines kept: every line without an order id, and one of each set of
    /// exact repeats within an order.
    pub lines: i64,
    /// Lines dropped as exact repeats of an earlier line of the same order.
    pub duplicate_lines: i64,
    /// Orders: distinct order ids with a purchase line (amount >= 0, on
    /// any day), plus purchase lines without an order id. A return or
    /// refund line (amount < 0) is no order, even on a later day.
    pub orders: i64,
    /// Sum of amounts.
    pub revenue: f64,
    /// Sums that skip NULLs; NULL when every line's value is NULL (as SQL sum).
    pub margin: Option<f64>,
    /// Sum of values (NULL when all are NULL).
    pub value_total: Option<f64>,
    /// Days whose net amount is at least 0 (a net negative day is a return).
    pub purchase_days: i64,
    /// First purchase day.
    pub first_day: Option<i32>,
    /// Last purchase day.
    pub last_day: Option<i32>,
    /// Value of the purchase days after the first (NULL when the first
    /// day's value is NULL): monetary_value = repeat_value / (purchase_days - 1).
    pub repeat_value: Option<f64>,
    /// Value of the first purchase day (NULL when it is NULL or there is
    /// none): with `purchase_value`, what folding two customers' summaries
    /// of disjoint day ranges needs (`customer_state`, incremental nights).
    pub first_value: Option<f64>,
    /// Value of all purchase days (NULL when every one is NULL).
    pub purchase_value: Option<f64>,
    /// Purchase days up to and including the calibration end, the last of
    /// them, and the purchase days after it (all NULL without a calibration end).
    pub cal_purchase_days: Option<i64>,
    /// Last purchase day up to the calibration end.
    pub cal_last_day: Option<i32>,
    /// Purchase days after the calibration end.
    pub holdout_purchases: Option<i64>,
}

fn add(acc: &mut Option<f64>, x: Option<f64>) {
    if let Some(x) = x {
        *acc = Some(acc.unwrap_or(0.0) + x);
    }
}

/// Summarise one customer's lines (reordered in place). None without lines.
pub fn summarise(lines: &mut [Line], calibration_end: Option<i32>) -> Option<Summary> {
    if lines.is_empty() {
        return None;
    }
    // Day and order decide almost every comparison; the full key breaks ties.
    lines.sort_unstable_by(|a, b| {
        (a.day, a.flags & ORDER_NULL, a.order)
            .cmp(&(b.day, b.flags & ORDER_NULL, b.order))
            .then_with(|| a.sort_key().cmp(&b.sort_key()))
    });
    let mut s = Summary {
        cal_purchase_days: calibration_end.map(|_| 0),
        holdout_purchases: calibration_end.map(|_| 0),
        ..Summary::default()
    };
    let mut first_value: Option<f64> = None;
    let mut repeat: Option<f64> = None;
    // Order ids with a purchase line, on any day; counted once at the end.
    let mut purchased: Vec<u64> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let day = lines[i].day;
        let (mut amount, mut margin, mut value) = (0.0, None, None);
        let mut gross = 0.0;
        let mut prev: Option<&Line> = None;
        while i < lines.len() && lines[i].day == day {
            let l = &lines[i];
            i += 1;
            if let Some(p) = prev {
                if l.has_order() && p.sort_key() == l.sort_key() {
                    s.duplicate_lines += 1;
                    continue;
                }
            }
            if is_purchase_line(l.amount) {
                if l.has_order() {
                    purchased.push(l.order);
                } else {
                    s.orders += 1;
                }
            }
            s.lines += 1;
            amount += l.amount;
            gross += l.amount.abs();
            add(
                &mut margin,
                (l.flags & MARGIN_NULL == 0).then_some(l.margin),
            );
            add(&mut value, (l.flags & VALUE_NULL == 0).then_some(l.value));
            prev = Some(l);
        }
        s.revenue += amount;
        add(&mut s.margin, margin);
        add(&mut s.value_total, value);
        if nets_to_a_purchase(amount, gross) {
            s.purchase_days += 1;
            if s.first_day.is_none() {
                s.first_day = Some(day);
                first_value = value;
            } else {
                add(&mut repeat, value);
            }
            add(&mut s.purchase_value, value);
            s.last_day = Some(day);
            if let Some(end) = calibration_end {
                if day <= end {
                    s.cal_purchase_days = s.cal_purchase_days.map(|n| n + 1);
                    s.cal_last_day = Some(day);
                } else {
                    s.holdout_purchases = s.holdout_purchases.map(|n| n + 1);
                }
            }
        }
    }
    s.repeat_value = first_value.map(|_| repeat.unwrap_or(0.0));
    s.first_value = first_value;
    purchased.sort_unstable();
    purchased.dedup();
    s.orders += purchased.len() as i64;
    Some(s)
}

/// Whether a line buys (an order's line, zero-amount ones included, as
/// CDNOW's free first orders) rather than returns or refunds (amount < 0).
fn is_purchase_line(amount: f64) -> bool {
    amount >= 0.0
}

pub(super) fn summary_fields() -> Fields {
    let f = |n: &str, t: DataType| Field::new(n, t, true);
    Fields::from(vec![
        f("lines", DataType::Int64),
        f("duplicate_lines", DataType::Int64),
        f("orders", DataType::Int64),
        f("revenue", DataType::Float64),
        f("margin", DataType::Float64),
        f("value_total", DataType::Float64),
        f("purchase_days", DataType::Int64),
        f("first_day", DataType::Date32),
        f("last_day", DataType::Date32),
        f("repeat_value", DataType::Float64),
        f("first_value", DataType::Float64),
        f("purchase_value", DataType::Float64),
        f("cal_purchase_days", DataType::Int64),
        f("cal_last_day", DataType::Date32),
        f("holdout_purchases", DataType::Int64),
    ])
}

/// Builds the result column, one (possibly absent) summary at a time.
pub(super) struct SummaryBuilder {
    ints: [Int64Builder; 6],
    floats: [Float64Builder; 6],
    days: [Date32Builder; 3],
    valid: Vec<bool>,
}

impl SummaryBuilder {
    pub(super) fn new(n: usize) -> Self {
        SummaryBuilder {
            ints: std::array::from_fn(|_| Int64Builder::with_capacity(n)),
            floats: std::array::from_fn(|_| Float64Builder::with_capacity(n)),
            days: std::array::from_fn(|_| Date32Builder::with_capacity(n)),
            valid: Vec::with_capacity(n),
        }
    }

    pub(super) fn append(&mut self, s: Option<&Summary>) {
        self.valid.push(s.is_some());
        let empty = Summary::default();
        let d = s.unwrap_or(&empty);
        let [lines, dups, orders, days, cal_days, holdout] = &mut self.ints;
        lines.append_value(d.lines);
        dups.append_value(d.duplicate_lines);
        orders.append_value(d.orders);
        days.append_value(d.purchase_days);
        cal_days.append_option(d.cal_purchase_days);
        holdout.append_option(d.holdout_purchases);
        let [revenue, margin, value, repeat, first_value, purchase_value] = &mut self.floats;
        revenue.append_value(d.revenue);
        margin.append_option(d.margin);
        value.append_option(d.value_total);
        repeat.append_option(d.repeat_value);
        first_value.append_option(d.first_value);
        purchase_value.append_option(d.purchase_value);
        let [first, last, cal_last] = &mut self.days;
        first.append_option(d.first_day);
        last.append_option(d.last_day);
        cal_last.append_option(d.cal_last_day);
    }

    /// The struct column, fields in the order of [`summary_fields`].
    pub(super) fn finish(mut self) -> Result<ArrayRef> {
        let [lines, dups, orders, days, cal_days, holdout] = &mut self.ints;
        let [revenue, margin, value, repeat, first_value, purchase_value] = &mut self.floats;
        let [first, last, cal_last] = &mut self.days;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(lines.finish()),
            Arc::new(dups.finish()),
            Arc::new(orders.finish()),
            Arc::new(revenue.finish()),
            Arc::new(margin.finish()),
            Arc::new(value.finish()),
            Arc::new(days.finish()),
            Arc::new(first.finish()),
            Arc::new(last.finish()),
            Arc::new(repeat.finish()),
            Arc::new(first_value.finish()),
            Arc::new(purchase_value.finish()),
            Arc::new(cal_days.finish()),
            Arc::new(cal_last.finish()),
            Arc::new(holdout.finish()),
        ];
        Ok(Arc::new(StructArray::try_new(
            summary_fields(),
            columns,
            Some(NullBuffer::from(self.valid)),
        )?))
    }
}

/// Relative rounding of a day's net amount below which it counts as zero:
/// summing n doubles errs by at most about n * 2.2e-16 of their absolute
/// sum, so 1e-12 covers days of thousands of lines.
const NET_ZERO: f64 = 1e-12;

/// Whether a day whose lines sum to `net` (their absolute values to
/// `gross`) is a purchase day: a net of at least zero, where a net that is
/// zero but for floating-point rounding (a purchase returned the same day:
/// 12 x 2.55 - 6 x 5.10 = -3.6e-15) is zero, not a return.
fn nets_to_a_purchase(net: f64, gross: f64) -> bool {
    net >= 0.0 || -net <= gross * NET_ZERO
}

/// A day's net amount `net` (its lines' absolute amounts summing to
/// `gross`) with a floating-point rounding residue of a day that nets to
/// zero set to 0: the day is a purchase day exactly when the result is at
/// least 0 (the rule of [`summarise`], for SQL: `day_net_amount`). NaN in,
/// NaN out.
pub fn day_net_amount(net: f64, gross: f64) -> f64 {
    if net < 0.0 && nets_to_a_purchase(net, gross) {
        0.0
    } else {
        net
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A line with margin a quarter of its amount, value its amount.
    pub(in crate::udf::summary) fn line(
        day: i32,
        order: Option<u64>,
        amount: f64,
        key: u64,
    ) -> Line {
        Line {
            day,
            flags: if order.is_none() { ORDER_NULL } else { 0 },
            key,
            order: order.unwrap_or(0),
            amount,
            margin: amount / 4.0,
            value: amount,
        }
    }

    #[test]
    fn repeats_within_an_order_count_once_and_lines_without_order_all_count() {
        // Hand-computed: day 10 has order 1 twice (an export repeat), order 1
        // with another line key, and two identical lines without an order id.
        let mut lines = vec![
            line(10, Some(1), 5.0, 0),
            line(10, Some(1), 5.0, 0),
            line(10, Some(1), 5.0, 1),
            line(10, None, 2.0, 0),
            line(10, None, 2.0, 0),
        ];
        let s = summarise(&mut lines, None).expect("lines");
        assert_eq!((s.lines, s.duplicate_lines), (4, 1));
        // Order 1 once, plus two lines without an order id.
        assert_eq!(s.orders, 3);
        assert_eq!(s.revenue, 14.0);
        assert_eq!(s.margin, Some(3.5));
        assert_eq!(
            (s.purchase_days, s.first_day, s.last_day),
            (1, Some(10), Some(10))
        );
        assert_eq!(s.repeat_value, Some(0.0));
    }

    #[test]
    fn a_refund_on_a_later_day_is_no_order() {
        // The trial's customer ZA: order Z1 bought 50 on 2024-01-05 (day
        // 19727), Z2 bought 30 on 2024-02-01 (19754), Z1 refunded 20 on
        // 2024-03-09 (19791). Hand-counted: two orders (Z1, Z2); a refund
        // alone on a day, with or without an order id, is none.
        let mut lines = vec![
            line(19727, Some(1), 50.0, 0),
            line(19754, Some(2), 30.0, 0),
            line(19791, Some(1), -20.0, 0),
            line(19792, None, -5.0, 0),
            line(19793, Some(3), -5.0, 0),
        ];
        let s = summarise(&mut lines, None).expect("lines");
        assert_eq!(s.orders, 2);
        assert_eq!(s.purchase_days, 2);
        assert_eq!(s.revenue, 50.0);
    }

    #[test]
    fn a_day_netting_to_zero_but_for_rounding_is_a_purchase_day() {
        // 0.7 and 0.1 bought, 0.8 returned the same day: in doubles the sum
        // is -1.1e-16, not 0 (found on an Online-Retail-shaped export, where
        // one such customer got one repeat purchase fewer than another).
        // (0.7 + 0.1 - 0.8 is below zero in doubles: clippy knows it.)
        let mut lines = vec![
            line(1, Some(1), 10.0, 0),
            line(2, Some(2), 0.7, 0),
            line(2, Some(2), 0.1, 1),
            line(2, Some(3), -0.8, 0),
        ];
        let s = summarise(&mut lines, None).expect("lines");
        assert_eq!(s.purchase_days, 2);
        assert_eq!(s.last_day, Some(2));
        // A real net return is still one.
        let mut lines = vec![line(1, Some(1), 10.0, 0), line(2, Some(2), -0.01, 0)];
        let s = summarise(&mut lines, None).expect("lines");
        assert_eq!(s.purchase_days, 1);
    }

    #[test]
    fn returns_net_within_the_day_and_a_net_negative_day_is_no_purchase() {
        // Day 1: 100; day 3: 40 bought, 60 returned (net -20, a return day);
        // day 5: 30 and a 10 return (net 20). Hand-computed.
        let mut lines = vec![
            line(5, Some(4), -10.0, 0),
            line(3, Some(2), 40.0, 0),
            line(1, Some(1), 100.0, 0),
            line(3, Some(3), -60.0, 0),
            line(5, Some(5), 30.0, 0),
        ];
        let s = summarise(&mut lines, Some(4)).expect("lines");
        assert_eq!(s.purchase_days, 2);
        assert_eq!((s.first_day, s.last_day), (Some(1), Some(5)));
        assert_eq!(s.revenue, 100.0);
        // Orders 1, 2 and 5 buy; 3 and 4 are returns, no orders.
        assert_eq!(s.orders, 3);
        // Repeat value: day 5's net 20 (the return day is not a purchase).
        assert_eq!(s.repeat_value, Some(20.0));
        // The first purchase day's value, and all purchase days' (100 + 20).
        assert_eq!(s.first_value, Some(100.0));
        assert_eq!(s.purchase_value, Some(120.0));
        // Calibration end day 4: day 1 inside, day 5 in the holdout.
        assert_eq!(s.cal_purchase_days, Some(1));
        assert_eq!(s.cal_last_day, Some(1));
        assert_eq!(s.holdout_purchases, Some(1));
    }

    #[test]
    fn an_order_on_two_days_counts_once_and_null_values_stay_null() {
        let mut a = line(1, Some(7), 10.0, 0);
        a.flags |= MARGIN_NULL | VALUE_NULL;
        let mut b = line(2, Some(7), 10.0, 0);
        b.flags |= MARGIN_NULL;
        let mut lines = vec![a, b];
        let s = summarise(&mut lines, None).expect("lines");
        // One order id: one order, whatever the days its lines fall on.
        assert_eq!(s.orders, 1);
        assert_eq!(s.margin, None);
        assert_eq!(s.value_total, Some(10.0));
        // The first purchase day's value is NULL, so is the repeat value (as
        // SQL's sum - first_value would be).
        assert_eq!(s.repeat_value, None);
        assert_eq!(s.cal_purchase_days, None);
        assert!(summarise(&mut [], None).is_none());
    }
}
