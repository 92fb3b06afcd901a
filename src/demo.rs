//! `custval demo`: generate a small data set and run the nightly job on it,
//! on local disk, then print a short summary. The job and its SQL are built
//! into the binary, so the demo works wherever custval is installed.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::generate::{generate, GenerateOptions};
use crate::job::Job;
use crate::publish::OutputLayout;
use crate::runner::{self, RunOptions};
use crate::storage::Location;

/// The nightly job as shipped.
pub const NIGHTLY_TOML: &str = include_str!("../jobs/nightly.toml");

/// The built-in nightly job, as if loaded from `jobs/nightly.toml`.
pub fn nightly_job() -> Result<Job> {
    Job::parse(Path::new("jobs/nightly.toml"), NIGHTLY_TOML, |file| {
        file.strip_prefix("../sql/")
            .and_then(crate::builtin::sql)
            .map(str::to_string)
            .ok_or_else(|| Error::job("jobs/nightly.toml", format!("{file} is not built in")))
    })
}

/// Generate, run, summarise.
pub async fn run(dir: &Path, customers: u64) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let data = dir.join("data");
    let out = dir.join("out");
    let gen = GenerateOptions {
        customers,
        ..Default::default()
    };
    let data_loc = Location::parse(&data.to_string_lossy(), true)?;
    let g = generate(&data_loc, &gen).await?;
    let job = nightly_job()?;
    let mut opts = RunOptions {
        as_of: Some(gen.end),
        output: Some(out.to_string_lossy().into_owned()),
        ..Default::default()
    };
    opts.inputs.insert(
        "transactions".into(),
        format!("{}/", data.join("transactions").to_string_lossy()),
    );
    let report = runner::run(&job, &opts).await?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "custval demo: {} transactions of {} customers, as of {}",
        g.rows, g.customers, report.as_of
    );
    let _ = writeln!(s, "data:   {}", data.display());
    let _ = writeln!(s, "output: {}", out.display());
    let _ = writeln!(s, "\ntables published:");
    for t in &report.tables {
        let _ = writeln!(s, "  {:<26} {:>8} rows", t.table, t.rows);
    }
    let ctx = crate::engine::session(&Default::default())?;
    // The published partitions of this run, by short names for the queries.
    let layout = OutputLayout::new(Location::parse(&out.to_string_lossy(), true)?);
    let tables = [
        ("tiers", "customer_tiers"),
        ("conc", "concentration"),
        ("rates", "retention_rates"),
        ("fit", "model_fit"),
        ("scen", "retention_scenarios"),
    ]
    .into_iter()
    .map(|(name, table)| {
        Ok((
            name.to_string(),
            layout.partition(table, gen.end)?.url().to_string(),
        ))
    })
    .collect::<Result<Vec<_>>>()?;
    let scratch = crate::scratch::Scratch::temporary()?;
    crate::sql::register_tables(&ctx, &tables, &[], &scratch).await?;
    let mut buf: Vec<u8> = Vec::new();
    let queries = [
        ("tiers", "SELECT tier, count(*) AS customers, round(sum(clv), 2) AS clv, round(avg(p_alive), 3) AS avg_p_alive FROM tiers GROUP BY tier ORDER BY min(CASE tier WHEN 'Platinum' THEN 1 WHEN 'Gold' THEN 2 WHEN 'Silver' THEN 3 WHEN 'Bronze' THEN 4 ELSE 5 END)"),
        ("concentration", "SELECT measure, customers, round(top_20pct_share, 3) AS top_20pct_share, customers_for_80pct, round(gini, 3) AS gini FROM conc"),
        ("retention (last 6 months)", "SELECT period_start, customers_start, customers_new, customers_end, retained, reactivated, round(retention_rate, 3) AS retention_rate, round(churn_rate, 3) AS churn_rate, round(crr_formula, 3) AS crr_formula FROM rates ORDER BY period_start DESC LIMIT 6"),
        ("retention what-if (all customers)", "SELECT uplift_points, round(clv_base, 2) AS clv_base, round(clv_scenario, 2) AS clv_scenario, round(clv_gain_share, 3) AS clv_gain_share, round(purchases_gain, 1) AS purchases_gain FROM scen WHERE tier = 'Total' ORDER BY uplift_points"),
        ("model fit", "SELECT model, round(r, 4) AS r, round(alpha, 4) AS alpha, round(a, 4) AS a, round(b, 4) AS b, round(p, 3) AS p, round(q, 3) AS q, round(v, 3) AS v, converged FROM fit"),
    ];
    let wallet = [
        (
            "headroom by tier (wallet - spend_12m)",
            crate::report::wallet_headroom_sql("tiers"),
        ),
        (
            "share of wallet (customers per band)",
            crate::report::share_of_wallet_sql("tiers"),
        ),
    ];
    let queries = queries
        .iter()
        .map(|(t, q)| (*t, q.to_string()))
        .chain(wallet);
    for (title, q) in queries {
        let _ = writeln!(s, "\n{title}:");
        buf.clear();
        crate::sql::execute(&ctx, &q, crate::table::OutputFormat::Table, false, &mut buf).await?;
        s.push_str(&String::from_utf8_lossy(&buf));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_built_in_job_parses_with_every_sql_file() {
        let job = super::nightly_job().unwrap();
        assert_eq!(job.spec.name, "nightly");
        assert_eq!(job.sql.len(), job.spec.steps.len() + job.spec.gates.len());
    }
}
