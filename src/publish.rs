//! Publishing: the layout of everything under OUTPUT ([`OutputLayout`]),
//! Parquet files written straight from the plan's streams, one writer per
//! partition, then `_manifest.json` ([`RunRecord::manifest`]) written last.
//!
//! A partition `OUTPUT/<table>/as_of=YYYY-MM-DD/` is published when its
//! manifest exists. Data files carry the run id in their names, so a new run
//! never overwrites a file the current manifest lists: until the new manifest
//! lands (one atomic put) readers see the old partition whole, and after it
//! the new one. Files no manifest lists (an earlier run's, a killed run's) are
//! deleted after the manifest is written, and by the next run.

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

/// Every path custval reads or writes below an output location: the one
/// place that spells `as_of=`.
///
/// ```text
/// OUTPUT/<table>/as_of=YYYY-MM-DD/            a published partition
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

fn partition_folder(as_of: NaiveDate) -> String {
    format!("as_of={as_of}/")
}

/// What every manifest of one run shares; [`RunRecord::manifest`] adds the
/// table's own files, rows and schema.
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

impl RunRecord {
    /// The manifest of one staged table of this run, stamped now.
    pub fn manifest(&self, s: &Staged) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            table: s.table.clone(),
            as_of: self.as_of.to_string(),
            run_id: self.run_id.clone(),
            job: self.job.clone(),
            custval_version: env!("CARGO_PKG_VERSION").into(),
            created_at: chrono::Utc::now().to_rfc3339(),
            rows: s.rows,
            files: s.files.clone(),
            schema: schema_entries(&s.schema),
            parameters: self.parameters.clone(),
            inputs: self.inputs.clone(),
            quality: self.quality.clone(),
            model_fit: self.model_fit.clone(),
            steps: self.steps.clone(),
        }
    }
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

/// Write the rows of `df` as Parquet files named after `run_id` into
/// `partition`, one file per non-empty output partition, in parallel.
pub async fn stage(
    table: &str,
    df: DataFrame,
    store: Arc<dyn ObjectStore>,
    partition: &Location,
    run_id: &str,
) -> Result<Staged> {
    stage_with(table, df, store, partition, run_id, writer_props()?).await
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
    for (i, mut stream) in streams.into_iter().enumerate() {
        let store = store.clone();
        let name = format!("part-{run_id}-{i:05}.parquet");
        let path = child(&partition.path(), &name);
        let props = props.clone();
        let schema = schema.clone();
        tasks.push(tokio::spawn(async move {
            // Open the file only once there is a row to write: empty
            // partitions leave no file behind.
            let mut writer: Option<AsyncArrowWriter<BufWriter>> = None;
            let mut rows = 0u64;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                if batch.num_rows() == 0 {
                    continue;
                }
                if writer.is_none() {
                    let w = BufWriter::new(store.clone(), path.clone());
                    writer = Some(AsyncArrowWriter::try_new(
                        w,
                        schema.clone(),
                        Some(props.clone()),
                    )?);
                }
                if let Some(w) = writer.as_mut() {
                    w.write(&batch).await?;
                }
                rows += batch.num_rows() as u64;
            }
            match writer {
                Some(w) => {
                    w.close().await?;
                    Ok::<_, Error>(Some(FileEntry { path: name, rows }))
                }
                None => Ok(None),
            }
        }));
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
        let w = BufWriter::new(store.clone(), child(&partition.path(), &name));
        let writer = AsyncArrowWriter::try_new(w, schema.clone(), Some(props))?;
        writer.close().await?;
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

fn child(dir: &StorePath, name: &str) -> StorePath {
    let mut p = dir.clone();
    p = p.clone().join(name);
    p
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

/// Publish a staged table: write its manifest (the commit point), then remove
/// every file of the partition that the manifest does not list.
pub async fn commit(
    store: &Arc<dyn ObjectStore>,
    manifest: &Manifest,
    partition: &Location,
) -> Result<()> {
    let body = serde_json::to_vec_pretty(manifest)?;
    let path = child(&partition.path(), MANIFEST);
    store
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| {
            Error::storage(
                partition
                    .join(MANIFEST)
                    .map(|l| l.to_string())
                    .unwrap_or_default(),
                e,
            )
        })?;
    cleanup(store, partition, manifest).await
}

/// Delete files in the partition that the manifest does not list.
pub async fn cleanup(
    store: &Arc<dyn ObjectStore>,
    partition: &Location,
    manifest: &Manifest,
) -> Result<()> {
    let prefix = partition.path();
    let listed: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| Error::storage(partition.to_string(), e))?;
    for meta in listed {
        let name = meta.location.filename().unwrap_or_default().to_string();
        // Only direct children; the manifest itself stays.
        if meta.location.prefix_match(&prefix).map(|p| p.count()) != Some(1) || name == MANIFEST {
            continue;
        }
        if !manifest.files.iter().any(|f| f.path == name) {
            if let Err(e) = store.delete(&meta.location).await {
                tracing::warn!(file = %meta.location, error = %e, "could not remove an unlisted file");
            }
        }
    }
    Ok(())
}

/// Read a partition's manifest, `None` when it has none.
pub async fn read_manifest(
    store: &Arc<dyn ObjectStore>,
    partition: &Location,
) -> Result<Option<Manifest>> {
    let path = child(&partition.path(), MANIFEST);
    match store.get(&path).await {
        Ok(r) => {
            let bytes = r
                .bytes()
                .await
                .map_err(|e| Error::storage(partition.to_string(), e))?;
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Conflict {
                url: format!("{partition}{MANIFEST}"),
                message: format!("unreadable manifest: {e}"),
            })?;
            Ok(Some(m))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::storage(partition.to_string(), e)),
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
