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
    // Off a terminal nothing but the result lines (and no log below warn).
    let out = nightly_cdnow(tmp.path().join("out2"), "1997-09-30").run();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
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
