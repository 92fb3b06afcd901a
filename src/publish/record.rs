//! The run record ([`RunCommit`]): one JSON object per job and as-of date
//! under `OUTPUT/_runs/` ([`OutputLayout::run_record`]) naming the run whose
//! tables are published and, for each table, its files, rows and schema.
//! Its one conditional put ([`put_record`]) is the commit of all the run's
//! tables; [`read_manifest`] is how every custval reader finds the
//! committed files of a partition through it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::{
    child, run_record_from_partition, ColumnEntry, FileEntry, Manifest, OutputLayout, RunRecord,
    Staged, MANIFEST, MANIFEST_FORMAT,
};
use crate::error::{Error, Result};
use crate::storage::Location;

/// Version tag of the run record format, in every record's `format`.
pub const RUN_FORMAT: &str = "custval-run/1";

/// Extra attempts at the conditional put after a transport error (the store
/// client does not retry a conditional put itself: it is not idempotent).
const PUT_TRANSPORT_RETRIES: u32 = 4;

/// The run record: which run of a job published the tables of an as-of
/// date, and what each table is. Written once per run, after every table's
/// files, with a conditional put.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunCommit {
    /// [`RUN_FORMAT`].
    pub format: String,
    /// The job's name.
    pub job: String,
    /// As-of date, `YYYY-MM-DD`.
    pub as_of: String,
    /// The committed run.
    pub run_id: String,
    /// The custval that committed it.
    pub custval_version: String,
    /// When the record was written (RFC 3339, UTC).
    pub committed_at: String,
    /// The run this one replaced, if any.
    #[serde(default)]
    pub previous_run_id: Option<String>,
    /// The run's bound parameters.
    pub parameters: serde_json::Value,
    /// The inputs read, with file fingerprints: recorded once per run here.
    pub inputs: serde_json::Value,
    /// The run's data-quality counts.
    pub quality: serde_json::Value,
    /// Model fits of the run, when the job has them.
    #[serde(default)]
    pub model_fit: serde_json::Value,
    /// Per-step name, file, rows and seconds.
    #[serde(default)]
    pub steps: serde_json::Value,
    /// Every Parquet table the run published, by name.
    pub tables: BTreeMap<String, TableCommit>,
    /// Every Delta table the run committed, by name: its own Delta commit
    /// published it; recorded here with the version it made.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub delta: BTreeMap<String, super::delta::DeltaCommit>,
}

/// One table of a run record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableCommit {
    /// Rows in all files.
    pub rows: u64,
    /// The data files, relative to the partition folder
    /// (`run=<run_id>/part-<run_id>-00000.parquet`).
    pub files: Vec<FileEntry>,
    /// The columns.
    pub schema: Vec<ColumnEntry>,
    /// The run that wrote the files, when it is not the record's own run:
    /// a run of a selection (`custval run --select`) carries the tables it
    /// did not compute forward from the record it replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

impl RunRecord {
    /// The run record committing `staged`, replacing `previous`'s run. The
    /// tables named in `carried` (a selection's tables it did not compute)
    /// keep their entry of `previous`, naming the run that wrote them, so
    /// the record still lists every published table of the date.
    pub fn commit(
        &self,
        staged: &[Staged],
        previous: Option<&RunCommit>,
        carried: &[String],
    ) -> RunCommit {
        let mut tables: BTreeMap<String, TableCommit> = staged
            .iter()
            .map(|s| {
                let entry = TableCommit {
                    rows: s.rows,
                    files: s.files.clone(),
                    schema: super::schema_entries(&s.schema),
                    run_id: None,
                };
                (s.table.clone(), entry)
            })
            .collect();
        for (table, p) in carried.iter().filter_map(|t| Some((t, previous?))) {
            if let Some(entry) = p.tables.get(table) {
                let mut entry = entry.clone();
                entry.run_id = Some(entry.run_id.unwrap_or_else(|| p.run_id.clone()));
                tables.entry(table.clone()).or_insert(entry);
            }
        }
        RunCommit {
            format: RUN_FORMAT.into(),
            job: self.job.clone(),
            as_of: self.as_of.to_string(),
            run_id: self.run_id.clone(),
            custval_version: env!("CARGO_PKG_VERSION").into(),
            committed_at: chrono::Utc::now().to_rfc3339(),
            previous_run_id: previous.map(|p| p.run_id.clone()),
            parameters: self.parameters.clone(),
            inputs: self.inputs.clone(),
            quality: self.quality.clone(),
            model_fit: self.model_fit.clone(),
            steps: self.steps.clone(),
            tables,
            delta: BTreeMap::new(),
        }
    }
}

impl RunCommit {
    /// The `_manifest.json` of one committed table, `None` when the run did
    /// not publish it. The manifest's inputs list names and locations; the
    /// file fingerprints stay in the record.
    pub fn manifest(&self, table: &str) -> Option<Manifest> {
        let t = self.tables.get(table)?;
        let run_id = t.run_id.clone().unwrap_or_else(|| self.run_id.clone());
        let as_of = chrono::NaiveDate::parse_from_str(&self.as_of, "%Y-%m-%d").ok()?;
        Some(Manifest {
            format: MANIFEST_FORMAT.into(),
            table: table.to_string(),
            as_of: self.as_of.clone(),
            run_id,
            job: self.job.clone(),
            custval_version: self.custval_version.clone(),
            created_at: self.committed_at.clone(),
            rows: t.rows,
            files: t.files.clone(),
            schema: t.schema.clone(),
            parameters: self.parameters.clone(),
            inputs: inputs_summary(&self.inputs),
            quality: self.quality.clone(),
            model_fit: self.model_fit.clone(),
            steps: self.steps.clone(),
            run_record: Some(run_record_from_partition(&self.job, as_of)),
        })
    }
}

/// The inputs as a manifest shows them: each input's fields with its list
/// of file fingerprints replaced by their count (`file_count`); the
/// fingerprints are in the run record once, not in every table's manifest.
fn inputs_summary(inputs: &serde_json::Value) -> serde_json::Value {
    match inputs {
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::Object(fields) => {
                    let mut f = fields.clone();
                    if let Some(files) = f.remove("files") {
                        let n = files.as_array().map(|a| a.len()).unwrap_or(0);
                        f.insert("file_count".into(), n.into());
                    }
                    serde_json::Value::Object(f)
                }
                other => other.clone(),
            })
            .collect(),
        other => other.clone(),
    }
}

/// A run record as read, with the version a conditional update must match.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The record.
    pub record: RunCommit,
    /// Its ETag and version, for [`put_record`]'s `PutMode::Update`.
    pub version: UpdateVersion,
}

/// Read the run record at `loc`; `None` when there is none. An unparsable
/// record is [`Error::Conflict`] naming it.
pub async fn read_record(
    store: &Arc<dyn ObjectStore>,
    loc: &Location,
) -> Result<Option<Committed>> {
    let r = match store.get(&loc.path()).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::storage(loc.to_string(), e)),
    };
    let version = UpdateVersion {
        e_tag: r.meta.e_tag.clone(),
        version: r.meta.version.clone(),
    };
    let bytes = r
        .bytes()
        .await
        .map_err(|e| Error::storage(loc.to_string(), e))?;
    let record: RunCommit = serde_json::from_slice(&bytes).map_err(|e| Error::Conflict {
        url: loc.to_string(),
        message: format!("unreadable run record: {e}"),
    })?;
    Ok(Some(Committed { record, version }))
}

/// Commit: put `record` at `loc` only if the record there is still
/// `previous` (`PutMode::Update` with its ETag and version; S3 If-Match,
/// Azure If-Match), or, without a previous record, only if there is none
/// (`PutMode::Create`). A store without conditional updates (the local file
/// system) gets a plain atomic replace: the caller verified its run lock
/// right before. When the answer to a put is lost, the record is read back:
/// if it names this run, the commit happened.
///
/// Errors: [`Error::Conflict`] when another run committed in between (this
/// run published nothing); [`Error::Storage`] when the store fails.
pub async fn put_record(
    store: &Arc<dyn ObjectStore>,
    loc: &Location,
    record: &RunCommit,
    previous: Option<&UpdateVersion>,
) -> Result<()> {
    let body = serde_json::to_vec_pretty(record)?;
    let path = loc.path();
    let mut failures = 0u32;
    loop {
        let mode = match previous {
            Some(v) => PutMode::Update(v.clone()),
            None => PutMode::Create,
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        let err = match store
            .put_opts(&path, PutPayload::from(body.clone()), opts)
            .await
        {
            Ok(_) => return Ok(()),
            Err(object_store::Error::NotImplemented { .. }) if previous.is_some() => {
                return store
                    .put(&path, PutPayload::from(body))
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::storage(loc.to_string(), e));
            }
            Err(e) => e,
        };
        // Did an earlier attempt whose answer was lost commit this run?
        if let Ok(Some(now)) = read_record(store, loc).await {
            if now.record.run_id == record.run_id {
                return Ok(());
            }
        }
        match err {
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
                return Err(Error::Conflict {
                    url: loc.to_string(),
                    message: "another run committed this date while this run was running; nothing was published by this run".into(),
                })
            }
            e if failures < PUT_TRANSPORT_RETRIES => {
                failures += 1;
                tracing::warn!(record = %loc, error = %e, attempt = failures, "retrying the run record");
                tokio::time::sleep(Duration::from_millis(200 << failures)).await;
            }
            e => return Err(Error::storage(loc.to_string(), e)),
        }
    }
}

/// A partition's `_manifest.json` as stored, `None` when it has none.
pub async fn read_manifest_file(
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

/// The committed manifest of a partition, `None` when nothing is published
/// there. The run record wins over the partition's `_manifest.json`: a
/// manifest naming another run than its record is still being rolled
/// forward, and a partition whose run was killed after its commit but
/// before its manifest is found through the records of `OUTPUT/_runs/`.
/// A manifest without a `run_record` (written before run records) is read
/// as it is. Costs one more GET than reading the manifest alone.
pub async fn read_manifest(
    store: &Arc<dyn ObjectStore>,
    partition: &Location,
) -> Result<Option<Manifest>> {
    let raw = read_manifest_file(store, partition).await?;
    let Some((layout, table, as_of)) = OutputLayout::of_partition(partition) else {
        return Ok(raw);
    };
    let jobs = match &raw {
        Some(m) if m.run_record.is_none() => return Ok(raw),
        Some(m) => vec![m.job.clone()],
        None => record_jobs(store, &layout).await?,
    };
    for job in jobs {
        let loc = layout.run_record(&job, as_of)?;
        let Some(c) = read_record(store, &loc).await? else {
            continue;
        };
        let table_run = c.record.tables.get(&table).map(|t| t.run_id.as_ref());
        let table_run = match table_run {
            Some(Some(carried)) => carried,
            _ => &c.record.run_id,
        };
        match &raw {
            Some(m) if &m.run_id == table_run => return Ok(raw),
            _ => {
                if let Some(m) = c.record.manifest(&table) {
                    return Ok(Some(m));
                }
            }
        }
    }
    Ok(raw)
}

/// The jobs that have run records under `OUTPUT/_runs/`.
async fn record_jobs(store: &Arc<dyn ObjectStore>, layout: &OutputLayout) -> Result<Vec<String>> {
    let runs = layout.runs()?;
    let listing = match store.list_with_delimiter(Some(&runs.path())).await {
        Ok(l) => l,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(Error::storage(runs.to_string(), e)),
    };
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(String::from))
        .collect())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use object_store::memory::InMemory;

    pub(crate) const DAY: chrono::NaiveDate = chrono::NaiveDate::from_ymd_opt(1997, 9, 30).unwrap();

    pub(crate) fn setup() -> (Arc<dyn ObjectStore>, OutputLayout) {
        let root = Location::parse("s3://bucket/out/", true).unwrap();
        (Arc::new(InMemory::new()), OutputLayout::new(root))
    }

    /// A record of `run` publishing one file per table, `run=<run>/part-0.parquet`.
    pub(crate) fn record(run: &str, tables: &[&str]) -> RunCommit {
        let tables = tables
            .iter()
            .map(|t| {
                let files = vec![FileEntry {
                    path: format!("run={run}/part-0.parquet"),
                    rows: 1,
                }];
                let schema = vec![ColumnEntry {
                    name: "x".into(),
                    data_type: "Int64".into(),
                    nullable: true,
                    description: None,
                    unit: None,
                }];
                (
                    t.to_string(),
                    TableCommit {
                        rows: 1,
                        files,
                        schema,
                        run_id: None,
                    },
                )
            })
            .collect();
        RunCommit {
            format: RUN_FORMAT.into(),
            job: "nightly".into(),
            as_of: DAY.to_string(),
            run_id: run.into(),
            custval_version: "test".into(),
            committed_at: "1997-10-01T00:00:00Z".into(),
            previous_run_id: None,
            parameters: serde_json::Value::Null,
            inputs: serde_json::Value::Null,
            quality: serde_json::Value::Null,
            model_fit: serde_json::Value::Null,
            steps: serde_json::Value::Null,
            tables,
            delta: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn a_commit_replaces_only_the_record_it_read() {
        let (store, out) = setup();
        let loc = out.run_record("nightly", DAY).unwrap();
        put_record(&store, &loc, &record("r1", &["a"]), None)
            .await
            .unwrap();
        // A second first commit (a run that found no record) loses.
        let err = put_record(&store, &loc, &record("r2", &["a"]), None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        let seen = read_record(&store, &loc).await.unwrap().unwrap();
        assert_eq!(seen.record.run_id, "r1");
        put_record(&store, &loc, &record("r3", &["a"]), Some(&seen.version))
            .await
            .unwrap();
        // r4 read r1's record too: r3 committed since, so r4 loses.
        let err = put_record(&store, &loc, &record("r4", &["a"]), Some(&seen.version))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        let now = read_record(&store, &loc).await.unwrap().unwrap();
        assert_eq!(now.record.run_id, "r3");
    }

    /// A selection run r2 published a and carried b (written by r1).
    #[tokio::test]
    async fn a_carried_table_reads_as_the_run_that_wrote_it() {
        let (store, out) = setup();
        let loc = out.run_record("nightly", DAY).unwrap();
        let r1 = record("r1", &["a", "b"]);
        let mut r2 = record("r2", &["a", "b"]);
        let mut carried = r1.tables["b"].clone();
        carried.run_id = Some("r1".into());
        r2.tables.insert("b".into(), carried);
        put_record(&store, &loc, &r2, None).await.unwrap();
        let part_b = out.partition("b", DAY).unwrap();
        // b's own manifest (r1's) is current: the record names r1 for b.
        let mut own = r1.manifest("b").unwrap();
        own.quality = serde_json::json!({"rows_read": 7});
        super::super::write_manifest(&store, &own, &part_b)
            .await
            .unwrap();
        let m = read_manifest(&store, &part_b).await.unwrap().unwrap();
        assert_eq!((m.run_id.as_str(), &m.quality), ("r1", &own.quality));
        // Without its manifest, b is rebuilt from the record: r1's files.
        let from_record = r2.manifest("b").unwrap();
        assert_eq!(from_record.run_id, "r1");
        assert_eq!(from_record.files[0].path, "run=r1/part-0.parquet");
        assert_eq!(r2.manifest("a").unwrap().run_id, "r2");
    }

    #[tokio::test]
    async fn readers_follow_the_record_while_manifests_lag() {
        let (store, out) = setup();
        let loc = out.run_record("nightly", DAY).unwrap();
        let part_a = out.partition("a", DAY).unwrap();
        let part_b = out.partition("b", DAY).unwrap();
        // r1 fully published, then r2 committed with only a's manifest rolled forward.
        let r1 = record("r1", &["a", "b"]);
        let r2 = record("r2", &["a", "b"]);
        put_record(&store, &loc, &r2, None).await.unwrap();
        super::super::write_manifest(&store, &r2.manifest("a").unwrap(), &part_a)
            .await
            .unwrap();
        super::super::write_manifest(&store, &r1.manifest("b").unwrap(), &part_b)
            .await
            .unwrap();
        for part in [&part_a, &part_b] {
            let m = read_manifest(&store, part).await.unwrap().unwrap();
            assert_eq!(m.run_id, "r2", "{part}");
            assert_eq!(m.files[0].path, "run=r2/part-0.parquet");
        }
        // A table whose manifest was never written is found through _runs/.
        let part_c = out.partition("c", DAY).unwrap();
        assert!(read_manifest(&store, &part_c).await.unwrap().is_none());
        put_record(
            &store,
            &out.run_record("other", DAY).unwrap(),
            &record("r9", &["c"]),
            None,
        )
        .await
        .unwrap();
        let m = read_manifest(&store, &part_c).await.unwrap().unwrap();
        assert_eq!(m.run_id, "r9");
        // A manifest written before run records is read as it is.
        let mut legacy = r1.manifest("b").unwrap();
        legacy.run_record = None;
        legacy.run_id = "old".into();
        super::super::write_manifest(&store, &legacy, &part_b)
            .await
            .unwrap();
        let m = read_manifest(&store, &part_b).await.unwrap().unwrap();
        assert_eq!(m.run_id, "old");
    }
}
