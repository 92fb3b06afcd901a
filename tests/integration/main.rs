//! The one integration test binary: SQL logic tests over a custval session,
//! and end-to-end tests of the real `custval` binary on temporary folders,
//! one module per area, all run through `common::Cmd`.

mod airflow;
mod check;
mod cli_sql;
#[cfg(feature = "cluster")]
mod cluster;
mod column_docs;
mod common;
mod csv_dialects;
mod delta;
mod demo;
mod exit_codes;
mod exports;
mod hostile;
mod incremental;
mod inputs;
mod jobs;
mod logs;
mod mapping;
mod memory;
mod metrics;
mod models;
mod publish;
mod quality;
mod report;
mod run_nightly;
mod scenarios;
mod selection;
mod sqllogic;
mod storage;
mod terminal;
mod tiers;
mod wallets;
