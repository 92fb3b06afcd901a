//! Inputs: turning a URL into a registered table (Parquet, CSV, a folder, a
//! Hive-partitioned or manifest-published table), fingerprinting its files,
//! and the typed, canonically named view of a transactions input.
//!
//! Every URL is listed and every schema read here, before the first query.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::{Format, InputKind, InputSpec};
use crate::publish;
use crate::storage::{register_store, Location};

/// What a run read: enough to tell later whether the inputs changed.
#[derive(Debug, Clone, Serialize)]
pub struct FileFingerprint {
    pub path: String,
    pub size: u64,
    pub last_modified: String,
    pub e_tag: Option<String>,
}

/// One registered input.
#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    pub name: String,
    pub url: Option<String>,
    pub format: Option<String>,
    pub files: Vec<FileFingerprint>,
}

/// Canonical columns of a transactions input: (name, required).
pub const TRANSACTION_COLUMNS: &[(&str, bool)] = &[
    ("customer_id", true),
    ("order_ts", true),
    ("amount", true),
    ("order_id", false),
    ("category", false),
    ("margin", false),
    ("peer_group", false),
];

/// Guess the format from a location and its files.
fn guess_format(loc: &Location, files: &[object_store::ObjectMeta]) -> Format {
    let ext = loc.extension().or_else(|| {
        files
            .first()
            .and_then(|f| f.location.extension().map(|e| e.to_ascii_lowercase()))
    });
    match ext.as_deref() {
        Some("csv") | Some("tsv") | Some("txt") => Format::Csv,
        _ => Format::Parquet,
    }
}

/// The data files at a location: the object itself, or every file below a
/// folder (hidden and `_`-prefixed files excluded). A folder holding a
/// `_manifest.json` yields exactly the files its manifest lists.
async fn list_files(
    store: &Arc<dyn ObjectStore>,
    loc: &Location,
) -> Result<(Vec<object_store::ObjectMeta>, Option<publish::Manifest>)> {
    let path = loc.path();
    if !loc.is_dir_like() {
        match store.head(&path).await {
            Ok(meta) => return Ok((vec![meta], None)),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::storage(loc.to_string(), e)),
        }
    }
    let dir = if loc.is_dir_like() {
        loc.clone()
    } else {
        Location::parse(
            &format!("{}/", loc.url().as_str().trim_end_matches('/')),
            true,
        )?
    };
    if let Some(m) = publish::read_manifest(store, &dir).await? {
        let mut metas = Vec::new();
        for f in &m.files {
            let p = dir.path().clone().join(f.path.as_str());
            let meta = store.head(&p).await.map_err(|e| {
                Error::storage(
                    format!("{dir}{} (listed in {})", f.path, publish::MANIFEST),
                    e,
                )
            })?;
            metas.push(meta);
        }
        return Ok((metas, Some(m)));
    }
    let mut metas: Vec<_> = store
        .list(Some(&dir.path()))
        .try_collect()
        .await
        .map_err(|e| Error::storage(dir.to_string(), e))?;
    // Hidden and `_`-prefixed names below the folder are not data (Spark's
    // `_SUCCESS`, our `_manifest.json`, editors' dot files).
    let prefix = dir.path();
    metas.retain(|m| {
        m.location
            .prefix_match(&prefix)
            .map(|mut parts| {
                parts.all(|p| !p.as_ref().starts_with('.') && !p.as_ref().starts_with('_'))
            })
            .unwrap_or(false)
    });
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    Ok((metas, None))
}

fn fingerprint(store_loc: &Location, metas: &[object_store::ObjectMeta]) -> Vec<FileFingerprint> {
    let base = store_loc
        .store_url()
        .map(|u| u.as_str().to_string())
        .unwrap_or_default();
    metas
        .iter()
        .map(|m| FileFingerprint {
            path: format!("{}{}", base, m.location),
            size: m.size,
            last_modified: m.last_modified.to_rfc3339(),
            e_tag: m.e_tag.clone(),
        })
        .collect()
}

/// Register `loc` as table `name`. CSV columns are all read as text, so one
/// bad value becomes one rejected row instead of a failed run.
pub async fn register_source(
    ctx: &SessionContext,
    name: &str,
    loc: &Location,
    format: Option<Format>,
    csv_as_text: bool,
) -> Result<(SchemaRef, Vec<FileFingerprint>, Format)> {
    // Messages name the input as the user knows it, not the internal table.
    let shown_name = name.strip_prefix("__raw_").unwrap_or(name);

    let store = register_store(ctx, loc)?;
    let (metas, manifest) = list_files(&store, loc).await?;
    if metas.is_empty() {
        return Err(Error::InputSchema {
            input: shown_name.to_string(),
            url: loc.to_string(),
            message: "no data files found".into(),
        });
    }
    if let Some(empty) = metas.iter().find(|m| m.size == 0) {
        return Err(Error::InputSchema {
            input: shown_name.to_string(),
            url: loc.to_string(),
            message: format!("file {} is empty (0 bytes)", empty.location),
        });
    }
    let format = format.unwrap_or_else(|| guess_format(loc, &metas));
    if format == Format::Parquet {
        for meta in &metas {
            check_parquet_frame(&store, loc, shown_name, meta).await?;
        }
    }
    let file_format: Arc<dyn FileFormat> = match format {
        Format::Parquet => Arc::new(ParquetFormat::default()),
        Format::Csv => Arc::new(
            CsvFormat::default()
                .with_has_header(true)
                .with_schema_infer_max_rec(100),
        ),
    };
    let base = loc.store_url()?;
    let urls: Vec<ListingTableUrl> = metas
        .iter()
        .map(|m| ListingTableUrl::parse(format!("{}{}", base.as_str(), m.location)))
        .collect::<datafusion::error::Result<_>>()?;
    let options = ListingOptions::new(file_format).with_file_extension("");
    let state = ctx.state();
    let schema_err = |e: datafusion::error::DataFusionError| Error::InputSchema {
        input: shown_name.to_string(),
        url: loc.to_string(),
        message: format!("cannot read the schema: {}", first_line(&e.to_string())),
    };
    // Infer per file so a mismatch names the file.
    let mut schema: Option<SchemaRef> = None;
    for (url, meta) in urls.iter().zip(&metas) {
        let s = options
            .infer_schema(&state, url)
            .await
            .map_err(|e| Error::InputSchema {
                input: shown_name.to_string(),
                url: format!("{}{}", base.as_str(), meta.location),
                message: format!("cannot read the schema: {}", first_line(&e.to_string())),
            })?;
        match &schema {
            None => schema = Some(s),
            Some(first) => {
                if let Some(msg) = schema_mismatch(first, &s) {
                    return Err(Error::InputSchema {
                        input: shown_name.to_string(),
                        url: format!("{}{}", base.as_str(), meta.location),
                        message: format!("schema differs from {}: {msg}", metas[0].location),
                    });
                }
            }
        }
    }
    let mut schema = schema
        .ok_or_else(|| schema_err(datafusion::error::DataFusionError::Plan("no files".into())))?;
    if format == Format::Csv && csv_as_text {
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect();
        schema = Arc::new(Schema::new(fields));
    }
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema.clone());
    let table = ListingTable::try_new(config)?;
    ctx.register_table(name, Arc::new(table))?;
    if manifest.is_some() {
        tracing::debug!(table = name, "read through its manifest");
    }
    Ok((schema, fingerprint(loc, &metas), format))
}

/// A Parquet file starts and ends with `PAR1`, and its footer length fits in
/// the file. Checked before the reader sees the file: the parquet crate's
/// footer decoder overflows (and panics in debug builds) on a length larger
/// than the file.
async fn check_parquet_frame(
    store: &Arc<dyn ObjectStore>,
    loc: &Location,
    input: &str,
    meta: &object_store::ObjectMeta,
) -> Result<()> {
    let bad = |message: String| Error::InputSchema {
        input: input.to_string(),
        url: format!(
            "{}{}",
            loc.store_url()
                .map(|u| u.as_str().to_string())
                .unwrap_or_default(),
            meta.location
        ),
        message,
    };
    let size = meta.size;
    if size < 12 {
        return Err(bad(format!(
            "not a Parquet file: {size} bytes is too short"
        )));
    }
    let head = store
        .get_range(&meta.location, 0..4)
        .await
        .map_err(|e| Error::storage(loc.to_string(), e))?;
    let tail = store
        .get_range(&meta.location, size - 8..size)
        .await
        .map_err(|e| Error::storage(loc.to_string(), e))?;
    if head.as_ref() != b"PAR1" || &tail[4..8] != b"PAR1" {
        return Err(bad(
            "not a Parquet file: the PAR1 magic bytes are missing (truncated or another format)"
                .into(),
        ));
    }
    let footer = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if footer + 12 > size {
        return Err(bad(format!(
            "corrupt Parquet file: its footer claims {footer} bytes but the file has {size}"
        )));
    }
    Ok(())
}

/// The whole error chain on one line (DataFusion puts causes on new lines).
fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
        .chars()
        .take(1000)
        .collect()
}

/// Differences that matter between two files of one table: same column with
/// another type, or a column missing.
fn schema_mismatch(a: &Schema, b: &Schema) -> Option<String> {
    for f in a.fields() {
        match b.field_with_name(f.name()) {
            Ok(g) if g.data_type() != f.data_type() => {
                return Some(format!(
                    "column {} is {} here but {} there",
                    f.name(),
                    g.data_type(),
                    f.data_type()
                ))
            }
            Ok(_) => {}
            Err(_) => return Some(format!("column {} is missing", f.name())),
        }
    }
    None
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Register the inputs of a job. `overrides` are `--input NAME=URL`.
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
    // Parse every location before reading any of them.
    let mut locations = BTreeMap::new();
    for (name, spec) in inputs {
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
                let (schema, files, format) = register_source(
                    ctx,
                    &raw_name,
                    loc,
                    spec.format,
                    spec.kind == InputKind::Transactions,
                )
                .await?;
                check_mapping(name, loc, spec, &schema)?;
                (files, Some(format))
            }
            None => {
                register_empty(ctx, &raw_name, spec, scratch).await?;
                (vec![], None)
            }
        };
        let view = match spec.kind {
            InputKind::Transactions => transactions_view_sql(&raw_name, spec, ctx, name).await?,
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

fn source_column<'a>(spec: &'a InputSpec, canonical: &'a str) -> &'a str {
    spec.columns
        .get(canonical)
        .map(|s| s.as_str())
        .unwrap_or(canonical)
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

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(t, DataType::Dictionary(_, v) if is_text(v))
}

fn is_temporal(t: &DataType) -> bool {
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

/// The typed view `NAME_typed`: canonical names, parsed values (NULL when a
/// value does not parse) and the raw text for `rejected_rows`.
async fn transactions_view_sql(
    raw_name: &str,
    spec: &InputSpec,
    ctx: &SessionContext,
    name: &str,
) -> Result<String> {
    let schema = ctx.table(raw_name).await?.schema().as_arrow().clone();
    let col_type = |canonical: &str| -> Option<(String, DataType)> {
        let source = source_column(spec, canonical);
        let mapped = spec.columns.contains_key(canonical);
        let required = TRANSACTION_COLUMNS
            .iter()
            .any(|(c, r)| *c == canonical && *r);
        if !mapped && !required && schema.field_with_name(source).is_err() {
            return None;
        }
        schema
            .field_with_name(source)
            .ok()
            .map(|f| (quote(source), f.data_type().clone()))
    };
    let _ = name;
    // A missing optional column is NULL on every row, but not as a literal:
    // a constant in the deduplication's GROUP BY makes DataFusion 55 plan a
    // partially sorted aggregate whose emits copy all groups again each time
    // (31 of 43 s of the nightly job at 6.6M rows; 1.2 s without). NULLIF of a
    // column with itself is NULL too, and the optimizer does not fold it.
    // NULLIF on the source column itself, cast afterwards: casting an
    // integer id to text on every row first cost 1.5% of the CLV job.
    let null = match col_type("customer_id") {
        Some((c, _)) => format!("NULLIF({c}, {c})"),
        None => "NULL".into(),
    };
    let mut select = Vec::new();
    // customer_id: trimmed text or an integer, empty text is missing.
    select.push(match col_type("customer_id") {
        Some((c, t)) if is_text(&t) => {
            format!("NULLIF(TRIM(CAST({c} AS VARCHAR)), '') AS customer_id")
        }
        Some((c, _)) => format!("{c} AS customer_id"),
        None => "CAST(NULL AS VARCHAR) AS customer_id".into(),
    });
    select.push(match col_type("order_ts") {
        Some((c, DataType::Date32)) => format!("{c} AS order_ts"),
        Some((c, t)) if is_temporal(&t) => format!("CAST({c} AS DATE) AS order_ts"),
        Some((c, _)) => format!(
            "COALESCE(TRY_CAST(TRIM({c}) AS DATE), CAST(TRY_CAST(TRIM({c}) AS TIMESTAMP) AS DATE)) AS order_ts"
        ),
        None => "CAST(NULL AS DATE) AS order_ts".into(),
    });
    for money in ["amount", "margin"] {
        select.push(match col_type(money) {
            Some((c, t)) if is_text(&t) => format!("TRY_CAST(TRIM({c}) AS DOUBLE) AS {money}"),
            Some((c, _)) => format!("CAST({c} AS DOUBLE) AS {money}"),
            None => format!("CAST({null} AS DOUBLE) AS {money}"),
        });
    }
    for text in ["order_id", "category", "peer_group"] {
        select.push(match col_type(text) {
            Some((c, t)) if is_text(&t) => {
                format!("NULLIF(TRIM(CAST({c} AS VARCHAR)), '') AS {text}")
            }
            // Integer order ids stay integers: cheaper to deduplicate.
            Some((c, _)) if text == "order_id" => format!("{c} AS {text}"),
            Some((c, _)) => format!("CAST({c} AS VARCHAR) AS {text}"),
            None => format!("CAST({null} AS VARCHAR) AS {text}"),
        });
    }
    // Only text ids can be absurdly long; integers skip the check.
    select.push(match col_type("customer_id") {
        Some((c, t)) if is_text(&t) => {
            format!("coalesce(character_length({c}) > 256, false) AS customer_id_too_long")
        }
        _ => "false AS customer_id_too_long".into(),
    });
    for raw in [
        "customer_id",
        "order_ts",
        "amount",
        "order_id",
        "category",
        "margin",
    ] {
        select.push(match col_type(raw) {
            Some((c, _)) => format!("CAST({c} AS VARCHAR) AS raw_{raw}"),
            None => format!("CAST(NULL AS VARCHAR) AS raw_{raw}"),
        });
    }
    Ok(format!(
        "SELECT {} FROM {}",
        select.join(",\n  "),
        quote(raw_name)
    ))
}
