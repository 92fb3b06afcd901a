//! Tiers over consecutive nights: hysteresis keeps customers near a
//! boundary in their tier, `tier_changed_at` dates each tier, and
//! `tier_transitions` counts every customer once.

use std::collections::HashMap;
use std::path::Path;

use crate::common::{json_rows, read_table, Cmd};

const NIGHTS: [&str; 3] = ["2024-12-29", "2024-12-30", "2024-12-31"];

/// Run the nightly job for each of [`NIGHTS`] into `out`, with `extra` flags.
fn three_nights(data: &Path, out: &Path, extra: &[&str]) {
    let input = format!("transactions={}/transactions/", data.display());
    for as_of in NIGHTS {
        Cmd::custval()
            .args(["-q", "run", "jobs/nightly.toml", "--input", &input])
            .args(["--as-of", as_of, "--output", out.to_str().unwrap()])
            .args(extra)
            .ok();
    }
}

/// Customers whose tier differs from their previous tier, summed over the
/// nights after the first.
fn tier_changes(out: &Path) -> i64 {
    NIGHTS[1..]
        .iter()
        .map(|d| {
            let rows = read_table(
                out,
                "customer_tiers",
                d,
                "SELECT count(*) AS n FROM t WHERE tier <> previous_tier",
            );
            rows[0]["n"].parse::<i64>().unwrap()
        })
        .sum()
}

/// Three consecutive nights on generated data (5,000 customers, seed 3, data
/// to 2024-12-31): with the default hysteresis fewer customers change tier
/// than with `tier_hysteresis=0` (rank alone); both counts are printed.
#[test]
fn hysteresis_gives_fewer_tier_changes_over_three_nights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Cmd::custval()
        .args(["-q", "generate", "--customers", "5000", "--seed", "3"])
        .args(["--out", data.to_str().unwrap()])
        .ok();
    let (with, without) = (tmp.path().join("with"), tmp.path().join("without"));
    three_nights(&data, &with, &[]);
    three_nights(&data, &without, &["--set", "tier_hysteresis=0"]);
    let (changes_with, changes_without) = (tier_changes(&with), tier_changes(&without));
    println!("tier changes over nights 2 and 3: {changes_with} with hysteresis, {changes_without} without");
    assert!(
        changes_without > 0,
        "the data moves no customer between tiers"
    );
    assert!(
        changes_with < changes_without,
        "{changes_with} changes with hysteresis, {changes_without} without"
    );
    // The first night is a first run: tiers are the rank's, dated that night.
    let first = read_table(
        &with,
        "customer_tiers",
        NIGHTS[0],
        "SELECT count(*) AS n FROM t WHERE tier <> rank_tier OR previous_tier IS NOT NULL \
         OR tier_changed_at <> DATE '2024-12-29'",
    );
    assert_eq!(first[0]["n"], "0", "a first run is unaffected");
    // Without hysteresis the tier is always the rank's.
    for d in NIGHTS {
        let rows = read_table(
            &without,
            "customer_tiers",
            d,
            "SELECT count(*) AS n FROM t WHERE tier <> rank_tier",
        );
        assert_eq!(rows[0]["n"], "0", "{d}");
    }
    assert_tier_dates(&with);
    // A kept tier is one the rank has left for fewer than tier_min_nights
    // (3) runs in a row; with tier_min_nights=2 nobody waits a second night.
    let held = "SELECT count(*) FILTER (WHERE tier <> rank_tier) AS held, \
                count(*) FILTER (WHERE tier <> rank_tier AND tier_pending_nights NOT BETWEEN 1 AND 2) AS bad, \
                max(tier_pending_nights) AS most FROM t";
    let last = read_table(&with, "customer_tiers", NIGHTS[2], held);
    assert_eq!(last[0]["bad"], "0", "{last:?}");
    assert_ne!(last[0]["held"], "0", "hysteresis kept nobody: {last:?}");
    let two = tmp.path().join("two");
    three_nights(&data, &two, &["--set", "tier_min_nights=2"]);
    let last = read_table(&two, "customer_tiers", NIGHTS[2], held);
    assert_eq!(last[0]["most"], "1", "{last:?}");
    for out in [&with, &without, &two] {
        for d in NIGHTS {
            assert_transitions_add_up(out, d);
        }
    }
}

/// `tier_changed_at` on the last night: the night the tier changed for a
/// customer who changed tier then, else the date carried from the night
/// before (the previous partition's own `tier_changed_at`).
fn assert_tier_dates(out: &Path) {
    let key = |rows: Vec<HashMap<String, String>>| -> HashMap<String, (String, String)> {
        rows.into_iter()
            .map(|r| {
                (
                    r["customer_id"].clone(),
                    (r["tier"].clone(), r["tier_changed_at"].clone()),
                )
            })
            .collect()
    };
    let q = "SELECT customer_id, tier, CAST(tier_changed_at AS VARCHAR) AS tier_changed_at FROM t";
    let before = key(read_table(out, "customer_tiers", NIGHTS[1], q));
    let last = key(read_table(out, "customer_tiers", NIGHTS[2], q));
    let mut changed = 0;
    for (id, (tier, at)) in &last {
        match before.get(id) {
            Some((prev, prev_at)) if prev == tier => assert_eq!(at, prev_at, "{id}"),
            _ => {
                changed += 1;
                assert_eq!(at, NIGHTS[2], "{id}");
            }
        }
    }
    println!(
        "{changed} customers got a new tier (or first appeared) on {}",
        NIGHTS[2]
    );
}

/// `tier_transitions` has one row per (previous tier, tier) and its
/// customers, CLV and revenue sum to those of `customer_tiers` for the night.
fn assert_transitions_add_up(out: &Path, as_of: &str) {
    let moves = json_rows(
        out,
        "tier_transitions",
        as_of,
        "SELECT coalesce(previous_tier, '(none)') AS p, tier, customers, clv, revenue FROM t",
    );
    let tiers = json_rows(
        out,
        "customer_tiers",
        as_of,
        "SELECT coalesce(previous_tier, '(none)') AS p, tier, count(*) AS customers, \
         sum(clv) AS clv, sum(revenue) AS revenue FROM t GROUP BY 1, 2",
    );
    let total: i64 = moves.iter().map(|r| r["customers"].as_i64().unwrap()).sum();
    let customers: i64 = tiers.iter().map(|r| r["customers"].as_i64().unwrap()).sum();
    assert_eq!(total, customers, "{as_of}: transitions vs customers");
    assert_eq!(moves.len(), tiers.len(), "{as_of}");
    for m in &moves {
        let t = tiers
            .iter()
            .find(|t| t["p"] == m["p"] && t["tier"] == m["tier"])
            .unwrap_or_else(|| panic!("{as_of}: {m} not in customer_tiers"));
        assert_eq!(m["customers"], t["customers"], "{as_of}");
        for k in ["clv", "revenue"] {
            let (a, b) = (m[k].as_f64().unwrap(), t[k].as_f64().unwrap());
            // Same rows summed in another order: 1e-9 relative.
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{as_of} {k}: {a} vs {b}"
            );
        }
    }
}

/// An OUTPUT written before custval recorded tier_changed_at and
/// tier_pending_nights: the previous partition's customer_tiers files are
/// rewritten here without those columns. The next night runs, keeps tiers
/// by hysteresis as before, and dates a carried tier NULL (unknown), never
/// with a made-up date.
#[test]
fn a_previous_partition_without_the_tier_columns_still_feeds_the_next_night() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let input = crate::common::data("cdnow_sample.csv");
    let run = |as_of: &str| {
        crate::common::nightly(&out, as_of, &input)
            .args(["--set", "max_staleness_days=5"])
            .ok();
    };
    run("1997-09-30");
    let part = out.join("customer_tiers/as_of=1997-09-30");
    let manifest = crate::common::read_json(&part.join("_manifest.json"));
    for f in manifest["files"].as_array().unwrap() {
        let file = part.join(f["path"].as_str().unwrap());
        let old = tmp.path().join("old.parquet");
        let sql = format!(
            "COPY (SELECT * EXCLUDE (tier_changed_at, tier_pending_nights) FROM t) TO '{}' STORED AS PARQUET",
            old.display()
        );
        let table = format!("t={}", file.display());
        Cmd::custval()
            .args(["sql", "--allow-write", "--table", &table, &sql])
            .ok();
        std::fs::rename(&old, &file).unwrap();
    }
    run("1997-10-01");
    let rows = read_table(
        &out,
        "customer_tiers",
        "1997-10-01",
        "SELECT count(*) AS n, \
         count(*) FILTER (WHERE previous_tier IS NULL) AS no_previous, \
         count(*) FILTER (WHERE tier = previous_tier) AS carried, \
         count(*) FILTER (WHERE tier = previous_tier AND tier_changed_at IS NOT NULL) AS dated_carried, \
         count(*) FILTER (WHERE tier <> previous_tier AND tier_changed_at <> DATE '1997-10-01') AS misdated FROM t",
    );
    assert_eq!(rows[0]["n"], "2357", "{rows:?}");
    assert_eq!(rows[0]["no_previous"], "0", "{rows:?}");
    // Most customers keep their tier from one night to the next.
    assert!(
        rows[0]["carried"].parse::<i64>().unwrap() > 2000,
        "{rows:?}"
    );
    assert_eq!(rows[0]["dated_carried"], "0", "{rows:?}");
    assert_eq!(rows[0]["misdated"], "0", "{rows:?}");
}

/// `spend_12m` is the value of the 12 calendar months ending at the as-of
/// date (after as_of - 12 months), not of 365 days: for 2024-06-30 it is
/// 2023-07-01..2024-06-30, and for the leap day 2024-02-29 it is
/// 2023-03-01..2024-02-29 (365 days back would drop 2023-03-01 and
/// 2023-07-01). Expected sums are hand-added from the rows below.
#[test]
fn spend_12m_covers_twelve_calendar_months_across_a_leap_year() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("tx.csv");
    std::fs::write(
        &csv,
        "customer_id,order_ts,amount\n\
         a,2023-02-28,100\n\
         a,2023-03-01,20\n\
         a,2024-02-29,1\n\
         b,2023-06-30,7\n\
         b,2023-07-01,3\n\
         b,2024-06-30,1\n",
    )
    .unwrap();
    // (as_of, a's spend_12m, b's): 2024-02-29: a 20 + 1, b 7 + 3;
    // 2024-06-30: a 1, b 3 + 1 (2023-06-30 is outside).
    for (as_of, a, b) in [("2024-02-29", "21.0", "10.0"), ("2024-06-30", "1.0", "4.0")] {
        let out = tmp.path().join(format!("out-{as_of}"));
        Cmd::custval()
            .args(["-q", "run", "jobs/nightly.toml", "--input"])
            .arg(format!("transactions={}", csv.display()))
            .args(["--as-of", as_of, "--output", out.to_str().unwrap()])
            .args(["--set", "allow_unconverged=true", "--set", "time_unit=day"])
            .args(["--set", "max_staleness_days=3650"])
            .ok();
        let rows = read_table(
            &out,
            "customer_tiers",
            as_of,
            "SELECT customer_id, spend_12m FROM t ORDER BY customer_id",
        );
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r["customer_id"].as_str(), r["spend_12m"].as_str()))
            .collect();
        assert_eq!(got, [("a", a), ("b", b)], "as of {as_of}");
    }
}
