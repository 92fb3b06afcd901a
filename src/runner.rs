//! Running and checking a job: parameters into typed SQL values, inputs
//! registered, steps planned in order (views, or materialized to local spill
//! files), gates evaluated, outputs staged and then published together.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::scratch::Scratch;
use chrono::{Duration, NaiveDate, Utc};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use datafusion::scalar::ScalarValue;
use object_store::ObjectStoreExt;
use serde::Serialize;
use tracing::Instrument;

use crate::engine::{self, EngineOptions};
use crate::error::{Error, Result};
use crate::input::{self, InputReport};
use crate::job::{Job, Param};
use crate::lineage::Lineage;
use crate::lock::RunLock;
use crate::publish::{self, Manifest, Staged};
use crate::storage::{self, Location};
use crate::table;

/// What `run` and `check` take besides the job.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub as_of: Option<NaiveDate>,
    pub inputs: BTreeMap<String, String>,
    pub sets: Vec<(String, String)>,
    pub output: Option<String>,
    pub engine: EngineOptions,
    /// OpenLineage target: an http(s) endpoint or a file of JSON lines.
    pub lineage: Option<String>,
}

/// One step's outcome, for the run report.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub file: String,
    pub materialized: bool,
    pub rows: Option<u64>,
    pub seconds: f64,
}

/// One published table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: String,
    pub rows: u64,
    pub location: String,
    pub files: usize,
}

/// The result of a run: what the report file and the demo summary show.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub custval_version: String,
    pub job: String,
    pub run_id: String,
    pub as_of: String,
    pub status: String,
    pub seconds: f64,
    pub parameters: serde_json::Value,
    pub inputs: Vec<InputReport>,
    pub steps: Vec<StepReport>,
    pub tables: Vec<TableReport>,
    pub quality: serde_json::Value,
    pub model_fit: serde_json::Value,
    /// The visual report, when the job has tables to chart.
    pub report_html: Option<String>,
}

/// Yesterday in UTC: the default as-of date.
pub fn default_as_of() -> NaiveDate {
    (Utc::now() - Duration::days(1)).date_naive()
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

/// Parameters as SQL values: the job's, plus the ones custval derives.
fn sql_params(job: &Job, as_of: NaiveDate) -> Result<HashMap<String, ScalarValue>> {
    let bad = |k: &str, m: String| Error::Usage(format!("parameter {k}: {m}"));
    let mut out: HashMap<String, ScalarValue> = job
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.to_scalar()))
        .collect();
    out.insert("as_of".into(), Param::Date(as_of).to_scalar());
    out.insert(
        "as_of_day".into(),
        ScalarValue::Int64(Some((as_of - epoch()).num_days())),
    );
    if let Some(unit) = job.params.get("time_unit") {
        let (days, per_month) = match unit.as_str() {
            Some("day") => (1.0, 30.0),
            Some("week") => (7.0, 30.0 / 7.0),
            _ => {
                return Err(bad(
                    "time_unit",
                    format!("must be day or week, got {unit:?}"),
                ))
            }
        };
        // lifetimes uses 4.345 weeks a month; SPEC.md: a month is 30 days (4.345 weeks).
        let per_month = if days == 7.0 { 4.345 } else { per_month };
        out.insert("time_unit_days".into(), ScalarValue::Float64(Some(days)));
        out.insert(
            "time_units_per_month".into(),
            ScalarValue::Float64(Some(per_month)),
        );
    }
    let holdout = match job.params.get("holdout_days") {
        Some(Param::Int(d)) if *d >= 0 => *d,
        Some(other) => {
            return Err(bad(
                "holdout_days",
                format!("must be a whole number >= 0, got {other:?}"),
            ))
        }
        None => 0,
    };
    let cal = as_of - Duration::days(holdout);
    out.insert("calibration_end".into(), Param::Date(cal).to_scalar());
    out.insert(
        "calibration_end_day".into(),
        ScalarValue::Int64(Some((cal - epoch()).num_days())),
    );
    for (k, lo, hi) in [
        ("max_rejected_fraction", 0.0, 1.0),
        ("monthly_discount_rate", 0.0, 1.0),
        ("wallet_quantile", 0.0, 1.0),
        ("platinum_fraction", 0.0, 1.0),
        ("gold_fraction", 0.0, 1.0),
        ("silver_fraction", 0.0, 1.0),
        ("pareto_a", 0.0, 1.0),
        ("pareto_b", 0.0, 1.0),
        ("at_risk_p_alive", 0.0, 1.0),
        ("horizon_months", 0.0, 1200.0),
    ] {
        if let Some(p) = job.params.get(k) {
            match p.as_f64() {
                Some(v) if (lo..=hi).contains(&v) => {}
                _ => {
                    return Err(bad(
                        k,
                        format!("must be a number in [{lo}, {hi}], got {p:?}"),
                    ))
                }
            }
        }
    }
    if let Some(v) = job.params.get("value") {
        if !matches!(v.as_str(), Some("revenue") | Some("margin")) {
            return Err(bad(
                "value",
                format!("must be revenue or margin, got {v:?}"),
            ));
        }
        if v.as_str() == Some("margin") {
            let mapped = job.spec.inputs.values().any(|i| {
                i.kind == crate::job::InputKind::Transactions && i.columns.contains_key("margin")
            });
            if !mapped {
                return Err(bad(
                    "value",
                    "is margin, but no transactions input maps a margin column".into(),
                ));
            }
        }
    }
    Ok(out)
}

fn params_json(job: &Job, as_of: NaiveDate) -> serde_json::Value {
    let mut m: serde_json::Map<String, serde_json::Value> = job
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    m.insert("as_of".into(), as_of.to_string().into());
    serde_json::Value::Object(m)
}

fn output_location(job: &Job, opts: &RunOptions) -> Result<Location> {
    let base = job
        .path
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."));
    let raw = match (&opts.output, &job.spec.output) {
        (Some(o), _) => o.clone(),
        (None, Some(o)) => input::resolve_relative(&base, o),
        (None, None) => return Err(Error::Usage("no output location: pass --output URL".into())),
    };
    Location::parse(&raw, true)
}

/// A session with the job's inputs registered and every URL checked.
struct Prepared {
    ctx: SessionContext,
    params: HashMap<String, ScalarValue>,
    inputs: Vec<InputReport>,
    output: Location,
    as_of: NaiveDate,
    /// Names the run's files, lock and scratch space.
    run_id: String,
}

/// A session with the job's inputs registered, and the run's scratch space
/// (which the caller removes). Nothing is left behind when this fails.
async fn prepare(job: &Job, opts: &RunOptions) -> Result<(Prepared, Scratch)> {
    let as_of = opts.as_of.unwrap_or_else(default_as_of);
    let params = sql_params(job, as_of)?;
    let output = output_location(job, opts)?;
    let ctx = engine::open(&opts.engine).await?;
    // Build the output store first: a bad URL or credentials fail before any query.
    storage::register_store(&ctx, &output)?;
    let run_id = format!(
        "{}-{:08x}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    );
    let scratch = Scratch::new(&ctx, opts.engine.cluster.is_some(), &output, &run_id)?;
    let registered = async {
        let base = job
            .path
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| PathBuf::from("."));
        let inputs =
            input::register_inputs(&ctx, &job.spec.inputs, &opts.inputs, &base, &scratch).await?;
        for out in &job.spec.outputs {
            if !out.previous.is_empty() {
                register_previous(&ctx, &output, &out.table, &out.previous, as_of, &scratch)
                    .await?;
            }
        }
        Ok::<_, Error>(inputs)
    }
    .await;
    match registered {
        Ok(inputs) => Ok((
            Prepared {
                ctx,
                params,
                inputs,
                output,
                as_of,
                run_id,
            },
            scratch,
        )),
        Err(e) => {
            scratch.remove().await;
            Err(e)
        }
    }
}

/// Register `previous_<table>`: the listed columns of the latest partition
/// published before `as_of`, as text; empty when there is none.
async fn register_previous(
    ctx: &SessionContext,
    output: &Location,
    table: &str,
    columns: &[String],
    as_of: NaiveDate,
    scratch: &Scratch,
) -> Result<()> {
    let store = storage::register_store(ctx, output)?;
    let table_dir = output.join(&format!("{table}/"))?;
    let mut found = None;
    for date in publish::list_partitions(&store, &table_dir)
        .await?
        .into_iter()
        .rev()
    {
        if date.as_str() >= as_of.to_string().as_str() {
            continue;
        }
        let part = table_dir.join(&format!("as_of={date}/"))?;
        if publish::read_manifest(&store, &part).await?.is_some() {
            found = Some(part);
            break;
        }
    }
    let name = format!("previous_{table}");
    match found {
        Some(part) => {
            let raw = format!("__raw_{name}");
            input::register_source(ctx, &raw, &part, Some(crate::job::Format::Parquet), false)
                .await?;
            let cols: Vec<String> = columns
                .iter()
                .map(|c| format!("CAST(\"{c}\" AS VARCHAR) AS \"{c}\""))
                .collect();
            let df = ctx
                .sql(&format!("SELECT {} FROM \"{raw}\"", cols.join(", ")))
                .await?;
            ctx.register_table(name.as_str(), df.into_view())?;
        }
        None => {
            let schema = Arc::new(Schema::new(
                columns
                    .iter()
                    .map(|c| Field::new(c, DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            ));
            scratch.register_empty(ctx, &name, schema).await?;
        }
    }
    Ok(())
}

/// Plan one SQL text with the parameters bound as typed values.
async fn plan(
    ctx: &SessionContext,
    sql: &str,
    params: &HashMap<String, ScalarValue>,
) -> datafusion::error::Result<datafusion::dataframe::DataFrame> {
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
    ctx.execute_logical_plan(plan)
        .await?
        .with_param_values(params.clone())
}

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

/// `custval check`: parse and plan every step against the real inputs.
pub async fn check(job: &Job, opts: &RunOptions) -> Result<Vec<String>> {
    let (p, scratch) = prepare(job, opts).await?;
    let result = check_prepared(job, &p).await;
    scratch.remove().await;
    result
}

async fn check_prepared(job: &Job, p: &Prepared) -> Result<Vec<String>> {
    let mut planned = Vec::new();
    for step in &job.spec.steps {
        let sql = job
            .sql
            .get(&step.sql)
            .map(|s| s.as_str())
            .unwrap_or_default();
        let df = plan(&p.ctx, sql, &p.params)
            .await
            .map_err(|e| step_error(&step.name, &step.sql, e.into()))?;
        // Create the physical plan too: catches what only planning finds.
        df.clone()
            .create_physical_plan()
            .await
            .map_err(|e| step_error(&step.name, &step.sql, e.into()))?;
        p.ctx.register_table(step.name.as_str(), df.into_view())?;
        planned.push(step.name.clone());
    }
    for gate in &job.spec.gates {
        let sql = job
            .sql
            .get(&gate.sql)
            .map(|s| s.as_str())
            .unwrap_or_default();
        let df = plan(&p.ctx, sql, &p.params)
            .await
            .map_err(|e| step_error(&gate.name, &gate.sql, e.into()))?;
        if df.schema().field_with_unqualified_name("message").is_err() {
            return Err(Error::job(
                &job.path,
                format!("gate {} must return a column named message", gate.name),
            ));
        }
    }
    Ok(planned)
}

async fn run_gate(
    ctx: &SessionContext,
    job: &Job,
    gate: &crate::job::GateSpec,
    params: &HashMap<String, ScalarValue>,
) -> Result<()> {
    let sql = job
        .sql
        .get(&gate.sql)
        .map(|s| s.as_str())
        .unwrap_or_default();
    let df = plan(ctx, sql, params)
        .await
        .map_err(|e| step_error(&gate.name, &gate.sql, e.into()))?;
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
    })
}

/// `custval run`: compute every step, check the gates, publish the outputs.
/// With `lineage`, OpenLineage START and COMPLETE or FAIL events are sent.
pub async fn run(job: &Job, opts: &RunOptions) -> Result<RunReport> {
    let lineage = opts
        .lineage
        .as_deref()
        .map(|t| Lineage::new(t, &job.spec.name));
    let result = run_inner(job, opts, lineage.as_ref()).await;
    if let Some(l) = &lineage {
        match &result {
            Ok(r) => {
                let outputs: Vec<serde_json::Value> = r
                    .tables
                    .iter()
                    .filter_map(|t| Location::parse(&t.location, true).ok())
                    .map(|loc| crate::lineage::dataset(&loc))
                    .collect();
                l.emit("COMPLETE", Some(&r.run_id), &[], &outputs, None)
                    .await;
            }
            Err(e) => l.emit("FAIL", None, &[], &[], Some(&e.to_string())).await,
        }
    }
    result
}

async fn run_inner(job: &Job, opts: &RunOptions, lineage: Option<&Lineage>) -> Result<RunReport> {
    let started = Instant::now();
    let (p, scratch) = prepare(job, opts).await?;
    let result = run_prepared(job, p, lineage, started, &scratch).await;
    scratch.remove().await;
    result
}

async fn run_prepared(
    job: &Job,
    p: Prepared,
    lineage: Option<&Lineage>,
    started: Instant,
    scratch: &Scratch,
) -> Result<RunReport> {
    let run_id = p.run_id.clone();
    tracing::info!(job = %job.spec.name, as_of = %p.as_of, run_id = %run_id, output = %p.output, "run started");
    if let Some(l) = lineage {
        let inputs: Vec<serde_json::Value> = p
            .inputs
            .iter()
            .filter_map(|i| i.url.as_deref())
            .filter_map(|u| Location::parse(u, u.ends_with('/')).ok())
            .map(|loc| crate::lineage::dataset(&loc))
            .collect();
        l.emit("START", Some(&run_id), &inputs, &[], None).await;
    }
    let store = storage::register_store(&p.ctx, &p.output)?;
    let lock = RunLock::acquire(
        store.clone(),
        &p.output,
        &job.spec.name,
        &p.as_of.to_string(),
        &run_id,
    )
    .await?;
    let inputs = p.inputs.clone();
    let result = run_locked(job, p, &run_id, &lock, store, started, scratch).await;
    lock.release().await;
    result.map_err(|e| data_error(&inputs, e))
}

/// A malformed file found while reading rows (past the sample the schema
/// was read from) is bad input, not a failed run: exit 2, naming the input.
fn data_error(inputs: &[InputReport], e: Error) -> Error {
    // A failed gate names the data it judged.
    if let Error::Gate { gate, message } = e {
        let read: Vec<String> = inputs
            .iter()
            .filter_map(|i| i.url.as_ref().map(|u| format!("{} = {u}", i.name)))
            .collect();
        return Error::Gate {
            gate,
            message: format!("{message} (input {})", read.join(", ")),
        };
    }
    let text = e.to_string();
    let markers = [
        "Csv error",
        "CSV file",
        "Parquet error",
        "invalid utf-8",
        "UTF-8 error",
    ];
    if !markers.iter().any(|m| text.contains(m)) {
        return e;
    }
    let read: Vec<&InputReport> = inputs.iter().filter(|i| i.url.is_some()).collect();
    let names: Vec<&str> = read.iter().map(|i| i.name.as_str()).collect();
    let urls: Vec<&str> = read.iter().filter_map(|i| i.url.as_deref()).collect();
    Error::InputSchema {
        input: names.join(", "),
        url: urls.join(", "),
        message: format!("unreadable data: {}", text.replace('\n', ": ")),
    }
}

async fn run_locked(
    job: &Job,
    p: Prepared,
    run_id: &str,
    lock: &RunLock,
    store: Arc<dyn object_store::ObjectStore>,
    started: Instant,
    spill: &Scratch,
) -> Result<RunReport> {
    let run_id = run_id.to_string();
    let mut steps = Vec::new();
    for step in &job.spec.steps {
        let t0 = Instant::now();
        let span = tracing::info_span!("step", step = %step.name, file = %step.sql);
        let rows = async {
            let sql = job.sql.get(&step.sql).map(|s| s.as_str()).unwrap_or_default();
            let df = plan(&p.ctx, sql, &p.params)
                .await
                .map_err(|e| step_error(&step.name, &step.sql, e.into()))?;
            let pb = crate::progress::step(&step.name);
            let rows = if step.materialize {
                Some(
                    materialize(&p.ctx, &step.name, df, spill)
                        .await
                        .map_err(|e| step_error(&step.name, &step.sql, e))?,
                )
            } else {
                p.ctx.register_table(step.name.as_str(), df.into_view())?;
                None
            };
            pb.finish_and_clear();
            let seconds = t0.elapsed().as_secs_f64();
            // Views are planned here and computed by the steps that read them.
            match rows {
                Some(n) => tracing::info!(step = %step.name, rows_out = n, materialized = true, seconds, "step done"),
                None => tracing::info!(step = %step.name, materialized = false, seconds, "step done"),
            }
            Ok::<_, Error>(rows)
        }
        .instrument(span)
        .await?;
        let seconds = t0.elapsed().as_secs_f64();
        steps.push(StepReport {
            name: step.name.clone(),
            file: step.sql.clone(),
            materialized: step.materialize,
            rows,
            seconds,
        });
        for gate in job
            .spec
            .gates
            .iter()
            .filter(|g| g.after.as_deref() == Some(step.name.as_str()))
        {
            run_gate(&p.ctx, job, gate, &p.params).await?;
        }
    }
    for gate in job.spec.gates.iter().filter(|g| g.after.is_none()) {
        run_gate(&p.ctx, job, gate, &p.params).await?;
    }
    let quality = one_row_json(&p.ctx, "quality").await?;
    let model_fit = all_rows_json(&p.ctx, "model_fit").await?;

    // Stage every output, then publish them together.
    let mut staged: Vec<Staged> = Vec::new();
    for out in &job.spec.outputs {
        let partition = p
            .output
            .join(&format!("{}/as_of={}/", out.table, p.as_of))?;
        let df = p.ctx.table(out.from.as_str()).await?;
        match publish::stage(&out.table, df, store.clone(), &partition, &run_id).await {
            Ok(s) => {
                tracing::info!(table = %out.table, rows = s.rows, files = s.files.len(), "table staged");
                staged.push(s)
            }
            Err(e) => {
                discard(&store, &staged).await;
                return Err(e);
            }
        }
    }
    let parameters = params_json(job, p.as_of);
    let inputs_json =
        serde_json::to_value(&p.inputs).map_err(|e| Error::Internal(e.to_string()))?;
    let steps_json = serde_json::to_value(&steps).map_err(|e| Error::Internal(e.to_string()))?;
    if let Err(e) = lock.verify().await {
        discard(&store, &staged).await;
        return Err(e);
    }
    let mut tables = Vec::new();
    for s in &staged {
        let manifest = Manifest {
            format: "custval-manifest/1".into(),
            table: s.table.clone(),
            as_of: p.as_of.to_string(),
            run_id: run_id.clone(),
            job: job.spec.name.clone(),
            custval_version: env!("CARGO_PKG_VERSION").into(),
            created_at: Utc::now().to_rfc3339(),
            rows: s.rows,
            files: s.files.clone(),
            schema: publish::schema_entries(&s.schema),
            parameters: parameters.clone(),
            inputs: inputs_json.clone(),
            quality: quality.clone(),
            model_fit: model_fit.clone(),
            steps: steps_json.clone(),
        };
        publish::commit(&store, &manifest, &s.partition).await?;
        tracing::info!(table = %s.table, rows = s.rows, location = %s.partition, "table published");
        tables.push(TableReport {
            table: s.table.clone(),
            rows: s.rows,
            location: s.partition.to_string(),
            files: s.files.len(),
        });
    }
    let report_html = write_html_report(&p, job, &run_id, &store).await;
    Ok(RunReport {
        report_html,
        custval_version: env!("CARGO_PKG_VERSION").into(),
        job: job.spec.name.clone(),
        run_id,
        as_of: p.as_of.to_string(),
        status: "success".into(),
        seconds: started.elapsed().as_secs_f64(),
        parameters,
        inputs: p.inputs,
        steps,
        tables,
        quality,
        model_fit,
    })
}

/// Render and write `OUTPUT/_reports/JOB/as_of=DATE/report.html`. The tables
/// are already published: a report that cannot be written is a warning.
async fn write_html_report(
    p: &Prepared,
    job: &Job,
    run_id: &str,
    store: &Arc<dyn object_store::ObjectStore>,
) -> Option<String> {
    let as_of = p.as_of.to_string();
    let html = match crate::report::render(&p.ctx, &job.spec.name, &as_of, run_id).await {
        Ok(Some(h)) => h,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "could not render report.html");
            return None;
        }
    };
    let loc = p
        .output
        .join(&format!(
            "_reports/{}/as_of={as_of}/report.html",
            job.spec.name
        ))
        .ok()?;
    match store
        .put(
            &loc.path(),
            object_store::PutPayload::from(html.into_bytes()),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(location = %loc, "report written");
            Some(loc.to_string())
        }
        Err(e) => {
            tracing::warn!(location = %loc, error = %e, "could not write report.html");
            None
        }
    }
}

async fn discard(store: &Arc<dyn object_store::ObjectStore>, staged: &[Staged]) {
    for s in staged {
        let files: Vec<String> = s.files.iter().map(|f| f.path.clone()).collect();
        publish::discard_files(store, &s.partition, &files).await;
    }
}

/// Compute a step once into local Parquet spill files and register them.
async fn materialize(
    ctx: &SessionContext,
    name: &str,
    df: datafusion::dataframe::DataFrame,
    scratch: &Scratch,
) -> Result<u64> {
    let schema = Arc::new(df.schema().as_arrow().clone());
    let folder = scratch.folder(name)?;
    // Spill files live for one run and are read whole: fast LZ4 instead of
    // the zstd of published files, and no dictionaries or page statistics
    // (building them was about a tenth of writing a 20M-row spill).
    if let Scratch::Local(_) = scratch {
        // Locally, written by our own writers, outside the memory pool:
        // DataFusion's Parquet sink reserves from the pool, and an aggregate
        // that keeps its share until its output is done (customer_summary
        // under --memory-limit 384MiB at 20M rows) left it nothing.
        let props = WriterProperties::builder()
            .set_compression(Compression::LZ4_RAW)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_max_row_group_row_count(Some(1 << 17))
            .build();
        let loc = Location::parse(&folder, true)?;
        let store = storage::register_store(ctx, &loc)?;
        let staged = publish::stage_with(name, df, store, &loc, "spill", props).await?;
        let opts = ParquetReadOptions::default().schema(&schema);
        ctx.register_parquet(name, &folder, opts).await?;
        return Ok(staged.rows);
    }
    let mut spill_opts = datafusion::config::TableParquetOptions::default();
    spill_opts.global.compression = Some("lz4_raw".into());
    spill_opts.global.dictionary_enabled = Some(false);
    spill_opts.global.statistics_enabled = Some("none".into());
    let counts: Vec<RecordBatch> = df
        .write_parquet(&folder, DataFrameWriteOptions::new(), Some(spill_opts))
        .await?;
    let rows: u64 = table::to_json_rows(&counts)?
        .iter()
        .filter_map(|r| r.get("count").and_then(|v| v.as_u64()))
        .sum();
    if rows == 0 {
        // No rows may mean no files: a folder with none has no schema to read.
        scratch.register_empty(ctx, name, schema).await?;
    } else {
        let opts = ParquetReadOptions::default().schema(&schema);
        ctx.register_parquet(name, &folder, opts).await?;
    }
    Ok(rows)
}

async fn one_row_json(ctx: &SessionContext, name: &str) -> Result<serde_json::Value> {
    match all_rows_json(ctx, name).await? {
        serde_json::Value::Array(mut rows) if !rows.is_empty() => Ok(rows.remove(0)),
        _ => Ok(serde_json::Value::Null),
    }
}

async fn all_rows_json(ctx: &SessionContext, name: &str) -> Result<serde_json::Value> {
    if !ctx.table_exist(name)? {
        return Ok(serde_json::Value::Null);
    }
    let batches = ctx
        .table(name)
        .await?
        .limit(0, Some(100))?
        .collect()
        .await?;
    let rows = table::to_json_rows(&batches)?;
    Ok(serde_json::Value::Array(
        rows.into_iter().map(serde_json::Value::Object).collect(),
    ))
}
