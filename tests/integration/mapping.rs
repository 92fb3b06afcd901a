//! End-to-end tests of the column mapping of a transactions input: values
//! an expression cannot parse rejected with the column and value, ids
//! written as floats, the `where` filter's count, and the `timezone`
//! parameter giving one purchase day for CSV offsets, zoned and naive
//! Parquet timestamps alike. Expected values are worked out by hand in each
//! test from the rows it writes.

use std::path::{Path, PathBuf};

use crate::common::{custval, json_rows, read_json, read_table, run_job, Cmd};

const AS_OF: &str = "2024-03-31";

/// Write a Parquet file with `custval sql` itself.
fn parquet(path: &Path, select: &str) {
    let sql = format!("COPY ({select}) TO '{}' STORED AS PARQUET", path.display());
    let out = custval(&[], &["-q", "sql", "--allow-write", &sql]);
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The nightly job with the transactions input replaced by `input` (TOML
/// lines under `[inputs.transactions]`), SQL paths made absolute.
fn job(dir: &Path, input: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut job: toml::Table = std::fs::read_to_string(repo.join("jobs/nightly.toml"))
        .unwrap()
        .parse()
        .unwrap();
    for list in ["steps", "gates"] {
        for s in job[list].as_array_mut().unwrap() {
            let file = repo.join("jobs").join(s["sql"].as_str().unwrap());
            s["sql"] = file.display().to_string().into();
        }
    }
    let input: toml::Table = format!("kind = \"transactions\"\n{input}").parse().unwrap();
    job["inputs"]["transactions"] = input.into();
    let path = dir.join("job.toml");
    std::fs::write(&path, toml::to_string(&job).unwrap()).unwrap();
    path
}

/// Run `job` on `input` with a report; lenient gates (few customers, old data).
fn run(job: &Path, input: &Path, out: &Path, extra: &[&str]) -> Cmd {
    let mut c = run_job(
        job,
        out,
        AS_OF,
        &format!("transactions={}", input.display()),
    );
    c.args([
        "--set",
        "max_rejected_fraction=1",
        "--set",
        "allow_unconverged=true",
        "--set",
        "time_unit=day",
        // The fixtures end weeks before AS_OF; freshness is not tested here.
        "--set",
        "max_staleness_days=3650",
        "--report",
    ])
    .arg(out.with_extension("json"))
    .args(extra);
    c
}

/// `customer first last frequency revenue` of every published customer.
fn tiers(out: &Path) -> Vec<String> {
    read_table(
        out,
        "customer_tiers",
        AS_OF,
        "SELECT CAST(customer_id AS VARCHAR) || ' ' || CAST(first_purchase AS VARCHAR) || ' ' || CAST(last_purchase AS VARCHAR) || ' ' || CAST(frequency AS VARCHAR) || ' ' || CAST(round(revenue, 2) AS VARCHAR) AS r FROM t ORDER BY r",
    )
    .into_iter()
    .map(|r| r["r"].clone())
    .collect()
}

fn reasons(out: &Path) -> Vec<String> {
    json_rows(
        out,
        "rejected_rows",
        AS_OF,
        "SELECT reason FROM t ORDER BY reason",
    )
    .into_iter()
    .map(|r| r["reason"].as_str().unwrap().to_string())
    .collect()
}

/// Mixed-case names without quoting, an expression over CSV text, a value
/// that is not a number (rejected naming the column and value, not a crash
/// or a NULL), and a filter counted apart from rejections.
#[test]
fn expressions_parse_text_and_reject_what_is_not_a_number() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("tx.csv");
    std::fs::write(
        &csv,
        "Cust,When,Qty,Unit Price,Country\n\
         a,2024-01-05,2,1.5,UK\n\
         a,2024-02-05,-1,1.5,UK\n\
         a,2024-02-20,3,2.0,UK\n\
         b,2024-01-07,abc,2.0,UK\n\
         b,2024-01-08,4,0.25,UK\n\
         b,2024-01-09,5,9.0,Internal\n",
    )
    .unwrap();
    let job = job(
        tmp.path(),
        "where = \"country <> 'Internal'\"\n[columns]\ncustomer_id = \"cust\"\norder_ts = \"WHEN\"\namount = 'qty * \"unit price\"'\n",
    );
    let out = tmp.path().join("out");
    run(&job, &csv, &out, &[]).ok();
    // a: 3.0 on 01-05, -1.5 on 02-05 (a return day), 6.0 on 02-20:
    // purchase days 01-05 and 02-20, revenue 7.5. b: the "abc" row is
    // rejected, 1.0 on 01-08; its Internal row is filtered.
    assert_eq!(
        tiers(&out),
        [
            "a 2024-01-05 2024-02-20 1.0 7.5",
            "b 2024-01-08 2024-01-08 0.0 1.0"
        ]
    );
    assert_eq!(
        reasons(&out),
        ["unparseable amount: Qty \"abc\" is not a number"]
    );
    let q = &read_json(&out.with_extension("json"))["quality"];
    assert_eq!(
        (
            q["rows_read"].as_u64(),
            q["rows_filtered"].as_u64(),
            q["rows_rejected"].as_u64()
        ),
        (Some(5), Some(1), Some(1)),
        "{q}"
    );
    // The rejected row shows the raw values the expression read.
    let raw = read_table(&out, "rejected_rows", AS_OF, "SELECT amount FROM t");
    assert_eq!(raw[0]["amount"], "Qty=abc; Unit Price=2.0");
}

/// Ids written as floats (`17850.0` in CSV text or a Parquet double) are
/// the integer ids; a non-integral id is a rejected row saying so.
#[test]
fn ids_written_as_floats_are_integers_and_fractions_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("tx.csv");
    std::fs::write(
        &csv,
        "customer_id,order_ts,amount,order_id\n\
         17850.0,2024-01-05,10,536365.0\n\
         17850,2024-02-05,5,536366\n\
         17851.5,2024-01-07,3,536367\n\
         17852,2024-01-08,4,536368.25\n",
    )
    .unwrap();
    let p = tmp.path().join("tx.parquet");
    parquet(
        &p,
        "SELECT * FROM (VALUES (17850.0, DATE '2024-01-05', 10.0), (17850.0, DATE '2024-02-05', 5.0), (17851.5, DATE '2024-01-07', 3.0)) AS v(customer_id, order_ts, amount)",
    );
    let job = job(tmp.path(), "");
    for (input, rejected) in [
        (
            &csv,
            vec![
                "non-integral customer_id \"17851.5\"",
                "non-integral order_id \"536368.25\"",
            ],
        ),
        (&p, vec!["non-integral customer_id \"17851.5\""]),
    ] {
        let out = tmp.path().join(format!(
            "out-{}",
            input.extension().unwrap().to_string_lossy()
        ));
        run(&job, input, &out, &[]).ok();
        assert_eq!(
            tiers(&out),
            ["17850 2024-01-05 2024-02-05 1.0 15.0"],
            "{input:?}"
        );
        assert_eq!(reasons(&out), rejected, "{input:?}");
    }
}

/// A money expression divides the same whatever type the reader gave its
/// columns: `amount_cents / 100` on a Parquet BIGINT column is not integer
/// division (the trial's shop published 7750.0 for 7836.36), and CSV text
/// and Parquet publish the same revenue.
#[test]
fn money_expressions_on_integer_columns_are_not_integer_division() {
    let tmp = tempfile::tempdir().unwrap();
    // (customer, day, cents): a's cents end in 99 and 01, b's a return.
    let rows = [
        ("a", "2024-01-05", 1999_i64),
        ("a", "2024-02-05", 1),
        ("b", "2024-01-07", 250),
        ("b", "2024-03-01", -75),
    ];
    let csv = tmp.path().join("tx.csv");
    let mut text = String::from("customer_id,order_ts,amount_cents\n");
    for (c, d, cents) in rows {
        text.push_str(&format!("{c},{d},{cents}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let values: Vec<String> = rows
        .iter()
        .map(|(c, d, cents)| format!("('{c}', DATE '{d}', CAST({cents} AS BIGINT))"))
        .collect();
    let p = tmp.path().join("tx.parquet");
    parquet(
        &p,
        &format!(
            "SELECT * FROM (VALUES {}) AS v(customer_id, order_ts, amount_cents)",
            values.join(", ")
        ),
    );
    // Independently: each customer's cents summed, then divided in f64.
    let revenue = |who: &str| {
        rows.iter()
            .filter(|(c, _, _)| *c == who)
            .map(|(_, _, cents)| *cents as f64)
            .sum::<f64>()
            / 100.0
    };
    assert_eq!((revenue("a"), revenue("b")), (20.0, 1.75));
    let want = [
        format!("a 2024-01-05 2024-02-05 1.0 {:?}", revenue("a")),
        format!("b 2024-01-07 2024-01-07 0.0 {:?}", revenue("b")),
    ];
    let job = job(tmp.path(), "[columns]\namount = \"amount_cents / 100\"\n");
    for input in [&csv, &p] {
        let out = tmp.path().join(format!(
            "out-{}",
            input.extension().unwrap().to_string_lossy()
        ));
        run(&job, input, &out, &[]).ok();
        assert_eq!(tiers(&out), want, "{input:?}");
    }
}

/// A mapping expression that fails on a value while the job runs
/// (`to_timestamp` on epoch seconds written as text) is the user's job or
/// input to fix: exit 2 naming the input, the canonical column, the
/// expression and the value, never exit 1 (a retry would fail the same).
/// The remedy its hint gives runs.
#[test]
fn a_mapping_expression_failing_on_a_value_is_exit_2_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("tx.csv");
    // 1694188088 s is 2023-09-08T15:48:08Z; 1704067200 s 2024-01-01T00:00:00Z.
    std::fs::write(
        &csv,
        "customer_id,created,amount\na,1694188088,10\na,1704067200,5\n",
    )
    .unwrap();
    let epoch_text = job(
        tmp.path(),
        "[columns]\norder_ts = \"to_timestamp(created)\"\n",
    );
    let out = tmp.path().join("out");
    let failed = run(&epoch_text, &csv, &out, &[]).code(2);
    let err = failed.stderr;
    for part in [
        "input transactions",
        "tx.csv",
        "order_ts = \"to_timestamp(created)\"",
        "'1694188088'",
        "to_timestamp(CAST(column AS BIGINT))",
    ] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    assert!(!out.join("customer_tiers").exists(), "nothing is published");
    let epoch_number = job(
        tmp.path(),
        "[columns]\norder_ts = \"to_timestamp(CAST(created AS BIGINT))\"\n",
    );
    run(&epoch_number, &csv, &out, &[]).ok();
    assert_eq!(tiers(&out), ["a 2023-09-08 2024-01-01 1.0 15.0"]);
}

/// `value = margin` takes the margin column the reader finds, mapped or
/// not: an unmapped column named `Margin` (one column matching ignoring
/// case, as for every canonical column) is measured; an input without one
/// is exit 2 naming the parameter, before anything is computed.
#[test]
fn value_margin_uses_the_margin_column_the_reader_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("tx.csv");
    // a: margins 3 + 1 = 4 (revenue 15); b: 2 (revenue 8). Hand-summed.
    std::fs::write(
        &csv,
        "customer_id,order_ts,amount,Margin\n\
         a,2024-01-05,10,3\n\
         a,2024-02-05,5,1\n\
         b,2024-01-07,8,2\n",
    )
    .unwrap();
    let job = job(tmp.path(), "");
    let out = tmp.path().join("out");
    run(&job, &csv, &out, &["--set", "value=margin"]).ok();
    let rows = read_table(
        &out,
        "customer_tiers",
        AS_OF,
        "SELECT customer_id, revenue, margin, value_total FROM t ORDER BY customer_id",
    );
    let got: Vec<[&str; 4]> = rows
        .iter()
        .map(|r| {
            [
                r["customer_id"].as_str(),
                r["revenue"].as_str(),
                r["margin"].as_str(),
                r["value_total"].as_str(),
            ]
        })
        .collect();
    assert_eq!(
        got,
        [["a", "15.0", "4.0", "4.0"], ["b", "8.0", "2.0", "2.0"]]
    );
    let plain = tmp.path().join("plain.csv");
    std::fs::write(&plain, "customer_id,order_ts,amount\na,2024-01-05,10\n").unwrap();
    let failed = run(
        &job,
        &plain,
        &tmp.path().join("out2"),
        &["--set", "value=margin"],
    )
    .code(2);
    assert!(
        failed.stderr.contains("parameter value: is margin, but no transactions input (transactions) has a margin column"),
        "{}",
        failed.stderr
    );
}

/// `check` on an Online-Retail-shaped export: an empty operand of the
/// amount's expression is named (not reported as an unparseable amount
/// whose value is the other operand, with a hint to map the expression
/// already mapped), and `1,234.50` is a thousands separator, not a decimal
/// comma.
#[test]
fn rejection_reasons_name_the_operand_and_hint_what_fixes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("tx.csv");
    std::fs::write(
        &csv,
        "InvoiceNo,Quantity,UnitPrice,CustomerID,InvoiceDate\n\
         1,2,1.5,17850,2024-01-05\n\
         2,6,,17850,2024-01-06\n\
         3,1,\"1,234.50\",17851,2024-01-07\n\
         4,3,2.0,17851,2024-01-08\n",
    )
    .unwrap();
    let job = job(
        tmp.path(),
        "[columns]\ncustomer_id = \"CustomerID\"\norder_ts = \"InvoiceDate\"\namount = \"Quantity * UnitPrice\"\norder_id = \"InvoiceNo\"\n",
    );
    let out = Cmd::custval()
        .arg("check")
        .arg(&job)
        .arg("--input")
        .arg(format!("transactions={}", csv.display()))
        .args(["--set", "max_rejected_fraction=1"])
        .ok()
        .stdout;
    let line = |reason: &str| {
        out.lines()
            .find(|l| l.contains(reason))
            .unwrap_or_else(|| panic!("no {reason:?} in:\n{out}"))
            .to_string()
    };
    let empty = line("1 rows missing amount: UnitPrice is empty");
    assert!(
        empty.contains("amount \"Quantity=6; UnitPrice=\""),
        "{empty}"
    );
    assert!(
        empty.contains("where = \"UnitPrice IS NOT NULL\""),
        "{empty}"
    );
    assert!(
        !empty.contains("e.g. amount = \"Quantity * UnitPrice\""),
        "{empty}"
    );
    let thousands = line("1 rows unparseable amount: UnitPrice");
    assert!(thousands.contains("thousands separator"), "{thousands}");
    assert!(!thousands.contains("set decimal"), "{thousands}");
}

/// A ragged row is reported on the file's physical line, 1-based with the
/// header counted, in a file with CRLF line ends too (the trial's file:
/// line 21 was reported as line 20).
#[test]
fn a_ragged_row_is_reported_on_its_physical_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lines = vec!["customer_id,order_id,order_ts,amount".to_string()];
    for i in 0..19 {
        lines.push(format!("C{i},O{i},2024-01-{:02}T10:00:00,1.5", i + 1));
    }
    lines.push("C1,O999,2024-01-20T10:00:00,12.0,EXTRA".into());
    lines.push("C29,O177,2024-01-21T10:00:00,20.63".into());
    // Hand-counted: the header is line 1, the ragged row line 21.
    assert!(lines[20].ends_with("EXTRA"));
    let csv = tmp.path().join("crlf.csv");
    std::fs::write(&csv, lines.join("\r\n") + "\r\n").unwrap();
    let failed = Cmd::custval()
        .args(["check", "jobs/nightly.toml", "--input"])
        .arg(format!("transactions={}", csv.display()))
        .code(2);
    assert!(
        failed.stderr.contains("crlf.csv") && failed.stderr.contains("at line 21"),
        "{}",
        failed.stderr
    );
}

/// A NaN id in a Parquet double column is named NaN, not "non-integral".
#[test]
fn a_nan_id_is_named_nan() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("tx.parquet");
    parquet(
        &p,
        "SELECT * FROM (VALUES (17850.0, DATE '2024-01-05', 10.0), (CAST('NaN' AS DOUBLE), DATE '2024-01-06', 5.0), (17851.5, DATE '2024-01-07', 3.0)) AS v(customer_id, order_ts, amount)",
    );
    let job = job(tmp.path(), "");
    let out = tmp.path().join("out");
    run(&job, &p, &out, &[]).ok();
    assert_eq!(
        reasons(&out),
        [
            "customer_id is NaN (not a number)",
            "non-integral customer_id \"17851.5\""
        ]
    );
}

/// One rule for every input type: the purchase day is the calendar day in
/// `timezone` of the instant, naive timestamps being UTC instants.
/// CSV offsets and a New York zoned Parquet file give the same days for
/// the shared zoned-timestamps case's instants (its `bg` rows are dates in
/// the CSV but midnight-UTC instants in the Parquet file, so they differ
/// outside UTC), and a naive Parquet file follows.
#[test]
fn the_timezone_parameter_sets_the_purchase_day_for_every_input_type() {
    let tmp = tempfile::tempdir().unwrap();
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cases/zoned-timestamps");
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/nightly.toml");
    let ny = ["--set", "timezone=America/New_York"];
    for f in ["transactions.csv", "transactions_tz_newyork.parquet"] {
        let out = tmp.path().join(f);
        run(&job, &case.join(f), &out, &ny).ok();
        let z: Vec<String> = tiers(&out)
            .into_iter()
            .filter(|r| r.starts_with('z'))
            .collect();
        // z1: 2024-01-31T22:30-05:00 is the 31st in New York (the 1st in
        // UTC); 2024-03-01T01:00+02:00 is 2024-02-29 18:00 there.
        // z2: 23:59:59Z and 00:00Z the next day are both the evening of
        // 2024-01-31 in New York: one purchase day of 15.
        assert_eq!(
            z,
            [
                "z1 2024-01-31 2024-02-29 1.0 30.0",
                "z2 2024-01-31 2024-01-31 0.0 15.0",
                "z3 2024-02-29 2024-02-29 0.0 10.0"
            ],
            "{f}"
        );
    }

    // Naive timestamps are UTC instants: 02:00 UTC is the previous evening
    // in New York, 12:00 UTC the same day; with the default UTC, the day
    // as written.
    let naive = tmp.path().join("naive.parquet");
    parquet(
        &naive,
        "SELECT * FROM (VALUES ('n1', TIMESTAMP '2024-02-01 02:00:00', 10.0), ('n1', TIMESTAMP '2024-02-10 12:00:00', 5.0)) AS v(customer_id, order_ts, amount)",
    );
    let out = tmp.path().join("naive-ny");
    run(&job, &naive, &out, &ny).ok();
    assert_eq!(tiers(&out), ["n1 2024-01-31 2024-02-10 1.0 15.0"]);
    let out = tmp.path().join("naive-utc");
    run(&job, &naive, &out, &[]).ok();
    assert_eq!(tiers(&out), ["n1 2024-02-01 2024-02-10 1.0 15.0"]);

    // An unknown zone is the caller's to fix, before anything is read.
    let out = tmp.path().join("mars");
    let r = run(&job, &naive, &out, &["--set", "timezone=Mars/Olympus"]).code(2);
    assert!(
        r.stderr.contains("timezone") && r.stderr.contains("Mars/Olympus"),
        "{}",
        r.stderr
    );
    assert!(!out.exists(), "an unknown zone wrote {out:?}");
}
