//! End-to-end tests of the real `custval` binary on temporary folders.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_custval"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("RUST_LOG");
    c
}

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run_ok(args: &[&str]) -> Output {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "custval {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Rows of a published partition as CSV records keyed by column name.
fn read_table(dir: &Path, table: &str, as_of: &str, query: &str) -> Vec<HashMap<String, String>> {
    let url = format!("{}/{table}/as_of={as_of}/", dir.display());
    let out = run_ok(&[
        "sql",
        "--format",
        "csv",
        "--table",
        &format!("t={url}"),
        query,
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(String::from)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

fn cdnow_run(out: &Path, as_of: &str) -> Output {
    bin()
        .args(["run", "jobs/nightly.toml", "--as-of", as_of, "--output"])
        .arg(out)
        .args([
            "--input",
            &format!("transactions={}", data("cdnow_sample.csv")),
        ])
        .output()
        .unwrap()
}

#[test]
fn cdnow_run_reproduces_hardies_summary_and_the_published_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cdnow_run(tmp.path(), "1997-09-30");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Hardie's summary (shared/data/cdnow): x, t_x, T in weeks, rounded to 2 decimals.
    let summary = std::fs::read_to_string(data("cdnow_sample_summary.csv")).unwrap();
    let mut want: HashMap<String, (String, String, String)> = HashMap::new();
    for l in summary.lines().skip(1) {
        let v: Vec<&str> = l.split(',').collect();
        want.insert(v[0].to_string(), (v[1].into(), v[2].into(), v[3].into()));
    }
    let rows = read_table(
        tmp.path(),
        "customer_tiers",
        "1997-09-30",
        "SELECT customer_id, CAST(CAST(frequency AS BIGINT) AS VARCHAR) AS x, \
         round(recency, 2) AS tx, round(t, 2) AS t FROM t",
    );
    assert_eq!(rows.len(), 2357, "every CDNOW customer");
    let mut checked = 0;
    for r in &rows {
        let (x, tx, t) = &want[&r["customer_id"]];
        assert_eq!(&r["x"], x, "frequency of customer {}", r["customer_id"]);
        let got_tx: f64 = r["tx"].trim().parse().unwrap();
        let got_t: f64 = r["t"].parse().unwrap();
        assert!(
            (got_tx - tx.parse::<f64>().unwrap()).abs() < 1e-9,
            "recency of {}: {got_tx} vs {tx}",
            r["customer_id"]
        );
        assert!(
            (got_t - t.parse::<f64>().unwrap()).abs() < 1e-9,
            "T of {}: {got_t} vs {t}",
            r["customer_id"]
        );
        checked += 1;
    }
    assert_eq!(checked, 2357);
    // The job's fit reproduces Fader, Hardie & Lee (2005) (0.001) and Fader & Hardie (2013) (0.01).
    let fit = read_table(
        tmp.path(),
        "model_fit",
        "1997-09-30",
        "SELECT model, r, alpha, a, b, p, q, v, converged FROM t",
    );
    let bg = fit.iter().find(|r| r["model"] == "bgnbd").unwrap();
    for (k, w) in [("r", 0.243), ("alpha", 4.414), ("a", 0.793), ("b", 2.426)] {
        let v: f64 = bg[k].parse().unwrap();
        assert!((v - w).abs() < 0.001, "{k} = {v}");
    }
    let gg = fit.iter().find(|r| r["model"] == "gamma_gamma").unwrap();
    for (k, w) in [("p", 6.25), ("q", 3.74), ("v", 15.44)] {
        let v: f64 = gg[k].parse().unwrap();
        assert!((v - w).abs() < 0.01, "{k} = {v}");
    }
    // Every published partition has its manifest, listing files that exist.
    for table in crate::common::TABLES {
        let part = tmp.path().join(format!("{table}/as_of=1997-09-30"));
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(part.join("_manifest.json")).unwrap())
                .unwrap();
        for f in m["files"].as_array().unwrap() {
            assert!(
                part.join(f["path"].as_str().unwrap()).exists(),
                "{table}: {f}"
            );
        }
    }
}

const FIXTURE: &str = "customer_id,order_ts,amount,order_id
c1,2024-01-05,100.0,o1
c1,2024-01-05,-30.0,o2
c1,2024-02-10,50.0,o3
c1,2024-02-10,50.0,o3
c2,2024-01-20,20.0,o4
c2,2024-03-01,40.0,o5
,2024-01-07,10.0,o6
c3,not-a-date,10.0,o7
c3,2024-01-09,NaN,o8
c4,2024-12-31,99.0,o9
c5,2024-02-01,15.0,o10
";

/// jobs/clv.toml runs the nightly job's model steps alone: the same fit
/// (Fader, Hardie & Lee 2005 on CDNOW, 0.001) and, customer by customer,
/// the same predictions as the nightly job's customer_tiers (exact: same
/// SQL, same data).
#[test]
fn clv_job_publishes_the_nightly_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let (clv_dir, nightly_dir) = (tmp.path().join("clv"), tmp.path().join("nightly"));
    let input = format!("transactions={}", data("cdnow_sample.csv"));
    for (job, dir) in [
        ("jobs/clv.toml", &clv_dir),
        ("jobs/nightly.toml", &nightly_dir),
    ] {
        run_ok(&[
            "run",
            job,
            "--as-of",
            "1997-09-30",
            "--input",
            &input,
            "--output",
            dir.to_str().unwrap(),
        ]);
    }
    let cols = "SELECT customer_id, frequency, recency, t, p_alive, expected_purchases, \
                expected_avg_value, clv FROM t ORDER BY customer_id";
    let clv = read_table(&clv_dir, "customer_clv", "1997-09-30", cols);
    let nightly = read_table(&nightly_dir, "customer_tiers", "1997-09-30", cols);
    assert_eq!(clv.len(), 2357, "every CDNOW customer");
    assert_eq!(clv, nightly);
    let fit = read_table(
        &clv_dir,
        "model_fit",
        "1997-09-30",
        "SELECT r, alpha, a, b FROM t WHERE model = 'bgnbd'",
    );
    for (k, want) in [("r", 0.243), ("alpha", 4.414), ("a", 0.793), ("b", 2.426)] {
        let got: f64 = fit[0][k].parse().unwrap();
        assert!((got - want).abs() < 0.001, "{k}: {got} vs {want}");
    }
    assert!(!clv_dir.join("customer_tiers").exists());
}

fn fixture_run(dir: &Path, extra: &[&str]) -> Output {
    let input = dir.join("tx.csv");
    std::fs::write(&input, FIXTURE).unwrap();
    let report = dir.join("report.json");
    bin()
        .args([
            "run",
            "jobs/nightly.toml",
            "--as-of",
            "2024-03-31",
            "--output",
        ])
        .arg(dir.join("out"))
        .args([
            "--input",
            &format!("transactions={}", input.display()),
            "--report",
        ])
        .arg(&report)
        .args(extra)
        .output()
        .unwrap()
}

/// `value = margin`: CLV, concentration and tiers measure profit. Hand
/// computed: c1 nets 100 - 30 on 2024-01-05 (margin 30 - 9), repeats o3 once
/// (an export duplicate) and has a row without margin; c2 buys twice.
#[test]
fn value_margin_measures_profit_and_skips_missing_margins() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("tx.csv");
    std::fs::write(
        &input,
        "customer_id,order_ts,amount,order_id,margin
c1,2024-01-05,100.0,o1,30.0
c1,2024-01-05,-30.0,o2,-9.0
c1,2024-02-10,50.0,o3,10.0
c1,2024-02-10,50.0,o3,10.0
c1,2024-03-01,20.0,o4,
c2,2024-01-20,20.0,o5,5.0
c2,2024-03-01,40.0,o6,12.0
",
    )
    .unwrap();
    // value = margin needs the margin column mapped in the job: the nightly
    // job with that mapping, beside a copy of the SQL it names.
    let jobs = tmp.path().join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let nightly = std::fs::read_to_string("jobs/nightly.toml")
        .unwrap()
        .replacen(
            "[inputs.transactions.columns]\n",
            "[inputs.transactions.columns]\nmargin = \"margin\"\n",
            1,
        );
    std::fs::write(jobs.join("nightly.toml"), nightly).unwrap();
    let sql = tmp.path().join("sql");
    std::fs::create_dir_all(&sql).unwrap();
    for f in std::fs::read_dir("sql").unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, sql.join(f.file_name().unwrap())).unwrap();
    }
    let out = bin()
        .arg("run")
        .arg(jobs.join("nightly.toml"))
        .args(["--as-of", "2024-03-31", "--output"])
        .arg(tmp.path().join("out"))
        .arg("--input")
        .arg(format!("transactions={}", input.display()))
        .args(["--set", "value=margin", "--set", "allow_unconverged=true"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out_dir = tmp.path().join("out");
    let tiers = read_table(
        &out_dir,
        "customer_tiers",
        "2024-03-31",
        "SELECT customer_id, revenue, margin, value_total, frequency, monetary_value, orders FROM t ORDER BY customer_id",
    );
    let row = |i: usize, c: &str| tiers[i][c].clone();
    // c1: revenue 70 + 50 + 20; margin 21 + 10 (+ NULL); repeat days 02-10
    // (10) and 03-01 (no margin): monetary (31 - 21) / 2.
    assert_eq!(
        [
            "revenue",
            "margin",
            "value_total",
            "frequency",
            "monetary_value",
            "orders"
        ]
        .map(|c| row(0, c)),
        ["140.0", "31.0", "31.0", "2.0", "5.0", "4"].map(String::from)
    );
    assert_eq!(
        [
            "revenue",
            "margin",
            "value_total",
            "frequency",
            "monetary_value"
        ]
        .map(|c| row(1, c)),
        ["60.0", "17.0", "17.0", "1.0", "12.0"].map(String::from)
    );
    let conc = read_table(
        &out_dir,
        "concentration",
        "2024-03-31",
        "SELECT measure, total FROM t ORDER BY measure",
    );
    assert!(
        conc.iter()
            .any(|r| r["measure"] == "margin" && r["total"] == "48.0"),
        "{conc:?}"
    );
}

#[test]
fn data_quality_rules_reject_count_and_net() {
    let tmp = tempfile::tempdir().unwrap();
    // Four customers cannot identify the models: allow unconverged fits here.
    let out = fixture_run(
        tmp.path(),
        &[
            "--set",
            "max_rejected_fraction=0.5",
            "--set",
            "allow_unconverged=true",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("report.json")).unwrap())
            .unwrap();
    let q = &report["quality"];
    assert_eq!(q["rows_read"], 11);
    assert_eq!(q["rows_rejected"], 3, "{q}");
    assert_eq!(q["rows_after_as_of"], 1, "{q}");
    assert_eq!(q["duplicate_rows"], 1, "{q}");
    let out_dir = tmp.path().join("out");
    let rejected = read_table(
        &out_dir,
        "rejected_rows",
        "2024-03-31",
        "SELECT order_id, reason FROM t ORDER BY order_id",
    );
    let reasons: Vec<(String, String)> = rejected
        .iter()
        .map(|r| (r["order_id"].clone(), r["reason"].clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("o6".into(), "missing customer_id".into()),
            ("o7".into(), "unparseable order_ts".into()),
            ("o8".into(), "non-finite amount".into())
        ]
    );
    let tiers = read_table(
        &out_dir,
        "customer_tiers",
        "2024-03-31",
        "SELECT customer_id, revenue, frequency, orders FROM t ORDER BY customer_id",
    );
    let c1 = &tiers[0];
    // The return nets within the day (100 - 30), the duplicate o3 row counts once.
    assert_eq!(c1["customer_id"], "c1");
    assert_eq!(c1["revenue"], "120.0");
    assert_eq!(c1["frequency"], "1.0");
    assert_eq!(c1["orders"], "3");
    assert!(
        tiers.iter().all(|r| r["customer_id"] != "c4"),
        "after the as-of date"
    );
}

#[test]
fn a_failed_gate_exits_3_and_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = fixture_run(tmp.path(), &[]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 of 11 rows rejected"), "{err}");
    let manifests = walk(&tmp.path().join("out"));
    assert!(manifests.is_empty(), "nothing published: {manifests:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["exit_code"], 3);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_missing_column_exits_2_naming_column_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("bad.csv");
    std::fs::write(&input, "customer,order_ts,amount\nc1,2024-01-01,5\n").unwrap();
    let out = bin()
        .args([
            "run",
            "jobs/nightly.toml",
            "--as-of",
            "2024-03-31",
            "--output",
        ])
        .arg(tmp.path().join("out"))
        .args(["--input", &format!("transactions={}", input.display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"customer_id\"") && err.contains("bad.csv"),
        "{err}"
    );
    assert!(walk(&tmp.path().join("out")).is_empty());
}

#[test]
fn unknown_job_fields_and_parameters_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job.toml");
    std::fs::write(&job, "name = \"x\"\nsteps = []\nbogus = 1\n").unwrap();
    let out = bin().arg("check").arg(&job).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
    let out = bin()
        .args([
            "run",
            "jobs/nightly.toml",
            "--set",
            "nope=1",
            "--input",
            "transactions=x.csv",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn check_plans_every_step_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(tmp.path())
        .arg("check")
        .arg(format!("{}/jobs/nightly.toml", env!("CARGO_MANIFEST_DIR")))
        .args([
            "--input",
            &format!("transactions={}", data("cdnow_sample.csv")),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("17 steps planned"));
    assert!(walk(tmp.path()).is_empty());
}

/// SPEC: a broken step in `check` is invalid SQL, exit 2, and the error
/// names the step and its file, printed once.
#[test]
fn check_exits_2_on_a_broken_sql_step() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.sql"), "SELECT no_such_column FROM t\n").unwrap();
    std::fs::write(tmp.path().join("t.csv"), "x\n1\n").unwrap();
    let job = tmp.path().join("job.toml");
    std::fs::write(
        &job,
        "name = \"broken\"\n[inputs.t]\nkind = \"table\"\nurl = \"t.csv\"\n\
         [[steps]]\nname = \"a\"\nsql = \"a.sql\"\n",
    )
    .unwrap();
    let out = bin().arg("check").arg(&job).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("step a (a.sql)") && err.contains("no_such_column"),
        "{err}"
    );
    assert_eq!(
        err.matches("step a (a.sql)").count(),
        1,
        "printed once: {err}"
    );
}

#[test]
fn sql_is_read_only_unless_allowed() {
    let out = bin()
        .args(["sql", "CREATE TABLE x AS SELECT 1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-write"));
    let out = run_ok(&[
        "sql",
        "--allow-write",
        "--format",
        "json",
        "CREATE TABLE x AS SELECT 1 AS a; SELECT a + 1 AS b FROM x",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("{\"b\":2}"));
}

#[test]
fn rerun_replaces_the_partition_and_previous_tier_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(cdnow_run(tmp.path(), "1997-09-30").status.success());
    assert!(cdnow_run(tmp.path(), "1997-09-30").status.success());
    let part = tmp.path().join("customer_tiers/as_of=1997-09-30");
    let parquet: Vec<_> = walk(&part)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(part.join("_manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        parquet.len(),
        m["files"].as_array().unwrap().len(),
        "old run's files removed"
    );
    assert!(cdnow_run(tmp.path(), "1997-12-31").status.success());
    let rows = read_table(
        tmp.path(),
        "customer_tiers",
        "1997-12-31",
        "SELECT count(previous_tier) AS n FROM t",
    );
    assert_eq!(rows[0]["n"], "2357");
    // The table folder reads as one table with its as_of partition column.
    let url = format!("t={}/customer_tiers/", tmp.path().display());
    let out = run_ok(&[
        "sql",
        "--format",
        "csv",
        "--table",
        &url,
        "SELECT as_of, count(*) AS n FROM t GROUP BY as_of ORDER BY as_of",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "as_of,n\n1997-09-30,2357\n1997-12-31,2357\n"
    );
}

/// Kill the process with SIGKILL at moments spread over a whole run: every
/// time, the previous partition reads back whole through its manifest, and a
/// clean re-run publishes the same rows as an uninterrupted run.
#[test]
fn sigkill_at_any_moment_leaves_the_previous_partition_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path();
    let first = cdnow_run(out_dir, "1997-09-30");
    assert!(first.status.success());
    let query =
        "SELECT count(*) AS n, round(sum(clv), 6) AS clv, count(DISTINCT customer_id) AS c FROM t";
    let baseline = read_table(out_dir, "customer_tiers", "1997-09-30", query);
    let t0 = std::time::Instant::now();
    assert!(cdnow_run(out_dir, "1997-09-30").status.success());
    let full = t0.elapsed();
    let trials = 20;
    for i in 0..trials {
        let delay = full.mul_f64((i as f64 + 0.5) / trials as f64);
        let mut child = bin()
            .args([
                "run",
                "jobs/nightly.toml",
                "--as-of",
                "1997-09-30",
                "--output",
            ])
            .arg(out_dir)
            .args([
                "--input",
                &format!("transactions={}", data("cdnow_sample.csv")),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
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
            let m: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(part.join("_manifest.json")).unwrap(),
            )
            .unwrap();
            for f in m["files"].as_array().unwrap() {
                assert!(
                    part.join(f["path"].as_str().unwrap()).exists(),
                    "trial {i}: {table} manifest names a missing file"
                );
            }
        }
        let now = read_table(out_dir, "customer_tiers", "1997-09-30", query);
        assert_eq!(now, baseline, "trial {i} (killed after {delay:?})");
    }
    assert!(cdnow_run(out_dir, "1997-09-30").status.success());
    assert_eq!(
        read_table(out_dir, "customer_tiers", "1997-09-30", query),
        baseline
    );
    let part = out_dir.join("customer_tiers/as_of=1997-09-30");
    let parquet = walk(&part)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(part.join("_manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        parquet,
        m["files"].as_array().unwrap().len(),
        "leftovers of killed runs cleaned up"
    );
}

#[test]
fn demo_prints_its_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_ok(&["demo", tmp.path().to_str().unwrap(), "--customers", "1500"]);
    let s = String::from_utf8_lossy(&out.stdout);
    for want in [
        "customer_tiers",
        "Platinum",
        "top_20pct_share",
        "retention_rate",
        "bgnbd",
    ] {
        assert!(s.contains(want), "missing {want} in:\n{s}");
    }
}

/// Data drawn from known parameters is fitted back within 5% of each.
#[test]
fn generated_data_fits_back_to_the_true_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    run_ok(&[
        "generate",
        "--customers",
        "200000",
        "--seed",
        "7",
        "--out",
        data_dir.to_str().unwrap(),
    ]);
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data_dir.join("truth.json")).unwrap())
            .unwrap();
    let out_dir = tmp.path().join("out");
    run_ok(&[
        "run",
        "jobs/nightly.toml",
        "--as-of",
        truth["end"].as_str().unwrap(),
        "--input",
        &format!("transactions={}/transactions/", data_dir.display()),
        "--output",
        out_dir.to_str().unwrap(),
    ]);
    let fit = read_table(
        &out_dir,
        "model_fit",
        truth["end"].as_str().unwrap(),
        "SELECT model, r, alpha, a, b, p, q, v FROM t",
    );
    let bg = fit.iter().find(|r| r["model"] == "bgnbd").unwrap();
    for k in ["r", "alpha", "a", "b"] {
        let want = truth["bgnbd"][k].as_f64().unwrap();
        let got: f64 = bg[k].parse().unwrap();
        assert!(
            (got / want - 1.0).abs() < 0.05,
            "bgnbd {k}: {got} vs true {want}"
        );
    }
    let gg = fit.iter().find(|r| r["model"] == "gamma_gamma").unwrap();
    for k in ["p", "q", "v"] {
        let want = truth["gamma_gamma"][k].as_f64().unwrap();
        let got: f64 = gg[k].parse().unwrap();
        assert!(
            (got / want - 1.0).abs() < 0.05,
            "gamma_gamma {k}: {got} vs true {want}"
        );
    }
}

/// Holdout validation on CDNOW: calibration 1997-01-01..1997-09-30, holdout
/// weeks 40..78. The actual count is shared/data's 1,882 repeat purchase days
/// (counted from the data, exact); the prediction must equal the calibration
/// fit summed over Hardie's published summary (an independent RFM path),
/// within 0.5 purchases (the summary rounds t_x and T to 2 decimals).
#[test]
fn holdout_reports_predicted_beside_actual_repeat_purchases() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "run",
            "jobs/nightly.toml",
            "--as-of",
            "1998-06-30",
            "--set",
            "holdout_days=273",
            "--output",
        ])
        .arg(tmp.path())
        .args([
            "--input",
            &format!("transactions={}", data("cdnow_sample.csv")),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fit = read_table(
        tmp.path(),
        "model_fit",
        "1998-06-30",
        "SELECT holdout_customers, holdout_predicted, holdout_actual, holdout_mae, holdout_rank_correlation FROM t WHERE model = 'bgnbd'",
    );
    let row = &fit[0];
    assert_eq!(row["holdout_customers"], "2357");
    assert_eq!(row["holdout_actual"], "1882.0");
    let predicted: f64 = row["holdout_predicted"].parse().unwrap();
    let independent = run_ok(&[
        "sql",
        "--format",
        "csv",
        "--table",
        &format!("s={}", data("cdnow_sample_summary.csv")),
        "WITH f AS (SELECT bgnbd_fit(x, t_x, \"T\") AS p FROM s) \
         SELECT sum(bgnbd_expected_purchases(f.p, 39, x, t_x, \"T\")) AS pred FROM s CROSS JOIN f",
    ]);
    let independent: f64 = String::from_utf8_lossy(&independent.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    println!("CDNOW holdout: predicted {predicted:.1} (via Hardie's summary {independent:.1}), actual 1882");
    assert!(
        (predicted - independent).abs() < 0.5,
        "{predicted} vs {independent}"
    );
    let mae: f64 = row["holdout_mae"].parse().unwrap();
    let rho: f64 = row["holdout_rank_correlation"].parse().unwrap();
    assert!(mae > 0.0 && (0.0..=1.0).contains(&rho), "{row:?}");
    // The MAE and Spearman's rho (Pearson's r of average ranks) recomputed
    // here from the per-customer predictions jobs/clv.toml publishes; 1e-9.
    let clv_out = tmp.path().join("clv");
    run_ok(&[
        "run",
        "jobs/clv.toml",
        "--as-of",
        "1998-06-30",
        "--set",
        "holdout_days=273",
        "--output",
        clv_out.to_str().unwrap(),
        "--input",
        &format!("transactions={}", data("cdnow_sample.csv")),
    ]);
    let per_customer = read_table(
        &clv_out,
        "customer_clv",
        "1998-06-30",
        "SELECT holdout_predicted, holdout_purchases FROM t WHERE holdout_predicted IS NOT NULL",
    );
    let pred: Vec<f64> = per_customer
        .iter()
        .map(|r| r["holdout_predicted"].parse().unwrap())
        .collect();
    let actual: Vec<f64> = per_customer
        .iter()
        .map(|r| r["holdout_purchases"].parse().unwrap())
        .collect();
    assert_eq!(pred.len(), 2357);
    let want_mae = pred
        .iter()
        .zip(&actual)
        .map(|(p, a)| (p - a).abs())
        .sum::<f64>()
        / pred.len() as f64;
    let want_rho = pearson(&average_ranks(&pred), &average_ranks(&actual));
    assert!((mae - want_mae).abs() < 1e-9, "{mae} vs {want_mae}");
    assert!((rho - want_rho).abs() < 1e-9, "{rho} vs {want_rho}");
}

/// Ranks 1..n, tied values sharing the average of their ranks.
fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = avg;
        }
        i = j + 1;
    }
    ranks
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

fn json_rows(dir: &Path, table: &str, as_of: &str, query: &str) -> Vec<serde_json::Value> {
    let url = format!("{}/{table}/as_of={as_of}/", dir.display());
    let out = run_ok(&[
        "sql",
        "--format",
        "json",
        "--table",
        &format!("t={url}"),
        query,
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn close(v: &serde_json::Value, want: Option<f64>) -> bool {
    match (v.as_f64(), want) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-12,
        (None, None) => v.is_null(),
        _ => false,
    }
}

/// (month, S, N, E, retained, (E-N)/S, retained/S, churn, (E-N)/E)
type RateRow = (
    &'static str,
    i64,
    i64,
    i64,
    i64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
);

/// A dozen customers over four months, every column computed by hand
/// (tests/data/retention/transactions.csv; the arithmetic is in the comments).
#[test]
fn retention_and_category_share_match_a_hand_computed_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "run",
            "jobs/nightly.toml",
            "--as-of",
            "2024-04-30",
            "--set",
            "allow_unconverged=true",
            "--output",
        ])
        .arg(tmp.path())
        .args([
            "--input",
            &format!("transactions={}", data("retention/transactions.csv")),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Cohorts: Jan {c01..c04} revenue 45; Feb {c05,c06,c07} 100; Mar {c08,c09,c10} 90; Apr {c11,c12} 70.
    // (cohort, period, size, active, rate, revenue, revenue_retention)
    let cohorts: Vec<(&str, i64, i64, i64, f64, f64, f64)> = vec![
        ("2024-01-01", 0, 4, 4, 1.0, 45.0, 1.0),
        ("2024-01-01", 1, 4, 2, 0.5, 25.0, 25.0 / 45.0), // c01 20, c04 5
        ("2024-01-01", 2, 4, 2, 0.5, 40.0, 40.0 / 45.0), // c01 30, c02 10
        ("2024-01-01", 3, 4, 1, 0.25, 40.0, 40.0 / 45.0), // c01 40
        ("2024-02-01", 0, 3, 3, 1.0, 100.0, 1.0),
        ("2024-02-01", 1, 3, 1, 1.0 / 3.0, 10.0, 0.1), // c05 10
        ("2024-02-01", 2, 3, 2, 2.0 / 3.0, 40.0, 0.4), // c05 10, c07 30
        ("2024-03-01", 0, 3, 3, 1.0, 90.0, 1.0),
        ("2024-03-01", 1, 3, 1, 1.0 / 3.0, 15.0, 15.0 / 90.0), // c08 15
        ("2024-04-01", 0, 2, 2, 1.0, 70.0, 1.0),
    ];
    let got = json_rows(
        tmp.path(),
        "retention_cohorts",
        "2024-04-30",
        "SELECT * FROM t ORDER BY cohort, period",
    );
    assert_eq!(got.len(), cohorts.len(), "{got:?}");
    for (g, w) in got.iter().zip(&cohorts) {
        assert_eq!(g["cohort"], w.0, "{g}");
        assert_eq!(g["period"], w.1, "{g}");
        assert_eq!(g["cohort_size"], w.2, "{g}");
        assert_eq!(g["active_customers"], w.3, "{g}");
        assert!(close(&g["retention_rate"], Some(w.4)), "{g}");
        assert!(close(&g["revenue"], Some(w.5)), "{g}");
        assert!(close(&g["revenue_retention"], Some(w.6)), "{g}");
    }
    // Months: E = active, N = first purchase, retained = active in both months, S = previous E.
    // Jan E4 N4; Feb E5 N3 ret2 {c01,c04}; Mar E6 N3 ret2 {c01,c05} (c02 back);
    // Apr E6 N2 ret3 {c01,c05,c08} (c07 back).
    // (month, S, N, E, retained, (E-N)/S, retained/S, churn, (E-N)/E)
    let rates: Vec<RateRow> = vec![
        ("2024-01-01", 0, 4, 4, 0, None, None, None, Some(0.0)),
        (
            "2024-02-01",
            4,
            3,
            5,
            2,
            Some(0.5),
            Some(0.5),
            Some(0.5),
            Some(0.4),
        ),
        (
            "2024-03-01",
            5,
            3,
            6,
            2,
            Some(0.6),
            Some(0.4),
            Some(0.6),
            Some(0.5),
        ),
        (
            "2024-04-01",
            6,
            2,
            6,
            3,
            Some(4.0 / 6.0),
            Some(0.5),
            Some(0.5),
            Some(4.0 / 6.0),
        ),
    ];
    let got = json_rows(
        tmp.path(),
        "retention_rates",
        "2024-04-30",
        "SELECT * FROM t ORDER BY period_start",
    );
    assert_eq!(got.len(), rates.len(), "{got:?}");
    for (g, w) in got.iter().zip(&rates) {
        assert_eq!(g["period_start"], w.0, "{g}");
        assert_eq!(g["customers_start"], w.1, "{g}");
        assert_eq!(g["customers_new"], w.2, "{g}");
        assert_eq!(g["customers_end"], w.3, "{g}");
        assert_eq!(g["retained"], w.4, "{g}");
        assert!(close(&g["retention_rate"], w.5), "{g}");
        assert!(close(&g["retention_rate_set"], w.6), "{g}");
        assert!(close(&g["churn_rate"], w.7), "{g}");
        assert!(close(&g["repeat_purchase_rate"], w.8), "{g}");
    }
    // Category totals: a 190, b 150, c 135.
    let (a, b, c) = (190.0, 150.0, 135.0);
    let shares: Vec<(&str, &str, f64, f64, f64)> = vec![
        ("c01", "a", 80.0, 0.8, 80.0 / a),
        ("c01", "b", 20.0, 0.2, 20.0 / b),
        ("c02", "a", 10.0, 0.5, 10.0 / a),
        ("c02", "b", 10.0, 0.5, 10.0 / b),
        ("c03", "b", 20.0, 1.0, 20.0 / b),
        ("c04", "a", 10.0, 1.0, 10.0 / a),
        ("c05", "a", 10.0, 10.0 / 70.0, 10.0 / a),
        ("c05", "c", 60.0, 60.0 / 70.0, 60.0 / c),
        ("c06", "a", 20.0, 1.0, 20.0 / a),
        ("c07", "b", 60.0, 1.0, 60.0 / b),
        ("c08", "a", 15.0, 0.5, 15.0 / a),
        ("c08", "c", 15.0, 0.5, 15.0 / c),
        ("c09", "b", 25.0, 1.0, 25.0 / b),
        ("c10", "a", 40.0, 0.8, 40.0 / a),
        ("c10", "b", 10.0, 0.2, 10.0 / b),
        ("c11", "c", 60.0, 1.0, 60.0 / c),
        ("c12", "a", 5.0, 0.5, 5.0 / a),
        ("c12", "b", 5.0, 0.5, 5.0 / b),
    ];
    let got = json_rows(
        tmp.path(),
        "customer_category_share",
        "2024-04-30",
        "SELECT * FROM t ORDER BY customer_id, category",
    );
    assert_eq!(got.len(), shares.len(), "{got:?}");
    for (g, w) in got.iter().zip(&shares) {
        assert_eq!(g["customer_id"], w.0, "{g}");
        assert_eq!(g["category"], w.1, "{g}");
        assert!(close(&g["spend"], Some(w.2)), "{g}");
        assert!(close(&g["share_of_customer"], Some(w.3)), "{g}");
        assert!(close(&g["share_of_category"], Some(w.4)), "{g}");
    }
}

/// jobs/subscriptions.toml on Fader & Hardie (2007) Table 1 (Regular) as 1,000
/// yearly subscriptions (tests/data/subscriptions_regular.csv): alpha, beta
/// within 0.005 of 0.704, 1.182, and projected survivors for years 8..12
/// within 0.5 of 220.1, 204.4, 191.2, 179.9, 170.0 (the model at those
/// parameters); observed years 0..7 reproduced exactly.
#[test]
fn subscriptions_job_fits_the_sbg_paper_table() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "run",
            "jobs/subscriptions.toml",
            "--as-of",
            "2017-12-31",
            "--set",
            "period_months=12",
        ])
        .args(["--set", "horizon_periods=5", "--output"])
        .arg(tmp.path())
        .args([
            "--input",
            &format!("subscriptions={}", data("subscriptions_regular.csv")),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = json_rows(
        tmp.path(),
        "subscription_survival",
        "2017-12-31",
        "SELECT * FROM t ORDER BY period",
    );
    assert_eq!(rows.len(), 13);
    let observed = [1000.0, 631.0, 468.0, 382.0, 326.0, 289.0, 262.0, 241.0];
    for (t, want) in observed.iter().enumerate() {
        assert!(
            close(&rows[t]["observed_survivors"], Some(*want)),
            "{}",
            rows[t]
        );
    }
    assert!((rows[0]["alpha"].as_f64().unwrap() - 0.704).abs() < 0.005);
    assert!((rows[0]["beta"].as_f64().unwrap() - 1.182).abs() < 0.005);
    let holdout = [
        (223.0, 220.1),
        (207.0, 204.4),
        (194.0, 191.2),
        (183.0, 179.9),
        (173.0, 170.0),
    ];
    for (i, (seen, want)) in holdout.iter().enumerate() {
        let r = &rows[8 + i];
        let got = r["projected_survivors"].as_f64().unwrap();
        println!(
            "year {}: projected {got:.1}, paper's model {want}, observed {seen}",
            8 + i
        );
        assert!(r["observed_survivors"].is_null());
        assert!((got - want).abs() < 0.5, "{r}");
    }
}

fn run_fixture(dir: &Path, csv: &str, extra: &[&str]) -> Output {
    let input = dir.join("in.csv");
    std::fs::write(&input, csv).unwrap();
    bin()
        .args([
            "run",
            "jobs/nightly.toml",
            "--as-of",
            "2024-03-31",
            "--set",
            "allow_unconverged=true",
            "--output",
        ])
        .arg(dir.join("out"))
        .args(["--input", &format!("transactions={}", input.display())])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn edge_cases_empty_input_one_customer_zero_totals_ties() {
    // A header and no rows: nothing to analyse is a data-quality failure (exit 3).
    let tmp = tempfile::tempdir().unwrap();
    let out = run_fixture(tmp.path(), "customer_id,order_ts,amount\n", &[]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no usable transactions"));
    assert!(walk(&tmp.path().join("out")).is_empty());
    // A 0-byte file is an unusable input (exit 2) naming the file.
    let tmp = tempfile::tempdir().unwrap();
    let out = run_fixture(tmp.path(), "", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in.csv"));

    // One customer: everything defined, Gini 0, top-20% share 1.
    let tmp = tempfile::tempdir().unwrap();
    let out = run_fixture(
        tmp.path(),
        "customer_id,order_ts,amount\nc1,2024-01-01,10\nc1,2024-02-01,30\n",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conc = json_rows(
        &tmp.path().join("out"),
        "concentration",
        "2024-03-31",
        "SELECT * FROM t WHERE measure = 'revenue'",
    );
    assert!(
        close(&conc[0]["gini"], Some(0.0)) && close(&conc[0]["top_20pct_share"], Some(1.0)),
        "{:?}",
        conc[0]
    );
    let tiers = json_rows(
        &tmp.path().join("out"),
        "customer_tiers",
        "2024-03-31",
        "SELECT * FROM t",
    );
    assert!(
        close(&tiers[0]["revenue_share"], Some(1.0)) && tiers[0]["pareto_class"] == "A",
        "{:?}",
        tiers[0]
    );

    // All-zero totals: shares and concentration are NULL, never NaN.
    let tmp = tempfile::tempdir().unwrap();
    let out = run_fixture(
        tmp.path(),
        "customer_id,order_ts,amount\nc1,2024-01-01,0\nc2,2024-01-02,0\n",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tiers = json_rows(
        &tmp.path().join("out"),
        "customer_tiers",
        "2024-03-31",
        "SELECT revenue_share, pareto_class FROM t",
    );
    assert!(
        tiers
            .iter()
            .all(|r| r["revenue_share"].is_null() && r["pareto_class"].is_null()),
        "{tiers:?}"
    );
    let conc = json_rows(
        &tmp.path().join("out"),
        "concentration",
        "2024-03-31",
        "SELECT gini, hhi, top_20pct_share FROM t",
    );
    assert!(
        conc.iter()
            .all(|r| r["gini"].is_null() && r["hhi"].is_null() && r["top_20pct_share"].is_null()),
        "{conc:?}"
    );

    // Ties share a tier; a customer whose returns exceed purchases on a later
    // day keeps a negative revenue (a return day is not a purchase day) and
    // counts as 0 in concentration.
    let tmp = tempfile::tempdir().unwrap();
    let csv = "customer_id,order_ts,amount\na,2024-01-01,50\nb,2024-01-01,50\nc,2024-01-01,10\nc,2024-02-01,-30\nd,2024-01-05,5\n";
    let out = run_fixture(tmp.path(), csv, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tiers = json_rows(
        &tmp.path().join("out"),
        "customer_tiers",
        "2024-03-31",
        "SELECT customer_id, tier, revenue, frequency FROM t ORDER BY customer_id",
    );
    assert_eq!(tiers[0]["tier"], tiers[1]["tier"], "{tiers:?}");
    assert!(
        close(&tiers[2]["revenue"], Some(-20.0)) && close(&tiers[2]["frequency"], Some(0.0)),
        "{:?}",
        tiers[2]
    );
    let conc = json_rows(
        &tmp.path().join("out"),
        "concentration",
        "2024-03-31",
        "SELECT total, hhi FROM t WHERE measure = 'revenue'",
    );
    // Positive values 50, 50, 5 (c counts as 0): HHI = (50² + 50² + 5²) / 105².
    assert!(
        close(
            &conc[0]["hhi"],
            Some((2500.0 + 2500.0 + 25.0) / (105.0 * 105.0))
        ),
        "{conc:?}"
    );
}

/// Share of wallet: estimated as the 0.9 quantile of peers' 12-month spend
/// (Perlich et al. 2007) when no wallet is known, taken from the `wallets`
/// input when it is. Ten customers spending 10, 20, ..., 100: the linear
/// 0.9 quantile is 90 + 0.1 * 10 = 91 (position 0.9 * 9 = 8.1).
#[test]
fn share_of_wallet_from_peers_or_from_the_wallets_input() {
    let tmp = tempfile::tempdir().unwrap();
    let mut csv = String::from("customer_id,order_ts,amount\n");
    for i in 1..=10 {
        csv.push_str(&format!("c{i:02},2024-02-01,{}\n", i * 10));
    }
    let input = tmp.path().join("tx.csv");
    std::fs::write(&input, csv).unwrap();
    let wallets = tmp.path().join("wallets.csv");
    std::fs::write(&wallets, "customer_id,wallet\nc01,40\nc10,500\n").unwrap();
    for (name, extra) in [
        ("estimated", vec![]),
        ("input", vec![format!("wallets={}", wallets.display())]),
    ] {
        let out_dir = tmp.path().join(name);
        let mut c = bin();
        c.args([
            "run",
            "jobs/nightly.toml",
            "--as-of",
            "2024-03-31",
            "--set",
            "allow_unconverged=true",
            "--output",
        ])
        .arg(&out_dir)
        .args(["--input", &format!("transactions={}", input.display())]);
        for e in &extra {
            c.args(["--input", e]);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = json_rows(&out_dir, "customer_tiers", "2024-03-31", "SELECT customer_id, spend_12m, wallet, share_of_wallet, wallet_headroom FROM t ORDER BY customer_id");
        // Tolerance 1e-4: DataFusion 55's percentile_cont returns 90.99999 for
        // this exact 91 (its interpolation loses the last digits).
        let near =
            |v: &serde_json::Value, want: f64| v.as_f64().is_some_and(|x| (x - want).abs() < 1e-4);
        let (w1, w10) = if name == "input" {
            (40.0, 500.0)
        } else {
            (91.0, 91.0)
        };
        assert!(near(&rows[0]["wallet"], w1), "{name}: {:?}", rows[0]);
        assert!(
            near(&rows[0]["share_of_wallet"], 10.0 / w1),
            "{name}: {:?}",
            rows[0]
        );
        assert!(
            near(&rows[0]["wallet_headroom"], w1 - 10.0),
            "{name}: {:?}",
            rows[0]
        );
        assert!(near(&rows[9]["wallet"], w10), "{name}: {:?}", rows[9]);
        assert!(
            near(&rows[9]["share_of_wallet"], (100.0 / w10).min(1.0)),
            "{name}: {:?}",
            rows[9]
        );
        // Customers without a known wallet fall back to the estimate.
        assert!(near(&rows[4]["wallet"], 91.0), "{name}: {:?}", rows[4]);
    }
}

/// Operations: JSON log lines per step, the run report, OpenLineage events
/// and the HTML report, from one CDNOW run with a holdout.
#[test]
fn logs_report_lineage_and_html_report() {
    let tmp = tempfile::tempdir().unwrap();
    let lineage = tmp.path().join("lineage.jsonl");
    let report = tmp.path().join("report.json");
    let out = bin()
        .args([
            "-v",
            "--log-format",
            "json",
            "run",
            "jobs/nightly.toml",
            "--as-of",
            "1998-06-30",
            "--set",
            "holdout_days=273",
        ])
        .args([
            "--input",
            &format!("transactions={}", data("cdnow_sample.csv")),
            "--output",
        ])
        .arg(tmp.path().join("out"))
        .arg("--report")
        .arg(&report)
        .arg("--lineage")
        .arg(&lineage)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every stderr line is JSON; each step has one line with its duration.
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let steps: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "step done")
        .collect();
    assert_eq!(steps.len(), 17);
    assert!(steps
        .iter()
        .all(|s| s["fields"]["seconds"].is_number() && s["fields"]["step"].is_string()));
    println!(
        "a JSON log line: {}",
        serde_json::to_string(steps[4]).unwrap()
    );
    // The run report.
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["status"], "success");
    assert_eq!(r["custval_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["steps"].as_array().unwrap().len(), 17);
    assert_eq!(r["tables"].as_array().unwrap().len(), 7);
    assert_eq!(r["parameters"]["holdout_days"], 273);
    assert_eq!(r["quality"]["rows_read"], 6919);
    assert!(r["model_fit"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["model"] == "bgnbd"));
    // The same facts in each manifest.
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            tmp.path()
                .join("out/customer_tiers/as_of=1998-06-30/_manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(m["run_id"], r["run_id"]);
    assert_eq!(m["parameters"], r["parameters"]);
    assert_eq!(m["quality"], r["quality"]);
    assert_eq!(m["model_fit"], r["model_fit"]);
    assert_eq!(m["steps"].as_array().unwrap().len(), 17);
    assert!(
        m["inputs"][0]["files"][0]["size"].as_u64().unwrap() > 0,
        "input fingerprints"
    );
    println!(
        "run report excerpt: {}",
        serde_json::to_string(&r["tables"][0]).unwrap()
    );
    // OpenLineage: START then COMPLETE, with input and output datasets.
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&lineage)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["eventType"], "START");
    assert_eq!(events[1]["eventType"], "COMPLETE");
    assert_eq!(events[0]["run"]["runId"], events[1]["run"]["runId"]);
    assert!(events[0]["inputs"][0]["name"]
        .as_str()
        .unwrap()
        .ends_with("cdnow_sample.csv"));
    assert_eq!(events[1]["outputs"].as_array().unwrap().len(), 7);
    assert_eq!(events[1]["job"]["name"], "nightly");
    // A failing run sends FAIL.
    let bad = bin()
        .args([
            "run",
            "jobs/nightly.toml",
            "--input",
            "transactions=/nonexistent/x.csv",
            "--output",
        ])
        .arg(tmp.path().join("out2"))
        .arg("--lineage")
        .arg(&lineage)
        .output()
        .unwrap();
    assert_ne!(bad.status.code(), Some(0));
    let last: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&lineage)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["eventType"], "FAIL");
    assert!(last["run"]["facets"]["errorMessage"]["message"]
        .as_str()
        .unwrap()
        .contains("x.csv"));
    // The HTML report: self-contained, every chart present.
    let html_path = tmp
        .path()
        .join("out/_reports/nightly/as_of=1998-06-30/report.html");
    assert_eq!(
        r["report_html"].as_str().unwrap(),
        format!("file://{}", html_path.display())
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    for id in ["lorenz", "cohorts", "tiers", "clv", "holdout"] {
        assert!(
            html.contains(&format!("<svg id=\"{id}\"")),
            "chart {id} missing"
        );
    }
    assert!(
        !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );
    render_in_chromium(&html_path, tmp.path());
}

/// Render the report in headless Chromium (installed by scripts/test), check
/// the browser sees every chart, and take a screenshot.
fn render_in_chromium(html: &Path, tmp: &Path) {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .unwrap_or_else(|| panic!("chromium is not installed: run scripts/test, which installs it from Debian's packages"));
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let profile = tmp.join("chromium-profile");
    let url = format!("file://{}", html.display());
    let dom = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for id in ["lorenz", "cohorts", "tiers", "clv", "holdout"] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "Chromium does not see chart {id}"
        );
    }
    assert!(
        dom.contains("polyline") && dom.contains("class=\"cell\"") && dom.contains("class=\"bar\"")
    );
    let png = tmp.join("report.png");
    let shot = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--hide-scrollbars", "--window-size=1200,1400"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let size = std::fs::metadata(&png).unwrap().len();
    assert!(size > 20_000, "screenshot of {size} bytes looks blank");
    if let Ok(dir) = std::env::var("CUSTVAL_SCREENSHOT_DIR") {
        std::fs::copy(&png, Path::new(&dir).join("report.png")).unwrap();
    }
}

#[test]
fn sql_writes_parquet_only_when_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("result.parquet");
    let q = "SELECT 1 AS a, 'x' AS b";
    let out = bin()
        .args([
            "sql",
            "--format",
            "parquet",
            "--out",
            target.to_str().unwrap(),
            q,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-write"));
    run_ok(&[
        "sql",
        "--allow-write",
        "--format",
        "parquet",
        "--out",
        target.to_str().unwrap(),
        q,
    ]);
    let back = run_ok(&[
        "sql",
        "--format",
        "csv",
        "--table",
        &format!("t={}", target.display()),
        "SELECT a, b FROM t",
    ]);
    assert_eq!(String::from_utf8_lossy(&back.stdout), "a,b\n1,x\n");
}

/// Run `cmd` on a pseudo-terminal (util-linux `script`), typing `lines` one
/// by one; returns everything the terminal showed.
fn on_terminal(cmd: &str, lines: &[&str], home: &Path) -> String {
    use std::io::Write;
    let log = home.join("terminal.txt");
    let mut child = Command::new("script")
        .args(["-qec", cmd])
        .arg(&log)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HOME", home)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("util-linux `script` is needed for terminal tests: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    for l in lines {
        writeln!(stdin, "{l}").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(700));
    }
    drop(stdin);
    let _ = child.wait();
    String::from_utf8_lossy(&std::fs::read(&log).unwrap()).replace('\r', "")
}

#[test]
fn progress_spinners_show_on_a_terminal_only() {
    let tmp = tempfile::tempdir().unwrap();
    let cmd = format!(
        "{} run jobs/nightly.toml --as-of 1997-09-30 --input transactions={} --output {}",
        env!("CARGO_BIN_EXE_custval"),
        data("cdnow_sample.csv"),
        tmp.path().join("out").display()
    );
    let shown = on_terminal(&cmd, &[], tmp.path());
    assert!(
        shown.contains("transactions_clean") && shown.contains("\u{1b}[2K"),
        "no spinner on the terminal:\n{shown}"
    );
    // Off a terminal nothing but the result lines (and no log below warn).
    let out = cdnow_run(&tmp.path().join("out2"), "1997-09-30");
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_sql_shell_runs_queries_meta_commands_and_keeps_history() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(cdnow_run(&tmp.path().join("out"), "1997-09-30")
        .status
        .success());
    let cmd = format!(
        "{} sql --table t={}/out/customer_tiers/as_of=1997-09-30/",
        env!("CARGO_BIN_EXE_custval"),
        tmp.path().display()
    );
    let shown = on_terminal(
        &cmd,
        &[
            "SELECT count(*) AS n FROM t;",
            "\\d t",
            "\\timing",
            "SELECT gini(revenue) > 0 AS g FROM t;",
            "\\q",
        ],
        tmp.path(),
    );
    for want in ["2357", "customer_id", "timing is on", "true", "time: "] {
        assert!(shown.contains(want), "{want:?} not shown:\n{shown}");
    }
    let history = std::fs::read_to_string(tmp.path().join(".custval_history")).unwrap();
    assert!(
        history.contains("SELECT count(*) AS n FROM t;"),
        "{history}"
    );
}

/// `custval sql ... | head`: a reader that goes away ends custval quietly
/// (exit 0, no panic), in every output format.
#[test]
fn a_closed_output_pipe_ends_quietly() {
    use std::io::Read;
    for format in ["csv", "json", "table"] {
        let mut child = bin()
            .args([
                "sql",
                "--format",
                format,
                "SELECT value FROM generate_series(1, 3000000)",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{format}: {err}");
        assert!(!err.contains("panicked"), "{format}: {err}");
    }
}
