//! Synthetic data: `custval demo` end to end, and `custval generate`'s
//! data fitted back to the parameters it was drawn from.

use crate::common::{nightly, read_json, read_table, Cmd};

#[test]
fn demo_prints_its_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Cmd::custval()
        .args(["demo", tmp.path().to_str().unwrap(), "--customers", "1500"])
        .stdout();
    for want in [
        "customer_tiers",
        "Platinum",
        "top_20pct_share",
        "retention_rate",
        "crr_formula",
        "retention what-if",
        "clv_gain_share",
        "bgnbd",
        "headroom by tier",
        "share of wallet (customers per band)",
    ] {
        assert!(s.contains(want), "missing {want} in:\n{s}");
    }
    // The demo's data ends on 2024-12-31, its as-of date.
    let rates = read_table(
        &tmp.path().join("out"),
        "retention_rates",
        "2024-12-31",
        "SELECT retention_rate, churn_rate FROM t WHERE customers_start > 0",
    );
    assert!(rates.len() > 12, "{rates:?}");
    for r in &rates {
        let (ret, churn): (f64, f64) = (
            r["retention_rate"].parse().unwrap(),
            r["churn_rate"].parse().unwrap(),
        );
        assert!((ret + churn - 1.0).abs() < 1e-12, "{r:?}");
        assert!((0.0..=1.0).contains(&ret), "{r:?}");
    }
}

/// Data drawn from known parameters is fitted back within 5% of each.
#[test]
fn generated_data_fits_back_to_the_true_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    Cmd::custval()
        .args([
            "generate",
            "--customers",
            "200000",
            "--seed",
            "7",
            "--out",
            data_dir.to_str().unwrap(),
        ])
        .ok();
    let truth = read_json(&data_dir.join("truth.json"));
    let out_dir = tmp.path().join("out");
    let transactions = format!("{}/transactions/", data_dir.display());
    nightly(&out_dir, truth["end"].as_str().unwrap(), transactions).ok();
    let fit = read_table(
        &out_dir,
        "model_fit",
        truth["end"].as_str().unwrap(),
        "SELECT model, r, alpha, a, b, p, q, v FROM t",
    );
    let bg = fit.iter().find(|r| r["model"] == "bgnbd").unwrap();
    for k in ["r", "alpha", "a", "b"] {
        let want = truth["bgnbd"][k].as_f64().unwrap();
        let got: f64 = bg[k].parse().unwrap();
        assert!(
            (got / want - 1.0).abs() < 0.05,
            "bgnbd {k}: {got} vs true {want}"
        );
    }
    let gg = fit.iter().find(|r| r["model"] == "gamma_gamma").unwrap();
    for k in ["p", "q", "v"] {
        let want = truth["gamma_gamma"][k].as_f64().unwrap();
        let got: f64 = gg[k].parse().unwrap();
        assert!(
            (got / want - 1.0).abs() < 0.05,
            "gamma_gamma {k}: {got} vs true {want}"
        );
    }
}
