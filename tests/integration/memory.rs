//! Peak memory of whole jobs: the engine's memory pool bounds what the
//! steps hold, so a run's resident set stays near the pool whatever the
//! data's size. A step whose state escapes the pool (a DISTINCT aggregate
//! per customer kept one hash set per group: 24 GB at 1M customers, then a
//! killed process) grows with the customers and fails here. Peak resident
//! memory (VmHWM), never time.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::{nightly, Cmd};

/// The child's peak resident set (KiB) from /proc/PID/status, polled until
/// it exits; with its exit status. The last poll falls at most 50 ms before
/// the exit, and the high-water mark never falls.
fn peak_rss_kib(mut child: Child) -> (std::process::ExitStatus, u64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some(status) = child.try_wait().expect("waiting for custval") {
            return (status, peak);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_nightly_job_stays_near_its_memory_pool() {
    // 50,000 generated customers (about 650,000 rows) with a 256 MiB pool.
    // Measured on the debug binary: 386 MB peak with every step in the
    // pool; 2.0 GB with the wallet step's count(DISTINCT category) per
    // customer (commit 1f5a4c1), whose hash sets grow with the customers.
    // The bound, 1 GiB, is 2.6 times the first and half the second.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Cmd::custval()
        .args(["generate", "--customers", "50000", "--seed", "7"])
        .args(["--start", "2023-01-01", "--end", "2024-12-31", "--out"])
        .arg(&data)
        .ok();
    let transactions = data.join("transactions");
    let log = dir.path().join("stderr.log");
    let child = nightly(dir.path().join("out"), "2024-12-31", transactions.display())
        .args([
            "--memory-limit",
            "256MiB",
            "--set",
            "max_staleness_days=100000",
        ])
        .spawn(Stdio::null(), Stdio::from(File::create(&log).unwrap()));
    let (status, peak) = peak_rss_kib(child);
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "the nightly job failed ({status}):\n{stderr}"
    );
    println!("nightly job, 50,000 customers, 256 MiB pool: peak resident set {peak} KiB");
    assert!(peak > 0, "no VmHWM read from /proc for the job");
    assert!(
        peak < 1024 * 1024,
        "the nightly job's peak resident set is {peak} KiB, over 1 GiB with a 256 MiB pool: a step holds memory outside the pool"
    );
    assert!(Path::new(&dir.path().join("out/customer_tiers")).is_dir());
}
