//! Repair of what an earlier run of the same job and date left behind,
//! done under the run lock before anything else: manifests that were not
//! yet rolled forward to the committed run record are rewritten, and data
//! files no committed run lists (folders of killed runs, older runs' files
//! whose removal was cut short) are deleted. Each repair is one line of the
//! log and of the run report.

use std::sync::Arc;

use chrono::NaiveDate;
use object_store::ObjectStore;

use super::record::{read_manifest_file, read_record, Committed};
use super::{cleanup, write_manifest, FileEntry, OutputLayout};
use crate::error::Result;

/// What [`repair`] found: the committed record (the version the next commit
/// must replace) and one sentence per repair made.
#[derive(Debug)]
pub struct Repaired {
    /// The run record of the job and date, if one was ever committed.
    pub committed: Option<Committed>,
    /// What was repaired, e.g. "customer_tiers: manifest rolled forward to
    /// run R (its run stopped after its commit)".
    pub repairs: Vec<String>,
}

/// Bring the partitions of `tables` for `job` and `as_of` to the state of
/// the committed run record: roll manifests forward, delete unlisted files.
/// A partition without a record keeps what its manifest lists (manifests
/// written before run records); one with neither keeps nothing: its files
/// were never published. The caller holds the run lock.
///
/// Errors: [`crate::Error::Storage`] when the store fails (the run stops
/// before computing anything; exit 1).
pub async fn repair(
    store: &Arc<dyn ObjectStore>,
    layout: &OutputLayout,
    job: &str,
    as_of: NaiveDate,
    tables: &[String],
) -> Result<Repaired> {
    let committed = read_record(store, &layout.run_record(job, as_of)?).await?;
    let mut repairs = Vec::new();
    for table in tables {
        let partition = layout.partition(table, as_of)?;
        let raw = read_manifest_file(store, &partition).await?;
        let from_record = committed.as_ref().and_then(|c| c.record.manifest(table));
        let keep: Vec<FileEntry> = match (&from_record, &raw) {
            (Some(m), raw) => {
                if raw.as_ref().map(|r| &r.run_id) != Some(&m.run_id) {
                    write_manifest(store, m, &partition).await?;
                    let line = format!(
                        "{table}: manifest rolled forward to the committed run {} (that run stopped between its commit and its manifests)",
                        m.run_id
                    );
                    tracing::warn!(%partition, "{line}");
                    repairs.push(line);
                }
                m.files.clone()
            }
            (None, Some(m)) if m.job == job || m.run_record.is_none() => m.files.clone(),
            // Another job's table: not ours to clean.
            (None, Some(_)) => continue,
            (None, None) => Vec::new(),
        };
        let removed = cleanup(store, &partition, &keep).await?;
        if removed > 0 {
            let line = format!(
                "{table}: removed {removed} files no committed run lists (left by a run that stopped)"
            );
            tracing::warn!(%partition, "{line}");
            repairs.push(line);
        }
    }
    Ok(Repaired { committed, repairs })
}
