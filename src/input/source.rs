//! One location as one table: its files listed, each file's schema read,
//! their union by column name registered as the table. Parquet files are
//! mapped onto the union by name by DataFusion's schema adapter; CSV files,
//! which DataFusion reads by position, are grouped by header layout (and
//! compression), one listing per group, and the groups are unioned by name.
//! CSV files in another encoding are read from UTF-8 copies in scratch
//! space; Hive partition folders add their values as text columns.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{Column, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::functions::expr_fn::nullif;
use datafusion::logical_expr::{lit, Expr, LogicalPlan, Union};
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore};

use super::csv::{self, CsvOptions};
use super::files::{self, FileFingerprint};
use super::hive::{self, Partitions};
use super::schema::{self, FileSchema, Reader};
use crate::error::{Error, Result};
use crate::job::Format;
use crate::scratch::Scratch;
use crate::storage::{register_store, Location};

/// Files transcoded at the same time.
const CONCURRENT_TRANSCODES: usize = 4;

/// What registering a location found.
#[derive(Debug, Clone)]
pub(super) struct Registered {
    /// The table's schema: the union of its files' columns, then the
    /// partition columns.
    pub schema: SchemaRef,
    pub files: Vec<FileFingerprint>,
    pub format: Format,
    /// Each file's URL and own schema (with the partition columns), in
    /// path order.
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

/// How to read a location.
#[derive(Default)]
pub struct ReadOptions<'a> {
    /// The format; `None`: CSV for a `.csv`, `.tsv` or `.txt` name (also
    /// compressed: `.csv.gz`), else Parquet.
    pub format: Option<Format>,
    /// The CSV dialect.
    pub csv: CsvOptions,
    /// Read every CSV column as text, so one bad value becomes one rejected
    /// row instead of a failed run.
    pub csv_as_text: bool,
    /// Where CSV files in another encoding are transcoded to UTF-8; without
    /// it such files are an error.
    pub scratch: Option<&'a Scratch>,
}

/// One data file: the URL messages and manifests show, and the object
/// read (for a CSV file in another encoding, its UTF-8 copy in scratch).
#[derive(Debug, Clone)]
struct DataFile {
    shown: String,
    read: ObjectMeta,
    /// The store URL of `read` (`s3://bucket/`), for listings.
    base: String,
    compression: FileCompressionType,
}

/// Register `loc` as table `name`, read as `read` says. Returns the table's
/// schema (the union of its files' columns by name, then Hive partition
/// columns as text), the files read and the format.
///
/// Errors: [`Error::InputSchema`] when the location has no data files, a
/// file is empty or not Parquet, a schema cannot be read, two files give a
/// column types nothing reconciles, a file cannot be transcoded, or a
/// partitioned folder holds a file outside its partition folders;
/// [`Error::Storage`] when the store fails.
pub async fn register_source(
    ctx: &SessionContext,
    name: &str,
    loc: &Location,
    read: &ReadOptions<'_>,
) -> Result<(SchemaRef, Vec<FileFingerprint>, Format)> {
    let r = register(ctx, name, loc, read).await?;
    Ok((r.schema, r.files, r.format))
}

pub(super) async fn register(
    ctx: &SessionContext,
    name: &str,
    loc: &Location,
    read: &ReadOptions<'_>,
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
    let format = read
        .format
        .unwrap_or_else(|| files::guess_format(loc, &metas));
    let parts = hive::partitions(loc, &metas, manifest, &|m| files::file_url(loc, m))?
        .map_err(|m| bad(m.file, m.message))?;
    let (data, mut per_file) = match format {
        Format::Parquet => parquet_files(ctx, shown_name, loc, &store, &metas).await?,
        Format::Csv => csv_files(ctx, shown_name, loc, &store, &metas, read).await?,
    };
    let mut sampled = HashMap::new();
    if format == Format::Csv && read.csv_as_text {
        sampled = sample_kinds(&per_file);
        for f in &mut per_file {
            f.schema = csv_types(&f.schema, true);
        }
    }
    let mut file_schema =
        schema::union(&per_file).map_err(|c| bad(c.file.clone(), c.to_string()))?;
    if format == Format::Csv {
        // A column empty in every sampled record of every file is text.
        file_schema = csv_types(&file_schema, false);
    }
    if let Some(col) = parts
        .columns
        .iter()
        .find(|c| file_schema.field_with_name(c).is_ok())
    {
        return Err(bad(
            loc.to_string(),
            format!("partition folder key {col:?} is also a column of the files; rename one"),
        ));
    }
    let groups = groups(format, &data, &per_file, &parts);
    let listable = Listable {
        format,
        opts: &read.csv,
        file_schema: &file_schema,
        partition_columns: &parts.columns,
    };
    // DataFusion may list the folder itself when no manifest chose the
    // files and they are read where they are (not transcoded copies).
    let folder_listable = !manifest
        && loc.is_dir_like()
        && data
            .iter()
            .zip(&metas)
            .all(|(d, m)| d.read.location == m.location);
    if !(folder_listable && register_partitioned_folder(ctx, name, loc, &listable, &groups)?) {
        register_groups(ctx, name, &listable, &groups)?;
    }
    if manifest {
        tracing::debug!(table = name, "read through a manifest");
    }
    Ok(Registered {
        schema: with_partitions(&file_schema, &parts.columns),
        files: files::fingerprint(loc, &metas),
        format,
        per_file: per_file
            .into_iter()
            .map(|f| (f.url, with_partitions(&f.schema, &parts.columns)))
            .collect(),
        sampled,
    })
}

/// `schema` with the partition columns (text) after its own.
fn with_partitions(schema: &Schema, columns: &[String]) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(columns.iter().map(|c| Field::new(c, DataType::Utf8, true)));
    Arc::new(Schema::new(fields))
}

/// The store URL of a location (`s3://bucket/`, `file:///`).
fn store_base(loc: &Location) -> Result<String> {
    Ok(loc.store_url()?.as_str().to_string())
}

/// Parquet files, each checked for its framing, and their footers' schemas.
async fn parquet_files(
    ctx: &SessionContext,
    input: &str,
    loc: &Location,
    store: &Arc<dyn ObjectStore>,
    metas: &[ObjectMeta],
) -> Result<(Vec<DataFile>, Vec<FileSchema>)> {
    futures::stream::iter(metas)
        .map(|m| files::check_parquet_frame(store, loc, input, m))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let base = store_base(loc)?;
    let data: Vec<DataFile> = metas
        .iter()
        .map(|m| DataFile {
            shown: files::file_url(loc, m),
            read: m.clone(),
            base: base.clone(),
            compression: FileCompressionType::UNCOMPRESSED,
        })
        .collect();
    let format = parquet_format();
    let per_file = infer(ctx, input, store, Reader::Parquet(&format), &data).await?;
    Ok((data, per_file))
}

/// Spark's INT96 timestamps as microseconds: nanoseconds would wrap the
/// dates outside 1677..2262 into another century.
fn parquet_format() -> ParquetFormat {
    ParquetFormat::default().with_coerce_int96(Some("us".into()))
}

/// CSV files with their compression, transcoded to UTF-8 copies when the
/// dialect's encoding is another (or a file without a header starts with a
/// byte order mark, which would stick to its first value), and their
/// headers' schemas.
async fn csv_files(
    ctx: &SessionContext,
    input: &str,
    loc: &Location,
    store: &Arc<dyn ObjectStore>,
    metas: &[ObjectMeta],
    read: &ReadOptions<'_>,
) -> Result<(Vec<DataFile>, Vec<FileSchema>)> {
    let opts = &read.csv;
    let base = store_base(loc)?;
    let mut data: Vec<DataFile> = metas
        .iter()
        .map(|m| DataFile {
            shown: files::file_url(loc, m),
            read: m.clone(),
            base: base.clone(),
            compression: opts.compression_of(m.location.as_ref()),
        })
        .collect();
    let mut read_store = Arc::clone(store);
    if opts.transcodes() {
        (data, read_store) = transcode_all(ctx, input, &data, store, opts, read.scratch).await?;
    }
    let mut per_file = infer(ctx, input, &read_store, Reader::Csv(opts), &data).await?;
    if !opts.header && !opts.transcodes() && per_file.iter().any(|f| f.bom) {
        (data, read_store) = transcode_all(ctx, input, &data, store, opts, read.scratch).await?;
        per_file = infer(ctx, input, &read_store, Reader::Csv(opts), &data).await?;
    }
    Ok((data, per_file))
}

async fn infer(
    ctx: &SessionContext,
    input: &str,
    store: &Arc<dyn ObjectStore>,
    reader: Reader<'_>,
    data: &[DataFile],
) -> Result<Vec<FileSchema>> {
    let listed: Vec<(String, ObjectMeta, FileCompressionType)> = data
        .iter()
        .map(|f| (f.shown.clone(), f.read.clone(), f.compression))
        .collect();
    let state = ctx.state();
    schema::infer_each(&state, store, reader, &listed)
        .await
        .map_err(|(url, e)| match e {
            // The store failing is not bad input: exit 1, retry.
            schema::InferError::Store(e) => Error::storage(url, e),
            schema::InferError::Decode(e) => Error::InputSchema {
                input: input.to_string(),
                url,
                message: format!("cannot read the schema: {}", first_line(&e)),
            },
        })
}

/// UTF-8 copies of `data` (decompressed, without a byte order mark) in the
/// run's scratch space, and the scratch store they are read from.
async fn transcode_all(
    ctx: &SessionContext,
    input: &str,
    data: &[DataFile],
    store: &Arc<dyn ObjectStore>,
    opts: &CsvOptions,
    scratch: Option<&Scratch>,
) -> Result<(Vec<DataFile>, Arc<dyn ObjectStore>)> {
    let scratch = scratch.ok_or_else(|| {
        Error::Internal(format!(
            "input {input}: no scratch space to transcode its CSV files"
        ))
    })?;
    let safe: String = input
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = Location::parse(&scratch.folder(&format!("utf8-{safe}"))?, true)?;
    let dest_store = register_store(ctx, &dir)?;
    let base = store_base(&dir)?;
    let copies = data.iter().enumerate().map(|(i, f)| {
        let dest_store = Arc::clone(&dest_store);
        let dir = &dir;
        let base = &base;
        async move {
            let dest = dir.join(&format!("{i:06}.csv"))?.path();
            let meta = csv::transcode(
                Arc::clone(store),
                &f.read,
                f.compression,
                opts.encoding,
                dest_store,
                dest,
            )
            .await
            .map_err(|e| Error::InputSchema {
                input: input.to_string(),
                url: f.shown.clone(),
                message: format!("cannot read it as {}: {e}", opts.encoding.name()),
            })?;
            Ok::<_, Error>(DataFile {
                shown: f.shown.clone(),
                read: meta,
                base: base.clone(),
                compression: FileCompressionType::UNCOMPRESSED,
            })
        }
    });
    let copied = futures::stream::iter(copies)
        .buffered(CONCURRENT_TRANSCODES)
        .try_collect::<Vec<_>>()
        .await?;
    Ok((copied, dest_store))
}

/// Files read by one listing: the same header layout (CSV columns in file
/// order), compression and partition values.
struct Group<'a> {
    columns: Vec<String>,
    compression: FileCompressionType,
    partition: Vec<Option<String>>,
    files: Vec<&'a DataFile>,
}

/// The files grouped for listings, groups in order of their first file.
/// Parquet files differ only by partition (DataFusion maps their columns by
/// name).
fn groups<'a>(
    format: Format,
    data: &'a [DataFile],
    per_file: &[FileSchema],
    parts: &Partitions,
) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    type Key = (
        Vec<String>,
        datafusion::common::parsers::CompressionTypeVariant,
        Vec<Option<String>>,
    );
    let mut index: HashMap<Key, usize> = HashMap::new();
    for (i, (f, schema)) in data.iter().zip(per_file).enumerate() {
        let columns: Vec<String> = match format {
            Format::Csv => schema
                .schema
                .fields()
                .iter()
                .map(|c| c.name().clone())
                .collect(),
            Format::Parquet => vec![],
        };
        let partition = parts.values.get(i).cloned().unwrap_or_default();
        let key = (
            columns.clone(),
            *f.compression.get_variant(),
            partition.clone(),
        );
        match index.get(&key) {
            Some(&g) => groups[g].files.push(f),
            None => {
                index.insert(key, groups.len());
                groups.push(Group {
                    columns,
                    compression: f.compression,
                    partition,
                    files: vec![f],
                });
            }
        }
    }
    groups
}

/// What every listing of one location shares.
struct Listable<'a> {
    format: Format,
    opts: &'a CsvOptions,
    /// The union of the files' own columns (no partition columns).
    file_schema: &'a SchemaRef,
    partition_columns: &'a [String],
}

impl Listable<'_> {
    /// DataFusion's reader of a group's files, and the schema it is given
    /// (CSV: the group's columns in file order, as read by position).
    fn reader(&self, g: &Group<'_>) -> (Arc<dyn FileFormat>, SchemaRef) {
        match self.format {
            Format::Parquet => (Arc::new(parquet_format()), self.file_schema.clone()),
            Format::Csv => (
                Arc::new(self.opts.format(g.compression)),
                layout_schema(&g.columns, self.file_schema),
            ),
        }
    }

    /// The table's columns from a group's: its own by name (a typed NULL
    /// for one it lacks), then the partition columns.
    fn columns(&self, g: &Group<'_>) -> Result<Vec<Expr>> {
        match self.format {
            Format::Csv => by_name(&g.columns, self.file_schema),
            Format::Parquet => Ok(self
                .file_schema
                .fields()
                .iter()
                .map(|f| Expr::Column(Column::new_unqualified(f.name())))
                .collect()),
        }
    }
}

/// A partitioned folder whose files share one layout and compression as
/// one listing of the folder with DataFusion's partition columns: one scan
/// however many partitions (a union of one listing per partition made
/// `check` on a folder of 730 daily partitions take minutes). DataFusion
/// lists the folder itself, skipping names that start with `.` or `_` as
/// [`files::list_files`] does; `__HIVE_DEFAULT_PARTITION__` becomes NULL.
/// False (nothing registered) when the files differ in layout or
/// compression.
fn register_partitioned_folder(
    ctx: &SessionContext,
    name: &str,
    loc: &Location,
    l: &Listable<'_>,
    groups: &[Group<'_>],
) -> Result<bool> {
    let Some(first) = groups.first() else {
        return Ok(false);
    };
    if l.partition_columns.is_empty()
        || groups
            .iter()
            .any(|g| g.columns != first.columns || g.compression != first.compression)
    {
        return Ok(false);
    }
    let url = ListingTableUrl::parse(loc.url().as_str())?.with_glob("[!._]*")?;
    let (format, schema) = l.reader(first);
    let options = ListingOptions::new(format)
        .with_file_extension("")
        .with_table_partition_cols(
            l.partition_columns
                .iter()
                .map(|c| (c.clone(), DataType::Utf8))
                .collect(),
        );
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let mut select = l.columns(first)?;
    for c in l.partition_columns {
        let col = Expr::Column(Column::new_unqualified(c));
        select.push(nullif(col, lit(hive::DEFAULT_PARTITION)).alias(c));
    }
    let df = ctx
        .read_table(Arc::new(ListingTable::try_new(config)?))?
        .select(select)?;
    ctx.register_table(name, df.into_view())?;
    Ok(true)
}

/// Register the groups as table `name`: one listing directly when there is
/// one group and no partition column, else each group's columns by name
/// and its partition values, unioned.
fn register_groups(
    ctx: &SessionContext,
    name: &str,
    l: &Listable<'_>,
    groups: &[Group<'_>],
) -> Result<()> {
    let listing = |g: &Group<'_>| -> Result<ListingTable> {
        let urls = g
            .files
            .iter()
            .map(|f| {
                Ok(ListingTableUrl::parse(format!(
                    "{}{}",
                    f.base, f.read.location
                ))?)
            })
            .collect::<Result<Vec<_>>>()?;
        let (format, schema) = l.reader(g);
        let options = ListingOptions::new(format).with_file_extension("");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(schema);
        Ok(ListingTable::try_new(config)?)
    };
    let partition_columns = l.partition_columns;
    if let [g] = groups {
        if partition_columns.is_empty() {
            ctx.register_table(name, Arc::new(listing(g)?))?;
            return Ok(());
        }
    }
    let mut inputs = Vec::with_capacity(groups.len());
    for g in groups {
        let mut select = l.columns(g)?;
        for (col, value) in partition_columns.iter().zip(&g.partition) {
            select.push(lit(ScalarValue::Utf8(value.clone())).alias(col));
        }
        let df = ctx.read_table(Arc::new(listing(g)?))?.select(select)?;
        inputs.push(Arc::new(df.into_unoptimized_plan()));
    }
    // One n-ary union: pairwise unions nest one level per group.
    let plan = match inputs.len() {
        0 => return Err(Error::Internal(format!("{name}: no files to list"))),
        1 => inputs.remove(0).as_ref().clone(),
        _ => LogicalPlan::Union(Union::try_new(inputs)?),
    };
    let df = DataFrame::new(ctx.state(), plan);
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
