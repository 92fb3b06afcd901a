//! Why rows were rejected, said to whoever must fix the export or the job:
//! the reasons of the job's `rejected_rows` step counted, with one example
//! row each and a hint naming the job option that usually fixes it
//! ([`summarise`]); the evidence of a failed gate, with the run's rejected
//! rows kept under `OUTPUT/_failed/` ([`gate_evidence`]); and `check`'s
//! verdict on a sample of the input ([`SampleReport`]).

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::{InputKind, Job};
use crate::publish::{self, OutputLayout};
use crate::steps::{self, SqlParams};
use crate::table;

/// The step whose rows are the rejected input rows, with a `reason` each
/// (`sql/04_select_rejected_rows.sql` in the shipped jobs).
pub const REJECTED_ROWS: &str = "rejected_rows";

/// Reasons a failure message names; the run report lists up to [`IN_REPORT`].
const IN_MESSAGE: usize = 3;

/// Reasons the run report and `check` list.
const IN_REPORT: usize = 20;

/// One reason rows were rejected for.
#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    /// The reason as the validation step gives it, e.g. `unparseable order_ts`.
    pub reason: String,
    /// The canonical column the reason names (`order_ts`), when it names one.
    pub column: Option<String>,
    /// Rows rejected for this reason.
    pub rows: u64,
    /// One of those rows: every column of `rejected_rows` but the reason, as
    /// the raw text read (null where the input had no value).
    pub example: serde_json::Map<String, serde_json::Value>,
    /// What usually fixes it, naming the job option.
    pub hint: Option<String>,
}

impl Reason {
    /// `43 rows unparseable order_ts, e.g. order_ts "12/1/2010 8:26" in the
    /// row (customer_id "17850", ...); did you mean ...?`
    pub fn describe(&self) -> String {
        let value = self
            .column
            .as_deref()
            .map(|c| match self.example.get(c) {
                Some(serde_json::Value::String(s)) => format!("{c} {s:?} in "),
                _ => format!("{c} empty in "),
            })
            .unwrap_or_default();
        let row: Vec<String> = self
            .example
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| format!("{k} {s:?}")))
            .collect();
        let mut s = format!(
            "{} rows {}, e.g. {value}the row ({})",
            self.rows,
            self.reason,
            row.join(", ")
        );
        if let Some(h) = &self.hint {
            s.push_str("; ");
            s.push_str(h);
        }
        s
    }
}

/// Every reason of a set of rejected rows, most frequent first.
#[derive(Debug, Clone, Serialize)]
pub struct Rejections {
    /// Rows rejected in all.
    pub rows: u64,
    /// Up to 20 reasons, most rows first.
    pub reasons: Vec<Reason>,
}

impl Rejections {
    /// The top reasons on one line, for an error message.
    pub fn describe(&self) -> String {
        let top: Vec<String> = self
            .reasons
            .iter()
            .take(IN_MESSAGE)
            .map(Reason::describe)
            .collect();
        let mut s = format!("rows rejected by reason: {}", top.join("; "));
        let more = self.reasons.len().saturating_sub(IN_MESSAGE);
        if more > 0 {
            s.push_str(&format!(" (and {more} more reasons)"));
        }
        s
    }
}

/// The job's `rejected_rows` step: the registered table when the run or
/// check has reached it, else planned now (a gate after `quality` stops a
/// run before it). `None` when the job has no such step or it has no
/// `reason` column.
async fn rejected_rows(
    ctx: &SessionContext,
    job: &Job,
    params: &SqlParams,
) -> Result<Option<DataFrame>> {
    let Some(step) = job.spec.steps.iter().find(|s| s.name == REJECTED_ROWS) else {
        return Ok(None);
    };
    let df = if ctx.table_exist(REJECTED_ROWS)? {
        ctx.table(REJECTED_ROWS).await?
    } else {
        steps::plan_step(ctx, job, step, params).await?
    };
    let has_reason = df.schema().field_with_unqualified_name("reason").is_ok();
    Ok(has_reason.then_some(df))
}

/// The reasons of the job's rejected rows, counted in one pass, with one
/// example row each; `None` when the job has no `rejected_rows` step.
pub async fn summarise(
    ctx: &SessionContext,
    job: &Job,
    params: &SqlParams,
) -> Result<Option<(DataFrame, Rejections)>> {
    let Some(df) = rejected_rows(ctx, job, params).await? else {
        return Ok(None);
    };
    let columns: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != "reason")
        .collect();
    let view = "__rejections";
    ctx.deregister_table(view)?;
    ctx.register_table(view, df.clone().into_view())?;
    let fields: Vec<String> = columns
        .iter()
        .map(|c| {
            let q = format!("\"{}\"", c.replace('"', "\"\""));
            format!("'{}', CAST({q} AS VARCHAR)", c.replace('\'', "''"))
        })
        .collect();
    let sql = format!(
        // Reasons may quote the value (`non-integral customer_id "17850.5"`):
        // rows are counted by the kind of reason, the text before the first
        // quote, and the example row shows the value.
        "SELECT rtrim(split_part(CAST(reason AS VARCHAR), '\"', 1), ': ') AS reason, \
         count(*) AS rows, first_value(named_struct({})) AS example \
         FROM {view} GROUP BY 1 ORDER BY rows DESC, reason",
        fields.join(", ")
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    ctx.deregister_table(view)?;
    let mut total = 0;
    let mut reasons = Vec::new();
    for row in table::to_json_rows(&batches)? {
        let rows = row.get("rows").and_then(|v| v.as_u64()).unwrap_or(0);
        total += rows;
        if reasons.len() == IN_REPORT {
            continue;
        }
        let reason = row
            .get("reason")
            .and_then(|v| v.as_str())
            .unwrap_or("(no reason)")
            .to_string();
        let example = match row.get("example") {
            Some(serde_json::Value::Object(m)) => {
                m.iter().map(|(k, v)| (k.clone(), shorten(v))).collect()
            }
            _ => serde_json::Map::new(),
        };
        let column = reason
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find(|w| columns.iter().any(|c| c == w))
            .map(str::to_string);
        let value = column
            .as_deref()
            .and_then(|c| example.get(c))
            .and_then(|v| v.as_str());
        let hint = hint(job, &reason, column.as_deref(), value);
        reasons.push(Reason {
            reason,
            column,
            rows,
            example,
            hint,
        });
    }
    Ok(Some((
        df,
        Rejections {
            rows: total,
            reasons,
        },
    )))
}

/// Characters of an example value shown; a longer one (a 1 MiB id) is cut.
const VALUE_CHARS: usize = 80;

/// A text value cut to [`VALUE_CHARS`], saying how long it was.
fn shorten(v: &serde_json::Value) -> serde_json::Value {
    match v.as_str() {
        Some(s) if s.chars().count() > VALUE_CHARS => {
            let head: String = s.chars().take(VALUE_CHARS).collect();
            format!("{head}... ({} characters)", s.chars().count()).into()
        }
        _ => v.clone(),
    }
}

/// The job's name for a canonical column of its transactions input.
fn source_name(job: &Job, canonical: &str) -> String {
    job.spec
        .inputs
        .values()
        .find(|i| i.kind == InputKind::Transactions)
        .and_then(|i| i.columns.get(canonical))
        .cloned()
        .unwrap_or_else(|| canonical.to_string())
}

/// Timestamp layouts exports often use, tried in order on an example value.
const TIMESTAMP_FORMATS: &[&str] = &[
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%Y%m%d %H%M%S",
];

/// Date layouts exports often use, tried after [`TIMESTAMP_FORMATS`].
const DATE_FORMATS: &[&str] = &["%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d", "%Y%m%d"];

/// The first layout that reads `value`, as a `timestamp_format` would be written.
fn guess_timestamp_format(value: &str) -> Option<&'static str> {
    let v = value.trim();
    TIMESTAMP_FORMATS
        .iter()
        .find(|f| chrono::NaiveDateTime::parse_from_str(v, f).is_ok())
        .or_else(|| {
            DATE_FORMATS
                .iter()
                .find(|f| NaiveDate::parse_from_str(v, f).is_ok())
        })
        .copied()
}

/// What usually fixes rows rejected for `reason`, naming the job option.
/// `value` is the example row's raw text of `column`: for an expression,
/// its operands (`Quantity=6; UnitPrice=`), of which the one the reason
/// names (`unparseable amount: UnitPrice`) is the value judged.
fn hint(job: &Job, reason: &str, column: Option<&str>, value: Option<&str>) -> Option<String> {
    let column = column?;
    let source = source_name(job, column);
    let missing = reason.starts_with("missing");
    let unparseable = reason.starts_with("unparseable");
    // The expression's operand the reason names, and its value.
    let operand = reason
        .split_once(": ")
        .map(|(_, rest)| rest.trim_end_matches(" is empty").to_string());
    let value = match (&operand, value) {
        (Some(op), Some(v)) => operand_value(v, op),
        (None, v) => v.map(str::to_string),
        (Some(_), None) => None,
    };
    match column {
        "order_ts" if unparseable => Some(match value.as_deref().and_then(guess_timestamp_format) {
            Some(f) => format!(
                "did you mean timestamp_format = {f:?} under [inputs.transactions]?"
            ),
            None => "did you mean timestamp_format under [inputs.transactions] (a chrono layout such as \"%d/%m/%Y %H:%M\")?".into(),
        }),
        "amount" | "margin" if unparseable => {
            let what = operand.as_deref().unwrap_or(&source);
            number_hint(job, column, what, value.as_deref(), operand.is_some())
        }
        _ if missing && operand.is_some() => {
            let op = operand.unwrap_or_default();
            Some(format!(
                "{column} = {source:?} reads {op}, which is empty on these rows: fill it in the export, or leave the rows out with where = \"{op} IS NOT NULL\" under [inputs.transactions]"
            ))
        }
        "customer_id" if missing => Some(format!(
            "rows without a customer (guest orders?) can be left out with where = \"{source} IS NOT NULL\" under [inputs.transactions]"
        )),
        _ if missing => Some(format!(
            "is {column} mapped to the right column (now {source:?}) under [inputs.transactions.columns]?"
        )),
        _ => None,
    }
}

/// The value of `operand` in an expression's raw text (`Quantity=6;
/// UnitPrice=2.5`); `None` when the text does not list it.
fn operand_value(raw: &str, operand: &str) -> Option<String> {
    raw.split("; ")
        .find_map(|part| part.strip_prefix(operand)?.strip_prefix('='))
        .map(str::to_string)
}

/// What fixes a number that did not parse: `what` is the raw column read
/// (`in_expression`: an operand of the job's expression for `column`).
fn number_hint(
    job: &Job,
    column: &str,
    what: &str,
    value: Option<&str>,
    in_expression: bool,
) -> Option<String> {
    let decimal_comma = job
        .spec
        .inputs
        .values()
        .any(|i| i.kind == InputKind::Transactions && i.csv.decimal.as_deref() == Some(","));
    let v = value.unwrap_or_default().trim();
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let unsigned = v.trim_start_matches(['+', '-']);
    // 1,234.50 or 1,234: comma-separated groups of three, a decimal point.
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    let mut groups = int.split(',');
    let thousands = int.contains(',')
        && digits(frac)
        && groups.next().is_some_and(|g| digits(g) && g.len() <= 3)
        && groups.all(|g| g.len() == 3 && digits(g));
    if thousands && !decimal_comma {
        return Some(format!(
            "{v:?} has a thousands separator ',', which custval does not read (decimal = \",\" would read it as a decimal comma): export {what} without it, or read it as CAST(replace({what}, ',', '') AS DOUBLE) in the mapping of {column} under [inputs.transactions.columns]"
        ));
    }
    let point = unsigned
        .split_once('.')
        .is_some_and(|(i, f)| digits(i) && digits(f));
    if decimal_comma && point {
        return Some(format!(
            "{v:?} is written with a decimal point, but the input says decimal = \",\": set decimal = \".\" (the default) under [inputs.transactions.csv]"
        ));
    }
    if v.contains(',') && !decimal_comma {
        return Some("a decimal comma? set decimal = \",\" under [inputs.transactions.csv]".into());
    }
    if in_expression {
        return Some(format!(
            "{what} {v:?} is not a number: fix it in the export, or leave such rows out with where under [inputs.transactions]"
        ));
    }
    Some(format!(
        "map {column} to a SQL expression under [inputs.transactions.columns], e.g. {column} = \"Quantity * UnitPrice\""
    ))
}

/// Where a run is, for [`gate_evidence`].
pub struct FailedRun<'a> {
    /// The run's session, its steps computed up to the failed gate.
    pub ctx: &'a SessionContext,
    /// The job.
    pub job: &'a Job,
    /// Its bound parameters.
    pub params: &'a SqlParams,
    /// The output's layout and store.
    pub output: &'a OutputLayout,
    /// The output's store.
    pub store: &'a Arc<dyn ObjectStore>,
    /// The as-of date.
    pub as_of: NaiveDate,
    /// The run's id.
    pub run_id: &'a str,
}

/// A failed gate's error with its evidence: the `quality` row, the rejection
/// reasons (named in the message too) and, when rows were rejected, those
/// rows written as Parquet to [`OutputLayout::failed`] (never published). A
/// fault while gathering evidence is logged and leaves the gate's error as
/// it was: it must not turn exit 3 into another code.
pub async fn gate_evidence(run: &FailedRun<'_>, gate: String, message: String) -> Error {
    let quality = table::first_row_json(run.ctx, "quality")
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read the quality counts");
            serde_json::Value::Null
        });
    let mut evidence = serde_json::json!({ "run_id": run.run_id, "quality": quality });
    let mut message = message;
    match summarise(run.ctx, run.job, run.params).await {
        Ok(Some((df, r))) if r.rows > 0 => {
            message = format!("{message}; {}", r.describe());
            match keep_rejected_rows(run, df).await {
                Ok(loc) => {
                    message = format!("{message}; the {} rejected rows are in {loc}", r.rows);
                    evidence["rejected_rows"] = loc.into();
                }
                Err(e) => tracing::warn!(error = %e, "could not keep the rejected rows"),
            }
            evidence["rejections"] = serde_json::to_value(&r).unwrap_or_default();
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not summarise the rejected rows"),
    }
    Error::Gate {
        gate,
        message,
        evidence,
    }
}

/// Write the rejected rows under `OUTPUT/_failed/...`; their folder's URL.
async fn keep_rejected_rows(run: &FailedRun<'_>, df: DataFrame) -> Result<String> {
    let loc = run
        .output
        .failed(&run.job.spec.name, run.as_of, run.run_id, REJECTED_ROWS)?;
    let staged = publish::stage(REJECTED_ROWS, df, run.store.clone(), &loc, run.run_id).await?;
    tracing::info!(location = %loc, rows = staged.rows, "rejected rows kept");
    Ok(loc.to_string())
}

/// `check`'s validation of a sample of the input: the job's `quality` and
/// `rejected_rows` steps computed over the first rows of each transactions
/// input.
#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    /// Rows asked for per transactions input.
    pub sample: u64,
    /// Rows read (at most `sample` per input).
    pub rows_read: u64,
    /// Rows the validation rejected.
    pub rows_rejected: u64,
    /// `rows_rejected / rows_read`; `None` without rows.
    pub rejected_fraction: Option<f64>,
    /// The job's limit, when it declares `max_rejected_fraction`.
    pub max_rejected_fraction: Option<f64>,
    /// Why, most rows first.
    pub reasons: Vec<Reason>,
}

impl SampleReport {
    /// Validate the first `sample` rows (already limited by the caller):
    /// the job's `quality` row and its rejection reasons. `None` when the
    /// job has neither a `quality` nor a `rejected_rows` step.
    pub async fn compute(
        ctx: &SessionContext,
        job: &Job,
        params: &SqlParams,
        sample: u64,
    ) -> Result<Option<SampleReport>> {
        let quality = table::first_row_json(ctx, "quality").await?;
        let count = |k: &str| quality.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let rejections = summarise(ctx, job, params).await?.map(|(_, r)| r);
        if quality.is_null() && rejections.is_none() {
            return Ok(None);
        }
        let rows_read = count("rows_read");
        let rows_rejected = match &rejections {
            Some(r) if quality.is_null() => r.rows,
            _ => count("rows_rejected"),
        };
        Ok(Some(SampleReport {
            sample,
            rows_read,
            rows_rejected,
            rejected_fraction: (rows_read > 0).then(|| rows_rejected as f64 / rows_read as f64),
            max_rejected_fraction: job
                .params
                .get("max_rejected_fraction")
                .and_then(|p| p.as_f64()),
            reasons: rejections.map(|r| r.reasons).unwrap_or_default(),
        }))
    }

    /// What `check` prints: the fraction, then one line per reason.
    pub fn describe(&self) -> String {
        let pct = self.rejected_fraction.map(|f| f * 100.0).unwrap_or(0.0);
        let limit = self
            .max_rejected_fraction
            .map(|m| format!(" (max_rejected_fraction = {m})"))
            .unwrap_or_default();
        let mut s = format!(
            "sample of the first {} rows per input: {} rows read, {} rejected ({pct:.2}%){limit}\n",
            self.sample, self.rows_read, self.rows_rejected
        );
        for r in &self.reasons {
            s.push_str(&format!("  {}\n", r.describe()));
        }
        s
    }

    /// Exit 3, as the run's gate would, when the sample's rejected fraction
    /// is above the job's `max_rejected_fraction`; the message names the
    /// top reasons.
    pub fn judge(&self) -> Result<()> {
        let (Some(f), Some(max)) = (self.rejected_fraction, self.max_rejected_fraction) else {
            return Ok(());
        };
        if f <= max {
            return Ok(());
        }
        let r = Rejections {
            rows: self.rows_rejected,
            reasons: self.reasons.clone(),
        };
        Err(Error::Gate {
            gate: "rejected_fraction".into(),
            message: format!(
                "in a sample of the first {} rows per input, {} of {} rows rejected ({:.2}%), above max_rejected_fraction = {max}; {}",
                self.sample,
                self.rows_rejected,
                self.rows_read,
                f * 100.0,
                r.describe()
            ),
            evidence: serde_json::to_value(self).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_layouts_are_recognised_us_first() {
        // The Online Retail export's layout: month first, no zero padding.
        assert_eq!(
            guess_timestamp_format("12/1/2010 8:26"),
            Some("%m/%d/%Y %H:%M")
        );
        // A day above 12 first can only be day-first.
        assert_eq!(
            guess_timestamp_format("13/01/2010 08:26"),
            Some("%d/%m/%Y %H:%M")
        );
        assert_eq!(guess_timestamp_format("31.12.2010"), Some("%d.%m.%Y"));
        assert_eq!(guess_timestamp_format("yesterday"), None);
    }

    fn reason(rows: u64, hint: Option<&str>) -> Reason {
        let mut example = serde_json::Map::new();
        example.insert("customer_id".into(), "17850".into());
        example.insert("order_ts".into(), "12/1/2010 8:26".into());
        example.insert("category".into(), serde_json::Value::Null);
        Reason {
            reason: "unparseable order_ts".into(),
            column: Some("order_ts".into()),
            rows,
            example,
            hint: hint.map(String::from),
        }
    }

    #[test]
    fn long_values_are_cut_saying_how_long() {
        let long = serde_json::Value::from("x".repeat(1 << 20));
        let cut = shorten(&long);
        let s = cut.as_str().unwrap();
        assert!(s.starts_with(&"x".repeat(VALUE_CHARS)), "{s}");
        assert!(s.ends_with("... (1048576 characters)"), "{s}");
        assert_eq!(shorten(&"short".into()), serde_json::Value::from("short"));
    }

    #[test]
    fn a_reason_names_count_value_row_and_hint() {
        let s = reason(43, Some("did you mean timestamp_format?")).describe();
        assert_eq!(
            s,
            "43 rows unparseable order_ts, e.g. order_ts \"12/1/2010 8:26\" in the row \
             (customer_id \"17850\", order_ts \"12/1/2010 8:26\"); did you mean timestamp_format?"
        );
    }

    #[test]
    fn a_reason_without_a_column_shows_the_row() {
        let mut r = reason(2, None);
        r.column = None;
        r.reason = "not on the price list".into();
        assert_eq!(
            r.describe(),
            "2 rows not on the price list, e.g. the row (customer_id \"17850\", order_ts \"12/1/2010 8:26\")"
        );
    }

    /// The hints name the option and, for missing customers, the job's own
    /// column name in the filter to write.
    #[test]
    fn hints_name_the_job_option() {
        let text = "name = \"t\"\n[inputs.transactions]\nkind = \"transactions\"\n\
                    [inputs.transactions.columns]\ncustomer_id = \"CustomerID\"\n\
                    [[steps]]\nname = \"a\"\nsql = \"a.sql\"\n";
        let job = Job::parse(std::path::Path::new("t.toml"), text, |_| {
            Ok("SELECT 1".into())
        })
        .unwrap();
        let h = |reason: &str, column: &str, value: Option<&str>| {
            hint(&job, reason, Some(column), value).unwrap_or_default()
        };
        assert!(h("missing customer_id", "customer_id", None)
            .contains("where = \"CustomerID IS NOT NULL\""));
        assert!(h("unparseable amount", "amount", Some("12,50")).contains("decimal = \",\""));
        assert!(h("unparseable amount", "amount", Some("$12"))
            .contains("amount = \"Quantity * UnitPrice\""));
        assert!(
            h("unparseable order_ts", "order_ts", Some("31.12.2010 08:00"))
                .contains("\"%d.%m.%Y %H:%M\"")
        );
        assert!(h("unparseable order_ts", "order_ts", Some("soon")).contains("timestamp_format"));
        // A thousands separator is not a decimal comma.
        let t = h("unparseable amount", "amount", Some("1,234.50"));
        assert!(
            t.contains("thousands separator") && !t.contains("set decimal = \",\""),
            "{t}"
        );
        assert!(
            t.contains("CAST(replace(amount, ',', '') AS DOUBLE)"),
            "{t}"
        );
        // An expression's operand: its value judged, no hint to map an
        // expression already mapped.
        let e = h(
            "unparseable amount: UnitPrice",
            "amount",
            Some("Quantity=6; UnitPrice=1,234.50"),
        );
        assert!(
            e.contains("\"1,234.50\"") && e.contains("export UnitPrice"),
            "{e}"
        );
        let e = h(
            "unparseable amount: UnitPrice",
            "amount",
            Some("Quantity=6; UnitPrice=n/a"),
        );
        assert!(e.contains("UnitPrice \"n/a\" is not a number"), "{e}");
        assert!(!e.contains("Quantity * UnitPrice"), "{e}");
        let m = h(
            "missing amount: UnitPrice is empty",
            "amount",
            Some("Quantity=6; UnitPrice="),
        );
        assert!(
            m.contains("reads UnitPrice, which is empty")
                && m.contains("where = \"UnitPrice IS NOT NULL\""),
            "{m}"
        );
        assert_eq!(
            hint(&job, "non-finite amount", Some("amount"), Some("NaN")),
            None
        );
    }

    /// Under decimal = ",", a number written with a decimal point gets the
    /// hint to read decimal points, not to map an expression.
    #[test]
    fn a_decimal_point_under_decimal_comma_says_so() {
        let text = "name = \"t\"\n[inputs.transactions]\nkind = \"transactions\"\n\
                    [inputs.transactions.csv]\ndecimal = \",\"\n\
                    [[steps]]\nname = \"a\"\nsql = \"a.sql\"\n";
        let job = Job::parse(std::path::Path::new("t.toml"), text, |_| {
            Ok("SELECT 1".into())
        })
        .unwrap();
        let h = hint(&job, "unparseable amount", Some("amount"), Some("12.50")).unwrap_or_default();
        assert!(h.contains("set decimal = \".\""), "{h}");
        assert!(!h.contains("SQL expression"), "{h}");
        // A decimal comma itself parses; something else gets the general hint.
        let h = hint(&job, "unparseable amount", Some("amount"), Some("$12")).unwrap_or_default();
        assert!(!h.contains("decimal"), "{h}");
    }

    #[test]
    fn a_sample_above_the_limit_exits_3_and_one_within_passes() {
        let mut s = SampleReport {
            sample: 10,
            rows_read: 10,
            rows_rejected: 2,
            rejected_fraction: Some(0.2),
            max_rejected_fraction: Some(0.01),
            reasons: vec![reason(2, None)],
        };
        let err = s.judge().unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains("2 of 10 rows rejected"), "{err}");
        s.max_rejected_fraction = Some(0.2);
        assert!(s.judge().is_ok());
    }
}
