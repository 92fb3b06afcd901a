//! End-to-end tests of CSV exports as shops write them: the same generated
//! transactions written with `;` and a decimal comma, in latin-1 and
//! UTF-16, with a UTF-8 byte order mark, gzip/zstd/bzip2/xz compressed,
//! without a header, and in Hive partition folders must publish the
//! customers and revenue of an independent sum in the test (and of the
//! plain CSV); bad options exit 2 naming the input and the option.
//!
//! Expected values: `expected()` sums the generated rows in integer cents;
//! compared to the cent (`assert_totals`, tolerance 0.005).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use object_store::ObjectStore;
use tokio::io::AsyncWriteExt;

use crate::common::{custval, run_nightly};
use crate::inputs::{assert_exit, assert_totals, customers_and_revenue, multiline_csv, one};

const AS_OF: &str = "2024-12-31";

/// One generated transaction.
struct Tx {
    customer: String,
    day: String,
    cents: i64,
    region: Option<&'static str>,
}

/// 240 rows over 48 customers in 2024, ids with accented letters (what a
/// wrong encoding would garble), amounts from 1.00 to 1,500.99 (some with
/// a thousands group), regions EU, US or none.
fn rows() -> Vec<Tx> {
    const NAMES: [&str; 6] = ["Zoë", "Müller", "François", "Ångström", "Núñez", "plain"];
    (0..240usize)
        .map(|i| {
            let c = (i * 29) % 48;
            let month = 1 + (i * 7) % 12;
            let day = 1 + (i * 13) % 28;
            let cents = 100 + ((i * 7919) % 150_000) as i64;
            Tx {
                customer: format!("{}-{c}", NAMES[c % NAMES.len()]),
                day: format!("2024-{month:02}-{day:02}"),
                cents,
                region: [Some("EU"), Some("US"), None][i % 3],
            }
        })
        .collect()
}

/// (customers, revenue) summed independently of custval: every customer
/// has purchases and no amount is negative, so revenue is the sum.
fn expected(rows: &[Tx]) -> (usize, f64) {
    let customers: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.customer.as_str()).collect();
    let cents: i64 = rows.iter().map(|r| r.cents).sum();
    (customers.len(), cents as f64 / 100.0)
}

/// The customer ids, sorted and joined by `|`, as the published table
/// must hold them.
fn ids(rows: &[Tx]) -> String {
    let set: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.customer.as_str()).collect();
    set.into_iter().collect::<Vec<_>>().join("|")
}

/// An amount as text: `1234.56`, or with a decimal comma `1.234,56`.
fn amount(cents: i64, decimal_comma: bool) -> String {
    let (units, frac) = (cents / 100, cents % 100);
    if !decimal_comma {
        return format!("{units}.{frac:02}");
    }
    let grouped = if units >= 1000 {
        format!("{}.{:03}", units / 1000, units % 1000)
    } else {
        units.to_string()
    };
    format!("{grouped},{frac:02}")
}

/// The rows as CSV text: `sep` between values, amounts with a decimal
/// comma or point, with or without the header line.
fn csv(rows: &[&Tx], sep: char, decimal_comma: bool, header: bool) -> String {
    let mut s = String::new();
    if header {
        s.push_str(&format!("customer_id{sep}order_ts{sep}amount\n"));
    }
    for r in rows {
        let a = amount(r.cents, decimal_comma);
        // A decimal comma under a `,` delimiter would need quotes; `;` not.
        s.push_str(&format!("{}{sep}{}{sep}{a}\n", r.customer, r.day));
    }
    s
}

fn plain(rows: &[Tx]) -> String {
    csv(&rows.iter().collect::<Vec<_>>(), ',', false, true)
}

/// `text` in latin-1: one byte per character (every character is below 256).
fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("a latin-1 character"))
        .collect()
}

/// `text` in UTF-16LE with its byte order mark.
fn utf16le(text: &str) -> Vec<u8> {
    let mut b = vec![0xFF, 0xFE];
    b.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    b
}

/// `plain` compressed by DataFusion's encoder of `kind` into `path`.
fn compress(plain: &[u8], kind: FileCompressionType, path: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        let loc = object_store::path::Path::from_absolute_path(path).unwrap();
        let w = object_store::buffered::BufWriter::new(store, loc);
        let mut w = kind.convert_async_writer(w).unwrap();
        w.write_all(plain).await.unwrap();
        w.shutdown().await.unwrap();
    });
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// A copy of `jobs/nightly.toml` in `dir` (SQL paths made absolute) with
/// its `[inputs.transactions.columns]` line replaced by `section`.
fn nightly_with(dir: &Path, section: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let job = std::fs::read_to_string(root.join("jobs/nightly.toml"))
        .unwrap()
        .replace(
            "sql = \"../sql/",
            &format!("sql = \"{}/sql/", root.display()),
        )
        .replace("[inputs.transactions.columns]", section);
    let path = dir.join("job.toml");
    std::fs::write(&path, job).unwrap();
    path
}

/// The nightly job on `input` with `extra` flags (small data: the model
/// fit may stop short, and the rows may end days before AS_OF, which is not
/// what these tests are about).
fn run(input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "--set",
        "allow_unconverged=true",
        "--set",
        "max_staleness_days=3650",
    ];
    args.extend_from_slice(extra);
    run_nightly(&input.display().to_string(), AS_OF, out, &args)
}

/// `input` read with `extra` publishes the generated customers (ids
/// unchanged, accents included) and revenue.
fn assert_reads_like_plain(rows: &[Tx], input: &Path, extra: &[&str], what: &str) {
    let out = input.with_extension("out");
    assert_exit(&run(input, &out, extra), 0, what);
    let (customers, revenue) = expected(rows);
    assert_totals(
        &customers_and_revenue(&out, AS_OF),
        customers,
        revenue,
        what,
    );
    let got = one(
        &out,
        "customer_tiers",
        AS_OF,
        "SELECT string_agg(customer_id, '|' ORDER BY customer_id) FROM t",
    );
    assert_eq!(got, ids(rows), "{what}: customer ids");
    let rejected = one(&out, "rejected_rows", AS_OF, "SELECT count(*) FROM t");
    assert_eq!(rejected, "0", "{what}: rejected rows");
}

#[test]
fn plain_csv_is_the_control() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = rows();
    let input = tmp.path().join("tx.csv");
    write(&input, plain(&rows).as_bytes());
    assert_reads_like_plain(&rows, &input, &[], "plain CSV");
}

#[test]
fn semicolons_and_a_decimal_comma() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = rows();
    let text = csv(&rows.iter().collect::<Vec<_>>(), ';', true, true);
    assert!(
        rows.iter().any(|r| r.cents >= 100_000),
        "some amounts have a thousands group"
    );
    let input = tmp.path().join("tx.csv");
    write(&input, text.as_bytes());
    // The delimiter follows the decimal comma unless told.
    assert_reads_like_plain(
        &rows,
        &input,
        &["--csv", "transactions.decimal=,"],
        "; and decimal comma",
    );
    // The same from the job file.
    let job = nightly_with(
        tmp.path(),
        "[inputs.transactions.csv]\ndecimal = \",\"\n\n[inputs.transactions.columns]",
    );
    let out = tmp.path().join("out-job");
    let input_flag = format!("transactions={}", input.display());
    let res = custval(
        &[],
        &[
            "-q",
            "run",
            &job.display().to_string(),
            "--input",
            &input_flag,
            "--as-of",
            AS_OF,
            "--output",
            &out.display().to_string(),
            "--set",
            "allow_unconverged=true",
            "--set",
            "max_staleness_days=3650",
        ],
    );
    assert_exit(&res, 0, "decimal comma from the job file");
    let (customers, revenue) = expected(&rows);
    assert_totals(
        &customers_and_revenue(&out, AS_OF),
        customers,
        revenue,
        "job file",
    );
    // Read as a plain CSV, the same file is one column: exit 2, not wrong totals.
    let out = tmp.path().join("out-plain");
    let res = run(&input, &out, &[]);
    assert_exit(&res, 2, "a ; file read with ,");
}

#[test]
fn a_decimal_point_in_a_decimal_comma_file_is_a_rejected_row() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = rows();
    let mut text = csv(&rows.iter().collect::<Vec<_>>(), ';', true, true);
    text.push_str("Zoë-0;2024-06-01;12.50\n");
    let input = tmp.path().join("tx.csv");
    write(&input, text.as_bytes());
    let out = tmp.path().join("out");
    // One row in 241 stays under the default 1% gate.
    let res = run(&input, &out, &["--csv", "transactions.decimal=,"]);
    assert_exit(&res, 0, "one bad amount");
    let (customers, revenue) = expected(&rows);
    assert_totals(
        &customers_and_revenue(&out, AS_OF),
        customers,
        revenue,
        "12.50 not read as 1250",
    );
    assert_eq!(
        one(
            &out,
            "rejected_rows",
            AS_OF,
            "SELECT amount || ' ' || reason FROM t"
        ),
        "12.50 unparseable amount"
    );
}

#[test]
fn another_quote_and_an_escape_character() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = rows();
    for r in &mut rows {
        r.customer = format!("{}'s \"best\", really", r.customer);
    }
    let mut text = String::from("customer_id,order_ts,amount\n");
    for r in &rows {
        let id = r.customer.replace('\'', "\\'");
        text.push_str(&format!("'{id}',{},{}\n", r.day, amount(r.cents, false)));
    }
    let input = tmp.path().join("quoted.csv");
    write(&input, text.as_bytes());
    assert_reads_like_plain(
        &rows,
        &input,
        &[
            "--csv",
            "transactions.quote='",
            "--csv",
            "transactions.escape=\\",
        ],
        "quote ' and escape \\",
    );
}

#[test]
fn latin1_and_utf16_are_transcoded() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = rows();
    let text = plain(&rows);
    for (name, bytes, encoding) in [
        ("latin1", latin1(&text), "latin-1"),
        ("windows1252", latin1(&text), "windows-1252"),
        ("utf16", utf16le(&text), "utf-16"),
    ] {
        let input = tmp.path().join(format!("{name}.csv"));
        write(&input, &bytes);
        let flag = format!("transactions.encoding={encoding}");
        assert_reads_like_plain(&rows, &input, &["--csv", &flag], name);
    }
}

#[test]
fn a_utf8_byte_order_mark_is_skipped_with_or_without_a_header() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = rows();
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend_from_slice(plain(&rows).as_bytes());
    let input = tmp.path().join("bom.csv");
    write(&input, &bytes);
    assert_reads_like_plain(&rows, &input, &[], "BOM before the header");

    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend_from_slice(csv(&rows.iter().collect::<Vec<_>>(), ',', false, false).as_bytes());
    let input = tmp.path().join("bom-no-header.csv");
    write(&input, &bytes);
    assert_reads_like_plain(
        &rows,
        &input,
        &[
            "--csv",
            "transactions.header=false",
            "--csv",
            "transactions.names=customer_id,order_ts,amount",
        ],
        "BOM before the first record",
    );
}

#[test]
fn compressed_files_by_extension_or_option() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = rows();
    let text = plain(&rows);
    // (extension, codec, the file's magic bytes: proof it is compressed)
    let kinds: [(&str, FileCompressionType, &[u8]); 4] = [
        ("gz", FileCompressionType::GZIP, &[0x1f, 0x8b]),
        ("zst", FileCompressionType::ZSTD, &[0x28, 0xb5, 0x2f, 0xfd]),
        ("bz2", FileCompressionType::BZIP2, b"BZh"),
        (
            "xz",
            FileCompressionType::XZ,
            &[0xfd, b'7', b'z', b'X', b'Z', 0],
        ),
    ];
    for (ext, kind, magic) in kinds {
        let input = tmp.path().join(format!("tx-{ext}/tx.csv.{ext}"));
        std::fs::create_dir_all(input.parent().unwrap()).unwrap();
        compress(text.as_bytes(), kind, &input);
        assert!(std::fs::read(&input).unwrap().starts_with(magic), "{ext}");
        assert_reads_like_plain(&rows, &input, &[], &format!(".csv.{ext}"));
    }
    // The option, for a file whose name does not say.
    let input = tmp.path().join("named-plainly/tx.csv");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    compress(text.as_bytes(), FileCompressionType::GZIP, &input);
    assert_reads_like_plain(
        &rows,
        &input,
        &["--csv", "transactions.compression=gzip"],
        "compression = gzip",
    );
    // A gzip export in latin-1: decompressed, then transcoded.
    let input = tmp.path().join("latin1-gz/tx.csv.gz");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    compress(&latin1(&text), FileCompressionType::GZIP, &input);
    assert_reads_like_plain(
        &rows,
        &input,
        &["--csv", "transactions.encoding=latin-1"],
        "latin-1 .csv.gz",
    );
}

#[test]
fn quoted_newlines_in_a_compressed_file_with_two_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("multiline.csv");
    // (customers, cents) summed by the generator (tests/integration/inputs.rs).
    let (customers, cents) = multiline_csv(&plain, 600);
    let input = tmp.path().join("gz/multiline.csv.gz");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    compress(
        &std::fs::read(&plain).unwrap(),
        FileCompressionType::GZIP,
        &input,
    );
    let out = tmp.path().join("out");
    let res = run_nightly(
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
            "--set",
            "max_staleness_days=3650",
        ],
    );
    assert_exit(&res, 0, "gzip with quoted newlines");
    assert_totals(
        &customers_and_revenue(&out, "2024-03-31"),
        customers,
        cents as f64 / 100.0,
        "gzip with quoted newlines",
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

#[test]
fn files_without_a_header_take_names_or_column_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = rows();
    let text = csv(&rows.iter().collect::<Vec<_>>(), '|', false, false);
    let input = tmp.path().join("noheader.csv");
    write(&input, text.as_bytes());
    assert_reads_like_plain(
        &rows,
        &input,
        &[
            "--csv",
            "transactions.header=false",
            "--csv",
            "transactions.delimiter=|",
            "--csv",
            "transactions.names=customer_id,order_ts,amount",
        ],
        "no header, names given",
    );
    // Without names: DataFusion's column_1..column_N, here through `custval sql`.
    let table = format!("t={}", input.display());
    let res = custval(
        &[],
        &[
            "-q",
            "sql",
            "--format",
            "csv",
            "--table",
            &table,
            "--csv",
            "t.header=false",
            "--csv",
            "t.delimiter=|",
            "SELECT count(DISTINCT column_1) AS c, sum(CAST(column_3 AS DECIMAL(12, 2))) AS s FROM t",
        ],
    );
    assert_exit(&res, 0, "sql without a header");
    let (customers, revenue) = expected(&rows);
    let out = String::from_utf8_lossy(&res.stdout);
    assert_eq!(
        out.lines().last().unwrap_or_default(),
        format!("{customers},{revenue:.2}"),
        "{out}"
    );
}

/// The rows in Hive folders `region=EU|US|__HIVE_DEFAULT_PARTITION__/`,
/// two files per region, under `dir`, beside what Spark and Hadoop leave
/// there (`_SUCCESS`, `.crc` files), which is not data.
fn hive_folder(rows: &[Tx], dir: &Path) {
    write(&dir.join("_SUCCESS"), b"");
    write(&dir.join("region=EU/_SUCCESS"), b"");
    write(
        &dir.join("region=US/.part-0.csv.crc"),
        b"crc\x00\x01 not,a,csv\n",
    );
    for region in [Some("EU"), Some("US"), None] {
        let folder = dir.join(format!(
            "region={}",
            region.unwrap_or("__HIVE_DEFAULT_PARTITION__")
        ));
        let mine: Vec<&Tx> = rows.iter().filter(|r| r.region == region).collect();
        let (a, b) = mine.split_at(mine.len() / 2);
        write(
            &folder.join("part-0.csv"),
            csv(a, ',', false, true).as_bytes(),
        );
        write(
            &folder.join("part-1.csv"),
            csv(b, ',', false, true).as_bytes(),
        );
    }
}

#[test]
fn hive_partition_folders_are_columns_and_the_default_is_null() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = rows();
    let dir = tmp.path().join("tx");
    hive_folder(&rows, &dir);
    let folder = PathBuf::from(format!("{}/", dir.display()));
    assert_reads_like_plain(&rows, &folder, &[], "hive folders");

    // custval sql: the partition column, NULL for the default partition.
    let table = format!("t={}/", dir.display());
    let res = custval(
        &[],
        &[
            "-q",
            "sql",
            "--format",
            "csv",
            "--table",
            &table,
            "SELECT coalesce(region, 'NULL') AS r, count(*) AS n FROM t GROUP BY region ORDER BY r",
        ],
    );
    assert_exit(&res, 0, "sql on hive folders");
    let count = |r: Option<&str>| rows.iter().filter(|t| t.region == r).count();
    let want = format!(
        "r,n\nEU,{}\nNULL,{}\nUS,{}\n",
        count(Some("EU")),
        count(None),
        count(Some("US"))
    );
    assert_eq!(String::from_utf8_lossy(&res.stdout), want);
}

#[test]
fn hive_folders_with_two_header_layouts_match_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = rows();
    let dir = tmp.path().join("tx");
    hive_folder(&rows, &dir);
    // One partition's second file with its columns in another order.
    let mine: Vec<&Tx> = rows.iter().filter(|r| r.region == Some("US")).collect();
    let (_, b) = mine.split_at(mine.len() / 2);
    let mut text = String::from("amount,customer_id,order_ts\n");
    for r in b {
        text.push_str(&format!(
            "{},{},{}\n",
            amount(r.cents, false),
            r.customer,
            r.day
        ));
    }
    write(&dir.join("region=US/part-1.csv"), text.as_bytes());
    let folder = PathBuf::from(format!("{}/", dir.display()));
    assert_reads_like_plain(&rows, &folder, &[], "hive folders, two layouts");
    let table = format!("t={}/", dir.display());
    let res = custval(
        &[],
        &[
            "-q",
            "sql",
            "--format",
            "csv",
            "--table",
            &table,
            "SELECT count(*) AS n FROM t WHERE region = 'US' AND amount IS NOT NULL",
        ],
    );
    assert_exit(&res, 0, "sql on two layouts");
    let us = rows.iter().filter(|t| t.region == Some("US")).count();
    assert_eq!(String::from_utf8_lossy(&res.stdout), format!("n\n{us}\n"));
}

#[test]
fn a_partition_column_maps_like_any_raw_column() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = rows();
    let dir = tmp.path().join("tx");
    hive_folder(&rows, &dir);
    // The nightly job with category = the partition column; a missing
    // category is '(none)' in customer_category_share (sql/16).
    let job_path = nightly_with(
        tmp.path(),
        "[inputs.transactions.columns]\ncategory = \"region\"",
    );
    let out = tmp.path().join("out");
    let input = format!("transactions={}/", dir.display());
    let res = custval(
        &[],
        &[
            "-q",
            "run",
            &job_path.display().to_string(),
            "--input",
            &input,
            "--as-of",
            AS_OF,
            "--output",
            &out.display().to_string(),
            "--set",
            "allow_unconverged=true",
            "--set",
            "max_staleness_days=3650",
        ],
    );
    assert_exit(&res, 0, "category mapped to a partition column");
    let got = one(
        &out,
        "customer_category_share",
        AS_OF,
        "SELECT string_agg(DISTINCT category, '|' ORDER BY category) FROM t",
    );
    assert_eq!(got, "(none)|EU|US");
}

#[test]
fn a_file_beside_partition_folders_exits_2_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = rows();
    let dir = tmp.path().join("tx");
    hive_folder(&rows, &dir);
    write(&dir.join("stray.csv"), plain(&rows[..5]).as_bytes());
    let out = tmp.path().join("out");
    let res = run(&PathBuf::from(format!("{}/", dir.display())), &out, &[]);
    assert_exit(&res, 2, "mixed folder");
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("stray.csv") && err.contains("region=EU/part-0.csv"),
        "names both files: {err}"
    );
    assert!(!out.exists(), "published despite the mixed folder");
}

#[test]
fn bad_options_exit_2_naming_the_input_and_option() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = rows();
    let input = tmp.path().join("tx.csv");
    write(&input, plain(&rows).as_bytes());
    for (flag, option) in [
        ("transactions.encoding=klingon", "encoding"),
        ("transactions.delimiter=;;", "delimiter"),
        ("transactions.compression=rar", "compression"),
        ("transactions.header=maybe", "header"),
        ("transactions.separator=;", "separator"),
    ] {
        let out = tmp.path().join("out");
        let res = run(&input, &out, &["--csv", flag]);
        assert_exit(&res, 2, flag);
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(
            err.contains("transactions") && err.contains(option),
            "{flag}: {err}"
        );
        assert!(!out.exists(), "{flag}: published");
    }
    // Job file options are checked the same way, by `check` too.
    let job_path = nightly_with(
        tmp.path(),
        "[inputs.transactions.csv]\ndelimiter = \"||\"\n\n[inputs.transactions.columns]",
    );
    let input_flag = format!("transactions={}", input.display());
    let res = custval(
        &[],
        &[
            "-q",
            "check",
            &job_path.display().to_string(),
            "--input",
            &input_flag,
        ],
    );
    assert_exit(&res, 2, "check with a two-character delimiter");
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("input transactions") && err.contains("delimiter") && err.contains("\"||\""),
        "{err}"
    );
}
