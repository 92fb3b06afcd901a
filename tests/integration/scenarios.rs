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

/// ln of [`customer_value`]'s CLV at log parameters `th` (ln r, ln alpha,
/// ln a, ln b, ln p, ln q, ln v).
fn log_clv(th: &[f64; 7], x: f64, tx: f64, big_t: f64, m: f64) -> f64 {
    let e: Vec<f64> = th.iter().map(|v| v.exp()).collect();
    let bg = Bg {
        r: e[0],
        alpha: e[1],
        a: e[2],
        b: e[3],
    };
    customer_value(bg, (e[4], e[5], e[6]), x, tx, big_t, m)
        .1
        .ln()
}

#[test]
fn parameter_uncertainty_is_published_and_recomputes_independently() {
    // model_fit's standard errors on CDNOW against scripts/se_reference.py
    // (lifetimes 0.11.3's likelihood, autograd's exact Hessian, inverted),
    // computed on tests/data/cdnow_sample_summary.csv, whose times and mean
    // spends are rounded to 2 decimals (the run's fits differ from its by
    // up to 1.2e-4 relative): 1e-3 relative. The lib tests compare on the
    // same summary to 1e-4. customer_tiers' clv_low / clv_high for 40 customers,
    // recomputed here: the covariances of the log parameters from
    // bgnbd_fit / gamma_gamma_fit over the published RFM (custval sql), the
    // gradient of ln CLV by central differences (step 1e-5) of this file's
    // own CLV (eq. 10 by its series, not custval's code), z = 1.6448536269514722
    // (scipy.stats.norm.ppf(0.95)), interval CLV e^(-+z sd): 1e-5 relative.
    let tmp = tempfile::tempdir().unwrap();
    nightly_cdnow(tmp.path(), AS_OF).ok();
    let fit = json_rows(
        tmp.path(),
        "model_fit",
        AS_OF,
        "SELECT * FROM t ORDER BY model",
    );
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/se_reference.csv"
    ))
    .unwrap();
    for line in reference.lines().skip(1) {
        let v: Vec<&str> = line.split(',').collect();
        let row = &fit[if v[0] == "bgnbd" { 0 } else { 1 }];
        let got = row[format!("se_{}", v[1])].as_f64().unwrap();
        let want: f64 = v[3].parse().unwrap();
        assert!(
            (got / want - 1.0).abs() < 1e-3,
            "se_{}: {got} vs {want}",
            v[1]
        );
    }
    let structs = json_rows(
        tmp.path(),
        "customer_tiers",
        AS_OF,
        "SELECT bgnbd_fit(frequency, recency, t) AS bg, \
         gamma_gamma_fit(frequency, monetary_value) AS gg FROM t",
    );
    let (bg, gg) = (&structs[0]["bg"], &structs[0]["gg"]);
    let names = ["r", "alpha", "a", "b", "p", "q", "v"];
    // Covariances of the log parameters: BG/NBD's block, Gamma-Gamma's
    // block, 0 between the two fits (independent).
    let cov: [[f64; 7]; 7] = std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            let s = match (i < 4, j < 4) {
                (true, true) => bg,
                (false, false) => gg,
                _ => return 0.0,
            };
            let k = format!("cov_{}_{}", names[i.min(j)], names[i.max(j)]);
            s[&k].as_f64().unwrap_or_else(|| panic!("{k}: {s}"))
        })
    });
    let th: [f64; 7] = std::array::from_fn(|i| {
        let s = if i < 4 { bg } else { gg };
        s[names[i]].as_f64().unwrap().ln()
    });
    let rows = json_rows(
        tmp.path(),
        "customer_tiers",
        AS_OF,
        "SELECT frequency, recency, t, monetary_value, clv, clv_low, clv_high FROM t \
         WHERE clv > 0 ORDER BY customer_id LIMIT 40",
    );
    assert_eq!(rows.len(), 40);
    let z = 1.644_853_626_951_472_2;
    for row in &rows {
        let f = |k: &str| row[k].as_f64().unwrap();
        let (x, tx, big_t, m) = (f("frequency"), f("recency"), f("t"), f("monetary_value"));
        let h = 1e-5;
        let g: Vec<f64> = (0..7)
            .map(|k| {
                let (mut up, mut dn) = (th, th);
                up[k] += h;
                dn[k] -= h;
                (log_clv(&up, x, tx, big_t, m) - log_clv(&dn, x, tx, big_t, m)) / (2.0 * h)
            })
            .collect();
        let var: f64 = (0..7)
            .flat_map(|i| (0..7).map(move |j| (i, j)))
            .map(|(i, j)| g[i] * cov[i][j] * g[j])
            .sum();
        let clv = f("clv");
        let (low, high) = (clv * (-z * var.sqrt()).exp(), clv * (z * var.sqrt()).exp());
        assert!((f("clv_low") / low - 1.0).abs() < 1e-5, "{row}: low {low}");
        assert!(
            (f("clv_high") / high - 1.0).abs() < 1e-5,
            "{row}: high {high}"
        );
    }
}

/// Issue 15 item 5: every purchase model publishes intervals. With
/// `model` Pareto/NBD or MBG/NBD on CDNOW, `model_fit` has the model's
/// standard errors (s, beta or a, b too) and `customer_tiers` every
/// customer's clv_low <= clv <= clv_high, the model's own: equal (1e-12
/// relative) to `<model>_clv_interval` over the published RFM with the fits
/// recomputed by `custval sql` (12 months, 1% a month, weeks: the job's
/// parameters), and unlike BG/NBD's. `--set interval=0` publishes the same
/// clv (bit for bit) with clv_low and clv_high NULL.
#[test]
fn every_purchase_model_publishes_its_interval_and_interval_0_none() {
    for (model, dropout) in [("pareto_nbd", ["s", "beta"]), ("mbgnbd", ["a", "b"])] {
        let tmp = tempfile::tempdir().unwrap();
        nightly_cdnow(tmp.path(), AS_OF)
            .args(["--set", &format!("model={model}")])
            .ok();
        let fit = json_rows(
            tmp.path(),
            "model_fit",
            AS_OF,
            &format!("SELECT * FROM t WHERE model = '{model}'"),
        );
        for p in ["r", "alpha", dropout[0], dropout[1]] {
            let se = fit[0][format!("se_{p}")].as_f64();
            assert!(se.is_some_and(|v| v > 0.0), "{model} se_{p}: {}", fit[0]);
        }
        let args = "frequency, recency, t, monetary_value, 12, 0.01, 4.345, 0.9";
        let rows = json_rows(
            tmp.path(),
            "customer_tiers",
            AS_OF,
            &format!(
                "WITH f AS (SELECT {model}_fit(frequency, recency, t) AS m, \
                   gamma_gamma_fit(frequency, monetary_value) AS g, \
                   bgnbd_fit(frequency, recency, t) AS bg FROM t) \
                 SELECT customer_id, clv, clv_low, clv_high, \
                   {model}_clv_interval(f.m, f.g, {args}) AS mine, \
                   clv_interval(f.bg, f.g, {args}) AS bg \
                 FROM t CROSS JOIN f ORDER BY customer_id"
            ),
        );
        assert_eq!(rows.len(), 2357);
        let mut differs = 0;
        for row in &rows {
            let f = |k: &str| {
                row[k]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{model} {k}: {row}"))
            };
            let (c, low, high) = (f("clv"), f("clv_low"), f("clv_high"));
            assert!(low <= c && c <= high, "{model}: {row}");
            let mine = &row["mine"];
            for (k, v) in [("clv", c), ("low", low), ("high", high)] {
                let want = mine[k].as_f64().unwrap();
                assert!((v - want).abs() <= 1e-12 * want.abs(), "{model} {k}: {row}");
            }
            differs += usize::from(row["bg"]["low"].as_f64() != Some(low));
        }
        assert!(
            differs > 2_000,
            "{model}: only {differs} intervals differ from BG/NBD's"
        );
        let off = tempfile::tempdir().unwrap();
        nightly_cdnow(off.path(), AS_OF)
            .args(["--set", &format!("model={model}"), "--set", "interval=0"])
            .ok();
        let without = json_rows(
            off.path(),
            "customer_tiers",
            AS_OF,
            "SELECT customer_id, clv, clv_low, clv_high FROM t ORDER BY customer_id",
        );
        assert_eq!(without.len(), rows.len());
        for (a, b) in rows.iter().zip(&without) {
            assert_eq!(a["customer_id"], b["customer_id"]);
            assert_eq!(a["clv"].as_f64(), b["clv"].as_f64(), "{model}: {b}");
            assert!(
                b["clv_low"].is_null() && b["clv_high"].is_null(),
                "{model}: {b}"
            );
        }
    }
}
