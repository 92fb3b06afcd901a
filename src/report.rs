//! The visual report: one self-contained `report.html` per run (inline SVG,
//! no scripts, no network) with the Lorenz curve, the cohort retention
//! heatmap, tier sizes, the CLV distribution, share-of-wallet headroom and
//! distribution ([`wallet_section`], whose queries the demo summary prints
//! too) and, with a holdout, predicted against actual holdout purchases.

use std::fmt::Write as _;

use datafusion::prelude::SessionContext;
use serde_json::{Map, Value};

use crate::error::Result;
use crate::table::to_json_rows;

type Row = Map<String, Value>;

async fn rows(ctx: &SessionContext, sql: &str) -> Result<Vec<Row>> {
    let batches = ctx.sql(sql).await?.collect().await?;
    to_json_rows(&batches)
}

fn num(r: &Row, k: &str) -> Option<f64> {
    r.get(k).and_then(|v| v.as_f64())
}

fn text(r: &Row, k: &str) -> String {
    match r.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 520.0;
const H: f64 = 300.0;
const M: f64 = 40.0;

fn frame(id: &str, title: &str, body: &str) -> String {
    format!(
        "<figure><figcaption>{}</figcaption><svg id=\"{id}\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">\
<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"#fff\"/>{body}</svg></figure>",
        esc(title),
        esc(title)
    )
}

fn axes(xlabel: &str, ylabel: &str) -> String {
    format!(
        "<line x1=\"{M}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#333\"/><line x1=\"{M}\" y1=\"{M}\" x2=\"{M}\" y2=\"{y0}\" stroke=\"#333\"/>\
<text x=\"{xc}\" y=\"{yl}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\
<text x=\"12\" y=\"{yc}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 12 {yc})\">{}</text>",
        esc(xlabel),
        esc(ylabel),
        y0 = H - M,
        x1 = W - 10.0,
        xc = (W + M) / 2.0,
        yl = H - 8.0,
        yc = H / 2.0
    )
}

fn sx(f: f64) -> f64 {
    M + f * (W - M - 10.0)
}
fn sy(f: f64) -> f64 {
    H - M - f * (H - 2.0 * M)
}

fn lorenz_svg(points: &[(f64, f64)], gini: Option<f64>) -> String {
    let mut b = axes("share of customers (ascending value)", "share of value");
    let _ = write!(
        b,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#aaa\" stroke-dasharray=\"4 3\"/>",
        sx(0.0),
        sy(0.0),
        sx(1.0),
        sy(1.0)
    );
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
        .collect();
    let _ = write!(b, "<polyline class=\"lorenz\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>", pts.join(" "));
    if let Some(g) = gini {
        let _ = write!(
            b,
            "<text x=\"{}\" y=\"{}\" font-size=\"13\">Gini {:.3}</text>",
            sx(0.05),
            sy(0.9),
            g
        );
    }
    frame("lorenz", "Lorenz curve of customer value", &b)
}

fn heat(v: f64) -> String {
    // White to dark blue.
    let v = v.clamp(0.0, 1.0);
    let c = |lo: f64, hi: f64| (lo + (hi - lo) * v).round() as u8;
    format!(
        "rgb({},{},{})",
        c(247.0, 8.0),
        c(251.0, 48.0),
        c(255.0, 107.0)
    )
}

fn cohorts_svg(cells: &[Row]) -> String {
    let mut cohorts: Vec<String> = cells.iter().map(|r| text(r, "cohort")).collect();
    cohorts.dedup();
    let periods = cells
        .iter()
        .filter_map(|r| num(r, "period"))
        .fold(0.0f64, f64::max) as usize
        + 1;
    let (cw, ch) = (
        (W - 90.0) / periods.max(1) as f64,
        (H - 40.0) / cohorts.len().max(1) as f64,
    );
    let mut b = String::new();
    for (i, c) in cohorts.iter().enumerate() {
        let _ = write!(
            b,
            "<text x=\"4\" y=\"{:.1}\" font-size=\"9\">{}</text>",
            20.0 + (i as f64 + 0.7) * ch,
            esc(c)
        );
    }
    for r in cells {
        let (Some(p), Some(rate)) = (num(r, "period"), num(r, "retention_rate")) else {
            continue;
        };
        let i = cohorts
            .iter()
            .position(|c| *c == text(r, "cohort"))
            .unwrap_or(0);
        let _ = write!(
            b,
            "<rect class=\"cell\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} +{}: {:.1}%</title></rect>",
            80.0 + p * cw,
            20.0 + i as f64 * ch,
            cw.max(1.0),
            ch.max(1.0),
            heat(rate),
            esc(&text(r, "cohort")),
            p,
            rate * 100.0
        );
    }
    let _ = write!(b, "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">months since first purchase</text>", 80.0 + (W - 90.0) / 2.0, H - 6.0);
    frame(
        "cohorts",
        "Cohort retention (share of each first-purchase cohort active)",
        &b,
    )
}

fn bars_svg(id: &str, title: &str, xlabel: &str, bars: &[(String, f64)]) -> String {
    let mut b = axes(xlabel, "customers");
    let max = bars.iter().map(|(_, v)| *v).fold(0.0f64, f64::max).max(1.0);
    let n = bars.len().max(1) as f64;
    let bw = (W - M - 20.0) / n;
    for (i, (label, v)) in bars.iter().enumerate() {
        let h = v / max * (H - 2.0 * M);
        let x = M + 5.0 + i as f64 * bw;
        let _ = write!(
            b,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#2ca02c\"><title>{}: {v}</title></rect>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\">{}</text>",
            H - M - h,
            (bw - 6.0).max(1.0),
            esc(label),
            x + bw / 2.0 - 3.0,
            H - M + 12.0,
            esc(label)
        );
    }
    frame(id, title, &b)
}

fn holdout_svg(rows: &[Row]) -> String {
    let mut b = axes(
        "repeat purchases in the calibration period",
        "mean holdout purchases",
    );
    let max = rows
        .iter()
        .flat_map(|r| [num(r, "predicted"), num(r, "actual")])
        .flatten()
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let n = rows.len().max(2) as f64 - 1.0;
    for (key, color) in [("predicted", "#d62728"), ("actual", "#1f77b4")] {
        let pts: Vec<String> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                num(r, key).map(|v| format!("{:.1},{:.1}", sx(i as f64 / n), sy(v / max)))
            })
            .collect();
        let _ = write!(b, "<polyline class=\"{key}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>", pts.join(" "));
    }
    let _ = write!(b, "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#d62728\">predicted</text><text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#1f77b4\">actual</text>", sx(0.05), sy(0.95), sx(0.05), sy(0.87));
    frame(
        "holdout",
        "Holdout: predicted vs actual purchases by calibration frequency",
        &b,
    )
}

/// Render the report of a nightly-style run from its session; `None` when the
/// job has no `customer_tiers` table to report on.
pub async fn render(
    ctx: &SessionContext,
    job: &str,
    as_of: &str,
    run_id: &str,
) -> Result<Option<String>> {
    if !ctx.table_exist("customer_tiers")? {
        return Ok(None);
    }
    let mut charts = value_charts(ctx).await?;
    if let Some(holdout) = holdout_chart(ctx).await? {
        charts.push(holdout);
    }
    let headline = headline(ctx).await?;
    if let Some(wallet) = wallet_section(ctx).await? {
        charts.push(wallet);
    }
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>custval {job} {as_of}</title>\
<style>body{{font-family:sans-serif;margin:24px;color:#222}}figure{{display:inline-block;margin:8px;vertical-align:top}}figcaption{{font-weight:bold;margin-bottom:4px}}</style></head>\
<body><h1>custval: {job}, as of {as_of}</h1><p>run {run_id}</p><ul>{headline}</ul>{}</body></html>",
        charts.join("\n"),
        job = esc(job),
        as_of = esc(as_of),
        run_id = esc(run_id),
    );
    Ok(Some(html))
}

/// The Lorenz curve, cohort heatmap, tier sizes and CLV distribution.
async fn value_charts(ctx: &SessionContext) -> Result<Vec<String>> {
    let mut charts = Vec::new();
    let lz = rows(
        ctx,
        "SELECT lorenz(value_total, 100) AS l, gini(value_total) AS g FROM customer_tiers",
    )
    .await?;
    let gini = lz.first().and_then(|r| num(r, "g"));
    let points: Vec<(f64, f64)> = lz
        .first()
        .and_then(|r| r.get("l"))
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some((
                        p.get("population_share")?.as_f64()?,
                        p.get("value_share")?.as_f64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    charts.push(lorenz_svg(&points, gini));
    if ctx.table_exist("retention_cohorts")? {
        let cells = rows(ctx, "SELECT CAST(cohort AS VARCHAR) AS cohort, period, retention_rate FROM retention_cohorts ORDER BY cohort, period").await?;
        charts.push(cohorts_svg(&cells));
    }
    let tiers = rows(
        ctx,
        "SELECT tier, count(*) AS n FROM customer_tiers GROUP BY tier ORDER BY min(CASE tier WHEN 'Platinum' THEN 1 WHEN 'Gold' THEN 2 WHEN 'Silver' THEN 3 WHEN 'Bronze' THEN 4 ELSE 5 END)",
    )
    .await?;
    let tier_bars: Vec<(String, f64)> = tiers
        .iter()
        .map(|r| (text(r, "tier"), num(r, "n").unwrap_or(0.0)))
        .collect();
    charts.push(bars_svg("tiers", "Customers per tier", "tier", &tier_bars));
    let hist = rows(
        ctx,
        "SELECT CAST(floor(log10(greatest(clv, 0) + 1) * 4) AS BIGINT) AS bin, count(*) AS n FROM customer_tiers WHERE clv IS NOT NULL GROUP BY 1 ORDER BY 1",
    )
    .await?;
    let clv_bars: Vec<(String, f64)> = hist
        .iter()
        .map(|r| {
            let bin = num(r, "bin").unwrap_or(0.0);
            (
                format!("{:.0}", 10f64.powf(bin / 4.0) - 1.0),
                num(r, "n").unwrap_or(0.0),
            )
        })
        .collect();
    charts.push(bars_svg(
        "clv",
        "CLV distribution (customers per CLV band, log scale; label = band start)",
        "CLV",
        &clv_bars,
    ));
    Ok(charts)
}

/// Headroom (wallet - spend_12m, money) and share of wallet by tier, with a
/// `Total` row, from the tier table named `table`: customers, spend_12m,
/// wallet and headroom summed, the aggregate share (spend / wallet) and the
/// median customer's share.
pub fn wallet_headroom_sql(table: &str) -> String {
    let cols = "count(*) AS customers, round(sum(greatest(spend_12m, 0.0)), 2) AS spend_12m, \
                round(sum(wallet), 2) AS wallet, round(sum(wallet_headroom), 2) AS headroom, \
                round(sum(greatest(spend_12m, 0.0)) / nullif(sum(wallet), 0.0), 3) AS share, \
                round(median(share_of_wallet), 3) AS median_share";
    format!(
        "SELECT tier, {cols} FROM {table} GROUP BY tier \
         UNION ALL SELECT 'Total' AS tier, {cols} FROM {table} \
         ORDER BY CASE tier WHEN 'Platinum' THEN 1 WHEN 'Gold' THEN 2 WHEN 'Silver' THEN 3 \
         WHEN 'Bronze' THEN 4 WHEN 'At risk' THEN 5 ELSE 6 END"
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

/// An HTML table of `rows` with the columns `cols`, in order.
fn html_table(rows: &[Row], cols: &[&str]) -> String {
    let head: String = cols
        .iter()
        .map(|c| format!("<th>{}</th>", esc(c)))
        .collect();
    let body: String = rows
        .iter()
        .map(|r| {
            let cells: String = cols
                .iter()
                .map(|c| format!("<td>{}</td>", esc(&text(r, c))))
                .collect();
            format!("<tr>{cells}</tr>")
        })
        .collect();
    format!("<table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\"><tr>{head}</tr>{body}</table>")
}

/// Share of wallet: headroom by tier and in total, and the distribution of
/// the customers' shares, as tables (issue 20); `None` when the job's
/// `customer_tiers` has no wallet columns.
pub async fn wallet_section(ctx: &SessionContext) -> Result<Option<String>> {
    let schema = ctx.table("customer_tiers").await?.schema().clone();
    let needed = [
        "tier",
        "spend_12m",
        "wallet",
        "wallet_headroom",
        "share_of_wallet",
    ];
    if !needed
        .iter()
        .all(|c| schema.has_column_with_unqualified_name(c))
    {
        return Ok(None);
    }
    let headroom = rows(ctx, &wallet_headroom_sql("customer_tiers")).await?;
    let bands = rows(ctx, &share_of_wallet_sql("customer_tiers")).await?;
    Ok(Some(format!(
        "<section id=\"wallet\"><h2>Share of wallet</h2>\
<p>Headroom is wallet minus the last 12 months' spend (money); the wallet is the wallets input or the estimate (see wallet_source).</p>{}\
<p>Customers per share-of-wallet band</p>{}</section>",
        html_table(
            &headroom,
            &["tier", "customers", "spend_12m", "wallet", "headroom", "share", "median_share"]
        ),
        html_table(&bands, &["share_band", "customers"])
    )))
}

/// Predicted against actual holdout purchases, when the run had a holdout.
async fn holdout_chart(ctx: &SessionContext) -> Result<Option<String>> {
    if ctx.table_exist("customer_scores")? {
        let has_holdout = rows(
            ctx,
            "SELECT count(*) AS n FROM customer_scores WHERE holdout_predicted IS NOT NULL",
        )
        .await?;
        if has_holdout.first().and_then(|r| num(r, "n")).unwrap_or(0.0) > 0.0 {
            let h = rows(
                ctx,
                "SELECT least(cal_frequency, 8) AS f, avg(holdout_predicted) AS predicted, avg(CAST(holdout_purchases AS DOUBLE)) AS actual \
                 FROM customer_scores WHERE holdout_predicted IS NOT NULL GROUP BY 1 ORDER BY 1",
            )
            .await?;
            return Ok(Some(holdout_svg(&h)));
        }
    }
    Ok(None)
}

/// One line per model fit and per concentration measure.
async fn headline(ctx: &SessionContext) -> Result<String> {
    let mut headline = String::new();
    if ctx.table_exist("model_fit")? {
        for r in rows(ctx, "SELECT * FROM model_fit ORDER BY model").await? {
            let params: Vec<String> = ["r", "alpha", "a", "b", "p", "q", "v"]
                .iter()
                .filter_map(|k| num(&r, k).map(|v| format!("{k} = {v:.4}")))
                .collect();
            let _ = write!(
                headline,
                "<li>{}: {} (converged: {})</li>",
                esc(&text(&r, "model")),
                esc(&params.join(", ")),
                esc(&text(&r, "converged"))
            );
        }
    }
    if ctx.table_exist("concentration")? {
        for r in rows(ctx, "SELECT * FROM concentration").await? {
            let _ = write!(
                headline,
                "<li>{}: top 20% hold {:.1}%, {} customers hold 80%, Gini {:.3}</li>",
                esc(&text(&r, "measure")),
                num(&r, "top_20pct_share").unwrap_or(f64::NAN) * 100.0,
                esc(&text(&r, "customers_for_80pct")),
                num(&r, "gini").unwrap_or(f64::NAN)
            );
        }
    }
    Ok(headline)
}
