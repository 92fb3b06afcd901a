//! Data quality: rules that reject rows with a reason, the gate that stops
//! a run with too many (exit 3, nothing published), and input that lacks a
//! mapped column (exit 2).

use std::path::Path;

use crate::common::{files_under, nightly, read_json, read_table, Cmd};

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

/// The nightly job on [`FIXTURE`] into `dir/out`, its report at
/// `dir/report.json`.
fn fixture_run(dir: &Path, extra: &[&str]) -> Cmd {
    let input = dir.join("tx.csv");
    std::fs::write(&input, FIXTURE).unwrap();
    let mut c = nightly(dir.join("out"), "2024-03-31", input.display());
    c.arg("--report").arg(dir.join("report.json")).args(extra);
    c
}

#[test]
fn data_quality_rules_reject_count_and_net() {
    let tmp = tempfile::tempdir().unwrap();
    // Four customers cannot identify the models: allow unconverged fits here.
    fixture_run(
        tmp.path(),
        &[
            "--set",
            "max_rejected_fraction=0.5",
            "--set",
            "allow_unconverged=true",
        ],
    )
    .ok();
    let report = read_json(&tmp.path().join("report.json"));
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
    let err = fixture_run(tmp.path(), &[]).code(3).stderr;
    assert!(err.contains("3 of 11 rows rejected"), "{err}");
    let manifests = files_under(&tmp.path().join("out"));
    assert!(manifests.is_empty(), "nothing published: {manifests:?}");
    let report = read_json(&tmp.path().join("report.json"));
    assert_eq!(report["exit_code"], 3);
}

#[test]
fn a_missing_column_exits_2_naming_column_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("bad.csv");
    std::fs::write(&input, "customer,order_ts,amount\nc1,2024-01-01,5\n").unwrap();
    let err = nightly(tmp.path().join("out"), "2024-03-31", input.display())
        .code(2)
        .stderr;
    assert!(
        err.contains("\"customer_id\"") && err.contains("bad.csv"),
        "{err}"
    );
    assert!(files_under(&tmp.path().join("out")).is_empty());
}
