//! custval: customer value analytics on Apache DataFusion (the README
//! follows; `docs/architecture.md` shows the modules and one run).
#![doc = include_str!("../README.md")]
// `!(x > 0.0)` is deliberate throughout the numeric code: it is true for NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod builtin;
pub mod cli;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod columns;
pub mod demo;
pub mod engine;
pub mod error;
pub mod generate;
pub mod incremental;
pub mod init;
pub mod input;
pub mod job;
#[cfg(test)]
mod layering;
pub mod lineage;
pub mod lock;
pub mod numeric;
pub mod progress;
pub mod publish;
pub mod rejections;
pub mod report;
pub mod runner;
pub mod scratch;
pub mod security;
pub mod selection;
pub mod sql;
pub mod steps;
pub mod storage;
pub mod table;
pub mod udf;
pub mod url_tables;

pub use error::{Error, Result};
