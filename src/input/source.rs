//! One location as one table: its files listed, each file's schema read,
//! their union by column name registered as the table. Parquet files are
//! mapped onto the union by name by DataFusion's schema adapter; CSV files,
//! which DataFusion reads by position, are grouped by header layout, one
//! listing per layout, and the layouts are unioned by name.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{Column, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::logical_expr::{lit, Expr};
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;

use super::files::{self, FileFingerprint};
use super::schema::{self, FileSchema};
use crate::error::{Error, Result};
use crate::job::Format;
use crate::storage::{register_store, Location};

/// What registering a location found.
#[derive(Debug, Clone)]
pub(super) struct Registered {
    /// The table's schema: the union of its files' columns.
    pub schema: SchemaRef,
    pub files: Vec<FileFingerprint>,
    pub format: Format,
    /// Each file's URL and own schema, in path order.
    pub per_file: Vec<(String, SchemaRef)>,
    /// For CSV columns read as text: what their sampled values were.
    pub sampled: HashMap<String, Sampled>,
}

/// What the sampled records of every file held in a CSV column read as
/// text: what an expression of the mapping may parse it as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sampled {
    /// Numbers in some file, nothing else in any.
    Numbers,
    /// No value in any file's sample.
    Empty,
    /// Text, dates or booleans in some file.
    Other,
}

/// Each column's [`Sampled`] kind over the files' inferred schemas.
fn sample_kinds(per_file: &[FileSchema]) -> HashMap<String, Sampled> {
    let mut kinds: HashMap<String, Sampled> = HashMap::new();
    for f in per_file {
        for field in f.schema.fields() {
            let t = field.data_type();
            let this = if t == &DataType::Null {
                Sampled::Empty
            } else if t.is_numeric() {
                Sampled::Numbers
            } else {
                Sampled::Other
            };
            let k = kinds.entry(field.name().clone()).or_insert(this);
            *k = match (*k, this) {
                (Sampled::Other, _) | (_, Sampled::Other) => Sampled::Other,
                (Sampled::Numbers, _) | (_, Sampled::Numbers) => Sampled::Numbers,
                _ => Sampled::Empty,
            };
        }
    }
    kinds
}

/// Register `loc` as table `name`. With `csv_as_text` CSV columns are all
/// read as text, so one bad value becomes one rejected row instead of a
/// failed run. Returns the table's schema (the union of its files' columns
/// by name), the files read and the format (when `format` is `None`, CSV for
/// a `.csv`, `.tsv` or `.txt` extension, else Parquet).
///
/// Errors: [`Error::InputSchema`] when the location has no data files, a
/// file is empty or not Parquet, a schema cannot be read, or two files give
/// a column types nothing reconciles; [`Error::Storage`] when the store
/// fails.
pub async fn register_source(
    ctx: &SessionContext,
    name: &str,
    loc: &Location,
    format: Option<Format>,
    csv_as_text: bool,
) -> Result<(SchemaRef, Vec<FileFingerprint>, Format)> {
    let r = register(ctx, name, loc, format, csv_as_text).await?;
    Ok((r.schema, r.files, r.format))
}

pub(super) async fn register(
    ctx: &SessionContext,
    name: &str,
    loc: &Location,
    format: Option<Format>,
    csv_as_text: bool,
) -> Result<Registered> {
    // Messages name the input as the user knows it, not the internal table.
    let shown_name = name.strip_prefix("__raw_").unwrap_or(name);
    let bad = |url: String, message: String| Error::InputSchema {
        input: shown_name.to_string(),
        url,
        message,
    };

    let store = register_store(ctx, loc)?;
    let (metas, manifest) = files::list_files(&store, loc).await?;
    if metas.is_empty() {
        return Err(bad(loc.to_string(), "no data files found".into()));
    }
    if let Some(empty) = metas.iter().find(|m| m.size == 0) {
        return Err(bad(
            loc.to_string(),
            format!("file {} is empty (0 bytes)", empty.location),
        ));
    }
    let format = format.unwrap_or_else(|| files::guess_format(loc, &metas));
    if format == Format::Parquet {
        futures::stream::iter(&metas)
            .map(|m| files::check_parquet_frame(&store, loc, shown_name, m))
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
    }
    // Spark's INT96 timestamps as microseconds: nanoseconds would wrap the
    // dates outside 1677..2262 into another century.
    let parquet = ParquetFormat::default().with_coerce_int96(Some("us".into()));
    let listed: Vec<(String, ObjectMeta)> = metas
        .iter()
        .map(|m| (files::file_url(loc, m), m.clone()))
        .collect();
    let state = ctx.state();
    let parquet_ref: Option<&dyn FileFormat> = match format {
        Format::Parquet => Some(&parquet),
        Format::Csv => None,
    };
    let mut per_file = schema::infer_each(&state, &store, parquet_ref, &listed)
        .await
        .map_err(|(url, e)| bad(url, format!("cannot read the schema: {}", first_line(&e))))?;
    let mut sampled = HashMap::new();
    if format == Format::Csv && csv_as_text {
        sampled = sample_kinds(&per_file);
        for f in &mut per_file {
            f.schema = csv_types(&f.schema, true);
        }
    }
    let mut table_schema =
        schema::union(&per_file).map_err(|c| bad(c.file.clone(), c.to_string()))?;
    if format == Format::Csv {
        // A column empty in every sampled record of every file is text.
        table_schema = csv_types(&table_schema, false);
    }

    match format {
        Format::Parquet => register_parquet(ctx, name, loc, &metas, parquet, &table_schema)?,
        Format::Csv => register_csv(ctx, name, loc, &metas, &per_file, &table_schema)?,
    }
    if manifest.is_some() {
        tracing::debug!(table = name, "read through its manifest");
    }
    Ok(Registered {
        schema: table_schema,
        files: files::fingerprint(loc, &metas),
        format,
        per_file: per_file.into_iter().map(|f| (f.url, f.schema)).collect(),
        sampled,
    })
}

/// The URL of a listed file, for a listing table.
fn listing_url(loc: &Location, m: &ObjectMeta) -> Result<ListingTableUrl> {
    let base = loc.store_url()?;
    Ok(ListingTableUrl::parse(format!(
        "{}{}",
        base.as_str(),
        m.location
    ))?)
}

/// Parquet files as one listing with the union schema: DataFusion maps
/// each file's columns by name and fills a missing one with NULL.
fn register_parquet(
    ctx: &SessionContext,
    name: &str,
    loc: &Location,
    metas: &[ObjectMeta],
    parquet: ParquetFormat,
    table_schema: &SchemaRef,
) -> Result<()> {
    let urls = metas
        .iter()
        .map(|m| listing_url(loc, m))
        .collect::<Result<Vec<_>>>()?;
    let options = ListingOptions::new(Arc::new(parquet)).with_file_extension("");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(table_schema.clone());
    ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// CSV files: DataFusion reads CSV columns by position, so files are
/// grouped by header layout, one listing per layout, unioned by name.
fn register_csv(
    ctx: &SessionContext,
    name: &str,
    loc: &Location,
    metas: &[ObjectMeta],
    per_file: &[FileSchema],
    table_schema: &SchemaRef,
) -> Result<()> {
    let layouts = csv_layouts(per_file, metas);
    let listing = |columns: &[String], group: &[&ObjectMeta]| -> Result<ListingTable> {
        let urls = group
            .iter()
            .map(|m| listing_url(loc, m))
            .collect::<Result<Vec<_>>>()?;
        csv_listing(urls, layout_schema(columns, table_schema))
    };
    if let [(columns, group)] = layouts.as_slice() {
        // One header layout: one listing, no view in between.
        ctx.register_table(name, Arc::new(listing(columns, group)?))?;
        return Ok(());
    }
    let mut union: Option<DataFrame> = None;
    for (columns, group) in &layouts {
        let df = ctx
            .read_table(Arc::new(listing(columns, group)?))?
            .select(by_name(columns, table_schema)?)?;
        union = Some(match union {
            None => df,
            Some(u) => u.union(df)?,
        });
    }
    let Some(df) = union else {
        return Err(Error::Internal(format!("{name}: no CSV layout")));
    };
    ctx.register_table(name, df.into_view())?;
    Ok(())
}

/// CSV column types: all text for typed validation later (`as_text`), or as
/// inferred with `Null` (no value in the sample) read as text.
fn csv_types(schema: &Schema, as_text: bool) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let t = if as_text || f.data_type() == &DataType::Null {
                DataType::Utf8
            } else {
                f.data_type().clone()
            };
            Field::new(f.name(), t, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Files grouped by their header (column names in file order), groups in
/// order of their first file.
fn csv_layouts<'a>(
    per_file: &[FileSchema],
    metas: &'a [ObjectMeta],
) -> Vec<(Vec<String>, Vec<&'a ObjectMeta>)> {
    let mut layouts: Vec<(Vec<String>, Vec<&ObjectMeta>)> = Vec::new();
    let mut index: HashMap<Vec<String>, usize> = HashMap::new();
    for (f, meta) in per_file.iter().zip(metas) {
        let columns: Vec<String> = f.schema.fields().iter().map(|c| c.name().clone()).collect();
        match index.get(&columns) {
            Some(&i) => layouts[i].1.push(meta),
            None => {
                index.insert(columns.clone(), layouts.len());
                layouts.push((columns, vec![meta]));
            }
        }
    }
    layouts
}

/// A layout's columns in file order with the table's types: what the CSV
/// reader, which reads by position, must be given.
fn layout_schema(columns: &[String], table: &Schema) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| match table.field_with_name(c) {
            Ok(f) => f.clone(),
            Err(_) => Field::new(c, DataType::Utf8, true),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The table's columns, in table order, from a layout: its own columns by
/// name, a typed NULL for each column it lacks.
fn by_name(columns: &[String], table: &Schema) -> Result<Vec<Expr>> {
    table
        .fields()
        .iter()
        .map(|f| {
            Ok(if columns.contains(f.name()) {
                Expr::Column(Column::new_unqualified(f.name()))
            } else {
                lit(ScalarValue::try_from(f.data_type())?).alias(f.name())
            })
        })
        .collect()
}

/// A listing of CSV files with one header layout. Values may contain
/// newlines inside quotes, so a file is never split into byte ranges (a
/// range boundary cannot know whether it falls inside a quoted value).
fn csv_listing(urls: Vec<ListingTableUrl>, schema: SchemaRef) -> Result<ListingTable> {
    let format = CsvFormat::default()
        .with_has_header(true)
        .with_newlines_in_values(true);
    let options = ListingOptions::new(Arc::new(format)).with_file_extension("");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(ListingTable::try_new(config)?)
}

/// The whole error chain on one line (DataFusion puts causes on new lines).
pub(super) fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
        .chars()
        .take(1000)
        .collect()
}
