//! End-to-end tests of the model layer on the cases users' data produced
//! (`tests/data/cases/models/`, copied from the shared cases folder with its
//! README's expected values): models defined over their whole parameter
//! space, and fits that report convergence only at a verified optimum.

use std::collections::HashMap;
use std::path::Path;

use crate::common::{read_table, run_nightly};

fn case(name: &str) -> String {
    format!(
        "{}/tests/data/cases/models/{name}/transactions.csv",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `custval run` of the nightly job on a case, in days, with `extra` args.
fn run_case(name: &str, as_of: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let extra = [&["--set", "time_unit=day"], extra].concat();
    run_nightly(&case(name), as_of, out, &extra)
}

fn num(row: &HashMap<String, String>, key: &str) -> f64 {
    row[key]
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number: {row:?}"))
}

#[test]
fn one_time_buyers_are_scored_when_a_plus_b_is_below_1() {
    // ../shared/cases/README.md, models/one-time-buyers-a-plus-b-below-1
    // (independent computations): fit r 0.396479, alpha 16.222451,
    // a 0.348339, b 0.370058 (within 1e-5 relative: the optimizers stop at
    // different gradients); c059 (t = 112 days) expected_purchases 0.69309,
    // clv 17.674; c087 (t = 495) 0.23221 and 5.897 (to the digits given);
    // total CLV 5,295.98 (within 0.01).
    let tmp = tempfile::tempdir().unwrap();
    let out = run_case(
        "one-time-buyers-a-plus-b-below-1",
        "2023-07-01",
        tmp.path(),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fit = read_table(
        tmp.path(),
        "model_fit",
        "2023-07-01",
        "SELECT r, alpha, a, b, converged, status FROM t WHERE model = 'bgnbd'",
    );
    for (k, want) in [
        ("r", 0.396479),
        ("alpha", 16.222451),
        ("a", 0.348339),
        ("b", 0.370058),
    ] {
        let got = num(&fit[0], k);
        assert!((got / want - 1.0).abs() < 1e-5, "{k} = {got}, want {want}");
    }
    assert_eq!(fit[0]["converged"], "true");
    assert_eq!(fit[0]["status"], "converged");
    let tiers = read_table(
        tmp.path(),
        "customer_tiers",
        "2023-07-01",
        "SELECT CAST(customer_id AS VARCHAR) AS id, t, frequency, expected_purchases, clv FROM t",
    );
    let by_id: HashMap<&str, &HashMap<String, String>> =
        tiers.iter().map(|r| (r["id"].as_str(), r)).collect();
    for (id, t, e, c) in [
        ("c059", 112.0, 0.69309, 17.674),
        ("c087", 495.0, 0.23221, 5.897),
    ] {
        let r = by_id[id];
        assert_eq!(num(r, "t"), t, "{r:?}");
        assert_eq!(num(r, "frequency"), 0.0, "{r:?}");
        assert!((num(r, "expected_purchases") - e).abs() < 5e-6, "{r:?}");
        assert!((num(r, "clv") - c).abs() < 5e-4, "{r:?}");
    }
    // No one-time buyer is left without a prediction.
    assert!(tiers
        .iter()
        .all(|r| !r["expected_purchases"].is_empty() && num(r, "clv") > 0.0));
    let total: f64 = tiers.iter().map(|r| num(r, "clv")).sum();
    assert!((total - 5295.98).abs() < 0.01, "total CLV {total}");
}

#[test]
fn data_that_identify_nothing_fail_the_gate_with_the_reason() {
    // ../shared/cases/README.md, models/all-first-purchases-on-as-of: every
    // customer's only purchase is on the as-of day, so the likelihood is
    // flat: exit 3, the message saying why, nothing published.
    let tmp = tempfile::tempdir().unwrap();
    let out = run_case(
        "all-first-purchases-on-as-of",
        "2020-06-30",
        tmp.path(),
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("model bgnbd is not identified"), "{stderr}");
    assert!(stderr.contains("flat"), "{stderr}");
    assert!(
        !tmp.path()
            .join("customer_tiers/as_of=2020-06-30/_manifest.json")
            .exists(),
        "nothing is published on a failed gate"
    );
}

#[test]
fn allow_unconverged_publishes_no_number_that_is_not_one() {
    // With allow_unconverged the same run publishes, and model_fit holds
    // NULL or finite values of sane size only (a fit once published
    // r = 1.8e251 and a log-likelihood of 3.9e290).
    let tmp = tempfile::tempdir().unwrap();
    let res = run_case(
        "all-first-purchases-on-as-of",
        "2020-06-30",
        tmp.path(),
        &["--set", "allow_unconverged=true"],
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let fit = read_table(
        tmp.path(),
        "model_fit",
        "2020-06-30",
        "SELECT model, r, alpha, a, b, p, q, v, log_likelihood, converged, status FROM t",
    );
    assert_eq!(fit.len(), 2);
    for row in &fit {
        assert_eq!(row["converged"], "false", "{row:?}");
        assert!(
            !row["status"].is_empty() && row["status"] != "converged",
            "{row:?}"
        );
        // Not identified: no parameter value means anything, so none is
        // published (the start point 1, 1, 1, 1 once was).
        for k in ["r", "alpha", "a", "b", "p", "q", "v"] {
            assert!(row[k].is_empty(), "{k} = {} in {row:?}", row[k]);
        }
        for k in ["log_likelihood"] {
            if let Ok(v) = row[k].parse::<f64>() {
                assert!(v.is_finite() && v.abs() < 1e8, "{k} = {v} in {row:?}");
            }
        }
    }
}
