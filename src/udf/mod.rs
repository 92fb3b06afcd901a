//! custval's SQL functions: the registry, and the generic DataFusion wrappers
//! every model file builds on (scalar functions of a parameter struct,
//! pattern-compressed fit aggregates, value-list aggregates).
//!
//! Adding a model: one file with its math, its `functions()` and its tests,
//! and one line in [`MODELS`].

pub mod args;
pub mod bgbb;
pub mod bgnbd;
pub mod clv;
pub mod concentration;
pub mod gamma_gamma;
pub mod mbgnbd;
pub mod pareto_nbd;
pub mod parse;
pub mod sbg;
#[cfg(test)]
mod shapes;
pub mod summary;
pub mod wallet;

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

use args::{Collector, Output, ScalarEval, StructEval, ValuesAggregate, ValuesFinish};
pub use args::{FitAggregate, ModelScalar};

/// A registered SQL function with its documentation.
#[derive(Debug, Clone)]
pub struct Function {
    /// SQL name.
    pub name: &'static str,
    /// Arguments and result, as `custval functions` prints them; built by
    /// [`signature`] from the lists the implementation takes.
    pub signature: String,
    /// One line on what it computes.
    pub description: &'static str,
    /// The DataFusion function.
    pub udf: Udf,
}

/// The DataFusion object behind a function.
#[derive(Debug, Clone)]
pub enum Udf {
    /// A scalar function.
    Scalar(Arc<ScalarUDF>),
    /// An aggregate function.
    Aggregate(Arc<AggregateUDF>),
}

impl Function {
    /// A [`FitAggregate`] `name(args...)` returning the collector's struct.
    pub fn fit<C: Collector>(
        name: &'static str,
        args: &'static [&'static str],
        description: &'static str,
    ) -> Function {
        Function {
            name,
            signature: signature(name, args, Some(&C::return_type())),
            description,
            udf: Udf::Aggregate(Arc::new(AggregateUDF::new_from_impl(
                FitAggregate::<C>::new(name, args),
            ))),
        }
    }

    /// A [`ModelScalar`] `name(struct args..., args...)` returning a double
    /// (see [`ModelScalar::new`] for the arguments).
    pub fn scalar(
        name: &'static str,
        structs: &'static [(&'static str, &'static [&'static str])],
        args: &'static [&'static str],
        eval: ScalarEval,
        description: &'static str,
    ) -> Function {
        let udf = ModelScalar::new(name, structs, args, eval);
        Function {
            name,
            signature: signature(name, &udf.arg_names(), Some(&DataType::Float64)),
            description,
            udf: Udf::Scalar(Arc::new(ScalarUDF::new_from_impl(udf))),
        }
    }

    /// A [`ModelScalar`] `name(struct args..., args...)` returning a struct
    /// of the Float64 `fields`, computed together by `eval`.
    pub fn scalar_struct(
        name: &'static str,
        structs: &'static [(&'static str, &'static [&'static str])],
        args: &'static [&'static str],
        fields: &'static [&'static str],
        eval: StructEval,
        description: &'static str,
    ) -> Function {
        let output = Output::Struct(fields, eval);
        let udf = ModelScalar::with_output(name, structs, args, output);
        Function {
            name,
            signature: signature(name, &udf.arg_names(), Some(&output.data_type())),
            description,
            udf: Udf::Scalar(Arc::new(ScalarUDF::new_from_impl(udf))),
        }
    }

    /// A [`ValuesAggregate`] `name(args...)` returning `return_type`.
    pub fn values(
        name: &'static str,
        args: &'static [&'static str],
        return_type: DataType,
        finish: ValuesFinish,
        description: &'static str,
    ) -> Function {
        Function {
            name,
            signature: signature(name, args, Some(&return_type)),
            description,
            udf: Udf::Aggregate(Arc::new(AggregateUDF::new_from_impl(ValuesAggregate::new(
                name,
                args,
                return_type,
                finish,
            )))),
        }
    }
}

/// Help text `name(arg, ...) -> result` (no arrow without a result):
/// Float64 is `double`, a struct `struct(field, ...)`, a list `list(item)`.
pub fn signature(name: &str, args: &[&str], result: Option<&DataType>) -> String {
    let call = format!("{name}({})", args.join(", "));
    match result {
        Some(t) => format!("{call} -> {}", type_text(t)),
        None => call,
    }
}

fn type_text(t: &DataType) -> String {
    match t {
        DataType::Float64 => "double".into(),
        DataType::Struct(fields) => {
            let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
            format!("struct({})", names.join(", "))
        }
        DataType::List(item) => format!("list({})", type_text(item.data_type())),
        other => other.to_string(),
    }
}

/// Every model's function list: one line per model.
pub const MODELS: &[fn() -> Vec<Function>] = &[
    bgnbd::functions,
    pareto_nbd::functions,
    mbgnbd::functions,
    bgbb::functions,
    gamma_gamma::functions,
    clv::functions,
    sbg::functions,
    concentration::functions,
    summary::functions,
    parse::functions,
    wallet::functions,
];

/// All custval functions.
pub fn all_functions() -> Vec<Function> {
    MODELS.iter().flat_map(|f| f()).collect()
}

/// Register every custval function with a session state: the form a Ballista
/// scheduler's session builder and an executor's function registry start from.
pub fn register_all_state(
    state: &mut datafusion::execution::SessionState,
) -> datafusion::error::Result<()> {
    use datafusion::execution::FunctionRegistry;
    for f in all_functions() {
        match f.udf {
            Udf::Scalar(u) => {
                state.register_udf(u)?;
            }
            Udf::Aggregate(u) => {
                state.register_udaf(u)?;
            }
        }
    }
    Ok(())
}

/// Register every custval function with a session.
pub fn register_all(ctx: &SessionContext) {
    for f in all_functions() {
        match f.udf {
            Udf::Scalar(u) => ctx.register_udf(u.as_ref().clone()),
            Udf::Aggregate(u) => ctx.register_udaf(u.as_ref().clone()),
        }
    }
}
