//! `custval sql` off a terminal: read-only unless allowed, Parquet output,
//! the query from stdin, and a reader that goes away.

use std::process::Stdio;

use crate::common::{sql_on_table, Cmd};

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
