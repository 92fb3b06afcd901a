//! `custval run --select/--exclude/--dry-run` on the nightly job and the
//! CDNOW sample, end to end through the harness. Expected values come from
//! a whole run of the same job, date and data (the same rows, computed by
//! the steps as they run without a selection), from the job file's
//! `[[steps]]` and `[[outputs]]`, and from the SQL files' `$` parameters.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::{
    assert_same_rows_within, files_under, nightly_cdnow, read_json, table_lines, Cmd,
};

const AS_OF: &str = "1997-09-30";

/// The nightly job's published tables, from `jobs/nightly.toml`'s `[[outputs]]`.
const ALL_TABLES: [&str; 9] = [
    "customer_tiers",
    "model_fit",
    "concentration",
    "retention_cohorts",
    "retention_rates",
    "customer_category_share",
    "rejected_rows",
    "tier_transitions",
    "retention_scenarios",
];

fn record(out: &Path) -> serde_json::Value {
    read_json(&out.join(format!("_runs/nightly/as_of={AS_OF}.json")))
}

fn manifest_run(out: &Path, table: &str) -> String {
    let m = read_json(&out.join(format!("{table}/as_of={AS_OF}/_manifest.json")));
    m["run_id"].as_str().unwrap().to_string()
}

fn rows(out: &Path, table: &str) -> Vec<String> {
    let base = format!("{}/", out.display());
    table_lines(&[], &base, table, AS_OF)
}

/// `--select customer_months+` after a whole run: publishes the two
/// retention tables (customer_months' dependants, by their SQL), with the
/// same rows as the whole run; runs the quality and model steps the gates
/// read, but not the category or wallet steps; leaves the other tables as
/// the whole run published them, carried in the run record with that
/// run's id. A whole run afterwards takes every table back to one run.
#[test]
fn select_publishes_only_the_selected_outputs_and_keeps_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    nightly_cdnow(&out, AS_OF).args(["-q"]).ok();
    let first = record(&out)["run_id"].as_str().unwrap().to_string();
    let before: Vec<Vec<String>> = ALL_TABLES.iter().map(|t| rows(&out, t)).collect();

    let report = tmp.path().join("report.json");
    let run = nightly_cdnow(&out, AS_OF)
        .args(["-q", "--select", "customer_months+", "--report"])
        .arg(&report)
        .ok();
    let listed: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        listed,
        ["retention_cohorts", "retention_rates"],
        "{}",
        run.stdout
    );
    let r = read_json(&report);
    let second = r["run_id"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    assert_eq!(
        r["selected"],
        serde_json::json!(["customer_months", "retention_cohorts", "retention_rates"])
    );
    let ran: BTreeSet<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    // The gates read quality, rfm and model_params (the convergence gate
    // judges the fit before anything is scored): those and what they read run.
    for step in [
        "transactions_clean",
        "quality",
        "rfm",
        "model_params",
        "customer_months",
    ] {
        assert!(ran.contains(step), "{step} did not run: {ran:?}");
    }
    for step in [
        "model_fit",
        "category_spend",
        "wallet_estimates",
        "customer_tiers",
        "rejected_rows",
    ] {
        assert!(!ran.contains(step), "{step} ran: {ran:?}");
    }
    // Same data, same date: the same rows as the whole run. The carried
    // tables are the whole run's files, exactly; the recomputed ones may
    // differ in sums' last bits (parallel summation order): 1e-9 relative.
    for (table, want) in ALL_TABLES.iter().zip(&before) {
        match *table {
            "retention_cohorts" | "retention_rates" => {
                assert_same_rows_within(table, &rows(&out, table), want, 1e-9, 1e-9)
            }
            _ => assert_eq!(&rows(&out, table), want, "{table}"),
        }
    }
    let rec = record(&out);
    assert_eq!(rec["run_id"], second.as_str());
    for table in ALL_TABLES {
        let entry = &rec["tables"][table];
        let (want_run, carried) = match table {
            "retention_cohorts" | "retention_rates" => (&second, false),
            _ => (&first, true),
        };
        assert_eq!(manifest_run(&out, table), *want_run, "{table}");
        assert_eq!(entry["run_id"].is_string(), carried, "{table}: {entry}");
        if carried {
            assert_eq!(entry["run_id"], first.as_str(), "{table}");
        }
        let file = entry["files"][0]["path"].as_str().unwrap();
        assert!(
            file.starts_with(&format!("run={want_run}/")),
            "{table}: {file}"
        );
    }
    // report.html is the whole run's, left alone.
    assert!(r["report_html"].is_null(), "{r}");

    // A whole run again: one run for every table, older folders removed.
    nightly_cdnow(&out, AS_OF).args(["-q"]).ok();
    let rec = record(&out);
    let third = rec["run_id"].as_str().unwrap().to_string();
    for table in ALL_TABLES {
        assert!(rec["tables"][table]["run_id"].is_null(), "{table}");
        assert_eq!(manifest_run(&out, table), third, "{table}");
        let part = out.join(format!("{table}/as_of={AS_OF}"));
        let runs: BTreeSet<String> = files_under(&part)
            .iter()
            .filter_map(|f| {
                f.strip_prefix(&part)
                    .ok()?
                    .iter()
                    .next()
                    .map(|c| c.to_string_lossy().into_owned())
            })
            .filter(|c| c.starts_with("run="))
            .collect();
        assert_eq!(runs, BTreeSet::from([format!("run={third}")]), "{table}");
    }
}

/// `--exclude rejected_rows` on a fresh output publishes the other eight
/// tables and no rejected_rows partition; `--select` of a step the job
/// does not have exits 2 naming it and listing the job's steps, before
/// anything is written.
#[test]
fn exclude_leaves_a_table_out_and_an_unknown_step_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = nightly_cdnow(&out, AS_OF)
        .args(["-q", "--exclude", "rejected_rows"])
        .ok();
    assert_eq!(run.stdout.lines().count(), 8, "{}", run.stdout);
    assert!(!out.join("rejected_rows").exists());
    assert!(out
        .join(format!("customer_tiers/as_of={AS_OF}/_manifest.json"))
        .is_file());

    let out2 = tmp.path().join("out2");
    let run = nightly_cdnow(&out2, AS_OF)
        .args(["--select", "customer_tier+"])
        .code(2);
    assert!(
        run.stderr
            .contains("--select customer_tier+: the job has no such step"),
        "{}",
        run.stderr
    );
    // The job's steps, in the job file's order.
    assert!(
        run.stderr
            .contains("transactions_validated, transactions_clean, customer_summary, quality"),
        "{}",
        run.stderr
    );
    assert!(
        !out2.exists(),
        "an unknown step wrote {:?}",
        files_under(&out2)
    );
}

/// `--dry-run` prints every step in the job's order with its SQL, the
/// parameters bound as literals, and the partitions it would publish; it
/// reads no input (the input here does not exist) and writes nothing.
#[test]
fn dry_run_prints_bound_sql_and_the_outputs_and_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let missing = tmp.path().join("no-such-export.csv");
    let text = crate::common::nightly(&out, AS_OF, missing.display())
        .args(["--dry-run", "--set", "horizon_months=6"])
        .stdout();
    assert!(
        files_under(tmp.path()).is_empty(),
        "{:?}",
        files_under(tmp.path())
    );
    let job = std::fs::read_to_string("jobs/nightly.toml").unwrap();
    let steps: Vec<&str> = job
        .split("[[steps]]")
        .skip(1)
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("name = \"")))
        .map(|n| n.trim_end_matches('"'))
        .collect();
    assert_eq!(steps.len(), 20);
    let printed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("-- step "))
        .filter_map(|l| l.split(": ").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(printed, steps, "{text}");
    // Outside comments no placeholder is left, and the values are literals:
    // $as_of in 02_clean_transactions.sql, $horizon_months (set to 6) in
    // 08_score_customers.sql, $value ('revenue' by default).
    let code: Vec<&str> = text
        .lines()
        .map(|l| l.split("--").next().unwrap_or_default())
        .collect();
    assert!(code.iter().all(|l| !l.contains('$')), "{text}");
    assert!(text.contains("order_ts <= DATE '1997-09-30'"), "{text}");
    assert!(text.contains("CAST(6 AS DOUBLE)"), "{text}");
    assert!(text.contains("'revenue'"), "{text}");
    let publish: Vec<&str> = text
        .split("-- would publish:")
        .nth(1)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("--   ")?.split_whitespace().next())
        .collect();
    assert_eq!(publish, ALL_TABLES, "{text}");
    assert!(
        text.contains(&format!("{}/customer_tiers/as_of={AS_OF}/", out.display())),
        "{text}"
    );

    // With a selection: only the retention tables, and the steps they and
    // the gates need, marked.
    let text = Cmd::custval()
        .args([
            "run",
            "jobs/nightly.toml",
            "--dry-run",
            "--as-of",
            AS_OF,
            "--output",
        ])
        .arg(&out)
        .args(["--select", "customer_months+"])
        .stdout();
    assert!(
        text.contains("step 7/9: customer_months (../sql/13_tag_customer_months.sql, selected)"),
        "{text}"
    );
    assert!(text.contains("step 1/9: transactions_validated (../sql/01_validate_transactions.sql, needed upstream, not published)"), "{text}");
    assert!(!text.contains("category_spend"), "{text}");
    let publish = text.split("-- would publish:").nth(1).unwrap();
    assert_eq!(
        publish.lines().filter(|l| l.starts_with("--   ")).count(),
        2,
        "{text}"
    );
    assert!(!out.exists());
}
