//! What a run reports about itself: JSON log lines per step, the run
//! report, the manifests' copy of it, OpenLineage events and the HTML
//! report (rendered in headless Chromium).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{data, read_json, Cmd};

/// How long headless Chromium may take for one page (it can hang instead
/// of failing).
const CHROMIUM_LIMIT: Duration = Duration::from_secs(300);

/// Operations: JSON log lines per step, the run report, OpenLineage events
/// and the HTML report, from one CDNOW run with a holdout.
#[test]
fn logs_report_lineage_and_html_report() {
    let tmp = tempfile::tempdir().unwrap();
    let lineage = tmp.path().join("lineage.jsonl");
    let report = tmp.path().join("report.json");
    let out = Cmd::custval()
        .args([
            "-v",
            "--log-format",
            "json",
            "run",
            "jobs/nightly.toml",
            "--as-of",
            "1998-06-30",
            "--set",
            "holdout_days=273",
        ])
        .args([
            "--input",
            &format!("transactions={}", data("cdnow_sample.csv")),
            "--output",
        ])
        .arg(tmp.path().join("out"))
        .arg("--report")
        .arg(&report)
        .arg("--lineage")
        .arg(&lineage)
        .ok();
    // Every stderr line is JSON; each step has one line with its duration.
    let lines: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let steps: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "step done")
        .collect();
    assert_eq!(steps.len(), 19, "one per step of jobs/nightly.toml");
    assert!(steps
        .iter()
        .all(|s| s["fields"]["seconds"].is_number() && s["fields"]["step"].is_string()));
    println!(
        "a JSON log line: {}",
        serde_json::to_string(steps[4]).unwrap()
    );
    // The run report.
    let r = read_json(&report);
    assert_eq!(r["status"], "success");
    assert_eq!(r["custval_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["steps"].as_array().unwrap().len(), 19);
    assert_eq!(
        r["tables"].as_array().unwrap().len(),
        9,
        "the outputs of jobs/nightly.toml"
    );
    assert_eq!(r["parameters"]["holdout_days"], 273);
    assert_eq!(r["quality"]["rows_read"], 6919);
    assert!(r["model_fit"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["model"] == "bgnbd"));
    // The same facts in each manifest.
    let m = read_json(
        &tmp.path()
            .join("out/customer_tiers/as_of=1998-06-30/_manifest.json"),
    );
    assert_eq!(m["run_id"], r["run_id"]);
    assert_eq!(m["parameters"], r["parameters"]);
    assert_eq!(m["quality"], r["quality"]);
    assert_eq!(m["model_fit"], r["model_fit"]);
    assert_eq!(m["steps"].as_array().unwrap().len(), 19);
    // Input fingerprints are recorded once per run, in the run record; the
    // manifest counts them.
    let rec = read_json(&tmp.path().join("out/_runs/nightly/as_of=1998-06-30.json"));
    assert_eq!(rec["run_id"], r["run_id"]);
    let files = rec["inputs"][0]["files"].as_array().unwrap();
    assert!(files[0]["size"].as_u64().unwrap() > 0, "input fingerprints");
    assert_eq!(m["inputs"][0]["file_count"], files.len());
    assert!(m["inputs"][0].get("files").is_none());
    println!(
        "run report excerpt: {}",
        serde_json::to_string(&r["tables"][0]).unwrap()
    );
    // OpenLineage: START then COMPLETE, with input and output datasets.
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&lineage)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["eventType"], "START");
    assert_eq!(events[1]["eventType"], "COMPLETE");
    assert_eq!(events[0]["run"]["runId"], events[1]["run"]["runId"]);
    assert!(events[0]["inputs"][0]["name"]
        .as_str()
        .unwrap()
        .ends_with("cdnow_sample.csv"));
    // One output dataset per table of jobs/nightly.toml.
    assert_eq!(events[1]["outputs"].as_array().unwrap().len(), 9);
    assert_eq!(events[1]["job"]["name"], "nightly");
    // A failing run sends FAIL.
    Cmd::custval()
        .args([
            "run",
            "jobs/nightly.toml",
            "--input",
            "transactions=/nonexistent/x.csv",
            "--output",
        ])
        .arg(tmp.path().join("out2"))
        .arg("--lineage")
        .arg(&lineage)
        .fails();
    let last: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&lineage)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["eventType"], "FAIL");
    assert!(last["run"]["facets"]["errorMessage"]["message"]
        .as_str()
        .unwrap()
        .contains("x.csv"));
    // The HTML report: self-contained, every chart present.
    let html_path = tmp
        .path()
        .join("out/_reports/nightly/as_of=1998-06-30/report.html");
    assert_eq!(
        r["report_html"].as_str().unwrap(),
        format!("file://{}", html_path.display())
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    for id in ["lorenz", "cohorts", "tiers", "clv", "holdout"] {
        assert!(
            html.contains(&format!("<svg id=\"{id}\"")),
            "chart {id} missing"
        );
    }
    assert!(
        !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );
    render_in_chromium(&html_path, tmp.path());
}

/// Render the report in headless Chromium (installed by scripts/test), check
/// the browser sees every chart, and take a screenshot.
fn render_in_chromium(html: &Path, tmp: &Path) {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .unwrap_or_else(|| panic!("chromium is not installed: run scripts/test, which installs it from Debian's packages"));
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let profile = tmp.join("chromium-profile");
    let url = format!("file://{}", html.display());
    let dom = Cmd::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .timeout(CHROMIUM_LIMIT)
        .run()
        .stdout;
    for id in ["lorenz", "cohorts", "tiers", "clv", "holdout"] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "Chromium does not see chart {id}"
        );
    }
    assert!(
        dom.contains("polyline") && dom.contains("class=\"cell\"") && dom.contains("class=\"bar\"")
    );
    let png = tmp.join("report.png");
    Cmd::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--hide-scrollbars", "--window-size=1200,1400"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .timeout(CHROMIUM_LIMIT)
        .ok();
    let size = std::fs::metadata(&png).unwrap().len();
    assert!(size > 20_000, "screenshot of {size} bytes looks blank");
    if let Ok(dir) = std::env::var("CUSTVAL_SCREENSHOT_DIR") {
        std::fs::copy(&png, Path::new(&dir).join("report.png")).unwrap();
    }
}
