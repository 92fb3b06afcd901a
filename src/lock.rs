//! The run lock: one run per job and as-of date at a time on an output
//! location, taken with the store's conditional create (If-None-Match on S3,
//! a create conflict on Azure, an exclusive create on local disk).
//!
//! A lock left by a killed run must not block the next run for long: a lock
//! whose process on this host is gone is stale at once; a lock from another
//! host is stale when its holder has not refreshed it for `CUSTVAL_LOCK_TTL_SECS`
//! (default 120; holders refresh every TTL / 4).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::publish::OutputLayout;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockBody {
    run_id: String,
    host: String,
    pid: u32,
    /// Start time of the process (Linux clock ticks), against PID reuse.
    process_start: Option<u64>,
    refreshed_at: DateTime<Utc>,
}

/// A held lock; released on `release` (and refreshed until then).
pub struct RunLock {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    shown: String,
    run_id: String,
    stop: Arc<AtomicBool>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

/// Extra attempts at the conditional create after a transport error.
const LOCK_TRANSPORT_RETRIES: u32 = 4;

fn ttl() -> Duration {
    let secs = std::env::var("CUSTVAL_LOCK_TTL_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|v| *v >= 4)
        .unwrap_or(120);
    Duration::from_secs(secs)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the ")" that closes the command name.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn body(run_id: &str) -> LockBody {
    let pid = std::process::id();
    LockBody {
        run_id: run_id.to_string(),
        host: hostname(),
        pid,
        process_start: process_start(pid),
        refreshed_at: Utc::now(),
    }
}

fn is_stale(b: &LockBody) -> bool {
    if b.host == hostname() && b.host != "unknown" {
        // Same host: stale when that process no longer exists.
        return process_start(b.pid).is_none() || process_start(b.pid) != b.process_start;
    }
    let age = Utc::now().signed_duration_since(b.refreshed_at);
    age.to_std().map(|a| a > ttl()).unwrap_or(false)
}

impl RunLock {
    /// Take the lock for `job` and `as_of` in `output`, or fail with a
    /// message naming the run that holds it.
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        output: &OutputLayout,
        job: &str,
        as_of: NaiveDate,
        run_id: &str,
    ) -> Result<RunLock> {
        let loc = output.lock(job, as_of)?;
        let path = loc.path();
        let shown = loc.to_string();
        let json = |b: &LockBody| serde_json::to_vec(b).map_err(Error::from);
        let mut transport_failures = 0u32;
        let mut conflicts = 0u32;
        while conflicts < 3 {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match store
                .put_opts(&path, PutPayload::from(json(&body(run_id))?), opts)
                .await
            {
                Ok(_) => return Ok(Self::held(store, path, shown, run_id)),
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => {
                    conflicts += 1;
                    let existing = match store.get(&path).await {
                        Ok(r) => r
                            .bytes()
                            .await
                            .map_err(|e| Error::storage(shown.clone(), e))?,
                        // Released in between: try again.
                        Err(object_store::Error::NotFound { .. }) => continue,
                        Err(e) => return Err(Error::storage(shown.clone(), e)),
                    };
                    match serde_json::from_slice::<LockBody>(&existing) {
                        // An earlier attempt whose answer was lost did create it.
                        Ok(b) if b.run_id == run_id => {
                            return Ok(Self::held(store, path, shown, run_id))
                        }
                        Ok(b) if !is_stale(&b) => {
                            return Err(Error::Conflict {
                                url: shown,
                                message: format!(
                                    "another run of job {job} for {as_of} is in progress (run {} on {}, pid {}, last seen {}); nothing was published by this run",
                                    b.run_id, b.host, b.pid, b.refreshed_at
                                ),
                            })
                        }
                        _ => {
                            tracing::warn!(lock = %shown, "removing a stale lock left by a run that stopped");
                            match store.delete(&path).await {
                                Ok(()) | Err(object_store::Error::NotFound { .. }) => continue,
                                Err(e) => return Err(Error::storage(shown.clone(), e)),
                            }
                        }
                    }
                }
                // A conditional create is not idempotent, so the store client
                // does not retry it when a connection drops mid-request. The
                // body names this run, so retrying here is safe: if the lost
                // attempt succeeded, the conflict branch above recognises it.
                Err(e) if transport_failures < LOCK_TRANSPORT_RETRIES => {
                    transport_failures += 1;
                    tracing::warn!(lock = %shown, error = %e, attempt = transport_failures, "retrying the run lock");
                    tokio::time::sleep(Duration::from_millis(200 << transport_failures)).await;
                }
                Err(e) => return Err(Error::storage(shown, e)),
            }
        }
        Err(Error::Conflict {
            url: shown,
            message: "could not take the run lock after 3 attempts: another run keeps taking it"
                .into(),
        })
    }

    fn held(store: Arc<dyn ObjectStore>, path: StorePath, shown: String, run_id: &str) -> RunLock {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, p, r, st) = (
            store.clone(),
            path.clone(),
            run_id.to_string(),
            stop.clone(),
        );
        let heartbeat = tokio::spawn(async move {
            let every = ttl() / 4;
            loop {
                tokio::time::sleep(every).await;
                if st.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(bytes) = serde_json::to_vec(&body(&r)) {
                    if let Err(e) = s.put(&p, PutPayload::from(bytes)).await {
                        tracing::warn!(error = %e, "could not refresh the run lock");
                    }
                }
            }
        });
        RunLock {
            store,
            path,
            shown,
            run_id: run_id.to_string(),
            stop,
            heartbeat: Some(heartbeat),
        }
    }

    /// Fail unless the lock is still ours (checked right before publishing).
    pub async fn verify(&self) -> Result<()> {
        let bytes = self
            .store
            .get(&self.path)
            .await
            .map_err(|e| Error::storage(self.shown.clone(), e))?
            .bytes()
            .await
            .map_err(|e| Error::storage(self.shown.clone(), e))?;
        match serde_json::from_slice::<LockBody>(&bytes) {
            Ok(b) if b.run_id == self.run_id => Ok(()),
            _ => Err(Error::Conflict {
                url: self.shown.clone(),
                message:
                    "the run lock was taken over by another run; nothing was published by this run"
                        .into(),
            }),
        }
    }

    /// Stop refreshing and delete the lock.
    pub async fn release(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        if let Err(e) = self.store.delete(&self.path).await {
            tracing::warn!(lock = %self.shown, error = %e, "could not remove the run lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    const DAY: NaiveDate = NaiveDate::from_ymd_opt(1997, 9, 30).unwrap();

    fn setup() -> (Arc<dyn ObjectStore>, OutputLayout) {
        let root = crate::storage::Location::parse("s3://bucket/out/", true).unwrap();
        (Arc::new(InMemory::new()), OutputLayout::new(root))
    }

    async fn plant(store: &Arc<dyn ObjectStore>, out: &OutputLayout, b: &LockBody) {
        let path = out.lock("nightly", DAY).unwrap().path();
        store
            .put(&path, PutPayload::from(serde_json::to_vec(b).unwrap()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_live_lock_refuses_a_second_run() {
        let (store, out) = setup();
        let held = RunLock::acquire(store.clone(), &out, "nightly", DAY, "run-a")
            .await
            .unwrap();
        let second = RunLock::acquire(store.clone(), &out, "nightly", DAY, "run-b").await;
        let err = second
            .err()
            .expect("second run must be refused")
            .to_string();
        assert!(
            err.contains("run-a") && err.contains("in progress"),
            "{err}"
        );
        held.release().await;
        RunLock::acquire(store, &out, "nightly", DAY, "run-b")
            .await
            .expect("free again after release")
            .release()
            .await;
    }

    /// A create whose answer was lost in transit left our own lock behind:
    /// the retry must take it as ours, not report a conflict with itself.
    #[tokio::test]
    async fn a_lock_left_by_our_own_lost_attempt_is_ours() {
        let (store, out) = setup();
        plant(&store, &out, &body("run-a")).await;
        let lock = RunLock::acquire(store.clone(), &out, "nightly", DAY, "run-a")
            .await
            .expect("our own lock");
        lock.verify().await.unwrap();
        lock.release().await;
    }

    #[tokio::test]
    async fn a_lock_from_a_dead_process_on_this_host_is_stale() {
        let (store, out) = setup();
        let mut dead = body("run-dead");
        // PID 0 is never a user process; /proc/0 does not exist.
        dead.pid = 0;
        plant(&store, &out, &dead).await;
        let lock = RunLock::acquire(store.clone(), &out, "nightly", DAY, "run-b")
            .await
            .expect("stale lock replaced");
        lock.verify().await.unwrap();
        lock.release().await;
    }
}
