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
    assert!(out.stdout.contains("17 steps planned"));
    assert!(files_under(tmp.path()).is_empty());
}
