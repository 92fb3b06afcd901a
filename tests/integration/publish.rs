//! Publishing: a re-run replaces its partition, the next run reads the
//! previous one, and a run killed at any moment leaves the previous
//! partition whole.

use std::process::Stdio;

use crate::common::{
    assert_manifest_files_exist, files_under, nightly_cdnow, read_json, read_table, Cmd,
};

#[test]
fn rerun_replaces_the_partition_and_previous_tier_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    nightly_cdnow(tmp.path(), "1997-09-30").ok();
    nightly_cdnow(tmp.path(), "1997-09-30").ok();
    let part = tmp.path().join("customer_tiers/as_of=1997-09-30");
    let parquet: Vec<_> = files_under(&part)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    let m = read_json(&part.join("_manifest.json"));
    assert_eq!(
        parquet.len(),
        m["files"].as_array().unwrap().len(),
        "old run's files removed"
    );
    nightly_cdnow(tmp.path(), "1997-12-31").ok();
    let rows = read_table(
        tmp.path(),
        "customer_tiers",
        "1997-12-31",
        "SELECT count(previous_tier) AS n FROM t",
    );
    assert_eq!(rows[0]["n"], "2357");
    // The table folder reads as one table with its as_of partition column.
    let url = format!("t={}/customer_tiers/", tmp.path().display());
    let out = Cmd::custval()
        .args([
            "sql",
            "--format",
            "csv",
            "--table",
            &url,
            "SELECT as_of, count(*) AS n FROM t GROUP BY as_of ORDER BY as_of",
        ])
        .stdout();
    assert_eq!(out, "as_of,n\n1997-09-30,2357\n1997-12-31,2357\n");
}

/// Kill the process with SIGKILL at moments spread over a whole run: every
/// time, the previous partition reads back whole through its manifest, and a
/// clean re-run publishes the same rows as an uninterrupted run.
#[test]
fn sigkill_at_any_moment_leaves_the_previous_partition_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path();
    nightly_cdnow(out_dir, "1997-09-30").ok();
    let query =
        "SELECT count(*) AS n, round(sum(clv), 6) AS clv, count(DISTINCT customer_id) AS c FROM t";
    let baseline = read_table(out_dir, "customer_tiers", "1997-09-30", query);
    let t0 = std::time::Instant::now();
    nightly_cdnow(out_dir, "1997-09-30").ok();
    let full = t0.elapsed();
    let trials = 20;
    for i in 0..trials {
        let delay = full.mul_f64((i as f64 + 0.5) / trials as f64);
        let mut child = nightly_cdnow(out_dir, "1997-09-30").spawn(Stdio::null(), Stdio::null());
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL on Unix
        let _ = child.wait();
        for table in [
            "customer_tiers",
            "model_fit",
            "concentration",
            "retention_rates",
        ] {
            let part = out_dir.join(format!("{table}/as_of=1997-09-30"));
            assert_manifest_files_exist(&part, &format!("trial {i}: {table}"));
        }
        let now = read_table(out_dir, "customer_tiers", "1997-09-30", query);
        assert_eq!(now, baseline, "trial {i} (killed after {delay:?})");
    }
    nightly_cdnow(out_dir, "1997-09-30").ok();
    assert_eq!(
        read_table(out_dir, "customer_tiers", "1997-09-30", query),
        baseline
    );
    let part = out_dir.join("customer_tiers/as_of=1997-09-30");
    let parquet = files_under(&part)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count();
    let m = read_json(&part.join("_manifest.json"));
    assert_eq!(
        parquet,
        m["files"].as_array().unwrap().len(),
        "leftovers of killed runs cleaned up"
    );
}
