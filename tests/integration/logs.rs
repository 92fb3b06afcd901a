//! A run's log as a scheduler's task log sees it: stderr piped, the default
//! verbosity; one line per step and one summary line, no terminal colour
//! codes in text, one JSON object per line in JSON, nothing with `-q`.

use crate::common::{nightly_cdnow, read_json};

/// The step names of the shipped nightly job, read from its job file (the
/// independent source of what the log must name).
fn nightly_steps() -> Vec<String> {
    let text = std::fs::read_to_string("jobs/nightly.toml").unwrap();
    let mut names = Vec::new();
    let mut in_step = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_step = line == "[[steps]]";
        } else if in_step {
            if let Some(v) = line.strip_prefix("name = ") {
                names.push(v.trim_matches('"').to_string());
                in_step = false;
            }
        }
    }
    assert!(names.len() > 3, "{names:?}");
    names
}

#[test]
fn a_piped_text_log_has_no_colour_and_a_line_per_step_and_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report.json");
    let run = nightly_cdnow(tmp.path().join("out"), "1997-09-30")
        .args(["--log-format", "text", "--report"])
        .arg(&report)
        .ok();
    let err = &run.stderr;
    assert!(!err.contains("\x1b["), "ANSI codes in a pipe:\n{err}");
    let done: Vec<&str> = err.lines().filter(|l| l.contains("step done")).collect();
    let steps = nightly_steps();
    assert_eq!(done.len(), steps.len(), "{err}");
    for (line, name) in done.iter().zip(&steps) {
        assert!(line.contains(&format!("step={name} ")), "{line} / {name}");
        // A materialized step counts its rows; a view's rows are counted by
        // the steps that read it.
        assert!(line.contains("seconds="), "{line}");
        assert!(
            line.contains("materialized=false") || line.contains("rows_out="),
            "{line}"
        );
    }
    let summary: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("run succeeded"))
        .collect();
    assert_eq!(summary.len(), 1, "{err}");
    // The summary's row count is the report's tables' rows added up.
    let r = read_json(&report);
    let rows: u64 = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rows"].as_u64().unwrap())
        .sum();
    assert!(
        summary[0].contains(&format!("rows={rows} ")),
        "{}",
        summary[0]
    );
    // Nothing else at the default level on a successful run.
    assert_eq!(err.lines().count(), steps.len() + 1, "{err}");
}

#[test]
fn a_piped_json_log_has_the_same_lines_and_quiet_has_none() {
    let tmp = tempfile::tempdir().unwrap();
    let run = nightly_cdnow(tmp.path().join("out"), "1997-09-30")
        .args(["--log-format", "json"])
        .ok();
    let lines: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let steps: Vec<&str> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "step done")
        .filter_map(|l| l["fields"]["step"].as_str())
        .collect();
    assert_eq!(steps, nightly_steps(), "{}", run.stderr);
    let summaries = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "run succeeded")
        .count();
    assert_eq!(summaries, 1, "{}", run.stderr);
    let quiet = nightly_cdnow(tmp.path().join("out2"), "1997-09-30")
        .arg("-q")
        .ok();
    assert_eq!(quiet.stderr, "");
}
