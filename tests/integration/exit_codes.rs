//! Exit codes by cause (README "Exit codes", one test per row of its table
//! of error classes): invalid arguments, job files, parameters, SQL and input
//! data exit 2; output and storage failures exit 1; a failed gate exits 3.
//! Each message names what is wrong; nothing is published on a failure.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{data, files_under, nightly, nightly_cdnow, Cmd};

/// `jobs/nightly.toml` rewritten by `edit`, saved in `dir` with its SQL
/// paths made absolute (the job's paths are relative to the job file).
fn edited_nightly(dir: &Path, edit: impl Fn(String) -> String) -> String {
    let text = std::fs::read_to_string(format!("{}/jobs/nightly.toml", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace(
            "sql = \"../sql/",
            &format!("sql = \"{}/sql/", env!("CARGO_MANIFEST_DIR")),
        );
    let path = dir.join("job.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path.display().to_string()
}

/// No partition of any table was published under `out`.
fn nothing_published(out: &Path) -> bool {
    !files_under(out)
        .iter()
        .any(|p| p.ends_with("_manifest.json") || p.to_string_lossy().contains("_runs"))
}

#[test]
fn a_missing_job_file_exits_2_naming_it() {
    for cmd in ["run", "check"] {
        let out = Cmd::custval()
            .args([cmd, "/no/such/job.toml", "--input", "transactions=x.csv"])
            .code(2);
        assert!(out.stderr.contains("/no/such/job.toml"), "{}", out.stderr);
    }
}

/// A key of `[params]` that nothing reads (a typo of `horizon_months`)
/// is named as an unknown key with the known ones, before anything runs.
#[test]
fn an_unknown_params_key_exits_2_naming_it_and_the_known_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let job = edited_nightly(tmp.path(), |t| {
        t.replace("horizon_months = 12", "horizon_month = 12")
    });
    let out_dir = tmp.path().join("out");
    let run = Cmd::custval()
        .args(["run", &job, "--as-of", "1997-09-30", "--output"])
        .arg(&out_dir)
        .args([
            "--input",
            &format!("transactions={}", data("cdnow_sample.csv")),
        ])
        .code(2);
    assert!(
        run.stderr
            .contains("unknown key in [params]: horizon_month (")
            && run.stderr.contains("known keys: ")
            && run.stderr.contains("horizon_months"),
        "{}",
        run.stderr
    );
    assert!(nothing_published(&out_dir));
}

/// A step that uses a parameter the job does not declare exits 2 naming the
/// parameter and the step, in `run` and in `check` (it used to fail while
/// running as "No value found for placeholder", exit 1).
#[test]
fn an_undeclared_parameter_exits_2_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let job = edited_nightly(tmp.path(), |t| {
        t.lines()
            .filter(|l| !l.starts_with("horizon_months ="))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let input = format!("transactions={}", data("cdnow_sample.csv"));
    let out_dir = tmp.path().join("out").display().to_string();
    let run = ["run", &job, "--as-of", "1997-09-30", "--output", &out_dir];
    for args in [&run[..], &["check", &job][..]] {
        let cmd = args[0];
        let out = Cmd::custval().args(args).args(["--input", &input]).code(2);
        assert!(
            out.stderr.contains("parameter horizon_months: step ")
                && out.stderr.contains("uses $horizon_months")
                && out.stderr.contains("known parameters: "),
            "{cmd}: {}",
            out.stderr
        );
    }
    assert!(nothing_published(&tmp.path().join("out")));
}

#[test]
fn sql_on_an_unknown_table_or_column_exits_2() {
    let table = format!("t={}", data("cdnow_sample.csv"));
    let out = Cmd::custval()
        .args(["sql", "--table", &table, "SELECT * FROM nope"])
        .code(2);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    let out = Cmd::custval()
        .args(["sql", "--table", &table, "SELECT no_such_column FROM t"])
        .code(2);
    assert!(out.stderr.contains("no_such_column"), "{}", out.stderr);
}

/// A web server answering 404 (with an HTML page) to every request; counts
/// the requests.
fn not_found_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = "<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>";
            let _ = write!(
                s,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://{addr}"), count)
}

/// A missing http input: exit 2 with its URL, one request (no retries, no
/// listing), and no HTML of the server's error page in the message.
#[test]
fn a_missing_http_input_exits_2_with_its_url_and_no_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, requests) = not_found_server();
    let url = format!("{base}/exports/tx.csv");
    let t0 = Instant::now();
    let out = nightly(tmp.path(), "1997-09-30", &url).code(2);
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert!(out.stderr.contains(&url), "{}", out.stderr);
    assert!(
        !out.stderr.to_lowercase().contains("<html"),
        "{}",
        out.stderr
    );
    assert_eq!(requests.load(Ordering::SeqCst), 1, "one HEAD, no retries");
}

/// An input file that does not exist is bad input: exit 2 naming it.
#[test]
fn a_missing_input_file_exits_2_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no_such.csv");
    let out = nightly(tmp.path().join("out"), "1997-09-30", missing.display()).code(2);
    assert!(out.stderr.contains("no_such.csv"), "{}", out.stderr);
}

/// An output that cannot be written is a failed run (exit 1, retry), named
/// as the output, never as unreadable input. Tests run as root, which
/// ignores file modes, so the output folder lies under a regular file.
#[test]
fn an_unwritable_output_exits_1_naming_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let out_dir = file.join("out");
    let out = nightly_cdnow(&out_dir, "1997-09-30").code(1);
    assert!(out.stderr.contains("file.txt/out"), "{}", out.stderr);
    assert!(!out.stderr.contains("input"), "{}", out.stderr);
    // A table folder that is a regular file: the lock and the steps pass,
    // publishing that table fails; no table of the run is published.
    let out_dir = tmp.path().join("out2");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("retention_rates"), "not a folder").unwrap();
    let out = nightly_cdnow(&out_dir, "1997-09-30").code(1);
    assert!(out.stderr.contains("retention_rates"), "{}", out.stderr);
    assert!(!out.stderr.contains("input"), "{}", out.stderr);
    assert!(nothing_published(&out_dir));
}

/// An object store that does not answer: exit 1 (retry), naming the URL.
#[test]
fn a_store_that_is_down_exits_1() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = nightly_cdnow("s3://bucket/out/", "1997-09-30")
        .env("AWS_ENDPOINT", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("CUSTVAL_STORE_MAX_RETRIES", "0")
        .env("CUSTVAL_STORE_CONNECT_TIMEOUT_SECS", "2")
        .code(1);
    assert!(out.stderr.contains("s3://bucket/out/"), "{}", out.stderr);
}

/// A failed data-quality gate exits 3 and publishes nothing.
#[test]
fn a_failed_gate_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("tx.csv");
    let mut text = std::fs::read_to_string(data("cdnow_sample.csv")).unwrap();
    text.push_str("1,1997-01-01,1,not-a-number\n");
    std::fs::write(&csv, text).unwrap();
    let out_dir = tmp.path().join("out");
    let out = nightly(&out_dir, "1997-09-30", csv.display())
        .args(["--set", "max_rejected_fraction=0"])
        .code(3);
    assert!(out.stderr.contains("data-quality gate"), "{}", out.stderr);
    assert!(nothing_published(&out_dir));
}
