//! A corpus of hostile inputs, each with the exit code and the message it
//! must produce: no panic, no partial output, the file and the fault named.

use std::path::Path;

use crate::common::{files_under, read_json, Cmd, Run};

/// custval in `dir`, whatever its exit status.
fn custval(dir: &Path, args: &[&str]) -> Run {
    Cmd::custval().current_dir(dir).args(args).run()
}

fn job() -> String {
    format!("{}/jobs/nightly.toml", env!("CARGO_MANIFEST_DIR"))
}

/// Run the nightly job on `input` (relative to `dir`) with extra settings.
fn run(dir: &Path, input: &str, extra: &[&str]) -> Run {
    let input = format!("transactions={}", dir.join(input).display());
    let job = job();
    let mut args = vec![
        "run",
        job.as_str(),
        "--as-of",
        "2024-03-31",
        "--output",
        "out",
        "--input",
        &input,
    ];
    args.extend(extra);
    custval(dir, &args)
}

fn parquet(dir: &Path, name: &str, select: &str) {
    let sql = format!(
        "COPY ({select}) TO '{}' STORED AS PARQUET",
        dir.join(name).display()
    );
    Cmd::custval()
        .current_dir(dir)
        .args(["sql", "--allow-write", &sql])
        .ok();
}

/// The manifests of every partition published under `dir/out`.
fn published(dir: &Path) -> Vec<String> {
    files_under(&dir.join("out"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "_manifest.json"))
        .map(|p| p.display().to_string())
        .collect()
}

/// Expect an exit code and message fragments; nothing published on failure.
fn expect(case: &str, dir: &Path, out: &Run, code: i32, fragments: &[&str]) {
    let err = &out.stderr;
    assert_eq!(out.code(), Some(code), "{case}: {}", out.report());
    assert!(!err.contains("panicked"), "{case} panicked: {err}");
    for f in fragments {
        assert!(err.contains(f), "{case}: message lacks {f:?}: {err}");
    }
    if code != 0 {
        assert!(
            published(dir).is_empty(),
            "{case}: published despite the failure"
        );
    }
    println!(
        "{case}: exit {code}: {}",
        err.lines().last().unwrap_or_default()
    );
}

fn rejected_reasons(dir: &Path) -> Vec<String> {
    Cmd::custval()
        .current_dir(dir)
        .args([
            "sql",
            "--format",
            "csv",
            "--table",
            "t=out/rejected_rows/as_of=2024-03-31/",
            "SELECT reason FROM t ORDER BY reason",
        ])
        .stdout()
        .lines()
        .skip(1)
        .map(String::from)
        .collect()
}

#[test]
fn unreadable_files_exit_2_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(d.join("empty.csv"), "").unwrap();
    expect(
        "empty file",
        d,
        &run(d, "empty.csv", &[]),
        2,
        &["empty.csv", "is empty (0 bytes)"],
    );

    parquet(
        d,
        "ok.parquet",
        "SELECT 'c1' AS customer_id, DATE '2024-01-01' AS order_ts, 5.0 AS amount",
    );
    let bytes = std::fs::read(d.join("ok.parquet")).unwrap();
    std::fs::write(d.join("truncated.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    expect(
        "truncated Parquet",
        d,
        &run(d, "truncated.parquet", &[]),
        2,
        &["truncated.parquet", "Parquet"],
    );
    std::fs::write(
        d.join("corrupt.parquet"),
        b"PAR1 this is not parquet at all PAR1",
    )
    .unwrap();
    expect(
        "corrupt Parquet",
        d,
        &run(d, "corrupt.parquet", &[]),
        2,
        &["corrupt.parquet"],
    );

    std::fs::write(
        d.join("quote.csv"),
        "customer_id,order_ts,amount\nc1,2024-01-01,5\nc2,\"2024-01-02,7\nc3,2024-01-03,9\n",
    )
    .unwrap();
    expect(
        "broken quote",
        d,
        &run(d, "quote.csv", &[]),
        2,
        &["quote.csv", "Csv error"],
    );
    let mut late = String::from("customer_id,order_ts,amount\n");
    for i in 0..300 {
        late.push_str(&format!("c{i},2024-01-{:02},{i}\n", 1 + i % 28));
    }
    late.push_str("c9,\"2024-01-02,7\nc10,2024-01-03,9\n");
    std::fs::write(d.join("late.csv"), late).unwrap();
    expect(
        "broken quote past the schema sample",
        d,
        &run(d, "late.csv", &[]),
        2,
        &["late.csv", "incorrect number of fields"],
    );
    std::fs::write(
        d.join("utf.csv"),
        b"customer_id,order_ts,amount\nc1,2024-01-01,5\nc\xff\xfe2,2024-01-02,7\n",
    )
    .unwrap();
    expect(
        "non-UTF-8 bytes",
        d,
        &run(d, "utf.csv", &[]),
        2,
        &["utf.csv", "UTF-8"],
    );
}

#[test]
fn schema_faults_exit_2_naming_column_and_file() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(
        d.join("nocol.csv"),
        "customer_id,date,amount\nc1,2024-01-01,5\n",
    )
    .unwrap();
    expect(
        "missing column",
        d,
        &run(d, "nocol.csv", &[]),
        2,
        &["nocol.csv", "\"order_ts\"", "is missing"],
    );
    parquet(
        d,
        "bool.parquet",
        "SELECT 'c1' AS customer_id, DATE '2024-01-01' AS order_ts, true AS amount",
    );
    expect(
        "wrong column type",
        d,
        &run(d, "bool.parquet", &[]),
        2,
        &["bool.parquet", "\"amount\"", "Boolean"],
    );
    std::fs::create_dir(d.join("mixed")).unwrap();
    parquet(
        d,
        "mixed/a.parquet",
        "SELECT 'c1' AS customer_id, DATE '2024-01-01' AS order_ts, 5.0 AS amount",
    );
    parquet(
        d,
        "mixed/b.parquet",
        "SELECT 'c2' AS customer_id, DATE '2024-01-02' AS order_ts, '7' AS amount",
    );
    expect(
        "files with different schemas",
        d,
        &run(d, "mixed/", &[]),
        2,
        &["b.parquet", "schema differs", "amount"],
    );
}

#[test]
fn bad_rows_are_rejected_with_reasons_or_stop_the_gate() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let long_id = "x".repeat(1 << 20);
    let csv = format!(
        "customer_id,order_ts,amount,order_id\n\
         c1,2024-01-01,10,o1\n\
         c1,2024-02-01,20,o2\n\
         c1,2024-02-01,20,o2\n\
         c2,2024-01-05,abc,o3\n\
         ,2024-01-06,5,o4\n\
         \"\",2024-01-06,5,o5\n\
         c3,2024-01-07,NaN,o6\n\
         c3,2024-01-07,inf,o7\n\
         c3,2024-01-07,-inf,o8\n\
         c4,1850-01-01,5,o9\n\
         c5,2031-01-01,5,o10\n\
         {long_id},2024-01-08,5,o11\n\
         c6,2024-13-45,5,o12\n\
         c7,2024-01-09,30,o13\n"
    );
    std::fs::write(d.join("rows.csv"), csv).unwrap();
    // Over the default 1% limit: exit 3, nothing published.
    expect(
        "too many bad rows",
        d,
        &run(d, "rows.csv", &[]),
        3,
        &["rejected_fraction", "9 of 14 rows rejected", "rows.csv"],
    );
    let out = run(
        d,
        "rows.csv",
        &[
            "--set",
            "max_rejected_fraction=1",
            "--set",
            "allow_unconverged=true",
            // The fixture ends two months before the as-of (freshness gate).
            "--set",
            "max_staleness_days=60",
            "--report",
            "report.json",
        ],
    );
    expect("bad rows allowed", d, &out, 0, &[]);
    let mut want = vec![
        "customer_id longer than 256 characters",
        "missing customer_id",
        "missing customer_id",
        "non-finite amount",
        "non-finite amount",
        "non-finite amount",
        "order_ts before 1900-01-01",
        "unparseable amount",
        "unparseable order_ts",
    ];
    want.sort();
    assert_eq!(rejected_reasons(d), want);
    let report = read_json(&d.join("report.json"));
    assert_eq!(
        report["quality"]["rows_after_as_of"], 1,
        "the 2031 row is left out and counted"
    );
    assert_eq!(
        report["quality"]["duplicate_rows"], 1,
        "the repeated o2 row counts once"
    );

    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(
        d.join("returns.csv"),
        "customer_id,order_ts,amount\nc1,2024-01-01,-5\nc2,2024-01-02,-7\n",
    )
    .unwrap();
    expect(
        "all rows returns",
        d,
        // Old rows on purpose: the freshness gate would speak first.
        &run(d, "returns.csv", &["--set", "max_staleness_days=90"]),
        3,
        &["no customer has a purchase day", "returns", "returns.csv"],
    );
    std::fs::write(d.join("header.csv"), "customer_id,order_ts,amount\n").unwrap();
    expect(
        "zero rows",
        d,
        &run(d, "header.csv", &[]),
        3,
        &["no usable transactions", "header.csv"],
    );
}
