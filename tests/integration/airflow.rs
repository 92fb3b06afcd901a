//! The Airflow DAG (`jobs/airflow/custval_nightly.py`, and the one `custval
//! init` writes from it) loaded in a real Airflow by
//! `tests/airflow/check_dag.py`: no import errors or deprecation warnings,
//! the as-of date of a known run (the interval 2024-03-01..2024-03-02 gives
//! `--as-of 2024-03-01`), `execution_timeout`, and the exit-code mapping.
//! The Airflows are the ones `scripts/test` installs, 3.1.5
//! (`CUSTVAL_TEST_AIRFLOW_PYTHON`) and 2.11.0 (`CUSTVAL_TEST_AIRFLOW2_PYTHON`,
//! the import fallback); without them the tests fail and say so.

use std::path::Path;

use crate::common::Cmd;

/// The python of the Airflow named by `var`.
fn airflow_python(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run scripts/test, which installs Airflow \
             (tests/airflow/constraints-*.txt) and sets it to that Airflow's python"
        )
    })
}

/// Run the checks on `dag` in the Airflow of `var`; they print one line
/// each and `N passed, 0 failed`.
fn check_dag(var: &str, dag: &Path) {
    let python = airflow_python(var);
    assert!(
        Path::new(&python).is_file(),
        "{python} (CUSTVAL_TEST_AIRFLOW_PYTHON) does not exist: scripts/test installs it"
    );
    let home = tempfile::tempdir().unwrap();
    let run = Cmd::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/airflow/check_dag.py"))
        .arg(dag)
        // A fresh AIRFLOW_HOME: no config or metadata database of the machine.
        .env("AIRFLOW_HOME", home.path())
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .run();
    assert_eq!(run.code(), Some(0), "{}", run.report());
    // 18 checks, listed in check_dag.py's docstring; all must have run.
    assert!(
        run.stdout.contains("18 passed, 0 failed"),
        "{}",
        run.report()
    );
}

fn repository_dag() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/airflow/custval_nightly.py")
}

#[test]
fn the_airflow_dag_loads_and_renders_the_last_complete_day_in_airflow_3() {
    check_dag("CUSTVAL_TEST_AIRFLOW_PYTHON", &repository_dag());
}

#[test]
fn the_airflow_dag_loads_and_renders_the_last_complete_day_in_airflow_2() {
    check_dag("CUSTVAL_TEST_AIRFLOW2_PYTHON", &repository_dag());
}

#[test]
fn the_starter_projects_dag_loads_and_renders_the_last_complete_day() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = tmp.path().join("shop");
    Cmd::custval().arg("init").arg(&proj).ok();
    check_dag(
        "CUSTVAL_TEST_AIRFLOW_PYTHON",
        &proj.join("airflow/custval_job.py"),
    );
}
