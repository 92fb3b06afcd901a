//! Inputs: the job's inputs registered as tables (each location through
//! [`source`]), the column mapping checked against every file, and the
//! typed, canonically named views the SQL steps read.

mod blame;
mod csv;
mod files;
mod hive;
mod mapping;
mod schema;
mod source;
mod transactions;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::{InputKind, InputSpec};
use crate::storage::Location;

pub use blame::{blame_mapping, MappedExpression};
pub use csv::CsvOptions;
pub use files::FileFingerprint;
pub use source::{register_source, ReadOptions};
pub use transactions::TRANSACTION_COLUMNS;

use mapping::{Mapping, Source};

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
    /// The job's `where` filter, as written; rows it leaves out are counted
    /// as `rows_filtered` in the quality counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The canonical columns the input's mapping resolved (mapped, or
    /// found under their own name), for a transactions input.
    #[serde(skip)]
    pub canonical: Vec<String>,
    /// The mapping's expressions (and the filter), as the view computes
    /// them: what [`blame_mapping`] tries when a step fails on a value.
    #[serde(skip)]
    pub expressions: Vec<MappedExpression>,
}

pub(super) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Register the inputs of a job: each location as table `__raw_NAME`, and
/// the view the SQL steps read, `NAME_typed` for transactions (columns of
/// [`TRANSACTION_COLUMNS`]) or `NAME` for a table. `overrides` are `--input
/// NAME=URL`; the job's own relative paths resolve against `base_dir`. An
/// optional input without a URL is registered empty. The purchase day is
/// the calendar day in `timezone` (an IANA name). One report per input, in
/// name order.
///
/// Errors: [`Error::Argument`] for an override naming no input or a required
/// input without a URL; [`Error::Url`] for a location that does not parse;
/// [`Error::InputOption`] for a CSV option custval cannot use;
/// [`Error::InputSchema`] when a location has no data files, a file cannot be
/// read, or the column mapping does not fit a file (an unknown column, an
/// expression that does not type-check); [`Error::Storage`] when
/// the store fails.
pub async fn register_inputs(
    ctx: &SessionContext,
    inputs: &BTreeMap<String, InputSpec>,
    overrides: &BTreeMap<String, String>,
    base_dir: &std::path::Path,
    timezone: &str,
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
        let csv = dialects.get(name).cloned().unwrap_or_default();
        reports.push(register_one(ctx, name, spec, loc, csv, timezone, scratch).await?);
    }
    Ok(reports)
}

/// Limit every transactions input's typed view (`NAME_typed`) to its first
/// `rows` rows, before any step is planned on it: `check`'s sample.
pub async fn limit_transactions(
    ctx: &SessionContext,
    inputs: &BTreeMap<String, InputSpec>,
    rows: usize,
) -> Result<()> {
    for (name, spec) in inputs {
        if spec.kind != InputKind::Transactions {
            continue;
        }
        let view = format!("{name}_typed");
        let sample = ctx.table(view.as_str()).await?.limit(0, Some(rows))?;
        ctx.deregister_table(view.as_str())?;
        ctx.register_table(view.as_str(), sample.into_view())?;
    }
    Ok(())
}

/// Register one input (its raw table and its view) and report it.
async fn register_one(
    ctx: &SessionContext,
    name: &str,
    spec: &InputSpec,
    loc: Option<Location>,
    csv: CsvOptions,
    timezone: &str,
    scratch: &crate::scratch::Scratch,
) -> Result<InputReport> {
    let raw_name = format!("__raw_{name}");
    let url = loc.as_ref().map(|l| l.to_string()).unwrap_or_default();
    let (files, format, mapping, sampled) = match &loc {
        Some(loc) => {
            let read = ReadOptions {
                format: spec.format,
                csv,
                csv_as_text: spec.kind == InputKind::Transactions,
                scratch: Some(scratch),
            };
            let registered = source::register(ctx, &raw_name, loc, &read).await?;
            let context = mapping::Context {
                input: name,
                url: &url,
                schema: &registered.schema,
            };
            let mapping = resolve_mapping(&context, spec)?;
            check_every_file(name, spec, &mapping, &registered.per_file)?;
            let files = registered.files;
            (files, Some(registered.format), mapping, registered.sampled)
        }
        None => {
            let schema = register_empty(ctx, &raw_name, spec, scratch).await?;
            (vec![], None, identity_mapping(&schema), HashMap::new())
        }
    };
    let (view, expressions) = match spec.kind {
        InputKind::Transactions => {
            let input = transactions::ViewInput {
                raw_name: &raw_name,
                name,
                url: &url,
                spec,
                mapping: &mapping,
                sampled: &sampled,
                timezone,
            };
            transactions::transactions_view_sql(ctx, &input).await?
        }
        InputKind::Table => (
            table_view_sql(&raw_name, spec, &mapping)?,
            table_expressions(&mapping)?,
        ),
    };
    let view_name = match spec.kind {
        InputKind::Transactions => format!("{name}_typed"),
        InputKind::Table => name.to_string(),
    };
    let df = ctx.sql(&view).await.map_err(|e| Error::InputSchema {
        input: name.to_string(),
        url: url.clone(),
        message: format!(
            "the mapped columns do not plan: {}",
            source::first_line(&e.to_string())
        ),
    })?;
    ctx.register_table(view_name.as_str(), df.into_view())?;
    Ok(InputReport {
        name: name.to_string(),
        url: loc.as_ref().map(|l| l.to_string()),
        format: format.map(|f| format!("{f:?}").to_lowercase()),
        files,
        filter: spec.filter.clone(),
        canonical: match spec.kind {
            InputKind::Transactions if loc.is_some() => mapping.columns.keys().cloned().collect(),
            _ => vec![],
        },
        expressions,
    })
}

/// With the parameter `value = margin`: some transactions input has a
/// margin column, mapped or found under its own name as the reader resolves
/// it (exactly, or ignoring case when only one column matches).
///
/// Errors: [`Error::Param`] (exit 2) naming the transactions inputs and
/// their columns when none has one.
pub fn require_margin(inputs: &[InputReport], spec: &BTreeMap<String, InputSpec>) -> Result<()> {
    let transactions: Vec<&InputReport> = inputs
        .iter()
        .filter(|i| {
            spec.get(&i.name)
                .is_some_and(|s| s.kind == InputKind::Transactions)
        })
        .collect();
    if transactions
        .iter()
        .any(|i| i.canonical.iter().any(|c| c == "margin"))
    {
        return Ok(());
    }
    let names: Vec<&str> = transactions.iter().map(|i| i.name.as_str()).collect();
    Err(Error::param(
        "value",
        format!(
            "is margin, but no transactions input ({}) has a margin column: map one under [inputs.NAME.columns] (margin = \"COLUMN\" or an expression), or name a column margin",
            names.join(", ")
        ),
    ))
}

/// The expressions of a `table` input's mapping, as its view computes them.
fn table_expressions(mapping: &Mapping) -> Result<Vec<MappedExpression>> {
    let columns = mapping.columns.iter().filter_map(|(c, s)| match s {
        Source::Expr(e) => Some((c.as_str(), e)),
        Source::Column(_) => None,
    });
    columns
        .chain(mapping.filter.iter().map(|f| ("where", f)))
        .map(|(canonical, e)| {
            Ok(MappedExpression {
                canonical: canonical.to_string(),
                written: e.written.clone(),
                sql: e.sql_with(quote)?,
            })
        })
        .collect()
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

/// Resolve the job's mapping against the input's schema: every mapped
/// canonical column, each required one found under its own name when not
/// mapped (exactly, or ignoring case when only one column matches), the
/// optional ones found that way too, and the filter.
fn resolve_mapping(ctx: &mapping::Context<'_>, spec: &InputSpec) -> Result<Mapping> {
    let bad = |message: String| Error::InputSchema {
        input: ctx.input.to_string(),
        url: ctx.url.to_string(),
        message,
    };
    let mut m = Mapping::default();
    for (canonical, value) in &spec.columns {
        if spec.kind == InputKind::Transactions
            && !TRANSACTION_COLUMNS.iter().any(|(c, _)| c == canonical)
        {
            return Err(bad(format!(
                "unknown canonical column {canonical:?} in the job's column mapping"
            )));
        }
        m.columns
            .insert(canonical.clone(), ctx.resolve(canonical, value)?);
    }
    if spec.kind == InputKind::Transactions {
        for (canonical, required) in TRANSACTION_COLUMNS {
            if m.columns.contains_key(*canonical) {
                continue;
            }
            match ctx.lookup_column(canonical) {
                Some(found) => {
                    m.columns
                        .insert(canonical.to_string(), Source::Column(found));
                }
                None if *required => {
                    return Err(bad(format!(
                        "column {canonical:?} (mapped to {canonical}) is missing; the file has: {}",
                        ctx.available()
                    )))
                }
                None => {}
            }
        }
    }
    if let Some(f) = &spec.filter {
        m.filter = Some(ctx.resolve_filter(f)?);
    }
    Ok(m)
}

/// Every column of a registered empty table maps to itself.
fn identity_mapping(schema: &Schema) -> Mapping {
    Mapping {
        columns: schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), Source::Column(f.name().clone())))
            .collect(),
        filter: None,
    }
}

/// Each file of a transactions input has the raw columns its required
/// canonical columns read: a union would fill a missing one with NULL and
/// reject every row of the file.
fn check_every_file(
    name: &str,
    spec: &InputSpec,
    mapping: &Mapping,
    per_file: &[(String, datafusion::arrow::datatypes::SchemaRef)],
) -> Result<()> {
    if spec.kind != InputKind::Transactions || per_file.len() < 2 {
        return Ok(());
    }
    for (url, schema) in per_file {
        for (canonical, _) in TRANSACTION_COLUMNS.iter().filter(|(_, req)| *req) {
            for source in mapping.raw_columns(canonical) {
                if schema.field_with_name(source).is_err() {
                    let has: Vec<&str> =
                        schema.fields().iter().map(|f| f.name().as_str()).collect();
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
) -> Result<Arc<Schema>> {
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
    let schema = Arc::new(Schema::new(fields));
    scratch
        .register_empty(ctx, raw_name, Arc::clone(&schema))
        .await?;
    Ok(schema)
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

/// The view of a `table` input: every column as it is without a mapping;
/// else each mapped column (a raw column or an expression) under its
/// canonical name, cast to its declared type when the job gives one.
fn table_view_sql(raw_name: &str, spec: &InputSpec, mapping: &Mapping) -> Result<String> {
    let filter = match &mapping.filter {
        Some(f) => format!(" WHERE {}", f.sql_with(quote)?),
        None => String::new(),
    };
    if spec.columns.is_empty() {
        return Ok(format!("SELECT * FROM {}{filter}", quote(raw_name)));
    }
    let cols = spec
        .columns
        .keys()
        .map(|canonical| {
            let source = match mapping.columns.get(canonical) {
                Some(Source::Column(c)) => quote(c),
                Some(Source::Expr(e)) => e.sql_with(quote)?,
                None => quote(canonical),
            };
            Ok(match spec.schema.get(canonical) {
                Some(t) => format!("TRY_CAST({source} AS {t}) AS {}", quote(canonical)),
                None => format!("{source} AS {}", quote(canonical)),
            })
        })
        .collect::<Result<Vec<String>>>()?;
    Ok(format!(
        "SELECT {} FROM {}{filter}",
        cols.join(", "),
        quote(raw_name)
    ))
}
