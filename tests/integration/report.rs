//! What a run reports about itself: JSON log lines per step, the run
//! report, the manifests' copy of it, OpenLineage events and the HTML
//! report (rendered in headless Chromium).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{data, json_rows, nightly_cdnow, read_json, Cmd};

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
    assert_eq!(steps.len(), 20, "one per step of jobs/nightly.toml");
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
    assert_eq!(r["steps"].as_array().unwrap().len(), 20);
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
    assert_eq!(m["steps"].as_array().unwrap().len(), 20);
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
    for id in CHARTS {
        assert!(
            html.contains(&format!("<svg id=\"{id}\"")),
            "chart {id} missing"
        );
    }
    assert!(!html.contains("<script"), "no scripts");
    // SVG namespaces are names, not fetched; nothing else may point outside.
    let outside = html
        .replace("http://www.w3.org/2000/svg", "")
        .replace("http://www.w3.org/1999/xlink", "");
    assert!(
        !outside.contains("http://") && !outside.contains("https://"),
        "self-contained"
    );
    assert!(
        html.contains("Value measure: <b>revenue</b>"),
        "the headline names the value measure"
    );
    assert_numbers_come_from_the_tables(&html, &tmp.path().join("out"));
    render_in_chromium(&html_path, tmp.path());
}

/// The charts of report.html, by the id of their `<svg>` (src/report/mod.rs
/// `CHART_IDS`).
const CHARTS: [&str; 9] = [
    "lorenz",
    "cohorts",
    "tiers",
    "clv",
    "holdout",
    "tracking",
    "p_alive",
    "migrations",
    "scenarios",
];

/// The numbers written on the charts are the published tables' numbers:
/// each tier's customer count on its bar, the tracking plot's actual total
/// equals the customers' frequency summed (customer_tiers), the holdout
/// table's customers add up to the customers with a calibration period, and
/// the migrations of a first run all come from "(none)".
fn assert_numbers_come_from_the_tables(html: &str, out: &Path) {
    let as_of = "1998-06-30";
    let tiers = json_rows(
        out,
        "customer_tiers",
        as_of,
        "SELECT tier, count(*) AS n, CAST(sum(frequency) AS BIGINT) AS f FROM t GROUP BY tier",
    );
    let tiers_svg = svg_of(html, "tiers");
    let mut customers = 0;
    let mut frequency = 0;
    for t in &tiers {
        let n = t["n"].as_i64().unwrap();
        customers += n;
        frequency += t["f"].as_i64().unwrap();
        assert!(
            has_text(tiers_svg, &thousands(n)),
            "count {n} of tier {} not on its bar",
            t["tier"]
        );
        assert!(has_text(tiers_svg, t["tier"].as_str().unwrap()));
    }
    // Every customer of the CDNOW sample first bought in early 1997, before
    // the calibration end (1997-09-30): all are in the tracking plot.
    assert!(
        html.contains(&format!(
            "At the as-of date: actual {} repeat purchases",
            thousands(frequency)
        )),
        "tracking total is not the summed frequency {frequency}"
    );
    println!("report: {customers} customers, {frequency} repeat purchases (tracking plot's last actual point)");
    let migrations = svg_of(html, "migrations");
    assert!(
        has_text(migrations, "(none)"),
        "a first run has no previous tier"
    );
    // A first run: every customer moves from (none) to tonight's tier.
    for t in &tiers {
        assert!(has_text(migrations, &thousands(t["n"].as_i64().unwrap())));
    }
    for (id, word) in [
        ("p_alive", "P(alive)"),
        ("cohorts", "share active"),
        ("migrations", "share of row"),
    ] {
        assert!(
            has_text(svg_of(html, id), word),
            "heatmap legend {word} missing"
        );
    }
}

/// Whether an SVG has a `<text>` element reading `t` (plotters writes the
/// text on its own line).
fn has_text(svg: &str, t: &str) -> bool {
    svg.contains(&format!(">\n{t}\n</text>"))
}

/// The `<svg id="{id}">...</svg>` element of the page.
fn svg_of<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<svg id=\"{id}\""))
        .unwrap_or_else(|| panic!("no chart {id}"));
    let end = html[start..].find("</svg>").unwrap();
    &html[start..start + end]
}

/// 12345 -> "12,345", as the report writes counts.
fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// Without `holdout_days` the page says so where the calibration/holdout
/// plot would be, and draws the other charts. A second night's migrations
/// chart writes each row of its `tier_transitions` table in its cell.
#[test]
fn report_without_a_holdout_says_so_and_shows_migrations() {
    let tmp = tempfile::tempdir().unwrap();
    nightly_cdnow(tmp.path(), "1998-06-29").ok();
    nightly_cdnow(tmp.path(), "1998-06-30").ok();
    let html = std::fs::read_to_string(
        tmp.path()
            .join("_reports/nightly/as_of=1998-06-30/report.html"),
    )
    .unwrap();
    assert!(!html.contains("<svg id=\"holdout\""));
    assert!(
        html.contains("id=\"holdout-none\">This run has no holdout (holdout_days = 0)"),
        "the page must say why there is no holdout plot"
    );
    for id in CHARTS.iter().filter(|c| **c != "holdout") {
        assert!(
            html.contains(&format!("<svg id=\"{id}\"")),
            "chart {id} missing"
        );
    }
    assert!(html.contains("BG/NBD expected (full fit)"));
    let migrations = svg_of(&html, "migrations");
    let rows = json_rows(
        tmp.path(),
        "tier_transitions",
        "1998-06-30",
        "SELECT coalesce(previous_tier, '(none)') AS p, tier, customers FROM t",
    );
    assert!(
        rows.iter().any(|r| r["p"] != "(none)"),
        "a second night has previous tiers"
    );
    for r in &rows {
        let n = r["customers"].as_i64().unwrap();
        assert!(has_text(migrations, &thousands(n)), "{r} not in its cell");
        assert!(
            has_text(migrations, r["p"].as_str().unwrap()),
            "{r}: row label"
        );
    }
}

/// With `value = margin` the headline says margin; on five customers,
/// whose fits need `allow_unconverged`, every chart is still drawn or
/// replaced by the sentence saying why (`id="NAME-none"`).
#[test]
fn report_names_the_margin_measure_and_survives_a_tiny_run() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("tx.csv");
    let mut text = String::from("customer_id,order_ts,amount,margin\n");
    for (i, c) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        for m in 0..=i {
            text.push_str(&format!(
                "{c},2024-0{}-1{i},{}.0,{}.5\n",
                m + 1,
                10 * (i + 1),
                i + 1
            ));
        }
    }
    std::fs::write(&csv, text).unwrap();
    // The nightly job with the margin column mapped, beside a copy of sql/.
    let jobs = tmp.path().join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let job = std::fs::read_to_string("jobs/nightly.toml")
        .unwrap()
        .replacen(
            "[inputs.transactions.columns]\n",
            "[inputs.transactions.columns]\nmargin = \"margin\"\n",
            1,
        );
    std::fs::write(jobs.join("nightly.toml"), job).unwrap();
    let sql = tmp.path().join("sql");
    std::fs::create_dir_all(&sql).unwrap();
    for f in std::fs::read_dir("sql").unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, sql.join(f.file_name().unwrap())).unwrap();
    }
    let out = tmp.path().join("out");
    crate::common::run_job(
        jobs.join("nightly.toml"),
        &out,
        "2024-05-31",
        &format!("transactions={}", csv.display()),
    )
    .args(["--set", "value=margin", "--set", "allow_unconverged=true"])
    .args(["--set", "max_staleness_days=30"])
    .ok();
    let html = std::fs::read_to_string(out.join("_reports/nightly/as_of=2024-05-31/report.html"))
        .expect("report.html written");
    assert!(html.contains("Value measure: <b>margin</b>"), "headline");
    for id in CHARTS {
        assert!(
            html.contains(&format!("<svg id=\"{id}\""))
                || html.contains(&format!("id=\"{id}-none\"")),
            "chart {id} neither drawn nor explained"
        );
    }
}

/// Render the report in headless Chromium (installed by scripts/test), check
/// the browser sees every chart, that nothing overflows the window
/// horizontally at three widths, and take a screenshot.
fn render_in_chromium(html: &Path, tmp: &Path) {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .unwrap_or_else(|| panic!("chromium is not installed: run scripts/test, which installs it from Debian's packages"));
    let profile = tmp.join("chromium-profile");
    let url = format!("file://{}", html.display());
    let dom = Cmd::new(chromium)
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .timeout(CHROMIUM_LIMIT)
        .run()
        .stdout;
    for id in CHARTS {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "Chromium does not see chart {id}"
        );
    }
    assert!(dom.contains("<polyline") && dom.contains("<rect") && dom.contains("<text"));
    for width in [1200, 760, 420] {
        let layout = layout_at(chromium, html, tmp, width);
        let viewport = layout["viewport"].as_f64().unwrap();
        assert!(
            layout["scroll"].as_f64().unwrap() <= viewport,
            "horizontal overflow at {width} px: {layout}"
        );
        for id in CHARTS {
            let r = &layout["charts"][id];
            let (right, w, h) = (
                r[1].as_f64().unwrap(),
                r[2].as_f64().unwrap(),
                r[3].as_f64().unwrap(),
            );
            assert!(
                w > 100.0 && h > 60.0,
                "chart {id} not drawn at {width} px: {r}"
            );
            assert!(right <= viewport, "chart {id} overflows at {width} px: {r}");
        }
        println!("layout at {width} px: {layout}");
    }
    let png = tmp.join("report.png");
    Cmd::new(chromium)
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--hide-scrollbars", "--window-size=1200,3000"])
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

/// Flags of every headless Chromium run (and of docs/report.png).
const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The page's layout in a window `width` pixels wide, measured by the
/// browser: a copy of the report with a script appended (the report itself
/// has none) writes the viewport width, the document's scroll width and each
/// chart's [left, right, width, height] into the DOM, which Chromium dumps.
fn layout_at(chromium: &str, html: &Path, tmp: &Path, width: u32) -> serde_json::Value {
    const PROBE: &str = "<script>(function(){var d=document.documentElement;\
var o={viewport:d.clientWidth,scroll:d.scrollWidth,charts:{}};\
document.querySelectorAll('svg[id]').forEach(function(s){var r=s.getBoundingClientRect();\
o.charts[s.id]=[r.left,r.right,r.width,r.height];});\
var p=document.createElement('pre');p.id='layout';p.textContent=JSON.stringify(o);\
document.body.appendChild(p);})();</script>";
    let page = std::fs::read_to_string(html)
        .unwrap()
        .replace("</body>", &format!("{PROBE}</body>"));
    let probe = tmp.join(format!("layout-{width}.html"));
    std::fs::write(&probe, page).unwrap();
    let dom = Cmd::new(chromium)
        .args(CHROMIUM_FLAGS)
        .arg(format!(
            "--user-data-dir={}",
            tmp.join("chromium-profile").display()
        ))
        .arg(format!("--window-size={width},1000"))
        .args(["--dump-dom", &format!("file://{}", probe.display())])
        .timeout(CHROMIUM_LIMIT)
        .run()
        .stdout;
    let start = dom
        .find("<pre id=\"layout\">")
        .expect("the layout probe ran")
        + "<pre id=\"layout\">".len();
    let end = dom[start..].find("</pre>").unwrap();
    serde_json::from_str(&dom[start..start + end]).unwrap()
}
