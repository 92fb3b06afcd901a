//! The other shipped jobs end to end: `jobs/clv.toml` (the nightly job's
//! model steps alone) and `jobs/subscriptions.toml` (sBG survival).

use crate::common::{close, data, json_rows, read_table, run_job};

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
