//! `custval sql` off a terminal: read-only unless allowed, Parquet output,
//! the query from stdin, and a reader that goes away.

use std::process::Stdio;

use crate::common::{nightly_cdnow, sql_on_table, Cmd};

#[test]
fn sql_is_read_only_unless_allowed() {
    let out = Cmd::custval()
        .args(["sql", "CREATE TABLE x AS SELECT 1"])
        .code(2);
    assert!(out.stderr.contains("--allow-write"));
    let out = Cmd::custval()
        .args([
            "sql",
            "--allow-write",
            "--format",
            "json",
            "CREATE TABLE x AS SELECT 1 AS a; SELECT a + 1 AS b FROM x",
        ])
        .stdout();
    assert!(out.contains("{\"b\":2}"));
}

#[test]
fn sql_writes_parquet_only_when_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("result.parquet");
    let q = "SELECT 1 AS a, 'x' AS b";
    let out = Cmd::custval()
        .args([
            "sql",
            "--format",
            "parquet",
            "--out",
            target.to_str().unwrap(),
            q,
        ])
        .code(2);
    assert!(out.stderr.contains("--allow-write"));
    Cmd::custval()
        .args([
            "sql",
            "--allow-write",
            "--format",
            "parquet",
            "--out",
            target.to_str().unwrap(),
            q,
        ])
        .ok();
    let back = sql_on_table(
        &[],
        &target.display().to_string(),
        "csv",
        "SELECT a, b FROM t",
    );
    assert_eq!(back, "a,b\n1,x\n");
}

/// Without a query argument, off a terminal, the query is read from stdin.
#[test]
fn sql_reads_the_query_from_stdin() {
    let out = Cmd::custval()
        .args(["sql", "--format", "csv"])
        .stdin("SELECT 1 + 1 AS two")
        .stdout();
    assert_eq!(out, "two\n2\n");
}

/// `custval sql ... | head`: a reader that goes away ends custval quietly
/// (exit 0, no panic), in every output format.
#[test]
fn a_closed_output_pipe_ends_quietly() {
    use std::io::Read;
    for format in ["csv", "json", "table"] {
        let mut child = Cmd::custval()
            .args([
                "sql",
                "--format",
                format,
                "SELECT value FROM generate_series(1, 3000000)",
            ])
            .spawn(Stdio::piped(), Stdio::piped());
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

/// The query of the format tests: columns deliberately not in alphabetical
/// order, a text with the characters each format must escape, a NULL.
const FORMAT_QUERY: &str = "SELECT * FROM (VALUES (2, 'b|x', 1.5), (1, 'a\tb', NULL)) AS v(zeta, alpha, mid) ORDER BY zeta DESC";

/// `--format json` is one JSON array, `ndjson` (alias `nd-json`, as
/// datafusion-cli) one object per line; both keep SELECT order, not
/// alphabetical. Expected text written by hand from FORMAT_QUERY.
#[test]
fn json_is_one_array_and_ndjson_lines_in_select_order() {
    let out = Cmd::custval()
        .args(["sql", "--format", "json", FORMAT_QUERY])
        .stdout();
    assert_eq!(
        out,
        "[{\"zeta\":2,\"alpha\":\"b|x\",\"mid\":1.5},\n{\"zeta\":1,\"alpha\":\"a\\tb\",\"mid\":null}]\n"
    );
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed.as_array().map(Vec::len), Some(2));
    for flag in ["ndjson", "nd-json"] {
        let out = Cmd::custval()
            .args(["sql", "--format", flag, FORMAT_QUERY])
            .stdout();
        assert_eq!(
            out,
            "{\"zeta\":2,\"alpha\":\"b|x\",\"mid\":1.5}\n{\"zeta\":1,\"alpha\":\"a\\tb\",\"mid\":null}\n",
            "{flag}"
        );
    }
    // An empty result is an empty array, still valid JSON.
    let out = Cmd::custval()
        .args(["sql", "--format", "json", "SELECT 1 AS a WHERE false"])
        .stdout();
    assert_eq!(out, "[]\n");
}

/// TSV quotes a value holding a tab (Arrow's CSV writer, tab delimiter);
/// Markdown escapes `|` and leaves a NULL cell empty. Expected text by hand.
#[test]
fn tsv_and_markdown() {
    let out = Cmd::custval()
        .args(["sql", "--format", "tsv", FORMAT_QUERY])
        .stdout();
    assert_eq!(out, "zeta\talpha\tmid\n2\tb|x\t1.5\n1\t\"a\tb\"\t\n");
    let out = Cmd::custval()
        .args(["sql", "--format", "markdown", FORMAT_QUERY])
        .stdout();
    assert_eq!(
        out,
        "| zeta | alpha | mid |\n|---|---|---|\n| 2 | b\\|x | 1.5 |\n| 1 | a\tb |  |\n"
    );
    // An empty result keeps its header.
    let out = Cmd::custval()
        .args(["sql", "--format", "markdown", "SELECT 1 AS a WHERE false"])
        .stdout();
    assert_eq!(out, "| a |\n|---|\n");
}

/// After each result, `N rows in X.XXX s` on stderr (stdout stays the data);
/// `-q` leaves it out. 3 rows: generate_series(1, 3) by definition.
#[test]
fn a_footer_counts_rows_and_time_unless_quiet() {
    let q = "SELECT value FROM generate_series(1, 3); SELECT 1 AS one";
    let run = Cmd::custval().args(["sql", "--format", "csv", q]).ok();
    assert_eq!(run.stdout, "value\n1\n2\n3\none\n1\n");
    let footers: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(" in ") && l.ends_with(" s"))
        .collect();
    assert_eq!(footers.len(), 2, "{}", run.stderr);
    assert!(footers[0].starts_with("3 rows in "), "{}", footers[0]);
    assert!(footers[1].starts_with("1 row in "), "{}", footers[1]);
    let secs: f64 = footers[0]
        .trim_start_matches("3 rows in ")
        .trim_end_matches(" s")
        .parse()
        .unwrap();
    assert!((0.0..60.0).contains(&secs), "{secs}");
    let run = Cmd::custval()
        .args(["-q", "sql", "--format", "csv", q])
        .ok();
    assert_eq!(run.stderr, "");
}

/// `-c SQL` and `-f FILE` (each repeatable, each holding statements
/// separated by `;`) run in order: the argument, the -c's, then the files;
/// a table created by one is seen by the next.
#[test]
fn commands_and_files_run_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.sql");
    let b = tmp.path().join("b.sql");
    std::fs::write(
        &a,
        "SELECT column1 * 10 AS ten FROM t;\nSELECT 'a' AS file;\n",
    )
    .unwrap();
    std::fs::write(&b, "SELECT count(*) AS n FROM t").unwrap();
    let out = Cmd::custval()
        .args(["-q", "sql", "--allow-write", "--format", "csv"])
        .args(["-c", "CREATE TABLE t AS VALUES (1), (2)"])
        .args(["--command", "SELECT sum(column1) AS s FROM t"])
        .arg("-f")
        .arg(&a)
        .arg("--file")
        .arg(&b)
        .stdout();
    // sum 1+2 = 3; then 10, 20; then count 2.
    assert_eq!(out, "s\n3\nten\n10\n20\nfile\na\nn\n2\n");
    let run = Cmd::custval()
        .args(["sql", "-f", "/nonexistent/q.sql"])
        .code(2);
    assert!(run.stderr.contains("/nonexistent/q.sql"), "{}", run.stderr);
}

/// `SET datafusion....` changes only the session: allowed read-only, and
/// seen by the next statement; DDL still needs --allow-write.
#[test]
fn set_is_allowed_read_only_and_ddl_is_not() {
    let out = Cmd::custval()
        .args(["-q", "sql", "--format", "csv"])
        .arg("SET datafusion.execution.batch_size = 1234; SELECT value FROM information_schema.df_settings WHERE name = 'datafusion.execution.batch_size'")
        .stdout();
    assert_eq!(out, "value\n1234\n");
    let run = Cmd::custval()
        .args(["sql", "CREATE VIEW v AS SELECT 1"])
        .code(2);
    assert!(run.stderr.contains("--allow-write"), "{}", run.stderr);
}

/// One number printed by `custval -q sql --format csv` (header, value).
fn count(extra: &[&str], sql: &str) -> u64 {
    let out = Cmd::custval()
        .args(["-q", "sql", "--format", "csv"])
        .args(extra)
        .arg(sql)
        .stdout();
    let value = out.lines().nth(1).unwrap_or_else(|| panic!("{out}"));
    value.parse().unwrap_or_else(|_| panic!("{out}"))
}

/// Paths and URLs in FROM, `read_parquet(url)` and `read_csv(url, ...)` read
/// as `--table` does: a published table folder gives every published
/// partition with its `as_of` column. Expected counts come from `--table`
/// on each partition (the reader the shipped cases check) and from counting
/// the CSV file's lines here.
#[test]
fn paths_in_from_and_read_functions() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for as_of in ["1997-09-30", "1998-06-30"] {
        nightly_cdnow(&out, as_of).args(["-q"]).ok();
    }
    let tiers = out.join("customer_tiers");
    let part = |d: &str| format!("{}/as_of={d}/", tiers.display());
    let t = |d: &str| format!("t={}", part(d));
    let (a, b) = (
        count(&["--table", &t("1997-09-30")], "SELECT count(*) FROM t"),
        count(&["--table", &t("1998-06-30")], "SELECT count(*) FROM t"),
    );
    assert!(a > 0 && b > 0, "{a} {b}");
    let folder = format!("{}/", tiers.display());
    let q = format!("SELECT count(*) FROM '{folder}'");
    assert_eq!(count(&[], &q), a + b);
    let q = format!("SELECT count(DISTINCT as_of) FROM '{folder}'");
    assert_eq!(count(&[], &q), 2);
    let q = format!(
        "SELECT count(*) FROM read_parquet('{}')",
        part("1997-09-30")
    );
    assert_eq!(count(&[], &q), a);
    // A path in FROM joins a registered table.
    let q = format!(
        "SELECT count(*) FROM t JOIN '{}' p USING (customer_id)",
        part("1998-06-30")
    );
    assert_eq!(count(&["--table", &t("1998-06-30")], &q), b);

    // read_csv: the CDNOW sample (lines minus the header) and a
    // semicolon file under a name that does not say CSV.
    let csv = crate::common::data("cdnow_sample.csv");
    let lines = std::fs::read_to_string(&csv).unwrap().lines().count() as u64;
    assert_eq!(
        count(&[], &format!("SELECT count(*) FROM read_csv('{csv}')")),
        lines - 1
    );
    assert_eq!(
        count(&[], &format!("SELECT count(*) FROM '{csv}'")),
        lines - 1
    );
    let semi = tmp.path().join("export.txt.data");
    std::fs::write(&semi, "a;b\n1;2\n3;4\n5;6\n").unwrap();
    let q = format!(
        "SELECT sum(b) FROM read_csv('{}', 'delimiter=;')",
        semi.display()
    );
    assert_eq!(count(&[], &q), 12);

    // A glob: two CSV files with columns in different orders, read by
    // name; a file outside the pattern and one in a subfolder are left out.
    let g = tmp.path().join("glob");
    std::fs::create_dir_all(g.join("sub")).unwrap();
    std::fs::write(g.join("s-1.csv"), "k,v\na,1\nb,2\n").unwrap();
    std::fs::write(g.join("s-2.csv"), "v,k\n4,c\n").unwrap();
    std::fs::write(g.join("other.csv"), "k,v\nz,100\n").unwrap();
    std::fs::write(g.join("sub/s-3.csv"), "k,v\ny,1000\n").unwrap();
    let q = format!("SELECT sum(v) FROM '{}/s-*.csv'", g.display());
    assert_eq!(count(&[], &q), 7, "1 + 2 + 4");
    let q = format!("SELECT count(*) FROM read_csv('{}/s-*.csv')", g.display());
    assert_eq!(count(&[], &q), 3);
    let run = Cmd::custval()
        .args([
            "sql",
            &format!("SELECT * FROM '{}/none-*.csv'", g.display()),
        ])
        .code(2);
    assert!(run.stderr.contains("no file matches"), "{}", run.stderr);

    // An unknown name is still "not found" (exit 2), a path with no data
    // names the path, and a bad option names it.
    let run = Cmd::custval().args(["sql", "SELECT * FROM nope"]).code(2);
    assert!(run.stderr.contains("nope"), "{}", run.stderr);
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let run = Cmd::custval()
        .args(["sql", &format!("SELECT * FROM '{}/'", empty.display())])
        .fails();
    assert!(run.stderr.contains("no data files"), "{}", run.stderr);
    let run = Cmd::custval()
        .args([
            "sql",
            &format!("SELECT * FROM read_csv('{csv}', 'colour=red')"),
        ])
        .code(2);
    assert!(run.stderr.contains("colour"), "{}", run.stderr);
}

/// `--output-dir OUT` registers every published table by name at its
/// latest published partition. Expected counts from `--table` on that
/// partition of each table.
#[test]
fn output_dir_registers_every_published_table_at_its_latest_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for as_of in ["1997-09-30", "1998-06-30"] {
        nightly_cdnow(&out, as_of).args(["-q"]).ok();
    }
    let o = out.display().to_string();
    let listed = Cmd::custval()
        .args(["-q", "sql", "--format", "csv", "--output-dir", &o])
        .arg("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
        .stdout();
    let mut folders: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('_'))
        .collect();
    folders.sort();
    assert!(
        folders.contains(&"customer_tiers".to_string()),
        "{folders:?}"
    );
    assert_eq!(listed, format!("table_name\n{}\n", folders.join("\n")));
    for table in ["customer_tiers", "customer_clv"] {
        if !folders.iter().any(|f| f == table) {
            continue;
        }
        let t = format!("t={o}/{table}/as_of=1998-06-30/");
        let want = count(&["--table", &t], "SELECT count(*) FROM t");
        let got = count(
            &["--output-dir", &o],
            &format!("SELECT count(*) FROM {table}"),
        );
        assert_eq!(got, want, "{table}");
    }
}
