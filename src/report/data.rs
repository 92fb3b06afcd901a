//! The numbers report.html shows, read with SQL from the run's own tables
//! and steps (`customer_tiers`, `customer_scores`, `rfm`, `model_params`,
//! `transactions_clean`, `retention_cohorts`, `tier_transitions`,
//! `retention_scenarios`, ...) with the run's bound parameters: the charts
//! aggregate, they never recompute what a table already holds. The one
//! series no table holds, the model's expected cumulative repeat purchases
//! of the tracking plot, is computed here by the same SQL function
//! (`bgnbd_expected_purchases`) and fitted parameters the scores use.

use datafusion::prelude::SessionContext;
use serde_json::{Map, Value};

use crate::error::Result;
use crate::steps::SqlParams;
use crate::table::to_json_rows;

/// One result row, by column name.
pub type Row = Map<String, Value>;

/// The rows of `sql` with the run's parameters bound (`$as_of_day`, ...).
pub async fn rows(ctx: &SessionContext, params: &SqlParams, sql: &str) -> Result<Vec<Row>> {
    let df = crate::steps::plan(ctx, sql, params, "report.html").await?;
    to_json_rows(&df.collect().await?)
}

/// A number of a row; `None` for NULL or a missing column.
pub fn num(r: &Row, k: &str) -> Option<f64> {
    r.get(k).and_then(|v| v.as_f64())
}

/// A text of a row ("" for NULL).
pub fn text(r: &Row, k: &str) -> String {
    match r.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// Whether the run has every one of these tables (steps) and parameters.
pub fn has(ctx: &SessionContext, params: &SqlParams, tables: &[&str], names: &[&str]) -> bool {
    tables.iter().all(|t| ctx.table_exist(*t).unwrap_or(false))
        && names.iter().all(|n| params.contains_key(*n))
}

/// Order of the tiers in charts; other values follow alphabetically.
pub const TIER_ORDER: &str = "CASE tier WHEN 'Platinum' THEN 1 WHEN 'Gold' THEN 2 \
    WHEN 'Silver' THEN 3 WHEN 'Bronze' THEN 4 WHEN 'At risk' THEN 5 ELSE 6 END";

/// Highest calibration frequency shown on its own in the holdout plot; the
/// last point is this many repeat purchases or more.
pub const HOLDOUT_MAX_FREQUENCY: i64 = 7;

/// Calibration/holdout rows: `frequency` (repeat purchase days in the
/// calibration period, the last bucket `HOLDOUT_MAX_FREQUENCY`+),
/// `customers`, and the mean `actual` and `predicted` repeat purchase days
/// in the holdout, from `customer_scores` (`holdout_purchases`,
/// `holdout_predicted`). Empty when the run has no holdout.
pub async fn holdout(ctx: &SessionContext, params: &SqlParams) -> Result<Vec<Row>> {
    rows(
        ctx,
        params,
        &format!(
            "SELECT CAST(least(cal_frequency, {HOLDOUT_MAX_FREQUENCY}) AS BIGINT) AS frequency, count(*) AS customers, \
             avg(CAST(holdout_purchases AS DOUBLE)) AS actual, avg(holdout_predicted) AS predicted \
             FROM customer_scores WHERE holdout_predicted IS NOT NULL AND CAST($holdout_days AS BIGINT) > 0 \
             GROUP BY 1 ORDER BY 1"
        ),
    )
    .await
}

/// The cumulative tracking plot, one row per week since the first customer's
/// first purchase (`week`, 0-based, ending on `end_day`, days since
/// 1970-01-01, capped at the as-of day): `actual` = cumulative repeat
/// purchase days (days netting to >= 0 after the customer's first, the RFM
/// rule, from `transactions_clean`), `expected` = the sum over customers of
/// the BG/NBD expected repeat purchases from their first purchase to the
/// week's end (`bgnbd_expected_purchases` at frequency 0, recency 0, t 0:
/// the unconditional E[X(t)]), with the calibration fit when the run has a
/// holdout, else the full fit. Customers: those whose first purchase is in
/// the calibration period (all of them without a holdout). `expected` is
/// NULL when the fit has no parameters.
pub async fn tracking(ctx: &SessionContext, params: &SqlParams) -> Result<Vec<Row>> {
    let sql = "WITH cust AS (
          SELECT customer_id, first_day FROM rfm WHERE cal_frequency >= 0
        ), start AS (
          SELECT CAST(min(first_day) AS BIGINT) AS d0 FROM cust
        ), weeks AS (
          SELECT unnest(range(0, (CAST($as_of_day AS BIGINT) - s.d0) / 7 + 1)) AS week, s.d0
          FROM start s WHERE s.d0 IS NOT NULL
        ), ends AS (
          SELECT week, least(d0 + 7 * week + 6, CAST($as_of_day AS BIGINT)) AS end_day FROM weeks
        ), purchase_days AS (
          SELECT t.customer_id, t.day
          FROM transactions_clean t
          GROUP BY t.customer_id, t.day
          HAVING day_net_amount(sum(t.amount), sum(abs(t.amount))) >= 0
        ), per_week AS (
          SELECT (p.day - s.d0) / 7 AS week, count(*) AS n
          FROM purchase_days p JOIN cust c ON c.customer_id = p.customer_id CROSS JOIN start s
          WHERE p.day > c.first_day
          GROUP BY 1
        ), actual AS (
          SELECT e.week, sum(coalesce(w.n, 0)) OVER (ORDER BY e.week) AS n
          FROM ends e LEFT JOIN per_week w ON w.week = e.week
        ), firsts AS (
          SELECT CAST(first_day AS BIGINT) AS first_day, count(*) AS customers FROM cust GROUP BY 1
        ), expected AS (
          SELECT e.week,
            sum(f.customers * bgnbd_expected_purchases(
              coalesce(m.bgnbd_calibration, m.bgnbd),
              CAST(e.end_day - f.first_day AS DOUBLE) / CAST($time_unit_days AS DOUBLE),
              0.0, 0.0, 0.0)) AS n
          FROM ends e JOIN firsts f ON f.first_day <= e.end_day CROSS JOIN model_params m
          GROUP BY e.week
        )
        SELECT e.week, e.end_day, a.n AS actual, x.n AS expected
        FROM ends e JOIN actual a ON a.week = e.week LEFT JOIN expected x ON x.week = e.week
        ORDER BY e.week";
    rows(ctx, params, sql).await
}

/// Highest frequency shown on its own in the P(alive) matrix.
pub const P_ALIVE_MAX_FREQUENCY: i64 = 10;
/// Recency bins of the P(alive) matrix (equal widths up to the largest recency).
pub const P_ALIVE_RECENCY_BINS: i64 = 10;

/// The P(alive) matrix: customers of `customer_scores` grouped by
/// `frequency` (0 to `P_ALIVE_MAX_FREQUENCY`+) and recency bin (`bin`,
/// width `width` in the job's time unit), with the cell's `customers` and
/// mean `p_alive` (NULL when no customer of the cell has one).
pub async fn p_alive(ctx: &SessionContext, params: &SqlParams) -> Result<Vec<Row>> {
    let sql = format!(
        "WITH w AS (SELECT greatest(max(recency), 1e-9) / {P_ALIVE_RECENCY_BINS} AS width FROM customer_scores)
        SELECT CAST(least(frequency, {P_ALIVE_MAX_FREQUENCY}) AS BIGINT) AS frequency,
          CAST(least(floor(recency / w.width), {last}) AS BIGINT) AS bin,
          min(w.width) AS width, count(*) AS customers, avg(p_alive) AS p_alive
        FROM customer_scores CROSS JOIN w GROUP BY 1, 2 ORDER BY 1, 2",
        last = P_ALIVE_RECENCY_BINS - 1
    );
    rows(ctx, params, &sql).await
}

/// `tier_transitions` as it is published (`previous_tier` NULL: new or first
/// run), with `customers`, ordered by previous tier then tier.
pub async fn migrations(ctx: &SessionContext, params: &SqlParams) -> Result<Vec<Row>> {
    let order = |c: &str| TIER_ORDER.replace("CASE tier", &format!("CASE {c}"));
    let sql = format!(
        "SELECT previous_tier, tier, customers FROM tier_transitions ORDER BY {}, previous_tier, {}, tier",
        order("previous_tier"),
        order("tier")
    );
    rows(ctx, params, &sql).await
}

/// `retention_scenarios` as published, tiers in chart order, `Total` last.
pub async fn scenarios(ctx: &SessionContext, params: &SqlParams) -> Result<Vec<Row>> {
    let sql = format!(
        "SELECT uplift_points, tier, clv_base, clv_scenario, clv_gain, clv_gain_share, purchases_gain \
         FROM retention_scenarios ORDER BY uplift_points, tier = 'Total', {TIER_ORDER}, tier"
    );
    rows(ctx, params, &sql).await
}

/// Headroom (wallet - spend_12m, money) and share of wallet by tier, with a
/// `Total` row, from the tier table named `table`: customers, spend_12m,
/// wallet and headroom summed, the aggregate share (spend / wallet) and the
/// median customer's share (issue 20; the demo summary prints it too).
pub fn wallet_headroom_sql(table: &str) -> String {
    let cols = "count(*) AS customers, round(sum(greatest(spend_12m, 0.0)), 2) AS spend_12m, \
                round(sum(wallet), 2) AS wallet, round(sum(wallet_headroom), 2) AS headroom, \
                round(sum(greatest(spend_12m, 0.0)) / nullif(sum(wallet), 0.0), 3) AS share, \
                round(median(share_of_wallet), 3) AS median_share";
    format!(
        "SELECT tier, {cols} FROM {table} GROUP BY tier \
         UNION ALL SELECT 'Total' AS tier, {cols} FROM {table} \
         ORDER BY {TIER_ORDER}"
    )
}

/// Whether the model's wallets in the tier table `table` were calibrated
/// by a survey sample (issue 20): customers with a model wallet
/// (`modelled`), those of them calibrated (`calibrated`) and the smallest
/// and largest `wallet_calibration` multiplier (`low`, `high`).
pub fn wallet_calibration_sql(table: &str) -> String {
    format!(
        "SELECT count(*) FILTER (WHERE wallet_source = 'model') AS modelled, \
         count(wallet_calibration) AS calibrated, min(wallet_calibration) AS low, \
         max(wallet_calibration) AS high FROM {table}"
    )
}

/// Customers per share-of-wallet band of width 0.1 (`0.9-1.0` includes 1;
/// `none` for a NULL share, a wallet that is not positive), from `table`.
pub fn share_of_wallet_sql(table: &str) -> String {
    format!(
        "SELECT CASE WHEN share_of_wallet IS NULL THEN 'none' ELSE \
         concat(CAST(b / 10.0 AS VARCHAR), '-', CAST((b + 1) / 10.0 AS VARCHAR)) END AS share_band, \
         count(*) AS customers FROM (SELECT share_of_wallet, \
         least(CAST(floor(share_of_wallet * 10) AS BIGINT), 9) AS b FROM {table}) \
         GROUP BY share_of_wallet IS NULL, b ORDER BY share_of_wallet IS NULL, b"
    )
}

/// Whether `table` has every one of these columns.
pub async fn has_columns(ctx: &SessionContext, table: &str, names: &[&str]) -> Result<bool> {
    let schema = ctx.table(table).await?.schema().clone();
    Ok(names
        .iter()
        .all(|c| schema.has_column_with_unqualified_name(c)))
}
