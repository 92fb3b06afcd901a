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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::record::put_record;
    use crate::publish::record::tests::{record, setup, DAY};
    use object_store::{ObjectStoreExt, PutPayload};

    async fn names(
        store: &Arc<dyn ObjectStore>,
        layout: &OutputLayout,
        table: &str,
    ) -> Vec<String> {
        use futures::TryStreamExt;
        let part = layout.partition(table, DAY).unwrap();
        let prefix = part.path();
        let mut v: Vec<String> = store
            .list(Some(&prefix))
            .map_ok(|m| {
                m.location
                    .prefix_match(&prefix)
                    .unwrap()
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .try_collect()
            .await
            .unwrap();
        v.sort();
        v
    }

    /// r2 committed, then stopped after rolling a's manifest forward; r3
    /// was killed while staging. The repair leaves exactly r2's state.
    #[tokio::test]
    async fn a_stopped_commit_is_rolled_forward_and_orphans_removed() {
        let (store, out) = setup();
        let r1 = record("r1", &["a", "b"]);
        let r2 = record("r2", &["a", "b"]);
        put_record(&store, &out.run_record("nightly", DAY).unwrap(), &r2, None)
            .await
            .unwrap();
        let part = |t: &str| out.partition(t, DAY).unwrap();
        write_manifest(&store, &r2.manifest("a").unwrap(), &part("a"))
            .await
            .unwrap();
        write_manifest(&store, &r1.manifest("b").unwrap(), &part("b"))
            .await
            .unwrap();
        for (t, run) in [
            ("a", "r2"),
            ("a", "r3"),
            ("b", "r1"),
            ("b", "r2"),
            ("b", "r3"),
        ] {
            let p = super::super::child(&part(t).path(), &format!("run={run}/part-0.parquet"));
            store.put(&p, PutPayload::from("x")).await.unwrap();
        }
        let tables = vec!["a".to_string(), "b".to_string()];
        let done = repair(&store, &out, "nightly", DAY, &tables).await.unwrap();
        assert_eq!(done.committed.unwrap().record.run_id, "r2");
        assert_eq!(done.repairs.len(), 3, "{:?}", done.repairs);
        assert!(
            done.repairs[1].contains("b: manifest rolled forward"),
            "{:?}",
            done.repairs
        );
        for t in ["a", "b"] {
            assert_eq!(
                names(&store, &out, t).await,
                vec!["_manifest.json", "run=r2/part-0.parquet"],
                "{t}"
            );
        }
        let m = read_manifest_file(&store, &part("b"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.run_id, "r2");
        // A second repair finds nothing to do.
        let again = repair(&store, &out, "nightly", DAY, &tables).await.unwrap();
        assert!(again.repairs.is_empty(), "{:?}", again.repairs);
    }
}
