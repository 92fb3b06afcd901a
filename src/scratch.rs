//! Scratch space for one run: where materialized steps (written here by
//! [`Scratch::materialize`]) and empty tables live until the run ends.
//!
//! Locally that is a temporary folder. On a Ballista cluster the executors
//! must read what the steps wrote, and an in-memory table cannot travel in a
//! Ballista plan (datafusion-proto has no encoding for `MemTable`), so both go
//! to `OUTPUT/_work/RUN/` on the output's store, which every process reaches
//! with its own credentials, and are removed when the run ends.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::dataframe::{DataFrame, DataFrameWriteOptions};
use datafusion::datasource::MemTable;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};
use crate::publish::{self, OutputLayout};
use crate::storage::{self, Location};
use crate::table;

/// The scratch space of one run.
pub enum Scratch {
    /// A local temporary folder, removed on drop.
    Local(tempfile::TempDir),
    /// A prefix on a store every cluster process can reach.
    Shared {
        /// The output's store.
        store: Arc<dyn ObjectStore>,
        /// `OUTPUT/_work/RUN/` ([`OutputLayout::scratch`]).
        location: Location,
    },
}

impl Scratch {
    /// Scratch space for run `run_id`: local unless the engine is a cluster.
    pub fn new(
        ctx: &SessionContext,
        clustered: bool,
        output: &OutputLayout,
        run_id: &str,
    ) -> Result<Scratch> {
        if clustered {
            let location = output.scratch(run_id)?;
            let store = storage::register_store(ctx, &location)?;
            Ok(Scratch::Shared { store, location })
        } else {
            let dir = tempfile::Builder::new()
                .prefix("custval-steps-")
                .tempdir()
                .map_err(|e| Error::io(std::env::temp_dir(), e))?;
            Ok(Scratch::Local(dir))
        }
    }

    /// A local temporary folder, for a command without a run (`custval sql`).
    pub fn temporary() -> Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix("custval-scratch-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        Ok(Scratch::Local(dir))
    }

    /// The folder URL (or path) for a table named `name`, ending in `/`.
    pub fn folder(&self, name: &str) -> Result<String> {
        match self {
            Scratch::Local(dir) => Ok(format!("{}/", dir.path().join(name).to_string_lossy())),
            Scratch::Shared { location, .. } => {
                Ok(location.join(&format!("{name}/"))?.url().to_string())
            }
        }
    }

    /// Register `name` as a table with `schema` and no rows.
    pub async fn register_empty(
        &self,
        ctx: &SessionContext,
        name: &str,
        schema: SchemaRef,
    ) -> Result<()> {
        match self {
            Scratch::Local(_) => {
                ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
            }
            Scratch::Shared { store, location } => {
                // A Parquet file with the schema and no rows.
                let mut buf = Vec::new();
                let writer = parquet::arrow::ArrowWriter::try_new(&mut buf, schema.clone(), None)
                    .map_err(|e| Error::Internal(format!("empty table {name}: {e}")))?;
                writer
                    .close()
                    .map_err(|e| Error::Internal(format!("empty table {name}: {e}")))?;
                let dir = location.join(&format!("empty/{name}/"))?;
                let file = dir.join("part-0.parquet")?;
                store
                    .put(&file.path(), PutPayload::from(buf))
                    .await
                    .map_err(|e| Error::storage(file.to_string(), e))?;
                let opts = ParquetReadOptions::default().schema(&schema);
                ctx.register_parquet(name, dir.url().as_str(), opts).await?;
            }
        }
        Ok(())
    }

    /// Compute a step once into Parquet spill files here, register them as
    /// table `name`, and return the row count.
    pub async fn materialize(
        &self,
        ctx: &SessionContext,
        name: &str,
        df: DataFrame,
    ) -> Result<u64> {
        let schema = Arc::new(df.schema().as_arrow().clone());
        let folder = self.folder(name)?;
        // Spill files live for one run and are read whole: fast LZ4 instead of
        // the zstd of published files, and no dictionaries or page statistics
        // (building them was about a tenth of writing a 20M-row spill).
        if let Scratch::Local(_) = self {
            // Locally, written by our own writers, outside the memory pool:
            // DataFusion's Parquet sink reserves from the pool, and an aggregate
            // that keeps its share until its output is done (customer_summary
            // under --memory-limit 384MiB at 20M rows) left it nothing.
            let props = WriterProperties::builder()
                .set_compression(Compression::LZ4_RAW)
                .set_dictionary_enabled(false)
                .set_statistics_enabled(EnabledStatistics::None)
                .set_max_row_group_row_count(Some(1 << 17))
                .build();
            let loc = Location::parse(&folder, true)?;
            let store = storage::register_store(ctx, &loc)?;
            let staged = publish::stage_with(name, df, store, &loc, "spill", props).await?;
            let opts = ParquetReadOptions::default().schema(&schema);
            ctx.register_parquet(name, &folder, opts).await?;
            return Ok(staged.rows);
        }
        let mut spill_opts = datafusion::config::TableParquetOptions::default();
        spill_opts.global.compression = Some("lz4_raw".into());
        spill_opts.global.dictionary_enabled = Some(false);
        spill_opts.global.statistics_enabled = Some("none".into());
        let counts: Vec<RecordBatch> = df
            .write_parquet(&folder, DataFrameWriteOptions::new(), Some(spill_opts))
            .await?;
        let rows: u64 = table::to_json_rows(&counts)?
            .iter()
            .filter_map(|r| r.get("count").and_then(|v| v.as_u64()))
            .sum();
        if rows == 0 {
            // No rows may mean no files: a folder with none has no schema to read.
            self.register_empty(ctx, name, schema).await?;
        } else {
            let opts = ParquetReadOptions::default().schema(&schema);
            ctx.register_parquet(name, &folder, opts).await?;
        }
        Ok(rows)
    }

    /// Remove everything the run left here (best effort: a failure is logged,
    /// the next run's files never collide with these).
    pub async fn remove(self) {
        if let Scratch::Shared { store, location } = self {
            if let Some(dir) = location.local_path() {
                // Local disk keeps empty folders that a store delete leaves.
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(scratch = %location, error = %e, "could not remove scratch files");
                }
                if let Some(parent) = dir.parent() {
                    let _ = std::fs::remove_dir(parent); // `_work`, when no other run uses it
                }
                return;
            }
            let prefix = location.path();
            let mut listed = store.list(Some(&prefix));
            while let Some(item) = listed.next().await {
                match item {
                    Ok(meta) => {
                        if let Err(e) = store.delete(&meta.location).await {
                            tracing::warn!(file = %meta.location, error = %e, "could not remove a scratch file");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(scratch = %location, error = %e, "could not list scratch files");
                        break;
                    }
                }
            }
        }
    }
}
