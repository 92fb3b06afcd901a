//! Publishing: the layout of everything under OUTPUT ([`OutputLayout`]),
//! Parquet files written straight from the plan's streams into the run's own
//! folder of each partition, the run record that commits all tables of a run
//! at once ([`record`]), the per-table `_manifest.json` rolled forward from
//! it, and the repair of what a killed run left ([`repair`]).
//!
//! A run writes `OUTPUT/<table>/as_of=YYYY-MM-DD/run=<run_id>/part-*.parquet`
//! for every table (nothing visible: no manifest or record names them), then
//! puts one run record `OUTPUT/_runs/<job>/as_of=YYYY-MM-DD.json` with a
//! conditional put: that single put is the commit of every table. Only then
//! is each table's `_manifest.json` rewritten to the new run and the older
//! runs' folders deleted. Readers that go through [`read_manifest`] follow
//! the run record, so they see every table of one run, even while manifests
//! are still being rolled forward or after a run was killed in between.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::dataframe::DataFrame;
use datafusion::parquet::arrow::async_writer::AsyncArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::Location;

/// Name of the manifest inside a partition folder.
pub const MANIFEST: &str = "_manifest.json";

/// Version tag of the manifest format, in every manifest's `format`.
pub const MANIFEST_FORMAT: &str = "custval-manifest/1";

pub mod delta;
pub mod record;
pub mod repair;

pub use record::{read_manifest, RunCommit};

/// Every path custval reads or writes below an output location: the one
/// place that spells `as_of=`.
///
/// ```text
/// OUTPUT/<table>/as_of=YYYY-MM-DD/            a published partition
/// OUTPUT/<table>/as_of=YYYY-MM-DD/run=<id>/   one run's data files in it
/// OUTPUT/_runs/<job>/as_of=YYYY-MM-DD.json    the run record: the commit
/// OUTPUT/_locks/<job>/as_of=YYYY-MM-DD.json   the run lock
/// OUTPUT/_reports/<job>/as_of=YYYY-MM-DD/report.html
/// OUTPUT/_work/<run_id>/                      a cluster run's scratch space
/// OUTPUT/_failed/<job>/as_of=YYYY-MM-DD/<run_id>/<table>/
///                                             a failed run's evidence (no manifest)
/// ```
#[derive(Debug, Clone)]
pub struct OutputLayout {
    root: Location,
}

impl OutputLayout {
    /// The layout below `root`, a folder location.
    pub fn new(root: Location) -> OutputLayout {
        OutputLayout { root }
    }

    /// The output location itself.
    pub fn root(&self) -> &Location {
        &self.root
    }

    /// `OUTPUT/<table>/`: the folder of a table's partitions.
    pub fn table(&self, table: &str) -> Result<Location> {
        self.root.join(&format!("{table}/"))
    }

    /// `OUTPUT/<table>/as_of=<date>/`: one published partition.
    pub fn partition(&self, table: &str, as_of: NaiveDate) -> Result<Location> {
        self.table(table)?.join(&partition_folder(as_of))
    }

    /// `OUTPUT/<table>/as_of=<date>/run=<run_id>/`: the folder of one run's
    /// data files in a partition.
    pub fn run_files(&self, table: &str, as_of: NaiveDate, run_id: &str) -> Result<Location> {
        self.partition(table, as_of)?.join(&run_folder(run_id))
    }

    /// `OUTPUT/_runs/<job>/as_of=<date>.json`: the run record, whose one
    /// conditional put commits every table of a run.
    pub fn run_record(&self, job: &str, as_of: NaiveDate) -> Result<Location> {
        self.root.join(&format!("{RUNS}/{job}/as_of={as_of}.json"))
    }

    /// `OUTPUT/_runs/`: the folder of the jobs' run records.
    pub fn runs(&self) -> Result<Location> {
        self.root.join(&format!("{RUNS}/"))
    }

    /// The layout, table and date of a partition folder
    /// `OUTPUT/<table>/as_of=<date>/`; `None` for any other folder.
    pub fn of_partition(partition: &Location) -> Option<(OutputLayout, String, NaiveDate)> {
        let path = partition.url().path().trim_end_matches('/');
        let (rest, last) = path.rsplit_once('/')?;
        let date = NaiveDate::parse_from_str(last.strip_prefix("as_of=")?, "%Y-%m-%d").ok()?;
        let (_, table) = rest.rsplit_once('/')?;
        if table.is_empty() {
            return None;
        }
        let root = partition.join("../../").ok()?;
        let table = percent_decode(table);
        Some((OutputLayout::new(root), table, date))
    }

    /// `OUTPUT/_locks/<job>/as_of=<date>.json`: the lock of a run.
    pub fn lock(&self, job: &str, as_of: NaiveDate) -> Result<Location> {
        self.root.join(&format!("_locks/{job}/as_of={as_of}.json"))
    }

    /// `OUTPUT/_reports/<job>/as_of=<date>/report.html`: a run's visual report.
    pub fn report(&self, job: &str, as_of: NaiveDate) -> Result<Location> {
        let folder = partition_folder(as_of);
        self.root
            .join(&format!("_reports/{job}/{folder}report.html"))
    }

    /// `OUTPUT/_work/<run_id>/`: scratch space every cluster process reaches.
    pub fn scratch(&self, run_id: &str) -> Result<Location> {
        self.root.join(&format!("_work/{run_id}/"))
    }

    /// `OUTPUT/_failed/<job>/as_of=<date>/<run_id>/<table>/`: what a failed
    /// run kept for people to look at (its rejected rows). Never published:
    /// no manifest is written there and no reader of OUTPUT/<table>/ sees it.
    pub fn failed(
        &self,
        job: &str,
        as_of: NaiveDate,
        run_id: &str,
        table: &str,
    ) -> Result<Location> {
        let folder = partition_folder(as_of);
        self.root
            .join(&format!("_failed/{job}/{folder}{run_id}/{table}/"))
    }

    /// The dates of a table's partition folders, oldest first (published or
    /// not: a folder is published when it has a manifest).
    pub async fn partition_dates(
        &self,
        store: &Arc<dyn ObjectStore>,
        table: &str,
    ) -> Result<Vec<NaiveDate>> {
        let dir = self.table(table)?;
        let listing = store
            .list_with_delimiter(Some(&dir.path()))
            .await
            .map_err(|e| Error::storage(dir.to_string(), e))?;
        let mut dates: Vec<NaiveDate> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .filter_map(|n| n.strip_prefix("as_of="))
            .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .collect();
        dates.sort();
        Ok(dates)
    }

    /// The latest published partition of `table` before `as_of`: what a
    /// job's `previous` columns are read from.
    pub async fn previous(
        &self,
        store: &Arc<dyn ObjectStore>,
        table: &str,
        as_of: NaiveDate,
    ) -> Result<Option<Location>> {
        for date in self.partition_dates(store, table).await?.into_iter().rev() {
            if date >= as_of {
                continue;
            }
            let part = self.partition(table, date)?;
            if read_manifest(store, &part).await?.is_some() {
                return Ok(Some(part));
            }
        }
        Ok(None)
    }
}

impl OutputLayout {
    /// The tables of the output: its folders, leaving out custval's own
    /// (`_runs`, `_failed`, `_reports`, ...), sorted by name.
    ///
    /// Errors: [`Error::Storage`] when the listing fails.
    pub async fn tables(&self, store: &Arc<dyn ObjectStore>) -> Result<Vec<String>> {
        let listing = store
            .list_with_delimiter(Some(&self.root.path()))
            .await
            .map_err(|e| Error::storage(self.root.to_string(), e))?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .filter(|n| !n.starts_with('_') && !n.starts_with('.'))
            .map(String::from)
            .collect();
        names.sort();
        Ok(names)
    }

    /// The latest published (committed) partition of `table`, if any.
    ///
    /// Errors: those of [`OutputLayout::previous`].
    pub async fn latest(
        &self,
        store: &Arc<dyn ObjectStore>,
        table: &str,
    ) -> Result<Option<Location>> {
        self.previous(store, table, NaiveDate::MAX).await
    }
}

fn partition_folder(as_of: NaiveDate) -> String {
    format!("as_of={as_of}/")
}

/// The folder of the run records under OUTPUT.
const RUNS: &str = "_runs";

/// `run=<run_id>/`: a run's data folder inside a partition.
pub fn run_folder(run_id: &str) -> String {
    format!("run={run_id}/")
}

/// Whether a folder name is a run's data folder ([`run_folder`]) rather
/// than a Hive partition of the user's.
pub fn is_run_folder(name: &str) -> bool {
    name.strip_prefix("run=").is_some_and(|id| !id.is_empty())
}

/// The run record's path as seen from a partition folder, for the manifest's
/// `run_record` pointer: `../../_runs/<job>/as_of=<date>.json`.
pub fn run_record_from_partition(job: &str, as_of: NaiveDate) -> String {
    format!("../../{RUNS}/{job}/as_of={as_of}.json")
}

fn percent_decode(s: &str) -> String {
    StorePath::from_url_path(s)
        .map(|p| p.to_string())
        .unwrap_or_else(|_| s.to_string())
}

/// What every table of one run shares; [`RunRecord::commit`] adds each
/// table's own files, rows and schema to make the run record.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The job's name.
    pub job: String,
    /// The run's id (also in its data file names).
    pub run_id: String,
    /// The as-of date the run is bound to.
    pub as_of: NaiveDate,
    /// Bound parameters ([`crate::job::BoundParams::to_json`]).
    pub parameters: serde_json::Value,
    /// The inputs read: names, redacted URLs, file fingerprints.
    pub inputs: serde_json::Value,
    /// The `quality` step's row, or null.
    pub quality: serde_json::Value,
    /// The `model_fit` step's rows, or null.
    pub model_fit: serde_json::Value,
    /// Per-step name, file, rows and seconds.
    pub steps: serde_json::Value,
}

/// One data file of a partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// File name relative to the partition folder.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
}

/// One column of the published schema.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnEntry {
    /// Column name.
    pub name: String,
    /// Arrow type, as Arrow prints it (e.g. `Float64`).
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether the column may hold nulls.
    pub nullable: bool,
    /// One-line description ([`crate::columns`]), when documented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Unit ([`crate::columns::Column::unit`]), when documented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// `_manifest.json`: what a reader needs to read the partition, and what an
/// operator needs to know where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// Table name.
    pub table: String,
    /// As-of date of the partition, `YYYY-MM-DD`.
    pub as_of: String,
    /// The run that published it.
    pub run_id: String,
    /// The job that published it.
    pub job: String,
    /// The custval that published it.
    pub custval_version: String,
    /// When the manifest was written (RFC 3339, UTC).
    pub created_at: String,
    /// Rows in all files.
    pub rows: u64,
    /// The partition's data files: only these are the table.
    pub files: Vec<FileEntry>,
    /// The columns.
    pub schema: Vec<ColumnEntry>,
    /// The run's bound parameters.
    pub parameters: serde_json::Value,
    /// The inputs read, with file fingerprints.
    pub inputs: serde_json::Value,
    /// The run's data-quality counts.
    pub quality: serde_json::Value,
    /// Model fits of the run (the `model_fit` step), when the job has one.
    #[serde(default)]
    pub model_fit: serde_json::Value,
    /// Per-step name, file, rows and seconds: the run report's steps.
    #[serde(default)]
    pub steps: serde_json::Value,
    /// The run record that commits this partition, relative to the
    /// partition folder (`../../_runs/<job>/as_of=<date>.json`); absent in
    /// manifests written before run records. When the record names another
    /// run, the record wins: this manifest is still being rolled forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_record: Option<String>,
}

/// A table whose files are written but not yet published.
#[derive(Debug, Clone)]
pub struct Staged {
    /// Table name.
    pub table: String,
    /// The partition folder the files are in.
    pub partition: Location,
    /// The files written.
    pub files: Vec<FileEntry>,
    /// Rows in all files.
    pub rows: u64,
    /// Their schema.
    pub schema: SchemaRef,
}

/// zstd level 1: on the CLV table (1.5M rows, mostly floats) level 3 wrote
/// the same 108 MB 0.1 s slower.
fn writer_props() -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(1)?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(1 << 20))
        .build())
}

/// Write the rows of `df` as Parquet files named after `run_id` into the
/// run's folder of `partition` ([`run_folder`]), one file per non-empty
/// output partition, in parallel. The files' paths in the result are
/// relative to `partition` (`run=<run_id>/part-<run_id>-00000.parquet`).
pub async fn stage(
    table: &str,
    df: DataFrame,
    store: Arc<dyn ObjectStore>,
    partition: &Location,
    run_id: &str,
) -> Result<Staged> {
    let folder = partition.join(&run_folder(run_id))?;
    let mut staged = stage_with(table, df, store, &folder, run_id, writer_props()?).await?;
    for f in &mut staged.files {
        f.path = format!("{}{}", run_folder(run_id), f.path);
    }
    staged.partition = partition.clone();
    Ok(staged)
}

/// [`stage`] with other writer properties (the run's local spill files).
/// The writers hold at most a row group each and take nothing from the
/// query engine's memory pool.
pub async fn stage_with(
    table: &str,
    df: DataFrame,
    store: Arc<dyn ObjectStore>,
    partition: &Location,
    run_id: &str,
    props: WriterProperties,
) -> Result<Staged> {
    // Each column's description and unit go into the file's field metadata
    // (and from the schema into the manifest).
    let plain: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let schema = crate::columns::annotate(table, &plain);
    let streams = df.execute_stream_partitioned().await?;
    let mut tasks = Vec::with_capacity(streams.len());
    for (i, stream) in streams.into_iter().enumerate() {
        let store = store.clone();
        let name = format!("part-{run_id}-{i:05}.parquet");
        let path = child(&partition.path(), &name);
        let shown = format!("{partition}{name}");
        let props = props.clone();
        let schema = schema.clone();
        tasks.push(tokio::spawn(write_part(
            stream, store, path, name, shown, schema, props,
        )));
    }
    let mut files = Vec::new();
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(Some(f))) => files.push(f),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(join) => {
                first_err.get_or_insert(Error::Internal(format!("writer task failed: {join}")));
            }
        }
    }
    if let Some(e) = first_err {
        let staged: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        discard_files(&store, partition, &staged).await;
        return Err(e);
    }
    if files.is_empty() {
        // An empty table still publishes its schema as one empty file, so
        // readers that list the folder can plan against it.
        let name = format!("part-{run_id}-00000.parquet");
        let written = |e: datafusion::parquet::errors::ParquetError| Error::OutputWrite {
            url: format!("{partition}{name}"),
            message: e.to_string().replace('\n', ": "),
        };
        let w = BufWriter::new(store.clone(), child(&partition.path(), &name));
        let writer = AsyncArrowWriter::try_new(w, schema.clone(), Some(props)).map_err(written)?;
        writer.close().await.map_err(written)?;
        files.push(FileEntry {
            path: name,
            rows: 0,
        });
    }
    let rows = files.iter().map(|f| f.rows).sum();
    Ok(Staged {
        table: table.to_string(),
        partition: partition.clone(),
        files,
        rows,
        schema,
    })
}

/// Write one stream of a staged table to `path` as one Parquet file,
/// opened only once there is a row to write (an empty stream leaves no
/// file). Errors of the stream are the computation's (an input read among
/// them); errors of the writer are the output's ([`Error::OutputWrite`]).
async fn write_part(
    mut stream: datafusion::physical_plan::SendableRecordBatchStream,
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    name: String,
    shown: String,
    schema: SchemaRef,
    props: WriterProperties,
) -> Result<Option<FileEntry>> {
    let written = |e: datafusion::parquet::errors::ParquetError| Error::OutputWrite {
        url: shown.clone(),
        message: e.to_string().replace('\n', ": "),
    };
    let mut writer: Option<AsyncArrowWriter<BufWriter>> = None;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        if writer.is_none() {
            let w = BufWriter::new(store.clone(), path.clone());
            writer = Some(
                AsyncArrowWriter::try_new(w, schema.clone(), Some(props.clone()))
                    .map_err(written)?,
            );
        }
        if let Some(w) = writer.as_mut() {
            w.write(&batch).await.map_err(written)?;
        }
        rows += batch.num_rows() as u64;
    }
    match writer {
        Some(w) => {
            w.close().await.map_err(written)?;
            Ok(Some(FileEntry { path: name, rows }))
        }
        None => Ok(None),
    }
}

/// The store path of `name` below `dir`; `name` may hold `/`-separated
/// folders (a manifest's `run=<id>/part-...parquet`).
pub fn child(dir: &StorePath, name: &str) -> StorePath {
    name.split('/')
        .filter(|s| !s.is_empty())
        .fold(dir.clone(), |p, part| p.join(part))
}

/// Best-effort removal of staged files after a failure.
pub async fn discard_files(store: &Arc<dyn ObjectStore>, partition: &Location, files: &[String]) {
    for f in files {
        let path = child(&partition.path(), f);
        if let Err(e) = store.delete(&path).await {
            tracing::warn!(file = %path, error = %e, "could not remove a staged file");
        }
    }
}

/// Write a partition's `_manifest.json` (one put, replacing the previous
/// one): rolling a table forward to its committed run, only after the run
/// record committed it; [`cleanup`] then removes what it does not list.
/// Errors: [`Error::Storage`] naming the manifest.
pub async fn write_manifest(
    store: &Arc<dyn ObjectStore>,
    manifest: &Manifest,
    partition: &Location,
) -> Result<()> {
    let body = serde_json::to_vec_pretty(manifest)?;
    let path = child(&partition.path(), MANIFEST);
    store
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| Error::storage(format!("{partition}{MANIFEST}"), e))?;
    Ok(())
}

/// Delete the files of a partition, at any depth, that `keep` does not list
/// (paths relative to the partition); the manifest stays. On a local disk
/// the run folders (`run=<id>/`) `keep` does not list go too, with any
/// partial file a killed write left in them (object stores have no folders). Returns how many files were deleted; a file or folder that
/// cannot be deleted is a warning.
pub async fn cleanup(
    store: &Arc<dyn ObjectStore>,
    partition: &Location,
    keep: &[FileEntry],
) -> Result<usize> {
    let prefix = partition.path();
    let listed: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| Error::storage(partition.to_string(), e))?;
    let mut deleted = 0;
    for meta in listed {
        let Some(parts) = meta.location.prefix_match(&prefix) else {
            continue;
        };
        let rel: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
        let rel = rel.join("/");
        if rel == MANIFEST || keep.iter().any(|f| f.path == rel) {
            continue;
        }
        match store.delete(&meta.location).await {
            Ok(()) => deleted += 1,
            Err(e) => {
                tracing::warn!(file = %meta.location, error = %e, "could not remove an unlisted file")
            }
        }
    }
    if let Some(dir) = partition.local_path() {
        remove_unlisted_run_folders(&dir, keep);
    }
    Ok(deleted)
}

/// Remove the run folders of a local partition folder `dir` that hold no
/// file of `keep`: emptied by the deletes above, or holding only what the
/// store's listing does not show (the temporary file of a write a killed
/// run left). A folder that is not a run's stays.
fn remove_unlisted_run_folders(dir: &std::path::Path, keep: &[FileEntry]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !is_run_folder(&name) || !path.is_dir() {
            continue;
        }
        let listed = keep.iter().any(|f| f.path.starts_with(&format!("{name}/")));
        if listed {
            continue;
        }
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!(folder = %path.display(), error = %e, "could not remove an old run folder");
        }
    }
}

/// Schema as manifest entries.
pub fn schema_entries(schema: &SchemaRef) -> Vec<ColumnEntry> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnEntry {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
            description: f.metadata().get(crate::columns::DESCRIPTION_KEY).cloned(),
            unit: f.metadata().get(crate::columns::UNIT_KEY).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that fails (here the run's folder is a regular file) is the
    /// output's failure, exit 1, naming the file: never an input's.
    #[tokio::test]
    async fn a_failed_write_is_an_output_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("run=r1"), "in the way").unwrap();
        let partition = Location::parse(&dir.path().display().to_string(), true).unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        let df = ctx.sql("SELECT 1 AS x").await.unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        let err = stage("t", df, store, &partition, "r1").await.unwrap_err();
        assert!(matches!(err, Error::OutputWrite { .. }), "{err:?}");
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.to_string().contains("run=r1/part-r1-00000.parquet"),
            "{err}"
        );
    }

    #[test]
    fn partition_folders_are_recognised() {
        let root = Location::parse("s3://b/out/", true).unwrap();
        let layout = OutputLayout::new(root.clone());
        let day = NaiveDate::from_ymd_opt(1997, 9, 30).unwrap();
        let part = layout.partition("customer_tiers", day).unwrap();
        let (l, table, d) = OutputLayout::of_partition(&part).unwrap();
        assert_eq!(
            (l.root(), table.as_str(), d),
            (&root, "customer_tiers", day)
        );
        assert!(OutputLayout::of_partition(&layout.table("customer_tiers").unwrap()).is_none());
        assert_eq!(
            layout.run_record("nightly", day).unwrap().to_string(),
            part.join(&run_record_from_partition("nightly", day))
                .unwrap()
                .to_string()
        );
    }
}
