//! One SQL step or gate of a job: planned with the bound parameters (queries
//! only, never DDL or DML), computed as a view or into scratch space, gates
//! judged; and `check`'s planning of them all without computing any.

use std::collections::HashMap;
use std::time::Instant;

use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use serde::Serialize;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::job::{GateSpec, Job, StepSpec};
use crate::scratch::Scratch;
use crate::table;

/// Bound parameters as SQL values ([`crate::job::BoundParams::sql_values`]).
pub type SqlParams = HashMap<String, ScalarValue>;

/// One step's outcome, for the run report.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The logical table the step defines.
    pub name: String,
    /// Its SQL file, as the job names it.
    pub file: String,
    /// Computed into scratch files (true) or left a view (false).
    pub materialized: bool,
    /// Rows computed, for materialized steps.
    pub rows: Option<u64>,
    /// Wall-clock seconds, planning included.
    pub seconds: f64,
}

/// Plan one step of the job as a query, without running or registering it:
/// for a step the run has not reached yet (the rejected rows of a run that a
/// gate stopped).
pub async fn plan_step(
    ctx: &SessionContext,
    job: &Job,
    step: &StepSpec,
    params: &SqlParams,
) -> Result<DataFrame> {
    let who = format!("step {} ({})", step.name, step.sql);
    plan(ctx, sql_of(job, &step.sql), params, &who)
        .await
        .map_err(|e| step_error(&step.name, &step.sql, e))
}

/// The SQL text of a step or gate file (read when the job was loaded).
fn sql_of<'a>(job: &'a Job, file: &str) -> &'a str {
    job.sql.get(file).map(|s| s.as_str()).unwrap_or_default()
}

/// Plan one SQL text with the parameters bound as typed values. `who`
/// names the step or gate and its file in messages.
///
/// Errors: [`Error::Param`] (exit 2) for a `$name` placeholder that no
/// parameter binds, naming the declared ones; [`Error::DataFusion`] when
/// the SQL does not parse or plan, or is not a query.
pub async fn plan(
    ctx: &SessionContext,
    sql: &str,
    params: &SqlParams,
    who: &str,
) -> Result<DataFrame> {
    let df = plan_query(ctx, sql).await?;
    let used = df.logical_plan().get_parameter_types()?;
    let mut missing: Vec<&str> = used
        .keys()
        .map(|k| k.trim_start_matches('$'))
        .filter(|k| !params.contains_key(*k))
        .collect();
    missing.sort();
    if let Some(name) = missing.first() {
        let mut known: Vec<&str> = params.keys().map(|k| k.as_str()).collect();
        known.sort();
        return Err(Error::param(
            *name,
            format!(
                "{who} uses ${name}, which the job's [params] does not declare (known parameters: {})",
                known.join(", ")
            ),
        ));
    }
    Ok(df.with_param_values(params.clone())?)
}

/// A SQL text with its `$name` placeholders replaced by the bound values
/// as SQL literals (`DATE '1997-09-30'`, `'revenue'`, `0.01`, `TRUE`), for
/// `custval run --dry-run`: what [`plan`] computes, readable. Placeholders
/// inside quotes and comments stay as written; one no parameter binds too.
pub fn bind_text(sql: &str, params: &SqlParams) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let skip_to = match (c, rest.as_str()) {
            ('\'', _) | ('"', _) => closing(&chars, i + 1, &[c]).map(|e| e + 1),
            (_, "--") => Some(closing(&chars, i, &['\n']).unwrap_or(chars.len())),
            (_, "/*") => closing_pair(&chars, i + 2).map(|e| e + 2),
            ('$', _) => {
                let end = (i + 1..chars.len())
                    .find(|&j| !(chars[j].is_ascii_alphanumeric() || chars[j] == '_'))
                    .unwrap_or(chars.len());
                let name: String = chars[i + 1..end].iter().collect();
                if let Some(v) = params.get(&name) {
                    out.push_str(&sql_literal(v));
                    i = end;
                    continue;
                }
                None
            }
            _ => None,
        };
        let end = skip_to.unwrap_or(i + 1).min(chars.len()).max(i + 1);
        out.extend(&chars[i..end]);
        i = end;
    }
    out
}

/// The index of the first of `ends` at or after `from`.
fn closing(chars: &[char], from: usize, ends: &[char]) -> Option<usize> {
    (from..chars.len()).find(|&j| ends.contains(&chars[j]))
}

/// The index of the `*/` closing a block comment, at or after `from`.
fn closing_pair(chars: &[char], from: usize) -> Option<usize> {
    (from..chars.len().saturating_sub(1)).find(|&j| chars[j] == '*' && chars[j + 1] == '/')
}

/// A bound value as a SQL literal of the same type.
fn sql_literal(v: &ScalarValue) -> String {
    match v {
        v if v.is_null() => "NULL".into(),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
            format!("'{}'", s.replace('\'', "''"))
        }
        ScalarValue::Date32(Some(_)) => format!("DATE '{v}'"),
        ScalarValue::Boolean(Some(b)) => if *b { "TRUE" } else { "FALSE" }.into(),
        ScalarValue::Float64(Some(f)) => format!("{f:?}"),
        other => other.to_string(),
    }
}

/// Plan one SQL text, refusing anything but a query.
async fn plan_query(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<DataFrame> {
    // A job's SQL reads and computes; only custval publishes. DDL, DML and
    // COPY could write outside the output location: refuse them before
    // anything runs (DataFusion executes DDL as soon as it is planned).
    let plan = ctx.state().create_logical_plan(sql).await?;
    if matches!(
        plan,
        datafusion::logical_expr::LogicalPlan::Dml(_)
            | datafusion::logical_expr::LogicalPlan::Ddl(_)
            | datafusion::logical_expr::LogicalPlan::Copy(_)
            | datafusion::logical_expr::LogicalPlan::Statement(_)
    ) {
        return datafusion::common::plan_err!(
            "a job step must be a query (SELECT or WITH ... SELECT); DDL, DML and COPY are not allowed"
        );
    }
    ctx.execute_logical_plan(plan).await
}

/// An engine error of a step that was running (exit 1); other errors keep
/// their own variant.
fn step_error(step: &str, file: &str, e: Error) -> Error {
    match e {
        Error::DataFusion(inner) => Error::Step {
            step: step.to_string(),
            file: file.to_string(),
            source: inner,
        },
        other => other,
    }
}

/// A step or gate that does not plan, found by `check` (exit 2); other
/// errors keep their own variant.
fn invalid_step(step: &str, file: &str, e: Error) -> Error {
    match e {
        Error::DataFusion(inner) => invalid_plan(step, file, *inner),
        other => other,
    }
}

fn invalid_plan(step: &str, file: &str, e: DataFusionError) -> Error {
    Error::InvalidStep {
        step: step.to_string(),
        file: file.to_string(),
        source: Box::new(e),
    }
}

/// Compute one step: a view planned now and computed by the steps that read
/// it, or, with `materialize`, rows written once into scratch space.
pub async fn run_step(
    ctx: &SessionContext,
    job: &Job,
    step: &StepSpec,
    params: &SqlParams,
    scratch: &Scratch,
) -> Result<StepReport> {
    let t0 = Instant::now();
    let span = tracing::info_span!("step", step = %step.name, file = %step.sql);
    let rows = async {
        let who = format!("step {} ({})", step.name, step.sql);
        let df = plan(ctx, sql_of(job, &step.sql), params, &who)
            .await
            .map_err(|e| step_error(&step.name, &step.sql, e))?;
        let pb = crate::progress::step(&step.name);
        let rows = if step.materialize {
            let n = scratch
                .materialize(ctx, &step.name, df)
                .await
                .map_err(|e| step_error(&step.name, &step.sql, e))?;
            Some(n)
        } else {
            ctx.register_table(step.name.as_str(), df.into_view())?;
            None
        };
        pb.finish_and_clear();
        let seconds = t0.elapsed().as_secs_f64();
        match rows {
            Some(n) => tracing::info!(target: crate::progress::TARGET, step = %step.name, rows_out = n, materialized = true, seconds, "step done"),
            None => tracing::info!(target: crate::progress::TARGET, step = %step.name, materialized = false, seconds, "step done"),
        }
        Ok::<_, Error>(rows)
    }
    .instrument(span)
    .await?;
    Ok(StepReport {
        name: step.name.clone(),
        file: step.sql.clone(),
        materialized: step.materialize,
        rows,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Judge the gates not yet in `judged` that are due once the steps in
/// `done` have run (`None`: all steps have, every gate is due): a gate is
/// due after its `after` step, or as soon as every step its SQL reads has
/// run, whichever is first, so that a gate decides before the steps that
/// would use what it rejects (the convergence gate of a job written with
/// `after = "model_fit"` reads `model_params` and judges before scoring).
/// The first gate with violations fails with up to 20 of their messages.
pub async fn run_gates(
    ctx: &SessionContext,
    job: &Job,
    done: Option<&[String]>,
    judged: &mut std::collections::HashSet<String>,
    params: &SqlParams,
) -> Result<()> {
    for gate in &job.spec.gates {
        if judged.contains(&gate.name) {
            continue;
        }
        let due = match done {
            None => true,
            Some(done) => {
                gate.after.as_ref().is_some_and(|a| done.contains(a))
                    || reads_only(ctx, job, gate, done)
            }
        };
        if due {
            judged.insert(gate.name.clone());
            run_gate(ctx, job, gate, params).await?;
        }
    }
    Ok(())
}

/// Whether every step of the job that `gate`'s SQL reads is in `done`, and
/// it reads at least one. A gate whose SQL does not parse here waits for
/// its `after` step (planning it says what is wrong).
fn reads_only(ctx: &SessionContext, job: &Job, gate: &GateSpec, done: &[String]) -> bool {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let Ok(statement) = state.sql_to_statement(sql_of(job, &gate.sql), &dialect) else {
        return false;
    };
    let Ok(tables) = state.resolve_table_references(&statement) else {
        return false;
    };
    let steps: Vec<&str> = tables
        .iter()
        .map(|t| t.table())
        .filter(|t| job.spec.steps.iter().any(|s| s.name == *t))
        .collect();
    !steps.is_empty() && steps.iter().all(|t| done.iter().any(|d| d.as_str() == *t))
}

async fn run_gate(
    ctx: &SessionContext,
    job: &Job,
    gate: &GateSpec,
    params: &SqlParams,
) -> Result<()> {
    let who = format!("gate {} ({})", gate.name, gate.sql);
    let df = plan(ctx, sql_of(job, &gate.sql), params, &who)
        .await
        .map_err(|e| step_error(&gate.name, &gate.sql, e))?;
    let batches = df
        .select_columns(&["message"])?
        .limit(0, Some(20))?
        .collect()
        .await?;
    let rows = table::to_json_rows(&batches)?;
    if rows.is_empty() {
        return Ok(());
    }
    let messages: Vec<String> = rows
        .iter()
        .map(|r| match r.get("message") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        })
        .collect();
    Err(Error::Gate {
        gate: gate.name.clone(),
        message: messages.join("; "),
        evidence: serde_json::Value::Null,
    })
}

/// Plan every step (logically and physically) and every gate without
/// computing any; returns the planned steps' names. A step or gate that does
/// not plan is [`Error::InvalidStep`] (exit 2).
pub async fn check(ctx: &SessionContext, job: &Job, params: &SqlParams) -> Result<Vec<String>> {
    let mut planned = Vec::new();
    for step in &job.spec.steps {
        let who = format!("step {} ({})", step.name, step.sql);
        let df = plan(ctx, sql_of(job, &step.sql), params, &who)
            .await
            .map_err(|e| invalid_step(&step.name, &step.sql, e))?;
        // Create the physical plan too: catches what only planning finds.
        df.clone()
            .create_physical_plan()
            .await
            .map_err(|e| invalid_plan(&step.name, &step.sql, e))?;
        ctx.register_table(step.name.as_str(), df.into_view())?;
        planned.push(step.name.clone());
    }
    for gate in &job.spec.gates {
        let who = format!("gate {} ({})", gate.name, gate.sql);
        let df = plan(ctx, sql_of(job, &gate.sql), params, &who)
            .await
            .map_err(|e| invalid_step(&gate.name, &gate.sql, e))?;
        if df.schema().field_with_unqualified_name("message").is_err() {
            return Err(Error::job(
                &job.path,
                format!("gate {} must return a column named message", gate.name),
            ));
        }
    }
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_text_writes_the_bound_values_as_literals() {
        let params: SqlParams = [
            ("as_of".to_string(), ScalarValue::Date32(Some(10134))),
            ("value".to_string(), ScalarValue::Utf8(Some("o'k".into()))),
            ("rate".to_string(), ScalarValue::Float64(Some(0.01))),
            ("days".to_string(), ScalarValue::Float64(Some(7.0))),
            ("n".to_string(), ScalarValue::Int64(Some(12))),
            ("on".to_string(), ScalarValue::Boolean(Some(false))),
        ]
        .into_iter()
        .collect();
        let sql = "-- Params: $as_of\nSELECT $as_of, $value, $rate*$days, $n, $on, '$n', \"$n\", $unknown /* $n */ FROM t";
        // 10134 days after 1970-01-01 is 1997-09-30 (chrono, independently).
        let day =
            chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(10134);
        assert_eq!(day.to_string(), "1997-09-30");
        assert_eq!(
            bind_text(sql, &params),
            "-- Params: $as_of\nSELECT DATE '1997-09-30', 'o''k', 0.01*7.0, 12, FALSE, '$n', \"$n\", $unknown /* $n */ FROM t"
        );
    }
}
