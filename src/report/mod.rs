//! The visual report: one self-contained `report.html` per run (inline SVG
//! drawn with `plotters`, no scripts, no network): a headline naming the
//! value measure, then the Lorenz curve, cohort retention, tier sizes, the
//! CLV distribution and the field's diagnostics (calibration/holdout plot,
//! cumulative tracking plot, P(alive) by frequency x recency), tier
//! migrations and the retention what-if. `data` reads the numbers from the
//! run's tables, `charts` draws them, `figures` pairs each chart with its
//! query; this file assembles the page.

mod charts;
mod data;
mod figures;

use std::fmt::Write as _;

use datafusion::prelude::SessionContext;

use crate::error::Result;
use crate::steps::SqlParams;
use data::{num, rows, text};
pub use data::{share_of_wallet_sql, wallet_headroom_sql};

/// The charts of the page, by the `id` of their `<svg>` element, in page
/// order (the report test looks each one up).
pub const CHART_IDS: [&str; 10] = [
    "lorenz",
    "cohorts",
    "tiers",
    "clv",
    "holdout",
    "tracking",
    "p_alive",
    "migrations",
    "scenarios",
    "wallet",
];

/// One figure of the page: a chart, or the sentence saying why it is not
/// drawn, with a note under it.
pub struct Figure {
    /// The chart's id ([`CHART_IDS`]).
    pub id: &'static str,
    /// The caption, which says what is plotted.
    pub title: String,
    /// The `<svg id="{id}">` chart; `None` when the run cannot have it.
    pub svg: Option<String>,
    /// A sentence under the chart (sources, the reason it is missing).
    pub note: String,
    /// Further HTML under the note (a table of the chart's numbers).
    pub table: String,
}

/// HTML-escape text.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A parameter of the run as text ("" when the job does not declare it).
fn param(params: &SqlParams, name: &str) -> String {
    params.get(name).map(|v| v.to_string()).unwrap_or_default()
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1180px}\
h1{font-size:22px}.headline{font-size:17px;background:#f3f6fa;padding:8px 12px;border-left:4px solid #1f77b4}\
.charts{display:flex;flex-wrap:wrap;gap:16px}\
figure{margin:0;width:560px;max-width:100%}figure svg{display:block;max-width:100%;height:auto}\
figcaption{font-weight:bold;margin-bottom:4px}.note{font-size:13px;color:#555;margin:4px 0}\
.no-chart{border:1px dashed #999;padding:16px;color:#444}\
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}";

/// Render the report of a nightly-style run from its session and bound
/// parameters; `None` when the job has no `customer_tiers` table to report
/// on. Errors: a query or a chart that fails ([`crate::error::Error::Chart`]).
pub async fn render(
    ctx: &SessionContext,
    params: &SqlParams,
    job: &str,
    as_of: &str,
    run_id: &str,
) -> Result<Option<String>> {
    if !ctx.table_exist("customer_tiers")? {
        return Ok(None);
    }
    let headline = headline(ctx, params).await?;
    let facts = facts(ctx, params).await?;
    let mut body = String::new();
    for f in figures::all(ctx, params).await? {
        let chart = match &f.svg {
            Some(svg) => svg.clone(),
            None => format!(
                "<p class=\"no-chart\" id=\"{}-none\">{}</p>",
                f.id,
                esc(&f.note)
            ),
        };
        let note = if f.svg.is_some() && !f.note.is_empty() {
            format!("<p class=\"note\">{}</p>", esc(&f.note))
        } else {
            String::new()
        };
        let _ = writeln!(
            body,
            "<figure id=\"fig-{}\"><figcaption>{}</figcaption>{chart}{note}{}</figure>",
            f.id,
            esc(&f.title),
            f.table
        );
    }
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>custval {job} {as_of}</title><style>{STYLE}</style></head>\
<body><h1>custval: {job}, as of {as_of}</h1><p class=\"headline\" id=\"headline\">{headline}</p>\
<p>run {run_id}</p><ul>{facts}</ul><div class=\"charts\">\n{body}</div></body></html>",
        job = esc(job),
        as_of = esc(as_of),
        run_id = esc(run_id),
    );
    Ok(Some(html))
}

/// The headline: the value measure every value chart uses, the customers
/// and their total CLV over the horizon (from `customer_tiers`).
async fn headline(ctx: &SessionContext, params: &SqlParams) -> Result<String> {
    let measure = match param(params, "value").as_str() {
        "" => "revenue".to_string(),
        m => m.to_string(),
    };
    let t = rows(
        ctx,
        params,
        "SELECT count(*) AS customers, sum(clv) AS clv FROM customer_tiers",
    )
    .await?;
    let r = t.first().cloned().unwrap_or_default();
    let clv = match num(&r, "clv") {
        Some(v) => charts::count(v),
        None => "not available (no fitted model)".into(),
    };
    Ok(format!(
        "Value measure: <b>{}</b> (the job's <code>value</code> parameter): CLV, the Lorenz curve, \
concentration, tiers and the retention what-if are in {}. {} customers; total expected CLV over \
{} months: {}.",
        esc(&measure),
        esc(&measure),
        charts::count(num(&r, "customers").unwrap_or(0.0)),
        esc(&param(params, "horizon_months")),
        esc(&clv)
    ))
}

/// One line per model fit and per concentration measure.
async fn facts(ctx: &SessionContext, params: &SqlParams) -> Result<String> {
    let mut out = String::new();
    if ctx.table_exist("model_fit")? {
        for r in rows(ctx, params, "SELECT * FROM model_fit ORDER BY model").await? {
            let values: Vec<String> = ["r", "alpha", "a", "b", "p", "q", "v"]
                .iter()
                .filter_map(|k| num(&r, k).map(|v| format!("{k} = {v:.4}")))
                .collect();
            let _ = write!(
                out,
                "<li>{}: {} (converged: {})</li>",
                esc(&text(&r, "model")),
                esc(&values.join(", ")),
                esc(&text(&r, "converged"))
            );
        }
    }
    if ctx.table_exist("concentration")? {
        for r in rows(ctx, params, "SELECT * FROM concentration ORDER BY measure").await? {
            let pct = |k: &str| match num(&r, k) {
                Some(v) => format!("{:.1}%", v * 100.0),
                None => "n/a".into(),
            };
            let gini = match num(&r, "gini") {
                Some(g) => format!("{g:.3}"),
                None => "n/a".into(),
            };
            let _ = write!(
                out,
                "<li>{}: top 20% hold {}, {} customers hold 80%, Gini {}</li>",
                esc(&text(&r, "measure")),
                pct("top_20pct_share"),
                esc(&text(&r, "customers_for_80pct")),
                gini
            );
        }
    }
    Ok(out)
}
