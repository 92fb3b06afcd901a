//! custval on a terminal (a pseudo-terminal from util-linux `script`):
//! progress spinners, and the interactive SQL shell with its history.

use std::path::Path;
use std::process::Stdio;

use crate::common::{data, nightly_cdnow, Cmd};

/// Run `cmd` on a pseudo-terminal (util-linux `script`), typing `lines` one
/// by one; returns everything the terminal showed.
fn on_terminal(cmd: &str, lines: &[&str], home: &Path) -> String {
    use std::io::Write;
    let log = home.join("terminal.txt");
    let mut child = Cmd::new("script")
        .args(["-qec", cmd])
        .arg(&log)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HOME", home)
        .env_remove("RUST_LOG")
        .spawn(Stdio::null(), Stdio::inherit());
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
    // Off a terminal no spinner: only the default-level log lines, one per
    // step and the run's summary (tests/integration/logs.rs checks them).
    let out = nightly_cdnow(tmp.path().join("out2"), "1997-09-30").run();
    assert!(!out.stderr.contains("\u{1b}"), "{}", out.stderr);
    for line in out.stderr.lines() {
        assert!(
            line.contains("step done") || line.contains("run succeeded"),
            "{line}"
        );
    }
}

#[test]
fn the_sql_shell_runs_queries_meta_commands_and_keeps_history() {
    let tmp = tempfile::tempdir().unwrap();
    nightly_cdnow(tmp.path().join("out"), "1997-09-30").ok();
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

/// Ctrl-C during a long query cancels it and returns to the prompt: the
/// next query in the same session runs (41 + 1 is 42 by arithmetic), and the
/// session ends at `\q` long before the long query could have finished
/// (counting 10^11 rows takes minutes even in a release build).
#[test]
fn ctrl_c_cancels_the_running_query_and_the_shell_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let cmd = format!("{} sql", env!("CARGO_BIN_EXE_custval"));
    let t0 = std::time::Instant::now();
    let shown = on_terminal(
        &cmd,
        &[
            "SELECT count(*) AS c FROM generate_series(1, 100000000000);",
            "\u{3}",
            "SELECT 41 + 1 AS answer;",
            "\\q",
        ],
        tmp.path(),
    );
    assert!(shown.contains("query cancelled"), "{shown}");
    assert!(shown.contains("| 42 "), "{shown}");
    assert!(!shown.contains("100000000000 |"), "{shown}");
    assert!(t0.elapsed().as_secs() < 60, "{:?}", t0.elapsed());
    let history = std::fs::read_to_string(tmp.path().join(".custval_history")).unwrap();
    assert!(history.contains("SELECT 41 + 1 AS answer;"), "{history}");
}
