//! Helpers shared by the end-to-end modules: the tables the nightly job
//! publishes, reading them back, and row comparison with a numeric tolerance.

use std::process::{Command, Output};

/// Every table `jobs/nightly.toml` publishes.
pub const TABLES: &[&str] = &[
    "customer_tiers",
    "model_fit",
    "concentration",
    "retention_cohorts",
    "retention_rates",
    "customer_category_share",
    "rejected_rows",
];

/// Same rows: text equal, numbers within `rel` relative to the larger
/// magnitude, or to `floor` when both are smaller (parallel or distributed
/// sums may add in another order). `a` and `b` are sorted CSV lines.
pub fn assert_same_rows_within(table: &str, a: &[String], b: &[String], rel: f64, floor: f64) {
    assert_eq!(a.len(), b.len(), "{table}: row counts differ");
    for (x, y) in a.iter().zip(b) {
        let (xs, ys): (Vec<&str>, Vec<&str>) = (x.split(',').collect(), y.split(',').collect());
        assert_eq!(xs.len(), ys.len(), "{table}: {x} vs {y}");
        for (u, v) in xs.iter().zip(&ys) {
            match (u.parse::<f64>(), v.parse::<f64>()) {
                (Ok(p), Ok(q)) => assert!(
                    (p - q).abs() <= rel * p.abs().max(q.abs()).max(floor),
                    "{table}: {x} vs {y}"
                ),
                _ => assert_eq!(u, v, "{table}: {x} vs {y}"),
            }
        }
    }
}

/// Run the real binary with extra environment variables.
pub fn custval(env: &[(&'static str, String)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_custval"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .env_remove("CUSTVAL_ENGINE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).output().unwrap()
}

/// All rows of a published table as sorted CSV lines.
pub fn table_lines(
    env: &[(&'static str, String)],
    base: &str,
    table: &str,
    as_of: &str,
) -> Vec<String> {
    let url = format!("{base}{table}/as_of={as_of}/");
    let out = custval(
        env,
        &[
            "sql",
            "--format",
            "csv",
            "--table",
            &format!("t={url}"),
            "SELECT * FROM t",
        ],
    );
    assert!(
        out.status.success(),
        "reading {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}
