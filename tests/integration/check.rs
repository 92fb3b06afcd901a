//! `custval check`: every step planned, nothing written; and job files or
//! parameters it does not know, refused with exit 2 before anything runs.

use crate::common::{data, files_under, Cmd};

#[test]
fn unknown_job_fields_and_parameters_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job.toml");
    std::fs::write(&job, "name = \"x\"\nsteps = []\nbogus = 1\n").unwrap();
    let out = Cmd::custval().arg("check").arg(&job).code(2);
    assert!(out.stderr.contains("bogus"));
    let out = Cmd::custval()
        .args([
            "run",
            "jobs/nightly.toml",
            "--set",
            "nope=1",
            "--input",
            "transactions=x.csv",
        ])
        .code(2);
    assert!(out.stderr.contains("nope"));
}

#[test]
fn check_plans_every_step_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Cmd::custval()
        .current_dir(tmp.path())
        .arg("check")
        .arg(format!("{}/jobs/nightly.toml", env!("CARGO_MANIFEST_DIR")))
        .args([
            "--input",
            &format!("transactions={}", data("cdnow_sample.csv")),
        ])
        .ok();
    // jobs/nightly.toml has 20 steps.
    assert!(out.stdout.contains("20 steps planned"), "{}", out.stdout);
    assert!(files_under(tmp.path()).is_empty());
}

/// SPEC: a broken step in `check` is invalid SQL, exit 2, and the error
/// names the step and its file, printed once.
#[test]
fn check_exits_2_on_a_broken_sql_step() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.sql"), "SELECT no_such_column FROM t\n").unwrap();
    std::fs::write(tmp.path().join("t.csv"), "x\n1\n").unwrap();
    let job = tmp.path().join("job.toml");
    std::fs::write(
        &job,
        "name = \"broken\"\n[inputs.t]\nkind = \"table\"\nurl = \"t.csv\"\n\
         [[steps]]\nname = \"a\"\nsql = \"a.sql\"\n",
    )
    .unwrap();
    let out = Cmd::custval().arg("check").arg(&job).code(2);
    assert!(
        out.stderr.contains("step a (a.sql)") && out.stderr.contains("no_such_column"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("step a (a.sql)").count(),
        1,
        "printed once: {}",
        out.stderr
    );
}

/// SPEC.md: a missing job file is exit 2 (fix, do not retry), for `run` and
/// `check` alike, and the message names the file.
#[test]
fn a_missing_job_file_exits_2_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("no-such-job.toml");
    for cmd in ["run", "check"] {
        let out = Cmd::custval().arg(cmd).arg(&job).code(2);
        assert!(out.stderr.contains("no-such-job.toml"), "{}", out.stderr);
        assert_eq!(
            out.stderr.matches("custval: error").count(),
            1,
            "{}",
            out.stderr
        );
    }
}

/// `check` validates a sample of each transactions input: all of the CDNOW
/// sample (fewer rows than the default 10,000; the count is the CSV's own
/// lines less the header), none rejected. A job without a transactions
/// input has nothing to sample and prints no sample line.
#[test]
fn check_validates_a_sample_of_the_transactions_only() {
    let rows = std::fs::read_to_string(data("cdnow_sample.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    let out = Cmd::custval()
        .args(["check", "jobs/clv.toml", "--input"])
        .arg(format!("transactions={}", data("cdnow_sample.csv")))
        .ok()
        .stdout;
    assert!(
        out.contains(&format!(
            "sample of the first 10000 rows per input: {rows} rows read, 0 rejected (0.00%)"
        )),
        "{out}"
    );
    let out = Cmd::custval()
        .args(["check", "jobs/subscriptions.toml", "--input"])
        .arg(format!(
            "subscriptions={}",
            data("subscriptions_regular.csv")
        ))
        .ok()
        .stdout;
    assert!(
        out.contains("4 steps planned") && !out.contains("sample"),
        "{out}"
    );
}
