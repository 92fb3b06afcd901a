//! Data quality: rules that reject rows with a reason, the gate that stops
//! a run with too many (exit 3, nothing published), and input that lacks a
//! mapped column (exit 2).

use std::path::{Path, PathBuf};

use crate::common::{
    data, files_under, nightly, nightly_cdnow, read_json, read_table, run_job, Cmd,
};

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
    // Four customers cannot identify the models: allow unconverged fits here;
    // the fixture's last usable row (2024-03-01) is 30 days before the as-of.
    fixture_run(
        tmp.path(),
        &[
            "--set",
            "max_rejected_fraction=0.5",
            "--set",
            "allow_unconverged=true",
            "--set",
            "max_staleness_days=30",
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
    // The return nets within the day (100 - 30), the duplicate o3 row counts
    // once; orders o1 and o3 (o2 only returns: no order).
    assert_eq!(c1["customer_id"], "c1");
    assert_eq!(c1["revenue"], "120.0");
    assert_eq!(c1["frequency"], "1.0");
    assert_eq!(c1["orders"], "2");
    assert!(
        tiers.iter().all(|r| r["customer_id"] != "c4"),
        "after the as-of date"
    );
}

/// A failed gate publishes nothing: the only files it leaves under OUTPUT
/// are its rejected rows, below `_failed/` and without a manifest.
#[test]
fn a_failed_gate_exits_3_and_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fixture_run(tmp.path(), &[]).code(3).stderr;
    assert!(err.contains("3 of 11 rows rejected"), "{err}");
    let out = tmp.path().join("out");
    let kept = out.join("_failed/nightly/as_of=2024-03-31");
    let files = files_under(&out);
    assert!(
        files
            .iter()
            .all(|f| f.starts_with(&kept) && !f.ends_with("_manifest.json")),
        "nothing published, only the rejected rows kept: {files:?}"
    );
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

/// The newest usable day of the CDNOW sample on or before `as_of`, and the
/// days from it to `as_of`: computed here from the CSV text, independently of
/// custval's SQL.
fn cdnow_newest_before(as_of: &str) -> (String, i64) {
    let text = std::fs::read_to_string(data("cdnow_sample.csv")).unwrap();
    let newest = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1))
        .filter(|d| *d <= as_of)
        .max()
        .unwrap()
        .to_string();
    let day = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let days = (day(as_of) - day(&newest)).num_days();
    (newest, days)
}

/// Freshness: CDNOW ends on 1998-06-30; as of 1998-07-10 the newest usable
/// row is 10 days old, above the default max_staleness_days = 3: exit 3
/// naming both dates, nothing published. Accepting 30 days publishes, and
/// the report shows the same newest day and age as the CSV itself.
#[test]
fn stale_data_exits_3_naming_both_dates() {
    let (newest, days) = cdnow_newest_before("1998-07-10");
    assert_eq!((newest.as_str(), days), ("1998-06-30", 10));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let err = nightly_cdnow(&out, "1998-07-10").code(3).stderr;
    assert!(
        err.contains("freshness") && err.contains("1998-06-30") && err.contains("1998-07-10"),
        "{err}"
    );
    assert!(err.contains("10 days before"), "{err}");
    assert!(
        !files_under(&out)
            .iter()
            .any(|f| f.ends_with("_manifest.json")),
        "nothing published"
    );
    let report = tmp.path().join("report.json");
    nightly_cdnow(&out, "1998-07-10")
        .args(["--set", "max_staleness_days=30", "--report"])
        .arg(&report)
        .ok();
    let q = &read_json(&report)["quality"];
    assert_eq!(q["newest_order_ts"], "1998-06-30", "{q}");
    assert_eq!(q["staleness_days"], 10, "{q}");
}

/// Rows after the as-of date are not usable, so a far-future tail does not
/// make old data look fresh, and data that reaches the as-of date is fresh:
/// CDNOW as of 1997-09-30 (data runs to 1998-06-30) is 0 days old.
#[test]
fn freshness_counts_only_rows_up_to_the_as_of_date() {
    let (newest, days) = cdnow_newest_before("1997-09-30");
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report.json");
    nightly_cdnow(tmp.path().join("out"), "1997-09-30")
        .arg("--report")
        .arg(&report)
        .ok();
    let q = &read_json(&report)["quality"];
    assert_eq!(q["newest_order_ts"], newest.as_str(), "{q}");
    assert_eq!(q["staleness_days"], days, "{q}");
    assert_eq!(days, 0);
}

/// An Online-Retail-shaped export (`InvoiceNo,StockCode,Quantity,
/// InvoiceDate,UnitPrice,CustomerID,Country`, US dates like
/// `12/1/2010 8:26`, some rows without a customer), generated here: the
/// CSV text and how many rows lack a customer.
fn online_retail_csv(rows: usize) -> (String, usize) {
    let mut csv =
        String::from("InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n");
    let mut no_customer = 0;
    for i in 0..rows {
        let customer = if i % 9 == 4 {
            no_customer += 1;
            String::new()
        } else {
            format!("{}", 17850 + i % 7)
        };
        csv.push_str(&format!(
            "{},85123A,{},12/{}/2010 {}:{:02},2.55,{customer},United Kingdom\n",
            536365 + i / 3,
            1 + i % 5,
            1 + i % 9,
            8 + i % 10,
            (7 * i) % 60
        ));
    }
    (csv, no_customer)
}

/// A job that maps the Online Retail columns by name only (no
/// timestamp_format): the broken mapping of issue 14. The nightly job's
/// steps and gates, read from the repository's `sql/`.
fn broken_mapping_job(dir: &Path) -> PathBuf {
    let nightly =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/nightly.toml")).unwrap();
    let sql = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/");
    let text = nightly
        .replace("name = \"nightly\"", "name = \"retail\"")
        .replace("\"../sql/", &format!("\"{sql}"))
        .replace(
            "[inputs.transactions.columns]\n",
            "[inputs.transactions.columns]\ncustomer_id = \"CustomerID\"\norder_ts = \"InvoiceDate\"\namount = \"UnitPrice\"\norder_id = \"InvoiceNo\"\n",
        );
    assert!(
        text.contains("order_ts = \"InvoiceDate\""),
        "the mapping was inserted"
    );
    let job = dir.join("retail.toml");
    std::fs::write(&job, text).unwrap();
    job
}

/// `check` on the broken mapping: the sample's rejected fraction and its
/// reasons with an example and the timestamp_format hint, exit 3 (the gate
/// the run would fail). The counts are the generator's own: every row with
/// a customer has an unparseable date; rows without one are rejected first
/// for the missing customer.
#[test]
fn check_reports_the_rejected_fraction_and_reasons_of_a_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let (csv, no_customer) = online_retail_csv(45);
    assert_eq!(no_customer, 5);
    let input = tmp.path().join("retail.csv");
    std::fs::write(&input, csv).unwrap();
    let job = broken_mapping_job(tmp.path());
    let run = Cmd::custval()
        .arg("check")
        .arg(&job)
        .arg("--input")
        .arg(format!("transactions={}", input.display()))
        .code(3);
    let out = &run.stdout;
    assert!(
        out.contains("45 rows read, 45 rejected (100.00%) (max_rejected_fraction = 0.01)"),
        "{out}"
    );
    assert!(
        out.contains("40 rows unparseable order_ts, e.g. order_ts \"12/"),
        "{out}"
    );
    assert!(
        out.contains(
            "did you mean timestamp_format = \"%m/%d/%Y %H:%M\" under [inputs.transactions]?"
        ),
        "{out}"
    );
    assert!(
        out.contains("5 rows missing customer_id")
            && out.contains("where = \"CustomerID IS NOT NULL\""),
        "{out}"
    );
    assert!(
        run.stderr.contains("rejected_fraction") && run.stderr.contains("45 of 45 rows rejected"),
        "{}",
        run.stderr
    );
    // A smaller sample reads fewer rows; 0 skips reading rows.
    let small = Cmd::custval()
        .arg("check")
        .arg(&job)
        .arg("--input")
        .arg(format!("transactions={}", input.display()))
        .args(["--sample", "10"])
        .code(3);
    assert!(
        small
            .stdout
            .contains("first 10 rows per input: 10 rows read, 10 rejected"),
        "{}",
        small.stdout
    );
    let none = Cmd::custval()
        .arg("check")
        .arg(&job)
        .arg("--input")
        .arg(format!("transactions={}", input.display()))
        .args(["--sample", "0"])
        .ok();
    assert!(!none.stdout.contains("sample"), "{}", none.stdout);
}

/// `run` on the broken mapping: exit 3 naming the reasons with an example
/// and the hint; the report carries the counts and reasons; the rejected
/// rows are kept under `_failed/` (Parquet, no manifest); nothing published.
#[test]
fn a_failed_run_names_its_reasons_and_keeps_its_rejected_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (csv, no_customer) = online_retail_csv(45);
    let input = tmp.path().join("retail.csv");
    std::fs::write(&input, &csv).unwrap();
    let job = broken_mapping_job(tmp.path());
    let out = tmp.path().join("out");
    let report = tmp.path().join("report.json");
    let err = run_job(
        &job,
        &out,
        "2010-12-10",
        &format!("transactions={}", input.display()),
    )
    .arg("--report")
    .arg(&report)
    .code(3)
    .stderr;
    assert!(err.contains("no usable transactions"), "{err}");
    assert!(
        err.contains("40 rows unparseable order_ts, e.g. order_ts \"12/")
            && err.contains("timestamp_format = \"%m/%d/%Y %H:%M\""),
        "{err}"
    );
    let kept = out.join("_failed/retail/as_of=2010-12-10");
    assert!(err.contains(&kept.display().to_string()), "{err}");
    let files = files_under(&out);
    assert!(
        !files.is_empty()
            && files
                .iter()
                .all(|f| f.starts_with(&kept) && !f.ends_with("_manifest.json")),
        "{files:?}"
    );

    let r = read_json(&report);
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["quality"]["rows_read"], 45, "{r}");
    assert_eq!(r["quality"]["rows_rejected"], 45, "{r}");
    assert_eq!(r["rejections"]["rows"], 45, "{r}");
    let reasons = r["rejections"]["reasons"].as_array().unwrap();
    assert_eq!(reasons[0]["reason"], "unparseable order_ts");
    assert_eq!(reasons[0]["rows"], 45 - no_customer as u64);
    // The example is one of the rows rejected for that reason, as written.
    let example = &reasons[0]["example"];
    let field = |k: &str| example[k].as_str().unwrap().to_string();
    let want = [field("order_id"), field("order_ts"), field("customer_id")];
    assert!(
        csv.lines().any(|l| {
            let f: Vec<&str> = l.split(',').collect();
            [f[0], f[3], f[5]] == want
        }),
        "{example} is not a row of the export"
    );
    assert!(
        err.contains(&format!(
            "e.g. order_ts {:?}",
            example["order_ts"].as_str().unwrap()
        )),
        "{err}"
    );
    assert_eq!(reasons[1]["reason"], "missing customer_id");
    assert_eq!(reasons[1]["rows"], no_customer as u64);

    // The kept rows, read back: every rejected row, with its reason.
    let folder = r["rejected_rows"].as_str().unwrap().to_string();
    assert!(folder.contains(r["run_id"].as_str().unwrap()), "{folder}");
    let counts = Cmd::custval()
        .args(["sql", "--format", "csv", "--table"])
        .arg(format!("t={folder}"))
        .arg("SELECT reason, count(*) AS n FROM t GROUP BY reason ORDER BY n DESC")
        .stdout();
    assert_eq!(
        counts.lines().collect::<Vec<_>>(),
        vec![
            "reason,n",
            "unparseable order_ts,40",
            "missing customer_id,5"
        ]
    );
}
