//! Delta Lake output (`format = "delta"` on a job's output, or
//! `custval run --output-format delta`): each such table is one Delta table
//! at `OUTPUT/<table>/` ([`OutputLayout::table`]), partitioned by an `as_of`
//! date column, written with the `deltalake` crate through custval's own
//! object store (so every store custval reaches, with its credentials and
//! retries, also holds Delta tables).
//!
//! A run replaces its as-of date's partition with ONE Delta commit per table
//! (`SaveMode::Overwrite` with the replaceWhere predicate `as_of = DATE`):
//! that commit is the publication; re-running a date replaces, never
//! duplicates. Delta has no transaction across tables, so a run commits its
//! Delta tables one after the other, only after every step and gate has
//! passed and the run lock was verified: a run that fails before (a step,
//! a gate, the lock) leaves every Delta table at its previous version. The
//! run record (`_runs/`) is written after the commits and records each
//! table's Delta version ([`DeltaCommit`]).

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, Date32Array};
use datafusion::catalog::TableProvider;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::{col, lit, SessionContext};
use datafusion::scalar::ScalarValue;
use deltalake_core::logstore::{default_logstore, LogStoreRef, StorageConfig};
use deltalake_core::protocol::SaveMode;
use deltalake_core::{DeltaTable, DeltaTableError};
use futures::StreamExt;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use super::OutputLayout;
use crate::error::{Error, Result};
use crate::storage::Location;

/// The partition column every Delta table of custval has: the as-of date
/// the rows were published for (Delta `date`).
pub const AS_OF_COLUMN: &str = "as_of";

/// Commit-info keys naming the custval run in every Delta commit it makes
/// (Delta's `commitInfo`, shown by `DESCRIBE HISTORY`).
const RUN_ID_KEY: &str = "custval.run_id";
/// See [`RUN_ID_KEY`].
const JOB_KEY: &str = "custval.job";

/// One table published as a Delta commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeltaCommit {
    /// The Delta table's redacted location, `OUTPUT/<table>/`.
    pub location: String,
    /// The table version the run's commit created.
    pub version: u64,
    /// Rows written into the as-of partition.
    pub rows: u64,
}

/// The Delta log store of the table at `location`, on custval's `store`
/// (the store of the output, rooted at its bucket or file system root).
fn log_store(store: &Arc<dyn ObjectStore>, location: &Location) -> LogStoreRef {
    let prefixed: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store.clone(), location.path()));
    default_logstore(
        prefixed,
        store.clone(),
        location.url(),
        &StorageConfig::default(),
    )
}

/// The Delta table at `location`, loaded at its latest version; not loaded
/// (no version) when there is none yet.
///
/// Errors: [`Error::DeltaCommit`] when the log cannot be read.
pub async fn open(store: &Arc<dyn ObjectStore>, location: &Location) -> Result<DeltaTable> {
    let mut table = DeltaTable::new(log_store(store, location));
    let failed = |e: DeltaTableError| Error::DeltaCommit {
        url: location.to_string(),
        message: one_line(&e),
    };
    if table.verify_deltatable_existence().await.map_err(failed)? {
        table.load().await.map_err(failed)?;
    }
    Ok(table)
}

/// Replace the `as_of` partition of the Delta table `OUTPUT/<table>/` with
/// the rows of `df`, in one Delta commit (created, partitioned by `as_of`,
/// on the first run). The commit info names the run and job.
///
/// Errors: [`Error::DeltaTable`] when the rows cannot go into the table as
/// it is (a column named `as_of`, another schema or partitioning: exit 2);
/// [`Error::DeltaCommit`] when writing or committing fails (exit 1; the
/// table stays at its previous version).
pub async fn publish(
    ctx: &SessionContext,
    output: &OutputLayout,
    store: &Arc<dyn ObjectStore>,
    table: &str,
    df: DataFrame,
    as_of: NaiveDate,
    run: (&str, &str),
) -> Result<DeltaCommit> {
    let location = output.table(table)?;
    let (job, run_id) = run;
    if df.schema().has_column_with_unqualified_name(AS_OF_COLUMN) {
        return Err(Error::DeltaTable {
            url: location.to_string(),
            message: format!(
                "the output already has a column {AS_OF_COLUMN}, the Delta table's partition column"
            ),
        });
    }
    let day = lit(ScalarValue::Date32(Some(days_since_epoch(as_of))));
    let df = df.with_column(AS_OF_COLUMN, day.clone())?;
    let existing = open(store, &location).await?;
    let snapshot = existing.snapshot().ok().map(|s| s.snapshot().clone());
    let metadata = [
        (RUN_ID_KEY.to_string(), serde_json::Value::from(run_id)),
        (JOB_KEY.to_string(), serde_json::Value::from(job)),
    ];
    let written =
        deltalake_core::operations::write::WriteBuilder::new(existing.log_store(), snapshot)
            .with_input_plan(df.logical_plan().clone())
            .with_session_state(Arc::new(delta_session(ctx)))
            .with_save_mode(SaveMode::Overwrite)
            .with_partition_columns([AS_OF_COLUMN])
            .with_replace_where(col(AS_OF_COLUMN).eq(day))
            .with_table_name(table)
            .with_commit_properties(
                deltalake_core::kernel::transaction::CommitProperties::default()
                    .with_metadata(metadata),
            )
            .await
            .map_err(|e| delta_error(&location, e))?;
    let version = written.version().ok_or_else(|| Error::DeltaCommit {
        url: location.to_string(),
        message: "no table version after the commit".into(),
    })?;
    Ok(DeltaCommit {
        location: location.to_string(),
        version,
        rows: added_rows(&written).await,
    })
}

/// The run's session with delta-rs' query planner, which lowers the
/// metric nodes its write plan carries (without it planning fails with "No
/// installed planner was able to convert the custom node"); the run's
/// tables, functions and options stay as they are.
fn delta_session(ctx: &SessionContext) -> datafusion::execution::SessionState {
    datafusion::execution::SessionStateBuilder::new_from_existing(ctx.state())
        .with_query_planner(deltalake_core::delta_datafusion::planner::DeltaPlanner::new())
        .build()
}

/// Rows the latest commit added (its `operationMetrics.num_added_rows`);
/// 0 when the commit info does not say.
async fn added_rows(table: &DeltaTable) -> u64 {
    let mut history = table.history(Some(1));
    match history.next().await {
        Some(Ok(info)) => info
            .info
            .get("operationMetrics")
            .and_then(|m| m.get("num_added_rows"))
            .and_then(|n| n.as_u64())
            .unwrap_or(0),
        _ => 0,
    }
}

/// A deltalake error as custval's: what is wrong with the job's table
/// (schema, partitioning: exit 2) or a failed write or commit (exit 1).
fn delta_error(location: &Location, e: DeltaTableError) -> Error {
    let url = location.to_string();
    let message = one_line(&e);
    match e {
        DeltaTableError::SchemaMismatch { .. }
        | DeltaTableError::PartitionError { .. }
        | DeltaTableError::InvalidPartitionFilter { .. }
        | DeltaTableError::MissingFeature { .. }
        | DeltaTableError::UnsupportedColumnMapping { .. } => Error::DeltaTable { url, message },
        _ => Error::DeltaCommit { url, message },
    }
}

fn one_line(e: &DeltaTableError) -> String {
    e.to_string().replace('\n', ": ")
}

/// Days from 1970-01-01: a Delta (and Arrow Date32) date.
fn days_since_epoch(day: NaiveDate) -> i32 {
    (day - epoch()).num_days() as i32
}

/// Register as `name` the rows of the latest `as_of` partition before
/// `as_of` of the Delta table `OUTPUT/<table>/` (without its `as_of`
/// column): what `previous_<table>` is read from. Returns that partition's
/// date, `None` (nothing registered) when the table or such a partition
/// does not exist.
///
/// Errors: [`Error::DeltaCommit`] when the log cannot be read; a query
/// error when the data cannot.
pub async fn register_previous(
    ctx: &SessionContext,
    output: &OutputLayout,
    store: &Arc<dyn ObjectStore>,
    table: &str,
    as_of: NaiveDate,
    name: &str,
) -> Result<Option<NaiveDate>> {
    let Some(provider) = provider(store, &output.table(table)?).await? else {
        return Ok(None);
    };
    let all = ctx.read_table(provider)?;
    let day = |d: NaiveDate| lit(ScalarValue::Date32(Some(days_since_epoch(d))));
    let latest = all
        .clone()
        .filter(col(AS_OF_COLUMN).lt(day(as_of)))?
        .aggregate(
            vec![],
            vec![datafusion::functions_aggregate::expr_fn::max(col(
                AS_OF_COLUMN,
            ))],
        )?
        .collect()
        .await?;
    let found = latest.first().filter(|b| b.num_rows() > 0).and_then(|b| {
        b.column(0)
            .as_any()
            .downcast_ref::<Date32Array>()
            .filter(|a| a.is_valid(0))
            .map(|a| a.value(0))
    });
    let Some(days) = found else {
        return Ok(None);
    };
    let date = epoch() + chrono::Duration::days(i64::from(days));
    let rows = all
        .filter(col(AS_OF_COLUMN).eq(day(date)))?
        .drop_columns(&[AS_OF_COLUMN])?;
    ctx.register_table(name, rows.into_view())?;
    Ok(Some(date))
}

/// The Delta table at `location` at its latest version, for DataFusion
/// (its `as_of` column included); `None` when there is no table there.
///
/// Errors: [`Error::DeltaCommit`] when the log cannot be read.
pub async fn provider(
    store: &Arc<dyn ObjectStore>,
    location: &Location,
) -> Result<Option<Arc<dyn TableProvider>>> {
    let delta = open(store, location).await?;
    if delta.version().is_none() {
        return Ok(None);
    }
    let provider = delta
        .table_provider()
        .await
        .map_err(|e| Error::DeltaCommit {
            url: location.to_string(),
            message: e.to_string().replace('\n', ": "),
        })?;
    Ok(Some(provider))
}

/// Whether `location` holds a Delta table (a `_delta_log/` with a file).
///
/// Errors: [`Error::Storage`] when the listing fails.
pub async fn is_delta_table(store: &Arc<dyn ObjectStore>, location: &Location) -> Result<bool> {
    let log = location.join(&format!("{DELTA_LOG}/"))?;
    let prefix = log.path();
    match store.list(Some(&prefix)).next().await {
        None => Ok(false),
        Some(Ok(_)) => Ok(true),
        Some(Err(e)) => Err(Error::storage(log.to_string(), e)),
    }
}

/// Refuse to publish `table` in a format other than the one its folder
/// already holds: Parquet partitions into a Delta table (their repair would
/// delete the Delta table's files), or a Delta table over custval's Parquet
/// partitions (readers of either would see both).
///
/// Errors: [`Error::DeltaTable`] (exit 2) naming the folder and the fix.
pub async fn check_format(
    output: &OutputLayout,
    store: &Arc<dyn ObjectStore>,
    table: &str,
    delta: bool,
) -> Result<()> {
    let location = output.table(table)?;
    let is_delta = is_delta_table(store, &location).await?;
    let message = if !delta && is_delta {
        format!(
            "{table} is a Delta table (it has a {DELTA_LOG}/): publish it with format = \"delta\" (or --output-format delta), or to another output"
        )
    } else if delta && !is_delta && !output.partition_dates(store, table).await?.is_empty() {
        format!(
            "{table} holds custval's Parquet partitions: a Delta table is not created over them; publish it to another output, or as parquet"
        )
    } else {
        return Ok(());
    };
    Err(Error::DeltaTable {
        url: location.to_string(),
        message,
    })
}

/// The folder of a Delta table's log, below the table's root.
const DELTA_LOG: &str = "_delta_log";

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::pretty::pretty_format_batches;

    /// Three runs into a local folder (two of the same date): the re-run
    /// replaces its date (2 rows left of 3 + 2, not 5), each run is one
    /// version (0, 1, 2), the other date is untouched, `previous` reads the
    /// latest earlier date, and Parquet into the Delta folder is refused.
    #[tokio::test]
    async fn a_rerun_replaces_its_date_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let root = Location::parse(&dir.path().display().to_string(), true).unwrap();
        let output = OutputLayout::new(root);
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        let ctx = SessionContext::new();
        let d1 = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        let d2 = NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
        let runs = [
            (d1, "SELECT * FROM (VALUES (1), (2), (3)) AS v(x)"),
            (d1, "SELECT * FROM (VALUES (4), (5)) AS v(x)"),
            (d2, "SELECT * FROM (VALUES (6)) AS v(x)"),
        ];
        let mut versions = Vec::new();
        for (i, (day, sql)) in runs.iter().enumerate() {
            let df = ctx.sql(sql).await.unwrap();
            let run = format!("r{i}");
            let c = publish(&ctx, &output, &store, "t", df, *day, ("job", &run))
                .await
                .unwrap();
            versions.push((c.version, c.rows));
        }
        assert_eq!(versions, vec![(0, 3), (1, 2), (2, 1)]);
        let folder = output.table("t").unwrap();
        let p = provider(&store, &folder).await.unwrap().unwrap();
        ctx.register_table("d", p).unwrap();
        let sql = "SELECT CAST(as_of AS VARCHAR) AS day, count(*) AS n, sum(x) AS s FROM d GROUP BY as_of ORDER BY as_of";
        let got = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let want = [
            "+------------+---+---+",
            "| day        | n | s |",
            "+------------+---+---+",
            "| 2024-01-01 | 2 | 9 |",
            "| 2024-01-02 | 1 | 6 |",
            "+------------+---+---+",
        ];
        assert_eq!(
            pretty_format_batches(&got).unwrap().to_string(),
            want.join("\n")
        );
        let after = NaiveDate::from_ymd_opt(2024, 1, 3).unwrap();
        let found = register_previous(&ctx, &output, &store, "t", after, "prev")
            .await
            .unwrap();
        assert_eq!(found, Some(d2));
        let prev = ctx
            .sql("SELECT x FROM prev")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(prev.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        let none = register_previous(&ctx, &output, &store, "t", d1, "none")
            .await
            .unwrap();
        assert_eq!(none, None);
        assert!(is_delta_table(&store, &folder).await.unwrap());
        let err = check_format(&output, &store, "t", false).await.unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        check_format(&output, &store, "t", true).await.unwrap();
    }
}
