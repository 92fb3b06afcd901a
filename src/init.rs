//! `custval init DIR`: a project of one's own. `job.toml` (the nightly job
//! with its steps built into the binary and every mapping option commented,
//! `jobs/starter/job.toml`), `airflow/custval_job.py` (the repository's DAG,
//! `jobs/airflow/custval_nightly.py`, pointed at that job) and `README.md`
//! (the published tables and their columns, `jobs/starter/README.md`).
//! Existing files are never overwritten.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The starter job: `jobs/nightly.toml` with `builtin:` steps.
pub const STARTER_JOB: &str = include_str!("../jobs/starter/job.toml");

/// The starter project's README: the published tables and their columns.
pub const STARTER_README: &str = include_str!("../jobs/starter/README.md");

/// The repository's Airflow DAG, which the starter's is made from.
const NIGHTLY_DAG: &str = include_str!("../jobs/airflow/custval_nightly.py");

/// The job path the repository's DAG runs by default, replaced by the
/// starter job's absolute path.
const DAG_DEFAULT_JOB: &str = "\"/opt/custval/jobs/nightly.toml\"";

/// The files `init` writes into `dir`, with their text. `dir` should be
/// absolute: the DAG names the job by that path.
pub fn starter_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let job = dir.join("job.toml");
    let dag = NIGHTLY_DAG.replace(DAG_DEFAULT_JOB, &format!("{:?}", job.display().to_string()));
    vec![
        (job, STARTER_JOB.to_string()),
        (dir.join("airflow").join("custval_job.py"), dag),
        (dir.join("README.md"), STARTER_README.to_string()),
    ]
}

/// Write the starter project into `dir` (created if absent) and return the
/// files written. [`Error::FileExists`] (exit 2) when any of them exists:
/// then nothing is written. [`Error::Io`] when a file cannot be written.
pub fn init(dir: &Path) -> Result<Vec<PathBuf>> {
    let dir = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    let files = starter_files(&dir);
    if let Some((path, _)) = files.iter().find(|(p, _)| p.exists()) {
        return Err(Error::FileExists { path: path.clone() });
    }
    let mut written = Vec::new();
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        // create_new: a file that appeared since the check is not replaced.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::FileExists { path: path.clone() },
                _ => Error::io(&path, e),
            })?;
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(|e| Error::io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Job;

    /// The starter job is the nightly job: the same steps (SQL by file
    /// name, materialized alike), gates, outputs and parameters, with every
    /// SQL file built in.
    #[test]
    fn the_starter_job_is_the_nightly_job_with_builtin_steps() {
        let starter = Job::parse(Path::new("job.toml"), STARTER_JOB, |f| {
            crate::builtin::resolve(f)
                .unwrap_or_else(|| Err(format!("{f} is not builtin:")))
                .map(str::to_string)
                .map_err(|m| Error::job("job.toml", m))
        })
        .unwrap();
        let nightly = crate::demo::nightly_job().unwrap();
        let steps = |j: &Job| -> Vec<(String, String, bool)> {
            j.spec
                .steps
                .iter()
                .map(|s| {
                    let file = s.sql.rsplit([':', '/']).next().unwrap().to_string();
                    (s.name.clone(), file, s.materialize)
                })
                .collect()
        };
        assert_eq!(steps(&starter), steps(&nightly));
        let gates = |j: &Job| -> Vec<(String, Option<String>)> {
            j.spec
                .gates
                .iter()
                .map(|g| (g.name.clone(), g.after.clone()))
                .collect()
        };
        assert_eq!(gates(&starter), gates(&nightly));
        let outputs = |j: &Job| -> Vec<(String, String)> {
            j.spec
                .outputs
                .iter()
                .map(|o| (o.table.clone(), o.from.clone()))
                .collect()
        };
        assert_eq!(outputs(&starter), outputs(&nightly));
        assert_eq!(starter.params, nightly.params);
        for (a, b) in starter.spec.steps.iter().zip(&nightly.spec.steps) {
            assert_eq!(starter.sql[&a.sql], nightly.sql[&b.sql], "{}", a.name);
        }
    }

    #[test]
    fn the_dag_runs_the_starter_job() {
        assert!(
            NIGHTLY_DAG.contains(DAG_DEFAULT_JOB),
            "the DAG's default job moved"
        );
        let files = starter_files(Path::new("/srv/shop"));
        let dag = &files[1].1;
        assert!(dag.contains("\"/srv/shop/job.toml\""), "{dag}");
        assert!(!dag.contains(DAG_DEFAULT_JOB));
    }

    #[test]
    fn init_refuses_to_overwrite_and_writes_nothing_then() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("README.md"), "mine").unwrap();
        let err = init(tmp.path()).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("README.md"), "{err}");
        assert!(!tmp.path().join("job.toml").exists());
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("README.md")).unwrap(),
            "mine"
        );
    }
}
