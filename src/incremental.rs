//! Incremental nights (`custval run --incremental`, or the job parameters
//! `incremental = true` and `lookback_days`): the per-customer facts of
//! every row whose day is before a cutoff (as_of less `lookback_days`) are
//! kept as the published table [`STATE_TABLE`], and the next night reads
//! only the rows on or after the previous state's cutoff (and those without
//! a day), folding them into it. A full run is the reference; a night that
//! cannot fold safely is a full one, and says why.
//!
//! Beside it, [`ORDER_STATE_TABLE`] keeps the order ids with a purchase
//! line before the cutoff, so that an order whose lines fall on both sides
//! of a cutoff (a late line of an old order, an order re-sent on a later
//! day) counts once in `orders`, as a full run counts it; and, when the job
//! tags customer months (`customer_months`, the retention tables' input),
//! [`MONTH_STATE_TABLE`] keeps the months' facts, so that the night's
//! `customer_months` reads the new rows only.
//!
//! What this module owns: the job's rewrite (the state steps, the outputs,
//! `customer_summary` computed from the state) and, for each run, the
//! choice of a full or an incremental night, the previous states registered
//! as `previous_<table>` and the SQL
//! values `$state_cutoff`, `$previous_cutoff` and `$state_key`. The folding
//! itself is SQL: `sql/24_summarise_customer_parts.sql`,
//! `27_list_order_parts.sql`, `25_fold_customer_state.sql`,
//! `28_fold_order_state.sql`, `26_merge_customer_summary.sql`; for the
//! months `29_tag_customer_month_parts.sql`,
//! `30_fold_customer_month_state.sql`, `31_merge_customer_months.sql`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use object_store::ObjectStore;

use crate::error::{Error, Result};
use crate::input::InputReport;
use crate::job::{BoundParams, InputKind, Job, OutputFormat, OutputSpec, Param, StepSpec};
use crate::publish::OutputLayout;
use crate::scratch::Scratch;

/// The published state table: one row per customer (NULL id included),
/// the facts of its rows before `state_cutoff` (columns in
/// [`crate::columns`]).
pub const STATE_TABLE: &str = "customer_state";

/// The published order state: one row per (customer, order id) with a
/// purchase line before the state's cutoff (columns in [`crate::columns`]),
/// published by the same run as [`STATE_TABLE`].
pub const ORDER_STATE_TABLE: &str = "order_state";

/// The published customer-month state: one row per (customer, month) with
/// usable rows before the state's cutoff (columns in [`crate::columns`]),
/// published by the same run as [`STATE_TABLE`] when the job has a
/// `customer_months` step.
pub const MONTH_STATE_TABLE: &str = "customer_month_state";

/// One step of a job an incremental night computes from kept state instead
/// of the job's own SQL: the steps added before it (name, built-in SQL;
/// the state tables among them are published) and the built-in SQL that
/// computes it from them.
struct Fold {
    /// The job's step.
    step: &'static str,
    /// The steps added before it.
    steps: &'static [(&'static str, &'static str)],
    /// Its built-in SQL on an incremental run.
    merge_sql: &'static str,
}

/// The per-customer summary: every incremental job has it.
const SUMMARY_FOLD: Fold = Fold {
    step: "customer_summary",
    steps: &[
        ("customer_parts", "24_summarise_customer_parts.sql"),
        ("order_parts", "27_list_order_parts.sql"),
        (STATE_TABLE, "25_fold_customer_state.sql"),
        (ORDER_STATE_TABLE, "28_fold_order_state.sql"),
    ],
    merge_sql: "26_merge_customer_summary.sql",
};

/// The customer-month tags of the retention tables, when the job has them.
const MONTHS_FOLD: Fold = Fold {
    step: "customer_months",
    steps: &[
        ("month_parts", "29_tag_customer_month_parts.sql"),
        (MONTH_STATE_TABLE, "30_fold_customer_month_state.sql"),
    ],
    merge_sql: "31_merge_customer_months.sql",
};

/// Every state table an incremental run can publish (and read back the
/// next night).
const STATE_TABLES: [&str; 3] = [STATE_TABLE, ORDER_STATE_TABLE, MONTH_STATE_TABLE];

/// The `$previous_cutoff` of a full night: before any day a row can have.
const BEFORE_ANY_DAY: NaiveDate = NaiveDate::MIN;

/// What kind of night a run is.
#[derive(Debug, Clone, PartialEq)]
pub enum Night {
    /// Every row is read; `reason` says why (no previous state, a state
    /// built with other settings, ...).
    Full {
        /// Why the night could not fold into a previous state.
        reason: String,
    },
    /// Only rows on or after `previous_cutoff` (and rows without a day)
    /// are read and folded into the latest state published before tonight.
    Incremental {
        /// The previous state's cutoff: it counts the days before it.
        previous_cutoff: NaiveDate,
    },
}

/// The job an incremental run computes: the state steps before
/// `customer_summary`, which is computed from the state by
/// `26_merge_customer_summary.sql`, and [`STATE_TABLE`] and
/// [`ORDER_STATE_TABLE`] published; when the job has a `customer_months`
/// step, likewise with [`MONTH_STATE_TABLE`] and
/// `31_merge_customer_months.sql`.
///
/// Errors: [`Error::JobFile`] when the job has no `customer_summary` step
/// (nothing to fold) or already defines a step or output of the state's names.
pub fn with_state_steps(job: &Job) -> Result<Job> {
    let mut job = job.clone();
    if !job.spec.steps.iter().any(|s| s.name == SUMMARY_FOLD.step) {
        return Err(Error::JobFile {
            path: job.path.clone(),
            message: format!(
                "incremental runs: the job has no step {}, the per-customer facts an incremental night keeps",
                SUMMARY_FOLD.step
            ),
        });
    }
    for fold in [SUMMARY_FOLD, MONTHS_FOLD] {
        add_fold(&mut job, &fold)?;
    }
    for table in STATE_TABLES {
        if job.spec.steps.iter().any(|s| s.name == table) {
            job.spec.outputs.push(OutputSpec {
                table: table.to_string(),
                from: table.to_string(),
                previous: Vec::new(),
                format: OutputFormat::Parquet,
            });
        }
    }
    Ok(job)
}

/// `fold`'s steps inserted before its step, whose SQL becomes the fold's
/// merge; nothing when the job has no such step.
fn add_fold(job: &mut Job, fold: &Fold) -> Result<()> {
    let Some(at) = job.spec.steps.iter().position(|s| s.name == fold.step) else {
        return Ok(());
    };
    for (name, _) in fold.steps {
        if job.spec.steps.iter().any(|s| s.name == *name)
            || job.spec.outputs.iter().any(|o| o.table == *name)
        {
            return Err(Error::JobFile {
                path: job.path.clone(),
                message: format!("incremental runs: the job already defines {name}"),
            });
        }
    }
    let mut builtin = |file: &str| -> Result<String> {
        let text = crate::builtin::sql(file)
            .ok_or_else(|| Error::Internal(format!("built-in SQL {file} missing")))?;
        let key = format!("{}{file}", crate::builtin::PREFIX);
        job.sql.insert(key.clone(), text.to_string());
        Ok(key)
    };
    let mut added = Vec::new();
    for (name, file) in fold.steps {
        added.push(StepSpec {
            name: name.to_string(),
            sql: builtin(file)?,
            materialize: true,
        });
    }
    let merge = builtin(fold.merge_sql)?;
    let n = added.len();
    job.spec.steps.splice(at..at, added);
    let step = &mut job.spec.steps[at + n];
    step.sql = merge;
    step.materialize = true;
    Ok(())
}

/// What a state depends on besides the rows: custval's version, the value
/// measured, the timezone of the day grid and the inputs' options (their
/// mapping, filter, formats; not their URLs). A previous state with another
/// key is not folded into.
pub fn state_key(job: &Job, params: &BoundParams) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (name, spec) in &job.spec.inputs {
        let mut spec = spec.clone();
        spec.url = None;
        name.hash(&mut h);
        format!("{spec:?}").hash(&mut h);
    }
    let value = job.params.get("value").and_then(Param::as_str);
    format!(
        "custval {}; value {}; timezone {}; inputs {:016x}",
        env!("CARGO_PKG_VERSION"),
        value.unwrap_or("revenue"),
        params.timezone,
        h.finish()
    )
}

/// A state table's Arrow schema, from its column docs' units (`text`,
/// `count`, `date`, `money`): what an empty previous state is registered with.
fn state_schema(name: &str) -> Result<SchemaRef> {
    let table = crate::columns::table(name)
        .ok_or_else(|| Error::Internal(format!("no column docs for {name}")))?;
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|c| {
            let t = match c.unit {
                "text" => DataType::Utf8,
                "count" | "month" => DataType::Int64,
                "flag" => DataType::Boolean,
                "date" => DataType::Date32,
                _ => DataType::Float64,
            };
            Field::new(c.name, t, true)
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// What a night reads and where it publishes.
pub struct Setting<'a> {
    /// The output the state is published in.
    pub output: &'a OutputLayout,
    /// The output's store.
    pub store: &'a Arc<dyn ObjectStore>,
    /// Where empty tables are registered.
    pub scratch: &'a Scratch,
    /// Tonight's inputs, with their files' fingerprints.
    pub inputs: &'a [InputReport],
}

/// Choose tonight's kind of night, register `previous_customer_state` and
/// `previous_order_state` (the states to fold into, or empty ones) and
/// return the night with the SQL values the state steps read.
///
/// Errors: [`Error::Storage`] when the output cannot be listed or read;
/// [`Error::Conflict`] when the state's run record is unreadable.
pub async fn register(
    ctx: &SessionContext,
    at: &Setting<'_>,
    job: &Job,
    params: &BoundParams,
) -> Result<(Night, HashMap<String, ScalarValue>)> {
    let (output, store, scratch) = (at.output, at.store, at.scratch);
    let cutoff = state_cutoff(params);
    let key = state_key(job, params);
    let name = format!("previous_{STATE_TABLE}");
    let night = match output.previous(store, STATE_TABLE, params.as_of).await? {
        None => Night::Full {
            reason: format!("no {STATE_TABLE} published before {}", params.as_of),
        },
        Some(part) => {
            let raw = format!("__raw_{name}");
            let parquet = crate::input::ReadOptions {
                format: Some(crate::job::Format::Parquet),
                ..Default::default()
            };
            crate::input::register_source(ctx, &raw, &part, &parquet).await?;
            let mut night = judge(ctx, &raw, &key, cutoff).await?;
            if let (Night::Incremental { .. }, Some(reason)) =
                (&night, changed_files(at, job, &part).await?)
            {
                night = Night::Full { reason };
            }
            for table in beside(job) {
                if let (Night::Incremental { .. }, Some(reason)) = (
                    &night,
                    register_beside(ctx, at, table, &part, params.as_of).await?,
                ) {
                    night = Night::Full { reason };
                }
            }
            if matches!(night, Night::Incremental { .. }) {
                let df = ctx.table(raw.as_str()).await?;
                ctx.register_table(name.as_str(), df.into_view())?;
            }
            night
        }
    };
    let previous_cutoff = match &night {
        Night::Full { reason } => {
            tracing::warn!(as_of = %params.as_of, "incremental run: a full night ({reason}); every row is read");
            for table in std::iter::once(STATE_TABLE).chain(beside(job)) {
                let name = format!("previous_{table}");
                if ctx.table_exist(name.as_str())? {
                    ctx.deregister_table(name.as_str())?;
                }
                scratch
                    .register_empty(ctx, &name, state_schema(table)?)
                    .await?;
            }
            BEFORE_ANY_DAY
        }
        Night::Incremental { previous_cutoff } => {
            tracing::info!(target: crate::progress::TARGET, as_of = %params.as_of, %previous_cutoff, state_cutoff = %cutoff, "incremental night: reading the rows on or after the previous state's cutoff");
            *previous_cutoff
        }
    };
    let mut values = known_values(job, params);
    let previous = Param::Date(previous_cutoff).to_scalar();
    values.insert("previous_cutoff".to_string(), previous);
    Ok((night, values))
}

/// The state tables the (rewritten) job publishes beside [`STATE_TABLE`].
fn beside(job: &Job) -> Vec<&'static str> {
    STATE_TABLES[1..]
        .iter()
        .copied()
        .filter(|t| job.spec.steps.iter().any(|s| s.name == *t))
        .collect()
}

/// Register `previous_<table>`, the state `table` published beside the
/// previous state `part` (by the same run); why the night cannot fold when
/// there is none (a state of an earlier custval, or of the job before it
/// had the step) or it lacks a column.
///
/// Errors: [`Error::Storage`] when the output cannot be listed or read.
async fn register_beside(
    ctx: &SessionContext,
    at: &Setting<'_>,
    table: &str,
    part: &crate::storage::Location,
    as_of: NaiveDate,
) -> Result<Option<String>> {
    let Some((_, _, date)) = OutputLayout::of_partition(part) else {
        return Ok(Some(format!("{STATE_TABLE} is not in a dated partition")));
    };
    let found = at.output.previous(at.store, table, as_of).await?;
    let found = found.filter(|p| OutputLayout::of_partition(p).map(|(_, _, d)| d) == Some(date));
    let Some(found) = found else {
        return Ok(Some(format!(
            "no {table} published beside the {STATE_TABLE} of {date}"
        )));
    };
    let parquet = crate::input::ReadOptions {
        format: Some(crate::job::Format::Parquet),
        ..Default::default()
    };
    let name = format!("previous_{table}");
    let (have, _, _) = crate::input::register_source(ctx, &name, &found, &parquet).await?;
    let schema = state_schema(table)?;
    let missing: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|c| have.field_with_name(c).is_err())
        .collect();
    if !missing.is_empty() {
        return Ok(Some(format!(
            "the previous {table} lacks {}",
            missing.join(", ")
        )));
    }
    Ok(None)
}

/// Tonight's cutoff: as_of less `lookback_days` (as_of for a full run).
fn state_cutoff(params: &BoundParams) -> NaiveDate {
    params.as_of - chrono::Duration::days(params.lookback_days.unwrap_or(0))
}

/// The SQL values known before the output is read (`$state_cutoff`,
/// `$state_key`; `$previous_cutoff` comes from the previous state): what
/// `custval run --dry-run` binds.
pub fn known_values(job: &Job, params: &BoundParams) -> HashMap<String, ScalarValue> {
    HashMap::from([
        (
            "state_cutoff".to_string(),
            Param::Date(state_cutoff(params)).to_scalar(),
        ),
        (
            "state_key".to_string(),
            ScalarValue::Utf8(Some(state_key(job, params))),
        ),
    ])
}

/// Whether the previous state registered as `raw` can be folded into
/// tonight's: it has the state's columns, one cutoff not after tonight's
/// and tonight's key.
async fn judge(ctx: &SessionContext, raw: &str, key: &str, cutoff: NaiveDate) -> Result<Night> {
    let have = ctx.table(raw).await?.schema().clone();
    let schema = state_schema(STATE_TABLE)?;
    let missing: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|c| !have.has_column_with_unqualified_name(c))
        .collect();
    if !missing.is_empty() {
        let reason = format!("the previous {STATE_TABLE} lacks {}", missing.join(", "));
        return Ok(Night::Full { reason });
    }
    let sql = format!(
        "SELECT CAST(count(*) AS VARCHAR), CAST(min(state_cutoff) AS VARCHAR), \
         CAST(max(state_cutoff) AS VARCHAR), CAST(min(state_key) AS VARCHAR), \
         CAST(max(state_key) AS VARCHAR) FROM \"{raw}\""
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let cell = |i: usize| -> Option<String> {
        let batch = batches.iter().find(|b| b.num_rows() > 0)?;
        let col = cast(batch.column(i), &DataType::Utf8).ok()?;
        let text = col.as_any().downcast_ref::<StringArray>()?;
        (!text.is_null(0)).then(|| text.value(0).to_string())
    };
    let full = |reason: String| Ok(Night::Full { reason });
    if cell(0).as_deref() == Some("0") {
        return full(format!("the previous {STATE_TABLE} has no rows"));
    }
    let (lo, hi) = (cell(1), cell(2));
    let previous_cutoff = match (&lo, &hi) {
        (Some(a), Some(b)) if a == b => crate::job::parse_date(a).ok(),
        _ => None,
    };
    let Some(previous_cutoff) = previous_cutoff else {
        return full(format!(
            "the previous {STATE_TABLE} has no single state_cutoff ({lo:?} to {hi:?})"
        ));
    };
    if previous_cutoff > cutoff {
        return full(format!(
            "the previous {STATE_TABLE}'s cutoff {previous_cutoff} is after tonight's {cutoff} (a longer lookback_days than before?)"
        ));
    }
    let (k1, k2) = (cell(3), cell(4));
    if k1.as_deref() != Some(key) || k2.as_deref() != Some(key) {
        return full(format!(
            "the previous {STATE_TABLE} was built with other settings ({}); tonight: {key}",
            k1.unwrap_or_default()
        ));
    }
    Ok(Night::Incremental { previous_cutoff })
}

/// Why the files the state's night read cannot be trusted to be unchanged
/// tonight, if they cannot: a transactions file that night read is gone or
/// differs (size, modification time, ETag) from tonight's: it may hold
/// rows older than the state's cutoff, which a fold would not see. New
/// files are read as they come (their rows before the cutoff are not seen:
/// README, "Incremental nights").
async fn changed_files(
    at: &Setting<'_>,
    job: &Job,
    part: &crate::storage::Location,
) -> Result<Option<String>> {
    let Some((_, _, date)) = OutputLayout::of_partition(part) else {
        return Ok(None);
    };
    let loc = at.output.run_record(&job.spec.name, date)?;
    let Some(then) = crate::publish::record::read_record(at.store, &loc).await? else {
        return Ok(Some(format!("no run record of the state's night {date}")));
    };
    let then = then.record.inputs;
    for old in then.as_array().into_iter().flatten() {
        let name = old["name"].as_str().unwrap_or_default();
        let kind = job.spec.inputs.get(name).map(|s| s.kind);
        if kind != Some(InputKind::Transactions) {
            continue;
        }
        let now: Vec<serde_json::Value> = at
            .inputs
            .iter()
            .filter(|i| i.name == name)
            .flat_map(|i| &i.files)
            .filter_map(|f| serde_json::to_value(f).ok())
            .collect();
        for f in old["files"].as_array().into_iter().flatten() {
            let path = f["path"].as_str().unwrap_or_default();
            match now.iter().find(|n| n["path"] == f["path"]) {
                None => return Ok(Some(format!("{path} was read on {date} and is gone"))),
                Some(n) if n != f => {
                    return Ok(Some(format!(
                        "{path} changed since {date} (it may hold rows before the state's cutoff)"
                    )))
                }
                Some(_) => {}
            }
        }
    }
    Ok(None)
}
