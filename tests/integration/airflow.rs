//! The Airflow DAG (`jobs/airflow/custval_nightly.py`, and the one `custval
//! init` writes from it) loaded in a real Airflow by
//! `tests/airflow/check_dag.py`: no import errors or deprecation warnings,
//! the as-of date of a known run (the interval 2024-03-01..2024-03-02 gives
//! `--as-of 2024-03-01`), `execution_timeout`, and the exit-code mapping.
//! The Airflow is the one `scripts/test` installs
//! (`CUSTVAL_TEST_AIRFLOW_PYTHON`); without it the test fails and says so.

use std::path::Path;

use crate::common::Cmd;

fn airflow_python() -> String {
    std::env::var("CUSTVAL_TEST_AIRFLOW_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CUSTVAL_TEST_AIRFLOW_PYTHON is not set: run scripts/test, which installs Airflow \
             (tests/airflow/constraints-*.txt) and sets it to that Airflow's python"
        )
    })
}

/// Run the checks on `dag`; they print one line each and `N passed, 0 failed`.
fn check_dag(dag: &Path) {
    let python = airflow_python();
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
    // 17 checks, listed in check_dag.py's docstring; all must have run.
    assert!(
        run.stdout.contains("17 passed, 0 failed"),
        "{}",
        run.report()
    );
}

#[test]
fn the_airflow_dag_loads_and_renders_the_last_complete_day() {
    check_dag(&Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/airflow/custval_nightly.py"));
}

#[test]
fn the_starter_projects_dag_loads_and_renders_the_last_complete_day() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = tmp.path().join("shop");
    Cmd::custval().arg("init").arg(&proj).ok();
    check_dag(&proj.join("airflow/custval_job.py"));
}
