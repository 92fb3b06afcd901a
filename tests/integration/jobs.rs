//! The other shipped jobs end to end: `jobs/clv.toml` (the nightly job's
//! model steps alone) and `jobs/subscriptions.toml` (sBG survival).

use crate::common::{close, data, json_rows, read_json, read_table, run_job, Cmd, TABLES};

/// jobs/clv.toml runs the nightly job's model steps alone: the same fit
/// (Fader, Hardie & Lee 2005 on CDNOW, 0.001) and, customer by customer,
/// the same predictions as the nightly job's customer_tiers (exact: same
/// SQL, same data).
#[test]
fn clv_job_publishes_the_nightly_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let (clv_dir, nightly_dir) = (tmp.path().join("clv"), tmp.path().join("nightly"));
    let input = format!("transactions={}", data("cdnow_sample.csv"));
    for (job, dir) in [
        ("jobs/clv.toml", &clv_dir),
        ("jobs/nightly.toml", &nightly_dir),
    ] {
        run_job(job, dir, "1997-09-30", &input).ok();
    }
    let cols = "SELECT customer_id, frequency, recency, t, p_alive, expected_purchases, \
                expected_avg_value, clv FROM t ORDER BY customer_id";
    let clv = read_table(&clv_dir, "customer_clv", "1997-09-30", cols);
    let nightly = read_table(&nightly_dir, "customer_tiers", "1997-09-30", cols);
    assert_eq!(clv.len(), 2357, "every CDNOW customer");
    assert_eq!(clv, nightly);
    let fit = read_table(
        &clv_dir,
        "model_fit",
        "1997-09-30",
        "SELECT r, alpha, a, b FROM t WHERE model = 'bgnbd'",
    );
    for (k, want) in [("r", 0.243), ("alpha", 4.414), ("a", 0.793), ("b", 2.426)] {
        let got: f64 = fit[0][k].parse().unwrap();
        assert!((got - want).abs() < 0.001, "{k}: {got} vs {want}");
    }
    assert!(!clv_dir.join("customer_tiers").exists());
}

/// jobs/subscriptions.toml on Fader & Hardie (2007) Table 1 (Regular) as 1,000
/// yearly subscriptions (tests/data/subscriptions_regular.csv): alpha, beta
/// within 0.005 of 0.704, 1.182, and projected survivors for years 8..12
/// within 0.5 of 220.1, 204.4, 191.2, 179.9, 170.0 (the model at those
/// parameters); observed years 0..7 reproduced exactly.
#[test]
fn subscriptions_job_fits_the_sbg_paper_table() {
    let tmp = tempfile::tempdir().unwrap();
    run_job(
        "jobs/subscriptions.toml",
        tmp.path(),
        "2017-12-31",
        &format!("subscriptions={}", data("subscriptions_regular.csv")),
    )
    .args(["--set", "period_months=12", "--set", "horizon_periods=5"])
    .ok();
    let rows = json_rows(
        tmp.path(),
        "subscription_survival",
        "2017-12-31",
        "SELECT * FROM t ORDER BY period",
    );
    assert_eq!(rows.len(), 13);
    let observed = [1000.0, 631.0, 468.0, 382.0, 326.0, 289.0, 262.0, 241.0];
    for (t, want) in observed.iter().enumerate() {
        assert!(
            close(&rows[t]["observed_survivors"], Some(*want)),
            "{}",
            rows[t]
        );
    }
    assert!((rows[0]["alpha"].as_f64().unwrap() - 0.704).abs() < 0.005);
    assert!((rows[0]["beta"].as_f64().unwrap() - 1.182).abs() < 0.005);
    let holdout = [
        (223.0, 220.1),
        (207.0, 204.4),
        (194.0, 191.2),
        (183.0, 179.9),
        (173.0, 170.0),
    ];
    for (i, (seen, want)) in holdout.iter().enumerate() {
        let r = &rows[8 + i];
        let got = r["projected_survivors"].as_f64().unwrap();
        println!(
            "year {}: projected {got:.1}, paper's model {want}, observed {seen}",
            8 + i
        );
        assert!(r["observed_survivors"].is_null());
        assert!((got - want).abs() < 0.5, "{r}");
    }
}

/// A job copied out of the repository with `builtin:` steps runs without
/// any SQL file beside it, and publishes exactly what the repository's
/// `jobs/clv.toml` publishes (the same SQL text on the same data). A
/// `builtin:` name that is not built in is exit 2 naming it.
#[test]
fn a_job_copied_out_with_builtin_steps_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_job = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/clv.toml");
    let text = std::fs::read_to_string(repo_job)
        .unwrap()
        .replace("\"../sql/", "\"builtin:");
    assert!(!text.contains("../sql/") && text.contains("builtin:07_fit_models.sql"));
    let copied = tmp.path().join("elsewhere").join("clv.toml");
    std::fs::create_dir_all(copied.parent().unwrap()).unwrap();
    std::fs::write(&copied, &text).unwrap();
    let input = format!("transactions={}", data("cdnow_sample.csv"));
    let (a, b) = (tmp.path().join("copied"), tmp.path().join("repo"));
    run_job(&copied, &a, "1997-09-30", &input).ok();
    run_job(repo_job, &b, "1997-09-30", &input).ok();
    for table in ["customer_clv", "model_fit"] {
        let all = "SELECT * FROM t ORDER BY 1";
        let (x, y) = (
            read_table(&a, table, "1997-09-30", all),
            read_table(&b, table, "1997-09-30", all),
        );
        assert!(!x.is_empty(), "{table}");
        assert_eq!(x, y, "{table}");
    }

    let broken = tmp.path().join("broken.toml");
    std::fs::write(
        &broken,
        text.replace("builtin:07_fit_models.sql", "builtin:07_fit.sql"),
    )
    .unwrap();
    let err = Cmd::custval().arg("check").arg(&broken).code(2).stderr;
    assert!(
        err.contains("builtin:07_fit.sql") && err.contains("07_fit_models.sql"),
        "{err}"
    );
}

/// `custval init DIR` writes a project whose job, run from another folder
/// on `custval generate` data where the job's url points, publishes every
/// table; the README names every published column; revenue equals the sum
/// of the generated amounts (computed from the generated files with plain
/// SQL, not the job's steps). A second init refuses to overwrite (exit 2).
#[test]
fn init_writes_a_project_that_runs_on_generated_data() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = tmp.path().join("shop");
    let wrote = Cmd::custval().arg("init").arg(&proj).ok().stdout;
    for f in ["job.toml", "README.md", "airflow/custval_job.py"] {
        assert!(proj.join(f).is_file(), "{f}: {wrote}");
    }
    let dag = std::fs::read_to_string(proj.join("airflow/custval_job.py")).unwrap();
    assert!(
        dag.contains(&format!(
            "{:?}",
            proj.join("job.toml").display().to_string()
        )),
        "{dag}"
    );
    Cmd::custval()
        .args(["generate", "--customers", "600", "--out"])
        .arg(proj.join("data"))
        .ok();
    let report = tmp.path().join("report.json");
    Cmd::custval()
        .current_dir(tmp.path())
        .args(["run", "shop/job.toml", "--as-of", "2024-12-31", "--report"])
        .arg(&report)
        .ok();
    let out = proj.join("out");
    let readme = std::fs::read_to_string(proj.join("README.md")).unwrap();
    for table in TABLES {
        let m = read_json(&out.join(table).join("as_of=2024-12-31/_manifest.json"));
        for col in m["schema"].as_array().unwrap() {
            let name = col["name"].as_str().unwrap();
            assert!(
                readme.contains(&format!("`{name}`")),
                "README lacks {table}.{name}"
            );
        }
    }
    let revenue = read_table(
        &out,
        "customer_tiers",
        "2024-12-31",
        "SELECT round(sum(revenue), 2) AS r FROM t",
    );
    let generated = Cmd::custval()
        .args(["sql", "--format", "csv", "--table"])
        .arg(format!("t={}/", proj.join("data/transactions").display()))
        .arg("SELECT round(sum(amount), 2) AS r FROM t WHERE CAST(order_ts AS DATE) <= DATE '2024-12-31'")
        .stdout();
    assert_eq!(
        revenue[0]["r"],
        generated.lines().nth(1).unwrap(),
        "published revenue vs the generated amounts"
    );

    let before = std::fs::read_to_string(proj.join("job.toml")).unwrap();
    let again = Cmd::custval().arg("init").arg(&proj).code(2).stderr;
    assert!(
        again.contains("job.toml") && again.contains("already exists"),
        "{again}"
    );
    assert_eq!(
        std::fs::read_to_string(proj.join("job.toml")).unwrap(),
        before
    );
}

/// Paths with `..` in them, as a job kept beside its data names them, are
/// resolved like a shell resolves them (a fresh-user trial got exit 2:
/// "Encountered illegal character sequence '..'").
#[test]
fn input_output_and_table_paths_may_climb_with_dot_dot() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("jobs")).unwrap();
    let cases = data("cases");
    let input = format!(
        "{}/../cases/folder-columns-reordered/",
        cases.trim_end_matches('/')
    );
    let out = tmp.path().join("jobs/../out");
    let res = crate::common::run_nightly(&input, "1997-09-30", &out, &[]);
    assert_eq!(
        res.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    // Read back through a path that climbs too: the control's 2,357
    // customers (../shared/cases/README.md).
    let table = format!(
        "t={}/jobs/../out/customer_tiers/as_of=1997-09-30/",
        tmp.path().display()
    );
    let n = Cmd::custval()
        .args(["-q", "sql", "--format", "csv", "--table", &table])
        .arg("SELECT count(*) AS n FROM t")
        .ok()
        .stdout;
    assert!(n.lines().any(|l| l.trim() == "2357"), "{n}");
}
