//! Inputs: the job's inputs registered as tables (each location through
//! [`source`]), the column mapping checked against every file, and the
//! typed, canonically named views the SQL steps read.

mod csv;
mod files;
mod hive;
mod schema;
mod source;
mod transactions;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::{InputKind, InputSpec};
use crate::storage::Location;

pub use csv::CsvOptions;
pub use files::FileFingerprint;
pub use source::{register_source, ReadOptions};
pub use transactions::TRANSACTION_COLUMNS;

use schema::is_text;

/// One registered input.
#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    /// The input's name in the job.
    pub name: String,
    /// The location read; `None` for an optional input without a URL.
    pub url: Option<String>,
    /// `"parquet"` or `"csv"`; `None` when no location was read.
    pub format: Option<String>,
    /// The files read, in path order (a manifest's order when the folder has
    /// a `_manifest.json`); empty without a location.
    pub files: Vec<FileFingerprint>,
}

pub(super) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Register the inputs of a job: each location as table `__raw_NAME`, and
/// the view the SQL steps read, `NAME_typed` for transactions (columns of
/// [`TRANSACTION_COLUMNS`]) or `NAME` for a table. `overrides` are `--input
/// NAME=URL`; the job's own relative paths resolve against `base_dir`. An
/// optional input without a URL is registered empty. One report per input,
/// in name order.
///
/// Errors: [`Error::Argument`] for an override naming no input or a required
/// input without a URL; [`Error::Url`] for a location that does not parse;
/// [`Error::InputOption`] for a CSV option custval cannot use;
/// [`Error::InputSchema`] when a location has no data files, a file cannot be
/// read, or the column mapping does not fit a file; [`Error::Storage`] when
/// the store fails.
pub async fn register_inputs(
    ctx: &SessionContext,
    inputs: &BTreeMap<String, InputSpec>,
    overrides: &BTreeMap<String, String>,
    base_dir: &std::path::Path,
    scratch: &crate::scratch::Scratch,
) -> Result<Vec<InputReport>> {
    for name in overrides.keys() {
        if !inputs.contains_key(name) {
            let known: Vec<_> = inputs.keys().cloned().collect();
            return Err(Error::Argument(format!(
                "--input {name}: the job has no input {name} (inputs: {})",
                known.join(", ")
            )));
        }
    }
    // Parse every location and CSV dialect before reading any of them.
    let mut locations = BTreeMap::new();
    let mut dialects = BTreeMap::new();
    for (name, spec) in inputs {
        dialects.insert(name.clone(), CsvOptions::resolve(name, &spec.csv)?);
        let raw = match (overrides.get(name), &spec.url) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(u)) => Some(resolve_relative(base_dir, u)),
            (None, None) => None,
        };
        match raw {
            Some(r) => {
                locations.insert(name.clone(), Some(Location::parse(&r, r.ends_with('/'))?));
            }
            None if spec.required => {
                return Err(Error::Argument(format!(
                    "input {name} has no URL: pass --input {name}=URL"
                )))
            }
            None => {
                locations.insert(name.clone(), None);
            }
        }
    }
    let mut reports = Vec::new();
    for (name, spec) in inputs {
        let loc = locations.get(name).cloned().flatten();
        let raw_name = format!("__raw_{name}");
        let (files, format) = match &loc {
            Some(loc) => {
                let read = ReadOptions {
                    format: spec.format,
                    csv: dialects.get(name).cloned().unwrap_or_default(),
                    csv_as_text: spec.kind == InputKind::Transactions,
                    scratch: Some(scratch),
                };
                let registered = source::register(ctx, &raw_name, loc, &read).await?;
                check_mapping(name, loc, spec, &registered.schema)?;
                check_every_file(name, spec, &registered.per_file)?;
                (registered.files, Some(registered.format))
            }
            None => {
                register_empty(ctx, &raw_name, spec, scratch).await?;
                (vec![], None)
            }
        };
        let view = match spec.kind {
            InputKind::Transactions => {
                transactions::transactions_view_sql(&raw_name, spec, ctx, name).await?
            }
            InputKind::Table => table_view_sql(&raw_name, spec),
        };
        let view_name = match spec.kind {
            InputKind::Transactions => format!("{name}_typed"),
            InputKind::Table => name.clone(),
        };
        let df = ctx.sql(&view).await?;
        ctx.register_table(view_name.as_str(), df.into_view())?;
        reports.push(InputReport {
            name: name.clone(),
            url: loc.as_ref().map(|l| l.to_string()),
            format: format.map(|f| format!("{f:?}").to_lowercase()),
            files,
        });
    }
    Ok(reports)
}

/// Paths in a job file are relative to the job file; URLs are absolute.
pub fn resolve_relative(base_dir: &std::path::Path, raw: &str) -> String {
    if raw.contains("://") || std::path::Path::new(raw).is_absolute() {
        raw.to_string()
    } else {
        let mut s = base_dir.join(raw).to_string_lossy().into_owned();
        if raw.ends_with('/') && !s.ends_with('/') {
            s.push('/');
        }
        s
    }
}

pub(super) fn source_column<'a>(spec: &'a InputSpec, canonical: &'a str) -> &'a str {
    spec.columns
        .get(canonical)
        .map(|s| s.as_str())
        .unwrap_or(canonical)
}

/// Each file of a transactions input has the required columns: a union
/// would fill a missing one with NULL and reject every row of the file.
fn check_every_file(
    name: &str,
    spec: &InputSpec,
    per_file: &[(String, datafusion::arrow::datatypes::SchemaRef)],
) -> Result<()> {
    if spec.kind != InputKind::Transactions || per_file.len() < 2 {
        return Ok(());
    }
    for (url, schema) in per_file {
        for (canonical, _) in TRANSACTION_COLUMNS.iter().filter(|(_, req)| *req) {
            let source = source_column(spec, canonical);
            if schema.field_with_name(source).is_err() {
                let has: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(Error::InputSchema {
                    input: name.to_string(),
                    url: url.clone(),
                    message: format!(
                        "column {source:?} (mapped to {canonical}) is missing from this file, which has: {}; the other files of the input have it",
                        has.join(", ")
                    ),
                });
            }
        }
    }
    Ok(())
}

fn check_mapping(name: &str, loc: &Location, spec: &InputSpec, schema: &Schema) -> Result<()> {
    for canonical in spec.columns.keys() {
        let known = match spec.kind {
            InputKind::Transactions => TRANSACTION_COLUMNS.iter().any(|(c, _)| c == canonical),
            InputKind::Table => true,
        };
        if !known {
            return Err(Error::InputSchema {
                input: name.to_string(),
                url: loc.to_string(),
                message: format!(
                    "unknown canonical column {canonical:?} in the job's column mapping"
                ),
            });
        }
    }
    let required: Vec<&str> = match spec.kind {
        InputKind::Transactions => TRANSACTION_COLUMNS
            .iter()
            .filter(|(c, req)| *req || spec.columns.contains_key(*c))
            .map(|(c, _)| *c)
            .collect(),
        InputKind::Table => spec.columns.keys().map(|s| s.as_str()).collect(),
    };
    let available: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    for canonical in required {
        let source = source_column(spec, canonical);
        let field = schema
            .field_with_name(source)
            .map_err(|_| Error::InputSchema {
                input: name.to_string(),
                url: loc.to_string(),
                message: format!(
                    "column {source:?} (mapped to {canonical}) is missing; the file has: {}",
                    available.join(", ")
                ),
            })?;
        if spec.kind == InputKind::Transactions {
            let ok = match canonical {
                "customer_id" | "order_id" | "category" | "peer_group" => {
                    is_text(field.data_type()) || field.data_type().is_integer()
                }
                "order_ts" => is_text(field.data_type()) || is_temporal(field.data_type()),
                "amount" | "margin" => is_text(field.data_type()) || field.data_type().is_numeric(),
                _ => true,
            };
            if !ok {
                return Err(Error::InputSchema {
                    input: name.to_string(),
                    url: loc.to_string(),
                    message: format!(
                        "column {source:?} (mapped to {canonical}) has type {}, which cannot hold {canonical} values",
                        field.data_type()
                    ),
                });
            }
        }
    }
    Ok(())
}

pub(super) fn is_temporal(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
    )
}

async fn register_empty(
    ctx: &SessionContext,
    raw_name: &str,
    spec: &InputSpec,
    scratch: &crate::scratch::Scratch,
) -> Result<()> {
    let fields: Vec<Field> = match spec.kind {
        InputKind::Transactions => TRANSACTION_COLUMNS
            .iter()
            .map(|(c, _)| Field::new(*c, DataType::Utf8, true))
            .collect(),
        InputKind::Table => spec
            .schema
            .iter()
            .map(|(c, t)| Ok(Field::new(c, sql_type(t)?, true)))
            .collect::<Result<_>>()?,
    };
    scratch
        .register_empty(ctx, raw_name, Arc::new(Schema::new(fields)))
        .await
}

fn sql_type(t: &str) -> Result<DataType> {
    Ok(match t.to_ascii_lowercase().as_str() {
        "varchar" | "text" | "string" => DataType::Utf8,
        "bigint" | "int" | "integer" => DataType::Int64,
        "double" | "float" | "real" => DataType::Float64,
        "date" => DataType::Date32,
        "boolean" | "bool" => DataType::Boolean,
        other => {
            return Err(Error::Argument(format!(
                "unsupported column type {other:?} in an input schema"
            )))
        }
    })
}

fn table_view_sql(raw_name: &str, spec: &InputSpec) -> String {
    if spec.columns.is_empty() {
        return format!("SELECT * FROM {}", quote(raw_name));
    }
    let cols: Vec<String> = spec
        .columns
        .iter()
        .map(|(canonical, source)| {
            let ty = spec.schema.get(canonical).map(|t| t.as_str());
            match ty {
                Some(t) => format!("TRY_CAST({} AS {t}) AS {}", quote(source), quote(canonical)),
                None => format!("{} AS {}", quote(source), quote(canonical)),
            }
        })
        .collect();
    format!("SELECT {} FROM {}", cols.join(", "), quote(raw_name))
}
