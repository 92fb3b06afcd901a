//! Each figure of report.html: its query (`data`), its chart (`charts`), its
//! caption and the note that names its source table, or the sentence that
//! says why the run cannot have it.

use datafusion::prelude::SessionContext;
use plotters::style::RGBColor;

use super::charts::{self, count, Frame, Heatmap, Series};
use super::data::{self, num, rows, text, Row};
use super::{esc, param, Figure};
use crate::error::Result;
use crate::steps::SqlParams;

const BLUE: RGBColor = RGBColor(31, 119, 180);
const RED: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(150, 150, 150);

/// Every figure in page order ([`super::CHART_IDS`]); a figure whose tables
/// the job does not have is left out.
pub async fn all(ctx: &SessionContext, params: &SqlParams) -> Result<Vec<Figure>> {
    let has = |tables: &[&str], names: &[&str]| data::has(ctx, params, tables, names);
    let mut out = vec![lorenz(ctx, params).await?];
    if has(&["retention_cohorts"], &[]) {
        out.push(cohorts(ctx, params).await?);
    }
    out.push(tiers(ctx, params).await?);
    out.push(clv(ctx, params).await?);
    if has(&["customer_scores"], &["holdout_days"]) {
        out.push(holdout(ctx, params).await?);
    }
    if has(
        &["rfm", "model_params", "transactions_clean"],
        &["as_of_day", "time_unit_days"],
    ) {
        out.push(tracking(ctx, params).await?);
    }
    if has(&["customer_scores"], &[]) {
        out.push(p_alive(ctx, params).await?);
    }
    if has(&["tier_transitions"], &[]) {
        out.push(migrations(ctx, params).await?);
    }
    if has(&["retention_scenarios"], &[]) {
        out.push(scenarios(ctx, params).await?);
    }
    let wallet_columns = [
        "tier",
        "spend_12m",
        "wallet",
        "wallet_headroom",
        "share_of_wallet",
    ];
    if data::has_columns(ctx, "customer_tiers", &wallet_columns).await? {
        out.push(wallet(ctx, params).await?);
    }
    Ok(out)
}

fn figure(id: &'static str, title: &str, svg: Option<String>, note: String) -> Figure {
    Figure {
        id,
        title: title.to_string(),
        svg,
        note,
        table: String::new(),
    }
}

async fn lorenz(ctx: &SessionContext, params: &SqlParams) -> Result<Figure> {
    let lz = rows(
        ctx,
        params,
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
    let frame = Frame {
        x_title: "share of customers (ascending value)".into(),
        y_title: "share of value".into(),
        x: 0.0..1.0,
        y: 0.0..1.0,
        percent: true,
        marker: None,
    };
    let series = [
        Series {
            label: "equal value".into(),
            points: vec![(0.0, 0.0), (1.0, 1.0)],
            color: GREY,
            markers: false,
        },
        Series {
            label: "customers".into(),
            points,
            color: BLUE,
            markers: false,
        },
    ];
    let title = "Lorenz curve of customer value";
    let svg = charts::lines("lorenz", title, &frame, &series)?;
    let note = match gini {
        Some(g) => format!("Gini {g:.3} (customer_tiers.value_total)."),
        None => "Gini not defined: the total value is not positive.".into(),
    };
    Ok(figure("lorenz", title, Some(svg), note))
}

async fn cohorts(ctx: &SessionContext, params: &SqlParams) -> Result<Figure> {
    let cells = rows(
        ctx,
        params,
        "SELECT CAST(cohort AS VARCHAR) AS cohort, period, cohort_size, retention_rate \
         FROM retention_cohorts ORDER BY cohort, period",
    )
    .await?;
    let mut cohort_names: Vec<(String, String)> = Vec::new();
    let mut periods = 0usize;
    for r in &cells {
        let c = text(r, "cohort");
        if cohort_names.last().map(|x| &x.0) != Some(&c) {
            let label = format!(
                "{} (n={})",
                &c[..c.len().min(7)],
                count(num(r, "cohort_size").unwrap_or(0.0))
            );
            cohort_names.push((c, label));
        }
        periods = periods.max(num(r, "period").unwrap_or(0.0) as usize + 1);
    }
    let h = Heatmap {
        x_title: "months since first purchase".into(),
        y_title: "cohort (first purchase month)".into(),
        columns: (0..periods).map(|p| p.to_string()).collect(),
        rows: cohort_names.iter().map(|c| c.1.clone()).collect(),
        cells: cells
            .iter()
            .filter_map(|r| {
                let row = cohort_names.iter().position(|c| c.0 == text(r, "cohort"))?;
                let rate = num(r, "retention_rate")?;
                let p = num(r, "period")? as usize;
                Some((p, row, rate, format!("{:.0}", rate * 100.0)))
            })
            .collect(),
        legend: "share active".into(),
    };
    let title =
        "Cohort retention: share of each first-purchase cohort active (bought) in each month";
    let svg = charts::heatmap("cohorts", title, &h)?;
    let note =
        "retention_cohorts.retention_rate in percent (written in the cells when they are wide enough).";
    Ok(figure("cohorts", title, Some(svg), note.into()))
}

async fn tiers(ctx: &SessionContext, params: &SqlParams) -> Result<Figure> {
    let sql = format!(
        "SELECT tier, count(*) AS n FROM customer_tiers GROUP BY tier ORDER BY min({}), tier",
        data::TIER_ORDER
    );
    let bars: Vec<(String, f64, String)> = rows(ctx, params, &sql)
        .await?
        .iter()
        .map(|r| {
            let n = num(r, "n").unwrap_or(0.0);
            (text(r, "tier"), n, count(n))
        })
        .collect();
    let title = "Customers per tier";
    let svg = charts::bars("tiers", title, "tier", "customers", &bars)?;
    Ok(figure(
        "tiers",
        title,
        Some(svg),
        "customer_tiers.tier".into(),
    ))
}

async fn clv(ctx: &SessionContext, params: &SqlParams) -> Result<Figure> {
    let hist = rows(
        ctx,
        params,
        "SELECT CAST(floor(log10(greatest(clv, 0) + 1) * 4) AS BIGINT) AS bin, count(*) AS n \
         FROM customer_tiers WHERE clv IS NOT NULL GROUP BY 1 ORDER BY 1",
    )
    .await?;
    let bars: Vec<(String, f64, String)> = hist
        .iter()
        .map(|r| {
            let bin = num(r, "bin").unwrap_or(0.0);
            let n = num(r, "n").unwrap_or(0.0);
            (
                charts::tick(10f64.powf(bin / 4.0) - 1.0, false),
                n,
                count(n),
            )
        })
        .collect();
    let title = "CLV distribution: customers per CLV band (log bands, label = band start)";
    let svg = charts::bars("clv", title, "CLV band start", "customers", &bars)?;
    let note = "customer_tiers.clv, bands of a quarter decade of (CLV + 1); customers without a CLV are left out.";
    Ok(figure("clv", title, Some(svg), note.into()))
}

async fn holdout(ctx: &SessionContext, params: &SqlParams) -> Result<Figure> {
    let title = "Calibration/holdout: mean repeat purchases in the holdout by repeat purchases in the calibration period";
    let days = param(params, "holdout_days");
    let rows = data::holdout(ctx, params).await?;
    if rows.is_empty() {
        let note = format!(
            "This run has no holdout (holdout_days = {days}), so there is no calibration/holdout plot: \
             run with --set holdout_days=N (e.g. a quarter of the history) to fit the model on the data \
             before as_of - N days and compare its predictions with the last N days."
        );
        return Ok(figure("holdout", title, None, note));
    }
    let max = data::HOLDOUT_MAX_FREQUENCY as f64;
    let points = |k: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| Some((num(r, "frequency")?, num(r, k)?)))
            .collect()
    };
    let top = rows
        .iter()
        .flat_map(|r| [num(r, "actual"), num(r, "predicted")])
        .flatten()
        .fold(0.0f64, f64::max);
    let frame = Frame {
        x_title: format!(
            "repeat purchases in the calibration period ({max:.0} = {max:.0} or more)"
        ),
        y_title: format!("mean purchases in the {days}-day holdout"),
        x: -0.2..max + 0.2,
        y: 0.0..(top * 1.1).max(1e-6),
        percent: false,
        marker: None,
    };
    let series = [
        Series {
            label: "actual".into(),
            points: points("actual"),
            color: BLUE,
            markers: true,
        },
        Series {
            label: "model (calibration fit)".into(),
            points: points("predicted"),
            color: RED,
            markers: true,
        },
    ];
    let svg = charts::lines("holdout", title, &frame, &series)?;
    let mut f = figure(
        "holdout",
        title,
        Some(svg),
        "customer_scores.holdout_purchases and holdout_predicted, averaged per calibration frequency.".into(),
    );
    f.table = table(
        &rows,
        &[
            ("frequency", "frequency"),
            ("customers", "customers"),
            ("actual", "actual"),
            ("predicted", "model"),
        ],
    );
    Ok(f)
}

async fn tracking(ctx: &SessionContext, params: &SqlParams) -> Result<Figure> {
    let rows = data::tracking(ctx, params).await?;
    let points = |k: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| Some((num(r, "week")? + 1.0, num(r, k)?)))
            .collect()
    };
    let (actual, expected) = (points("actual"), points("expected"));
    let top = actual
        .iter()
        .chain(&expected)
        .map(|p| p.1)
        .fold(0.0f64, f64::max);
    let weeks = rows.len() as f64;
    let holdout: f64 = param(params, "holdout_days").parse().unwrap_or(0.0);
    // Week k ends on day d0 + 7k + 6: the calibration end's position in weeks.
    let d0 = rows
        .first()
        .and_then(|r| num(r, "end_day"))
        .map(|d| d - 6.0);
    let cal_end: Option<f64> = param(params, "calibration_end_day").parse().ok();
    let marker = match (d0, cal_end) {
        (Some(d0), Some(end)) if holdout > 0.0 => {
            Some(((end - d0 + 1.0) / 7.0, " calibration end".to_string()))
        }
        _ => None,
    };
    let frame = Frame {
        x_title: "weeks since the first customer's first purchase".into(),
        y_title: "cumulative repeat purchases".into(),
        x: 0.0..weeks.max(1.0),
        y: 0.0..(top * 1.05).max(1.0),
        percent: false,
        marker,
    };
    let fit = if holdout > 0.0 {
        "calibration fit"
    } else {
        "full fit"
    };
    let series = [
        Series {
            label: "actual".into(),
            points: actual.clone(),
            color: BLUE,
            markers: false,
        },
        Series {
            label: format!("BG/NBD expected ({fit})"),
            points: expected.clone(),
            color: RED,
            markers: false,
        },
    ];
    let title = "Tracking: cumulative repeat purchases by week, actual vs model";
    let svg = charts::lines("tracking", title, &frame, &series)?;
    let last = |s: &[(f64, f64)]| s.last().map(|p| count(p.1)).unwrap_or_else(|| "n/a".into());
    let note = format!(
        "At the as-of date: actual {} repeat purchases (the customers' frequency summed), model {}. \
         Actual: purchase days after each customer's first (transactions_clean, the RFM rule); \
         model: bgnbd_expected_purchases from each customer's first purchase with the {fit}'s \
         parameters (model_params).",
        last(&actual),
        last(&expected)
    );
    Ok(figure("tracking", title, Some(svg), note))
}

async fn p_alive(ctx: &SessionContext, params: &SqlParams) -> Result<Figure> {
    let rows = data::p_alive(ctx, params).await?;
    let width = rows.iter().find_map(|r| num(r, "width")).unwrap_or(1.0);
    let nbins = data::P_ALIVE_RECENCY_BINS as usize;
    let maxf = data::P_ALIVE_MAX_FREQUENCY as usize;
    let columns = (0..nbins)
        .map(|b| charts::tick(b as f64 * width, false))
        .collect();
    // Highest frequency at the top, as in lifetimes' matrix.
    let rows_labels: Vec<String> = (0..=maxf)
        .rev()
        .map(|f| {
            if f == maxf {
                format!("{f}+")
            } else {
                f.to_string()
            }
        })
        .collect();
    let cells = rows
        .iter()
        .filter_map(|r| {
            let f = num(r, "frequency")? as usize;
            let b = num(r, "bin")? as usize;
            let p = num(r, "p_alive").unwrap_or(f64::NAN);
            let label = if p.is_nan() {
                "n/a".to_string()
            } else {
                format!("{:.0}", p * 100.0)
            };
            Some((b, maxf - f.min(maxf), p, label))
        })
        .collect();
    let unit = match param(params, "time_unit").as_str() {
        "" => "time units".to_string(),
        u => format!("{u}s"),
    };
    let h = Heatmap {
        x_title: format!("recency (last minus first purchase, {unit}; bin start)"),
        y_title: "frequency (repeat purchases)".into(),
        columns,
        rows: rows_labels,
        cells,
        legend: "P(alive)".into(),
    };
    let title = "P(alive) by frequency and recency: mean over the customers of each cell";
    let svg = charts::heatmap("p_alive", title, &h)?;
    let note = "customer_scores.p_alive averaged per cell (percent); empty cells have no customer, grey ones no P(alive).";
    Ok(figure("p_alive", title, Some(svg), note.into()))
}

async fn migrations(ctx: &SessionContext, params: &SqlParams) -> Result<Figure> {
    let rows = data::migrations(ctx, params).await?;
    let label = |r: &Row, k: &str| match text(r, k) {
        t if t.is_empty() => "(none)".to_string(),
        t => t,
    };
    let mut from: Vec<String> = Vec::new();
    let mut to: Vec<String> = Vec::new();
    for r in &rows {
        for (list, k) in [(&mut from, "previous_tier"), (&mut to, "tier")] {
            let l = label(r, k);
            if !list.contains(&l) {
                list.push(l);
            }
        }
    }
    let row_total = |f: &str| -> f64 {
        rows.iter()
            .filter(|r| label(r, "previous_tier") == f)
            .filter_map(|r| num(r, "customers"))
            .sum()
    };
    let cells = rows
        .iter()
        .filter_map(|r| {
            let (f, t) = (label(r, "previous_tier"), label(r, "tier"));
            let n = num(r, "customers")?;
            let share = n / row_total(&f).max(1.0);
            Some((
                to.iter().position(|x| *x == t)?,
                from.iter().position(|x| *x == f)?,
                share,
                count(n),
            ))
        })
        .collect();
    let h = Heatmap {
        x_title: "tier tonight".into(),
        y_title: "tier in the previous partition".into(),
        columns: to,
        rows: from,
        cells,
        legend: "share of row".into(),
    };
    let title = "Tier migrations since the previous published partition (customers)";
    let svg = charts::heatmap("migrations", title, &h)?;
    let note =
        "tier_transitions.customers; (none): no previous tier (a new customer, or the first run).";
    Ok(figure("migrations", title, Some(svg), note.into()))
}

async fn scenarios(ctx: &SessionContext, params: &SqlParams) -> Result<Figure> {
    let rows = data::scenarios(ctx, params).await?;
    let title = "Retention what-if: change in total expected CLV when retention rises by k points";
    let totals: Vec<&Row> = rows.iter().filter(|r| text(r, "tier") == "Total").collect();
    if totals.iter().all(|r| num(r, "clv_gain").is_none()) {
        let note = "retention_scenarios has no projection in this run (the models did not converge, or the uplift leaves no dropout).";
        return Ok(figure("scenarios", title, None, note.into()));
    }
    let bars: Vec<(String, f64, String)> = totals
        .iter()
        .filter_map(|r| {
            let gain = num(r, "clv_gain")?;
            let share = num(r, "clv_gain_share")
                .map(|s| format!(" ({:+.1}%)", s * 100.0))
                .unwrap_or_default();
            let pts = charts::tick(num(r, "uplift_points")?, false);
            Some((
                format!("+{pts} points"),
                gain,
                format!("{}{share}", count(gain)),
            ))
        })
        .collect();
    let svg = charts::bars("scenarios", title, "retention uplift", "CLV gain", &bars)?;
    let mut f = figure(
        "scenarios",
        title,
        Some(svg),
        "retention_scenarios (Total rows; the table has every tier). Bars: clv_gain with clv_gain_share.".into(),
    );
    f.table = table(
        &rows,
        &[
            ("uplift_points", "points"),
            ("tier", "tier"),
            ("clv_base", "CLV"),
            ("clv_gain", "CLV gain"),
            ("clv_gain_share", "gain share"),
            ("purchases_gain", "extra purchases"),
        ],
    );
    Ok(f)
}

/// Share of wallet (issue 20): customers per share band, and headroom
/// (wallet - spend_12m) by tier and in total as the table under it.
async fn wallet(ctx: &SessionContext, params: &SqlParams) -> Result<Figure> {
    let bars: Vec<(String, f64, String)> =
        rows(ctx, params, &data::share_of_wallet_sql("customer_tiers"))
            .await?
            .iter()
            .map(|r| {
                let n = num(r, "customers").unwrap_or(0.0);
                (text(r, "share_band"), n, count(n))
            })
            .collect();
    let title = "Share of wallet: customers per band of spend_12m / wallet";
    let svg = charts::bars("wallet", title, "share of wallet", "customers", &bars)?;
    let headroom = rows(ctx, params, &data::wallet_headroom_sql("customer_tiers")).await?;
    let calibration = rows(ctx, params, &data::wallet_calibration_sql("customer_tiers")).await?;
    let mut f = figure(
        "wallet",
        title,
        Some(svg),
        format!(
            "customer_tiers.share_of_wallet; below, headroom = wallet - spend_12m (money) by \
             tier; the wallet is the wallets input or the estimate (wallet_source).{}",
            calibration
                .first()
                .map(calibration_note)
                .unwrap_or_default()
        ),
    );
    f.table = table(
        &headroom,
        &[
            ("tier", "tier"),
            ("customers", "customers"),
            ("spend_12m", "spend 12m"),
            ("wallet", "wallet"),
            ("headroom", "headroom"),
            ("share", "share"),
            ("median_share", "median share"),
        ],
    );
    Ok(f)
}

/// What the model's wallets assume, from a `wallet_calibration_sql` row:
/// nothing without model wallets; the multipliers when a survey sample
/// calibrated them; else the uncalibrated estimate's assumption, plainly.
fn calibration_note(r: &Row) -> String {
    let modelled = num(r, "modelled").unwrap_or(0.0);
    let calibrated = num(r, "calibrated").unwrap_or(0.0);
    if modelled == 0.0 {
        String::new()
    } else if calibrated > 0.0 {
        format!(
            " The model's wallets of {} customers are calibrated by the survey sample in the \
             wallets input (wallet_calibration {:.2} to {:.2}); {} are not.",
            count(calibrated),
            num(r, "low").unwrap_or(f64::NAN),
            num(r, "high").unwrap_or(f64::NAN),
            count(modelled - calibrated)
        )
    } else {
        " The model's wallets are uncalibrated: they assume the top 1 - wallet_quantile of \
         comparable customers give you all of their wallet, so they are a lower bound. Give a \
         survey sample of true wallets as the wallets input to calibrate them."
            .into()
    }
}

/// An HTML table of some columns of `rows`, numbers rounded for reading.
fn table(rows: &[Row], columns: &[(&str, &str)]) -> String {
    let mut out = String::from("<table><tr>");
    for (_, head) in columns {
        out.push_str(&format!("<th>{}</th>", esc(head)));
    }
    out.push_str("</tr>");
    for r in rows {
        out.push_str("<tr>");
        for (k, _) in columns {
            let cell = match r.get(*k) {
                Some(serde_json::Value::Number(n)) => match n.as_f64() {
                    Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => count(v),
                    Some(v) if v.abs() < 10.0 => format!("{v:.3}"),
                    Some(v) => count(v),
                    None => n.to_string(),
                },
                _ => text(r, k),
            };
            out.push_str(&format!("<td>{}</td>", esc(&cell)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}
