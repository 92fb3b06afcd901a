//! custval's SQL functions: the registry, and the generic DataFusion wrappers
//! every model file builds on (scalar functions of a parameter struct,
//! pattern-compressed fit aggregates, value-list aggregates).
//!
//! Adding a model: one file with its math, its `functions()` and its tests,
//! and one line in [`MODELS`].

pub mod args;
pub mod bgnbd;
pub mod clv;
pub mod concentration;
pub mod gamma_gamma;
pub mod sbg;
pub mod summary;

use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

pub use args::{FitAggregate, ModelScalar};

/// A registered SQL function with its documentation.
#[derive(Debug, Clone)]
pub struct Function {
    /// SQL name.
    pub name: &'static str,
    /// Arguments and result, as `custval functions` prints them.
    pub signature: &'static str,
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

/// Every model's function list: one line per model.
pub const MODELS: &[fn() -> Vec<Function>] = &[
    bgnbd::functions,
    gamma_gamma::functions,
    clv::functions,
    sbg::functions,
    concentration::functions,
    summary::functions,
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
