//! End-to-end tests of how `custval run` reads its input: folders of files
//! matched by column name whatever their order and names, widened types,
//! header-only files, NULLs after a NOT NULL file, conflicts named, one UTC
//! purchase day for every timestamp kind, and CSV values with quoted
//! newlines at any size and thread count.
//!
//! The `case_*` tests are the cases of `shared/cases/README.md` (section
//! inputs/), copied into `tests/data/cases/`; the others cover each fault as
//! a kind with more files, other orders and generated data.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{custval, run_nightly};

/// The control: the whole CDNOW sample, as-of 1997-09-30.
const CONTROL: &str = "2357 173115.55";
const AS_OF: &str = "1997-09-30";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn case(name: &str) -> String {
    format!("{}/", data("cases").join(name).display())
}

/// `custval run jobs/nightly.toml` on `input` into `out`.
fn run(input: &str, as_of: &str, out: &Path, extra: &[&str]) -> Output {
    run_nightly(input, as_of, out, extra)
}

pub(crate) fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The last line of a query over one published table, as CSV.
pub(crate) fn one(out: &Path, table: &str, as_of: &str, sql: &str) -> String {
    let t = format!("t={}/{table}/as_of={as_of}/", out.display());
    let res = custval(&[], &["-q", "sql", "--format", "csv", "--table", &t, sql]);
    assert!(
        res.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let last = String::from_utf8_lossy(&res.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    // One value per query: CSV quotes it when it holds a comma.
    match last.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => last,
    }
}

pub(crate) fn customers_and_revenue(out: &Path, as_of: &str) -> String {
    one(
        out,
        "customer_tiers",
        as_of,
        "SELECT count(*) || ' ' || round(sum(revenue), 2) FROM t",
    )
}

/// `got` ("customers revenue") has these customers and revenue to the cent.
pub(crate) fn assert_totals(got: &str, customers: usize, revenue: f64, what: &str) {
    let (n, r) = got.split_once(' ').unwrap_or_default();
    assert_eq!(n, customers.to_string(), "{what}: customers in {got:?}");
    let r: f64 = r.parse().unwrap_or(f64::NAN);
    assert!(
        (r - revenue).abs() < 0.005,
        "{what}: revenue {got:?}, want {revenue:.2}"
    );
}

/// Run a folder and expect the control's customers and revenue.
fn assert_control(input: &str, what: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_exit(&run(input, AS_OF, &out, &[]), 0, what);
    assert_eq!(customers_and_revenue(&out, AS_OF), CONTROL, "{what}");
}

/// CSV rows as (header, records), split on commas (no quoting in these files).
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    (header, rows)
}

fn write_csv(path: &Path, header: &[&str], rows: &[Vec<String>], from: &[String]) {
    let idx: Vec<usize> = header
        .iter()
        .map(|h| from.iter().position(|c| c == h).unwrap())
        .collect();
    let mut s = header.join(",");
    s.push('\n');
    for r in rows {
        let line: Vec<&str> = idx.iter().map(|&i| r[i].as_str()).collect();
        s.push_str(&line.join(","));
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

fn copy_as(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
}

/// Write a Parquet file with `custval sql` itself.
fn parquet(path: &Path, select: &str) {
    let sql = format!("COPY ({select}) TO '{}' STORED AS PARQUET", path.display());
    let out = custval(&[], &["-q", "sql", "--allow-write", &sql]);
    assert_exit(&out, 0, &sql);
}

#[test]
fn case_folder_columns_reordered_reads_by_header_name() {
    assert_control(
        &case("folder-columns-reordered"),
        "folder-columns-reordered",
    );
}

#[test]
fn case_folder_header_only_file_is_an_empty_table() {
    assert_control(&case("folder-header-only-file"), "folder-header-only-file");
}

#[test]
fn case_folder_int_and_decimal_amounts_widen() {
    let dir = data("cases/folder-int-and-decimal-amounts");
    let mut total = 0.0;
    for f in ["part-0.csv", "part-1.csv"] {
        let (header, rows) = read_csv(&dir.join(f));
        let a = header.iter().position(|c| c == "amount").unwrap();
        let d = header.iter().position(|c| c == "order_ts").unwrap();
        // Rows after the as-of date are left out of the published tables.
        total += rows
            .iter()
            .filter(|r| r[d].as_str() <= AS_OF)
            .map(|r| r[a].parse::<f64>().unwrap())
            .sum::<f64>();
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_exit(
        &run(&case("folder-int-and-decimal-amounts"), AS_OF, &out, &[]),
        0,
        "int and decimal amounts",
    );
    assert_totals(
        &customers_and_revenue(&out, AS_OF),
        2357,
        total,
        "int and decimal",
    );
}

#[test]
fn case_folder_column_in_later_file_whatever_the_file_names() {
    let tmp = tempfile::tempdir().unwrap();
    let src = data("cases/folder-column-in-later-file");
    // The same two files, named so that the one with `category` comes first.
    let swapped = tmp.path().join("swapped");
    std::fs::create_dir(&swapped).unwrap();
    copy_as(&src.join("part-1.parquet"), &swapped.join("a.parquet"));
    copy_as(&src.join("part-0.parquet"), &swapped.join("b.parquet"));
    let share = "SELECT count(*) FILTER (WHERE category <> '(none)') || ' ' || count(*) || ' ' || round(sum(spend), 2) FROM t";
    let mut seen = Vec::new();
    for (name, input) in [
        ("as given", case("folder-column-in-later-file")),
        ("swapped", format!("{}/", swapped.display())),
    ] {
        let out = tmp.path().join(format!("out-{}", seen.len()));
        assert_exit(&run(&input, AS_OF, &out, &[]), 0, name);
        assert_eq!(customers_and_revenue(&out, AS_OF), CONTROL, "{name}");
        let s = one(&out, "customer_category_share", AS_OF, share);
        let with_category: u64 = s.split(' ').next().unwrap().parse().unwrap();
        assert!(with_category > 0, "{name}: no category read: {s}");
        seen.push(s);
    }
    assert_eq!(seen[0], seen[1], "file names changed the result");
}

#[test]
fn case_folder_not_null_then_nulls_rejects_the_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_exit(
        &run(&case("folder-not-null-then-nulls"), AS_OF, &out, &[]),
        0,
        "NOT NULL then NULLs",
    );
    assert_eq!(
        one(
            &out,
            "rejected_rows",
            AS_OF,
            "SELECT string_agg(reason || ':' || n, ',' ORDER BY reason) FROM (SELECT reason, count(*) AS n FROM t GROUP BY reason)"
        ),
        "missing amount:20,missing customer_id:20"
    );
}

#[test]
fn case_zoned_timestamps_give_the_utc_day() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data("cases/zoned-timestamps");
    let cols = "SELECT string_agg(CAST(customer_id AS VARCHAR) || ' ' || CAST(first_purchase AS VARCHAR) || ' ' || CAST(last_purchase AS VARCHAR) || ' ' || CAST(frequency AS VARCHAR) || ' ' || CAST(recency AS VARCHAR) || ' ' || CAST(round(revenue, 2) AS VARCHAR), ',' ORDER BY CAST(customer_id AS VARCHAR)) FROM t";
    let mut tables = Vec::new();
    for f in ["transactions.csv", "transactions_tz_newyork.parquet"] {
        let out = tmp.path().join(f);
        let input = dir.join(f).display().to_string();
        assert_exit(
            &run(&input, "2024-03-31", &out, &["--set", "time_unit=day"]),
            0,
            f,
        );
        let z = |id: &str| {
            one(
                &out,
                "customer_tiers",
                "2024-03-31",
                &format!("SELECT CAST(first_purchase AS VARCHAR) || ' ' || CAST(last_purchase AS VARCHAR) || ' ' || CAST(frequency AS VARCHAR) || ' ' || CAST(recency AS VARCHAR) FROM t WHERE CAST(customer_id AS VARCHAR) = '{id}'"),
            )
        };
        assert_eq!(z("z1"), "2024-02-01 2024-02-29 1.0 28.0", "{f}");
        assert_eq!(z("z2"), "2024-01-31 2024-02-01 1.0 1.0", "{f}");
        tables.push(one(&out, "customer_tiers", "2024-03-31", cols));
    }
    assert_eq!(tables[0], tables[1], "CSV and zoned Parquet differ");
}

/// Three exports of the CDNOW sample, each with its columns in another
/// order (one with an extra column), in every order of file names.
#[test]
fn csv_files_with_three_column_orders_match_by_name() {
    let (header, rows) = read_csv(&data("cdnow_sample.csv"));
    let third = rows.len() / 3;
    let layouts: [&[&str]; 3] = [
        &["customer_id", "order_ts", "quantity", "amount"],
        &["amount", "customer_id", "order_ts"],
        &["order_ts", "quantity", "amount", "customer_id"],
    ];
    let tmp = tempfile::tempdir().unwrap();
    for names in [["a", "b", "c"], ["c", "a", "b"], ["b", "c", "a"]] {
        let dir = tmp.path().join(names.join(""));
        std::fs::create_dir(&dir).unwrap();
        for (i, layout) in layouts.iter().enumerate() {
            let part = &rows[i * third..if i == 2 { rows.len() } else { (i + 1) * third }];
            write_csv(
                &dir.join(format!("{}.csv", names[i])),
                layout,
                part,
                &header,
            );
        }
        assert_control(&format!("{}/", dir.display()), &names.join(""));
    }
}

/// Header-only files first and last, one with its own column order.
#[test]
fn header_only_csv_files_first_and_last_are_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    copy_as(&data("cdnow_sample.csv"), &dir.join("m.csv"));
    std::fs::write(dir.join("a.csv"), "amount,order_ts,customer_id\n").unwrap();
    std::fs::write(dir.join("z.csv"), "customer_id,order_ts,quantity,amount\n").unwrap();
    assert_control(&format!("{}/", dir.display()), "header-only first and last");
}

/// Cents first and whole amounts second (the case's files renamed), and the
/// same with Parquet: an integer amount column beside a double one.
#[test]
fn integer_and_decimal_amounts_widen_in_either_order() {
    let tmp = tempfile::tempdir().unwrap();
    let src = data("cases/folder-int-and-decimal-amounts");
    let dir = tmp.path().join("csv");
    std::fs::create_dir(&dir).unwrap();
    copy_as(&src.join("part-1.csv"), &dir.join("a.csv"));
    copy_as(&src.join("part-0.csv"), &dir.join("b.csv"));
    let out = tmp.path().join("out-csv");
    assert_exit(
        &run(&format!("{}/", dir.display()), AS_OF, &out, &[]),
        0,
        "cents first",
    );
    let want = {
        let orig = tmp.path().join("out-orig");
        assert_exit(
            &run(&case("folder-int-and-decimal-amounts"), AS_OF, &orig, &[]),
            0,
            "as given",
        );
        customers_and_revenue(&orig, AS_OF)
    };
    assert_eq!(customers_and_revenue(&out, AS_OF), want);

    let pq = tmp.path().join("parquet");
    std::fs::create_dir(&pq).unwrap();
    parquet(
        &pq.join("a.parquet"),
        "SELECT 'c1' AS customer_id, DATE '2024-01-01' AS order_ts, CAST(10 AS BIGINT) AS amount \
         UNION ALL SELECT 'c1', DATE '2024-02-01', CAST(20 AS BIGINT)",
    );
    parquet(
        &pq.join("b.parquet"),
        "SELECT 'c2' AS customer_id, DATE '2024-01-05' AS order_ts, CAST(2.5 AS DOUBLE) AS amount \
         UNION ALL SELECT 'c2', DATE '2024-03-01', CAST(0.25 AS DECIMAL(10, 2))",
    );
    let out = tmp.path().join("out-parquet");
    assert_exit(
        &run(
            &format!("{}/", pq.display()),
            "2024-03-31",
            &out,
            // The files end on 2024-03-01 (the freshness gate's default is 3 days).
            &[
                "--set",
                "allow_unconverged=true",
                "--set",
                "max_staleness_days=30",
            ],
        ),
        0,
        "integer and double Parquet amounts",
    );
    assert_eq!(
        one(&out, "customer_tiers", "2024-03-31", "SELECT string_agg(CAST(customer_id AS VARCHAR) || ' ' || CAST(revenue AS VARCHAR), ',' ORDER BY CAST(customer_id AS VARCHAR)) FROM t"),
        "c1 30.0,c2 2.75"
    );
}

/// A date where another file has text, or a file without a required
/// column: exit 2 naming the file and the column, nothing published.
#[test]
fn conflicting_files_exit_2_naming_file_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dates");
    std::fs::create_dir(&dir).unwrap();
    parquet(
        &dir.join("jan.parquet"),
        "SELECT 'c1' AS customer_id, DATE '2024-01-01' AS order_ts, 5.0 AS amount",
    );
    parquet(
        &dir.join("feb.parquet"),
        "SELECT 'c2' AS customer_id, 'Feb 2nd' AS order_ts, 7.0 AS amount",
    );
    let out = tmp.path().join("out");
    let res = run(&format!("{}/", dir.display()), "2024-03-31", &out, &[]);
    assert_exit(&res, 2, "date against text");
    let err = String::from_utf8_lossy(&res.stderr);
    for want in ["feb.parquet", "jan.parquet", "\"order_ts\"", "Date32"] {
        assert!(err.contains(want), "message lacks {want:?}: {err}");
    }
    assert!(!out.exists(), "published despite the conflict");

    let dir = tmp.path().join("noamount");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("a.csv"),
        "customer_id,order_ts,amount\nc1,2024-01-01,5\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.csv"),
        "customer_id,order_ts,total\nc2,2024-01-02,7\n",
    )
    .unwrap();
    let res = run(&format!("{}/", dir.display()), "2024-03-31", &out, &[]);
    assert_exit(&res, 2, "a file without amount");
    let err = String::from_utf8_lossy(&res.stderr);
    for want in ["b.csv", "\"amount\"", "missing"] {
        assert!(err.contains(want), "message lacks {want:?}: {err}");
    }
    assert!(!out.exists(), "published despite the missing column");
}

/// A CSV file whose `category` values are quoted and span lines, some
/// longer than a read chunk, with `rows` rows over 2,000 customers; returns
/// (customers, revenue in cents).
pub(crate) fn multiline_csv(path: &Path, rows: usize) -> (usize, u64) {
    use std::fmt::Write;
    let mut s = String::from("customer_id,order_ts,amount,category\n");
    let mut cents = 0u64;
    let mut customers = std::collections::HashSet::new();
    for i in 0..rows {
        let c = (i * 7919) % 2000;
        customers.insert(c);
        let day = 1 + (i * 31) % 28;
        let month = 1 + (i / 7) % 3;
        let amount = 100 + (i * 37) % 5000;
        cents += amount as u64;
        // Every 9th value is long: a quoted newline then lands anywhere
        // relative to 8 KiB read chunks and byte-range boundaries.
        let filler = if i % 9 == 0 {
            "x".repeat(3000 + (i * 131) % 25_000)
        } else {
            String::new()
        };
        write!(
            s,
            "c{c},2024-{month:02}-{day:02},{}.{:02},\"line one, \"\"quoted\"\"\n{filler}\nline three\"\n",
            amount / 100,
            amount % 100
        )
        .unwrap();
    }
    std::fs::write(path, s).unwrap();
    (customers.len(), cents)
}

#[test]
fn csv_values_with_quoted_newlines_at_any_size_and_two_threads() {
    let tmp = tempfile::tempdir().unwrap();
    for (rows, min_bytes) in [(12, 4_000), (200, 100_000), (9_000, 15_000_000)] {
        let input = tmp.path().join(format!("multiline-{rows}.csv"));
        let (customers, cents) = multiline_csv(&input, rows);
        let size = std::fs::metadata(&input).unwrap().len();
        assert!(size >= min_bytes, "{rows} rows make {size} bytes");
        let out = tmp.path().join(format!("out-{rows}"));
        assert_exit(
            &run(
                &input.display().to_string(),
                "2024-03-31",
                &out,
                &[
                    "--threads",
                    "2",
                    "--set",
                    "time_unit=day",
                    "--set",
                    "allow_unconverged=true",
                    // The generated rows end weeks before the as-of date.
                    "--set",
                    "max_staleness_days=90",
                ],
            ),
            0,
            &format!("{size} bytes"),
        );
        assert_totals(
            &customers_and_revenue(&out, "2024-03-31"),
            customers,
            cents as f64 / 100.0,
            &format!("{size} bytes"),
        );
        assert_eq!(
            one(
                &out,
                "rejected_rows",
                "2024-03-31",
                "SELECT count(*) FROM t"
            ),
            "0"
        );
    }
}

/// Spark's INT96 timestamps: the Julian day and the nanoseconds of the day.
fn int96(year: i32, month: u32, day: u32, nanos_of_day: u64) -> parquet::data_type::Int96 {
    let days = chrono::NaiveDate::from_ymd_opt(year, month, day)
        .unwrap()
        .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
        .num_days();
    let julian = (days + 2_440_588) as u32;
    parquet::data_type::Int96::from(vec![
        nanos_of_day as u32,
        (nanos_of_day >> 32) as u32,
        julian,
    ])
}

/// INT96 timestamps outside the nanosecond range (1677..2262) keep their
/// century: a row of 1600 is rejected as before 1900, one of 2500 is after
/// the as-of date, neither wraps into the data.
#[test]
fn spark_int96_timestamps_are_not_wrapped() {
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int96Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("spark.parquet");
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            "message spark_schema { required binary customer_id (UTF8); required int96 order_ts; required double amount; }",
        )
        .unwrap(),
    );
    let rows = [
        ("c1", int96(2024, 1, 10, 23 * 3_600_000_000_000), 10.0),
        ("c1", int96(2024, 2, 10, 0), 20.0),
        ("c2", int96(1600, 6, 1, 0), 5.0),
        ("c3", int96(2500, 1, 1, 0), 7.0),
    ];
    let file = std::fs::File::create(&path).unwrap();
    let mut writer =
        SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))
            .unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    let ids: Vec<ByteArray> = rows.iter().map(|r| ByteArray::from(r.0)).collect();
    col.typed::<ByteArrayType>()
        .write_batch(&ids, None, None)
        .unwrap();
    col.close().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    let ts: Vec<_> = rows.iter().map(|r| r.1).collect();
    col.typed::<Int96Type>()
        .write_batch(&ts, None, None)
        .unwrap();
    col.close().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    let amounts: Vec<f64> = rows.iter().map(|r| r.2).collect();
    col.typed::<DoubleType>()
        .write_batch(&amounts, None, None)
        .unwrap();
    col.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();

    let out = tmp.path().join("out");
    assert_exit(
        &run(
            &path.display().to_string(),
            "2024-03-31",
            &out,
            &[
                "--set",
                "max_rejected_fraction=1",
                "--set",
                "allow_unconverged=true",
                "--set",
                "time_unit=day",
                // The last usable row is on 2024-02-10.
                "--set",
                "max_staleness_days=60",
            ],
        ),
        0,
        "INT96",
    );
    assert_eq!(
        one(&out, "customer_tiers", "2024-03-31", "SELECT string_agg(CAST(customer_id AS VARCHAR) || ' ' || CAST(first_purchase AS VARCHAR) || ' ' || CAST(last_purchase AS VARCHAR), ',') FROM t"),
        "c1 2024-01-10 2024-02-10"
    );
    assert_eq!(
        one(
            &out,
            "rejected_rows",
            "2024-03-31",
            "SELECT string_agg(customer_id || ' ' || reason, ',') FROM t"
        ),
        "c2 order_ts before 1900-01-01"
    );
}
