//! Retention on CDNOW: the rates add up, and `retention_scenarios` equals an
//! independent evaluation of the BG/NBD and Gamma-Gamma formulas at the
//! published `model_fit` parameters with the dropout lowered as the step
//! documents.

use std::collections::HashMap;

use crate::common::{json_rows, nightly_cdnow, read_table};

const AS_OF: &str = "1997-09-30";

/// `retention_rate + churn_rate = 1` in every row, `retention_rate <= 1`, and
/// every active customer is new, retained or reactivated.
#[test]
fn retention_rates_add_up_on_cdnow() {
    let tmp = tempfile::tempdir().unwrap();
    nightly_cdnow(tmp.path(), AS_OF).ok();
    let rows = json_rows(tmp.path(), "retention_rates", AS_OF, "SELECT * FROM t");
    assert_eq!(rows.len(), 9, "January to September 1997");
    for r in &rows {
        let n = |k: &str| r[k].as_i64().unwrap();
        assert_eq!(
            n("customers_end"),
            n("customers_new") + n("retained") + n("reactivated"),
            "{r}"
        );
        if n("customers_start") == 0 {
            assert!(
                r["retention_rate"].is_null() && r["churn_rate"].is_null(),
                "{r}"
            );
            continue;
        }
        let (ret, churn) = (
            r["retention_rate"].as_f64().unwrap(),
            r["churn_rate"].as_f64().unwrap(),
        );
        assert!((ret + churn - 1.0).abs() < 1e-12, "{r}");
        assert!((0.0..=1.0).contains(&ret), "{r}");
        let s = n("customers_start") as f64;
        let crr = (n("customers_end") - n("customers_new")) as f64 / s;
        assert!(
            (r["crr_formula"].as_f64().unwrap() - crr).abs() < 1e-12,
            "{r}"
        );
    }
}

/// Gauss 2F1(a, b; c; z) by its power series, for 0 <= z < 1: terms are
/// summed until one is below 1e-17 of the sum.
fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let (mut term, mut sum) = (1.0, 1.0);
    for n in 0..100_000 {
        let n = n as f64;
        term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum += term;
        if term.abs() < 1e-17 * sum.abs() {
            break;
        }
    }
    sum
}

/// BG/NBD parameters.
#[derive(Clone, Copy)]
struct Bg {
    r: f64,
    alpha: f64,
    a: f64,
    b: f64,
}

/// Fader, Hardie & Lee (2005), eq. 10: expected purchases in (T, T + t] of a
/// customer with x repeat purchases, the last at tx, observed for T.
fn expected(bg: Bg, t: f64, x: f64, tx: f64, big_t: f64) -> f64 {
    let Bg { r, alpha, a, b } = bg;
    let z = t / (alpha + big_t + t);
    let head = (a + b + x - 1.0) / (a - 1.0);
    let body = 1.0
        - ((alpha + big_t) / (alpha + big_t + t)).powf(r + x)
            * hyp2f1(r + x, b + x, a + b + x - 1.0, z);
    let alive = if x > 0.0 {
        1.0 + a / (b + x - 1.0) * ((alpha + big_t) / (alpha + tx)).powf(r + x)
    } else {
        1.0
    };
    head * body / alive
}

/// One customer's (expected purchases over 12 months, CLV): monthly
/// increments of eq. 10 times the Gamma-Gamma expected spend (Fader, Hardie &
/// Lee 2005b, eq. 5: p (v + x m) / (p x + q - 1), the population mean
/// p v / (q - 1) without a positive repeat spend), discounted 1% a month as
/// lifetimes' customer_lifetime_value does; 4.345 weeks a month. These are the
/// nightly job's defaults (horizon_months 12, monthly_discount_rate 0.01,
/// time_unit week).
fn customer_value(bg: Bg, gg: (f64, f64, f64), x: f64, tx: f64, big_t: f64, m: f64) -> (f64, f64) {
    let (p, q, v) = gg;
    let spend = if x > 0.0 && m > 0.0 {
        p * (v + x * m) / (p * x + q - 1.0)
    } else {
        p * v / (q - 1.0)
    };
    let (mut clv, mut prev) = (0.0, 0.0);
    for month in 1..=12 {
        let e = expected(bg, month as f64 * 4.345, x, tx, big_t);
        clv += spend * (e - prev) / 1.01f64.powi(month);
        prev = e;
    }
    (prev, clv.max(0.0))
}

/// For 1, 5 and 10 points, per tier and in total: the scenario's CLV and
/// purchase gain recomputed here (a' = a - k/100 (a + b), b' = b + k/100 (a +
/// b), as sql/19_project_retention_scenarios.sql states) from the published
/// parameters and each customer's published RFM, within 1e-6 relative
/// (two evaluations of the same closed form in double precision). The
/// baseline is checked the same way against the published clv.
#[test]
fn retention_scenarios_match_an_independent_computation_on_cdnow() {
    let tmp = tempfile::tempdir().unwrap();
    nightly_cdnow(tmp.path(), AS_OF).ok();
    let fit = read_table(
        tmp.path(),
        "model_fit",
        AS_OF,
        "SELECT model, r, alpha, a, b, p, q, v FROM t",
    );
    let num = |row: &HashMap<String, String>, k: &str| row[k].parse::<f64>().unwrap();
    let bgr = fit.iter().find(|r| r["model"] == "bgnbd").unwrap();
    let ggr = fit.iter().find(|r| r["model"] == "gamma_gamma").unwrap();
    let bg = Bg {
        r: num(bgr, "r"),
        alpha: num(bgr, "alpha"),
        a: num(bgr, "a"),
        b: num(bgr, "b"),
    };
    let gg = (num(ggr, "p"), num(ggr, "q"), num(ggr, "v"));
    let customers = read_table(
        tmp.path(),
        "customer_tiers",
        AS_OF,
        "SELECT tier, frequency, recency, t, monetary_value, clv, expected_purchases FROM t",
    );
    assert_eq!(customers.len(), 2357);
    let got = json_rows(tmp.path(), "retention_scenarios", AS_OF, "SELECT * FROM t");
    assert_eq!(got.len(), 3 * 6, "three uplifts x (five tiers + Total)");
    let close = |a: f64, b: f64, what: &str| {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            "{what}: custval {a}, here {b}"
        );
    };
    for k in [1.0, 5.0, 10.0] {
        let shift = k / 100.0 * (bg.a + bg.b);
        let lowered = Bg {
            a: bg.a - shift,
            b: bg.b + shift,
            ..bg
        };
        // tier -> (clv_base, clv_scenario, purchases_gain)
        let mut want: HashMap<String, (f64, f64, f64)> = HashMap::new();
        for c in &customers {
            let (x, tx, big_t, m) = (
                num(c, "frequency"),
                num(c, "recency"),
                num(c, "t"),
                num(c, "monetary_value"),
            );
            let (base_purchases, base_clv) = customer_value(bg, gg, x, tx, big_t, m);
            close(num(c, "clv"), base_clv, "baseline clv");
            close(
                num(c, "expected_purchases"),
                base_purchases,
                "baseline purchases",
            );
            let (purchases, clv) = customer_value(lowered, gg, x, tx, big_t, m);
            for tier in [c["tier"].clone(), "Total".to_string()] {
                let e = want.entry(tier).or_default();
                e.0 += base_clv;
                e.1 += clv;
                e.2 += purchases - base_purchases;
            }
        }
        for (tier, (base, scenario, purchases)) in &want {
            let row = got
                .iter()
                .find(|r| r["uplift_points"].as_f64() == Some(k) && r["tier"] == tier.as_str())
                .unwrap_or_else(|| panic!("no row for {k} points, {tier}"));
            let f = |c: &str| row[c].as_f64().unwrap();
            close(f("clv_base"), *base, &format!("{k} {tier} clv_base"));
            close(
                f("clv_scenario"),
                *scenario,
                &format!("{k} {tier} clv_scenario"),
            );
            close(
                f("clv_gain"),
                scenario - base,
                &format!("{k} {tier} clv_gain"),
            );
            close(
                f("purchases_gain"),
                *purchases,
                &format!("{k} {tier} purchases_gain"),
            );
        }
        println!(
            "{k} points: total CLV {:.2} -> {:.2}",
            want["Total"].0, want["Total"].1
        );
    }
}
