//! Publishing: a re-run replaces its partition, the next run reads the
//! previous one, and a run killed at any moment leaves the previous
//! partition whole.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use crate::common::{
    assert_manifest_files_exist, data, files_under, nightly, nightly_cdnow, read_json, read_table,
    table_lines, Cmd, TABLES,
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
    // The replaced run's folder goes with its files (local disk has
    // folders): every table's partition holds the manifest's run folder
    // and no other.
    for table in TABLES {
        let part = tmp.path().join(table).join("as_of=1997-09-30");
        let m = read_json(&part.join("_manifest.json"));
        let listed: BTreeSet<String> = m["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["path"].as_str()?.split('/').next().map(String::from))
            .collect();
        let folders: BTreeSet<String> = std::fs::read_dir(&part)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(folders, listed, "{table}");
    }
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

/// Every table of the nightly job, read through custval (run record and
/// manifest), as sorted CSV lines.
fn all_tables(out: &Path, as_of: &str) -> Vec<Vec<String>> {
    TABLES
        .iter()
        .map(|t| table_lines(&[], &format!("{}/", out.display()), t, as_of))
        .collect()
}

/// Same rows: text equal, numbers within 1e-9 relative (a re-run may sum
/// in another order in parallel), as [`assert_same_rows_within`] checks.
fn same_rows(a: &[String], b: &[String]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let (xs, ys): (Vec<&str>, Vec<&str>) = (x.split(',').collect(), y.split(',').collect());
            xs.len() == ys.len()
                && xs
                    .iter()
                    .zip(&ys)
                    .all(|(u, v)| match (u.parse::<f64>(), v.parse::<f64>()) {
                        (Ok(p), Ok(q)) => (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1e-12),
                        _ => u == v,
                    })
        })
}

/// Which of the baselines (bit 0: A, bit 1: B) every table equals.
fn matching(now: &[Vec<String>], baselines: &[Vec<Vec<String>>]) -> Vec<usize> {
    now.iter()
        .enumerate()
        .map(|(t, rows)| {
            (0..2)
                .filter(|b| same_rows(&baselines[*b][t], rows))
                .fold(0, |m, b| m | 1 << b)
        })
        .collect()
}

/// The data files of a partition, relative to it, and the run folders they are in.
fn run_folders(part: &Path) -> BTreeSet<String> {
    files_under(part)
        .iter()
        .filter_map(|p| p.strip_prefix(part).ok())
        .filter_map(|r| r.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| c.starts_with("run="))
        .collect()
}

/// SIGKILL at 20 moments spread over a run whose input differs from the
/// committed run's (runs A and B alternate, so each table tells which run
/// it came from): afterwards every table of the date reads back whole and
/// all of them equal one uninterrupted run's tables (A or B, the baselines
/// computed by uninterrupted runs below), never a mix; the run record
/// names that run and lists only existing files; the next run repairs what
/// the killed one left and reports it.
#[test]
fn sigkill_never_leaves_a_date_mixing_two_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let day = "1997-09-30";
    // Input B: the first 4,000 lines of the CDNOW sample (fewer customers,
    // so every customer table differs from A's).
    let full = std::fs::read_to_string(data("cdnow_sample.csv")).unwrap();
    let half: String = full.lines().take(4000).map(|l| format!("{l}\n")).collect();
    let b_csv = tmp.path().join("b.csv");
    std::fs::write(&b_csv, half).unwrap();
    let inputs = [data("cdnow_sample.csv"), b_csv.display().to_string()];
    let mut baselines = Vec::new();
    let t0 = Instant::now();
    for input in &inputs {
        nightly(&out, day, input).ok();
        baselines.push(all_tables(&out, day));
    }
    let full_run = t0.elapsed() / 2;
    assert!(
        !same_rows(&baselines[0][0], &baselines[1][0]),
        "A and B differ"
    );
    let record = out.join(format!("_runs/nightly/as_of={day}.json"));
    let (mut mixed, mut kept, mut committed, mut repaired) = (0, 0, 0, 0);
    // B is committed now; trial i runs A when i is even.
    let mut current = 1;
    for i in 0..20 {
        let next = i % 2;
        let delay = full_run.mul_f64((i as f64 + 0.5) / 20.0);
        let mut child = nightly(&out, day, &inputs[next]).spawn(Stdio::null(), Stdio::null());
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let now = all_tables(&out, day);
        let from = matching(&now, &baselines);
        // A table equal in A and B (rejected_rows) fits both.
        let common = from.iter().fold(0b11, |m, f| m & f);
        if common == 0 {
            mixed += 1;
            eprintln!("trial {i}: tables from runs {from:?}");
            continue;
        }
        let r = read_json(&record);
        for t in TABLES {
            let part = out.join(format!("{t}/as_of={day}"));
            for f in r["tables"][t]["files"].as_array().unwrap() {
                let f = f["path"].as_str().unwrap();
                assert!(
                    part.join(f).exists(),
                    "trial {i}: {t}: record lists missing {f}"
                );
                let run = r["run_id"].as_str().unwrap();
                assert!(f.starts_with(&format!("run={run}/")), "trial {i}: {f}");
            }
        }
        if common & (1 << next) != 0 && common != 0b11 {
            committed += 1;
            current = next;
        } else {
            kept += 1;
        }
        let leftovers = TABLES
            .iter()
            .any(|t| run_folders(&out.join(format!("{t}/as_of={day}"))).len() > 1);
        if leftovers {
            // The next run repairs them and says so.
            let report = tmp.path().join("report.json");
            nightly(&out, day, &inputs[current])
                .arg("--report")
                .arg(&report)
                .ok();
            let rep = read_json(&report);
            assert!(
                !rep["repairs"].as_array().unwrap().is_empty(),
                "trial {i}: leftovers but no repair reported"
            );
            repaired += 1;
            for t in TABLES {
                let part = out.join(format!("{t}/as_of={day}"));
                assert_eq!(
                    run_folders(&part).len(),
                    1,
                    "trial {i}: {t} still has leftovers"
                );
                assert_manifest_files_exist(&part, &format!("trial {i}: {t}"));
            }
            let after = matching(&all_tables(&out, day), &baselines);
            assert!(
                after.iter().all(|m| m & (1 << current) != 0),
                "trial {i}: after the repair run the tables match {after:?}, not run {current}"
            );
        }
    }
    println!(
        "sigkill trials: 20, dates mixing two runs: {mixed}, previous run kept: {kept}, killed run already committed: {committed}, leftovers repaired by the next run: {repaired}"
    );
    assert_eq!(mixed, 0);
}
