//! The `customer_summary` aggregate function: its arguments and their
//! coercion, return and state types, accumulators, and registry entry.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, Signature, Volatility,
};

use super::facts::summary_fields;
use super::groups::{is_integer, line_fields, SummaryGroups, SummaryOne};
use super::NAME;
use crate::udf::{Function, Udf};

const ARGS: [&str; 7] = [
    "order_ts",
    "order_id",
    "amount",
    "margin",
    "value",
    "line_key",
    "calibration_end",
];

/// `customer_summary(order_ts, order_id, amount, margin, value, line_key, calibration_end)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CustomerSummary {
    signature: Signature,
}

impl AggregateUDFImpl for CustomerSummary {
    fn name(&self) -> &str {
        NAME
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != ARGS.len() {
            return plan_err!(
                "{NAME} takes {} arguments ({}), got {}",
                ARGS.len(),
                ARGS.join(", "),
                arg_types.len()
            );
        }
        let date = |i: usize| match &arg_types[i] {
            DataType::Date32 | DataType::Null => Ok(DataType::Date32),
            other => plan_err!("{NAME}: argument {} must be a DATE, got {other}", ARGS[i]),
        };
        let number = |i: usize| match &arg_types[i] {
            DataType::Null => Ok(DataType::Float64),
            t if t.is_numeric() => Ok(DataType::Float64),
            other => plan_err!("{NAME}: argument {} must be numeric, got {other}", ARGS[i]),
        };
        let order = match &arg_types[1] {
            t if is_integer(t) => DataType::Int64,
            t => t.clone(),
        };
        Ok(vec![
            date(0)?,
            order,
            number(2)?,
            number(3)?,
            number(4)?,
            arg_types[5].clone(),
            date(6)?,
        ])
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(summary_fields()))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new_list(
                format!("{}_lines", args.name),
                Field::new_list_field(DataType::Struct(line_fields()), false),
                true,
            )),
            Arc::new(Field::new(
                format!("{}_calibration_end", args.name),
                DataType::Date32,
                true,
            )),
        ])
    }
    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SummaryOne(groups_for(&acc_args)?)))
    }
    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }
    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(groups_for(&args)?))
    }
}

fn groups_for(args: &AccumulatorArgs) -> Result<SummaryGroups> {
    if args.is_distinct {
        return plan_err!("{NAME} does not take DISTINCT");
    }
    let t = |i: usize| -> Result<DataType> {
        match args.expr_fields.get(i) {
            Some(f) => Ok(f.data_type().clone()),
            None => plan_err!("{NAME}: argument {} is missing", ARGS[i]),
        }
    };
    SummaryGroups::new(&t(1)?, &t(5)?)
}

/// `customer_summary`, and `day_net_amount` (the same purchase-day rule for
/// SQL steps that group days themselves), for the registry.
pub fn functions() -> Vec<Function> {
    vec![
        Function::scalar(
            "day_net_amount",
            &[],
            &["net", "gross"],
            |_, a| Ok(Some(super::facts::day_net_amount(a[0], a[1]))),
            "a day's net amount (sum of its lines) with the floating-point residue of a day netting to zero (small against gross = sum of |amount|) set to 0: >= 0 is a purchase day, the rule of customer_summary",
        ),
        Function {
        name: NAME,
        signature: crate::udf::signature(NAME, &ARGS, None),
        description: "per-customer facts for RFM: lines (exact repeats within an order dropped), orders, revenue, purchase days (net amount >= 0), first/last purchase day, repeat value, calibration counts",
        udf: Udf::Aggregate(Arc::new(AggregateUDF::from(CustomerSummary {
            signature: Signature::user_defined(Volatility::Immutable),
        }))),
        },
    ]
}
