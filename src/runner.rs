//! Running and checking a job: the order of the phases. Parameters bound
//! ([`Job::bind`]), inputs registered, steps computed in order with their
//! gates ([`crate::steps`]), outputs staged and then published together
//! under the run lock ([`crate::publish`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, NaiveDate, Utc};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use crate::engine::{self, EngineOptions};
use crate::error::{Error, Result};
use crate::incremental;
use crate::input::{self, InputReport};
use crate::job::{BoundParams, Job, OutputFormat, OutputSpec};
use crate::lineage::Lineage;
use crate::lock::RunLock;
use crate::publish::repair::Repaired;
use crate::publish::{self, OutputLayout, RunRecord, Staged};
use crate::rejections::{self, FailedRun, SampleReport};
use crate::scratch::Scratch;
use crate::selection::{Selection, StepGraph};
use crate::steps::{self, SqlParams, StepReport};
use crate::storage::{self, Location};
use crate::table;

/// What `run` and `check` take besides the job.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Last day of data to use; yesterday (UTC) when absent.
    pub as_of: Option<NaiveDate>,
    /// `--input NAME=URL` overrides of the job's input URLs.
    pub inputs: BTreeMap<String, String>,
    /// `--set KEY=VALUE` overrides, already applied to the job's parameters.
    pub sets: Vec<(String, String)>,
    /// `--output URL`, overriding the job's output.
    pub output: Option<String>,
    /// The session's settings.
    pub engine: EngineOptions,
    /// OpenLineage target: an http(s) endpoint or a file of JSON lines.
    pub lineage: Option<String>,
    /// `--select` selectors (`STEP`, `STEP+`, `+STEP`); empty: every step.
    pub select: Vec<String>,
    /// `--exclude` selectors.
    pub exclude: Vec<String>,
}

/// One published table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// Table name.
    pub table: String,
    /// Rows published.
    pub rows: u64,
    /// The partition's redacted URL.
    pub location: String,
    /// Data files written.
    pub files: usize,
}

/// The result of a run: what the report file and the demo summary show.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The custval that ran.
    pub custval_version: String,
    /// The job's name.
    pub job: String,
    /// The run's id.
    pub run_id: String,
    /// The as-of date, `YYYY-MM-DD`.
    pub as_of: String,
    /// `success` (failed runs have no report but the error one of `cli`).
    pub status: String,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Bound parameters.
    pub parameters: serde_json::Value,
    /// The inputs read.
    pub inputs: Vec<InputReport>,
    /// Every step computed, in order.
    pub steps: Vec<StepReport>,
    /// With `--select` or `--exclude`: the selected steps, whose outputs
    /// were published (the other steps computed only fed them or a gate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected: Option<Vec<String>>,
    /// Every published table.
    pub tables: Vec<TableReport>,
    /// The `quality` step's row, or null.
    pub quality: serde_json::Value,
    /// The `model_fit` step's rows, or null.
    pub model_fit: serde_json::Value,
    /// The visual report, when the job has tables to chart.
    pub report_html: Option<String>,
    /// The run record that committed the tables.
    pub run_record: String,
    /// What this run repaired of an earlier run that stopped (rolled
    /// forward manifests, removed files), one sentence each.
    pub repairs: Vec<String>,
    /// Manifests this run could not roll forward after its commit: the
    /// tables are published (the run record names them); the next run
    /// rewrites these manifests.
    pub pending: Vec<String>,
}

/// Yesterday in UTC: the default as-of date.
pub fn default_as_of() -> NaiveDate {
    (Utc::now() - Duration::days(1)).date_naive()
}

fn job_dir(job: &Job) -> PathBuf {
    job.path
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."))
}

fn output_layout(job: &Job, opts: &RunOptions) -> Result<OutputLayout> {
    let raw = match (&opts.output, &job.spec.output) {
        (Some(o), _) => o.clone(),
        (None, Some(o)) => input::resolve_relative(&job_dir(job), o),
        (None, None) => {
            return Err(Error::Argument(
                "no output location: pass --output URL".into(),
            ))
        }
    };
    Ok(OutputLayout::new(Location::parse(&raw, true)?))
}

/// The job as a run computes it: with `incremental` on, the state steps
/// of [`incremental::with_state_steps`] added.
fn job_to_run(job: &Job, opts: &RunOptions) -> Result<Job> {
    let params = job.bind(opts.as_of.unwrap_or_else(default_as_of))?;
    match params.lookback_days {
        Some(_) => incremental::with_state_steps(job),
        None => Ok(job.clone()),
    }
}

/// A session with the job's inputs registered and every URL checked.
struct Prepared {
    ctx: SessionContext,
    params: BoundParams,
    sql_params: SqlParams,
    inputs: Vec<InputReport>,
    output: OutputLayout,
    /// Names the run's files, lock and scratch space.
    run_id: String,
}

/// A session with the job's inputs registered, and the run's scratch space
/// (which the caller removes). Nothing is left behind when this fails.
async fn prepare(job: &Job, opts: &RunOptions) -> Result<(Prepared, Scratch)> {
    let params = job.bind(opts.as_of.unwrap_or_else(default_as_of))?;
    let mut sql_params = params.sql_values();
    let output = output_layout(job, opts)?;
    let ctx = engine::open(&opts.engine).await?;
    // Build the output store first: a bad URL or credentials fail before any query.
    storage::register_store(&ctx, output.root())?;
    let run_id = format!(
        "{}-{:08x}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    );
    let scratch = Scratch::new(&ctx, opts.engine.cluster.is_some(), &output, &run_id)?;
    let registered = async {
        let inputs = input::register_inputs(
            &ctx,
            &job.spec.inputs,
            &opts.inputs,
            &job_dir(job),
            &params.timezone,
            &scratch,
        )
        .await?;
        if params.measures_margin() {
            input::require_margin(&inputs, &job.spec.inputs)?;
        }
        for out in &job.spec.outputs {
            if !out.previous.is_empty() {
                register_previous(&ctx, &output, out, params.as_of, &scratch).await?;
            }
        }
        // Only a run computes the state steps (`check` plans the job as written).
        if job
            .spec
            .steps
            .iter()
            .any(|s| s.name == incremental::STATE_TABLE)
        {
            let store = storage::register_store(&ctx, output.root())?;
            let at = incremental::Setting {
                output: &output,
                store: &store,
                scratch: &scratch,
                inputs: &inputs,
            };
            let (_, values) = incremental::register(&ctx, &at, job, &params).await?;
            sql_params.extend(values);
        }
        Ok::<_, Error>(inputs)
    }
    .await;
    match registered {
        Ok(inputs) => Ok((
            Prepared {
                ctx,
                sql_params,
                params,
                inputs,
                output,
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
/// published before `as_of` (a Parquet partition with its manifest, or the
/// Delta table's latest earlier `as_of`), as text (NULL where the partition
/// lacks one); empty when there is none.
async fn register_previous(
    ctx: &SessionContext,
    output: &OutputLayout,
    out: &OutputSpec,
    as_of: NaiveDate,
    scratch: &Scratch,
) -> Result<()> {
    let (table, columns) = (out.table.as_str(), &out.previous);
    let store = storage::register_store(ctx, output.root())?;
    let name = format!("previous_{table}");
    let raw = format!("__raw_{name}");
    let found = match out.format {
        OutputFormat::Delta => {
            publish::delta::register_previous(ctx, output, &store, table, as_of, &raw)
                .await?
                .is_some()
        }
        OutputFormat::Parquet => match output.previous(&store, table, as_of).await? {
            Some(part) => {
                let parquet = input::ReadOptions {
                    format: Some(crate::job::Format::Parquet),
                    ..Default::default()
                };
                input::register_source(ctx, &raw, &part, &parquet).await?;
                true
            }
            None => false,
        },
    };
    match found {
        true => {
            // A column the partition lacks (written before the job listed
            // it) reads as NULL.
            let have = ctx.table(raw.as_str()).await?.schema().clone();
            let cols: Vec<String> = columns
                .iter()
                .map(|c| match have.has_column_with_unqualified_name(c) {
                    true => format!("CAST(\"{c}\" AS VARCHAR) AS \"{c}\""),
                    false => format!("CAST(NULL AS VARCHAR) AS \"{c}\""),
                })
                .collect();
            let df = ctx
                .sql(&format!("SELECT {} FROM \"{raw}\"", cols.join(", ")))
                .await?;
            ctx.register_table(name.as_str(), df.into_view())?;
        }
        false => {
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

/// `custval run --dry-run`: what the run would do, as text: the steps it
/// would compute in order, each with its SQL after parameter binding
/// ([`steps::bind_text`]) and the gates that follow it, then the tables it
/// would publish and where. Reads no input and writes nothing; the output
/// location is only parsed.
///
/// Errors: those of [`Job::bind`] (a bad parameter), [`StepGraph::select`]
/// (an unknown step, a selection publishing nothing) and a bad output
/// location, all exit 2.
pub fn dry_run(job: &Job, opts: &RunOptions) -> Result<String> {
    use std::fmt::Write;
    let job = &job_to_run(job, opts)?;
    let selection = StepGraph::of(job)?.select(job, &opts.select, &opts.exclude)?;
    let params = job.bind(opts.as_of.unwrap_or_else(default_as_of))?;
    let mut sql_params = params.sql_values();
    if params.lookback_days.is_some() {
        sql_params.extend(incremental::known_values(job, &params));
    }
    let output = output_layout(job, opts)?;
    let sql_of = |file: &str| job.sql.get(file).cloned().unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "-- dry run of job {} as of {}: {} of {} steps, {} tables published; nothing is read or written",
        job.spec.name,
        params.as_of,
        selection.steps.len(),
        job.spec.steps.len(),
        selection.tables.len()
    );
    let gates = |after: Option<&str>, s: &mut String| {
        for g in job
            .spec
            .gates
            .iter()
            .filter(|g| g.after.as_deref() == after)
        {
            let _ = writeln!(s, "\n-- gate {} ({})", g.name, g.sql);
            let _ = writeln!(
                s,
                "{}",
                steps::bind_text(&sql_of(&g.sql), &sql_params).trim_end()
            );
        }
    };
    let steps = job.spec.steps.iter().filter(|st| selection.runs(&st.name));
    for (i, step) in steps.enumerate() {
        let role = match selection.selected.contains(&step.name) {
            true => "selected",
            false => "needed upstream, not published",
        };
        let _ = writeln!(
            s,
            "\n-- step {}/{}: {} ({}, {role})",
            i + 1,
            selection.steps.len(),
            step.name,
            step.sql
        );
        let _ = writeln!(
            s,
            "{}",
            steps::bind_text(&sql_of(&step.sql), &sql_params).trim_end()
        );
        gates(Some(step.name.as_str()), &mut s);
    }
    gates(None, &mut s);
    let _ = writeln!(s, "\n-- would publish:");
    for out in job
        .spec
        .outputs
        .iter()
        .filter(|o| selection.publishes(&o.table))
    {
        let part = output.partition(&out.table, params.as_of)?;
        let _ = writeln!(
            s,
            "--   {:<26} from step {:<26} {}",
            out.table, out.from, part
        );
    }
    Ok(s)
}

/// What `check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The steps planned, in order.
    pub steps: Vec<String>,
    /// The validation of the first rows of each transactions input; `None`
    /// with a sample of 0 rows, or for a job without a transactions input
    /// or the steps that count and list rejected rows.
    pub sample: Option<SampleReport>,
}

/// `custval check`: parse and plan every step against the real inputs; with
/// `sample` > 0, compute the job's validation over the first `sample` rows
/// of each transactions input (its `quality` and `rejected_rows` steps).
pub async fn check(job: &Job, opts: &RunOptions, sample: u64) -> Result<CheckReport> {
    let (p, scratch) = prepare(job, opts).await?;
    let result = async {
        if sample > 0 {
            let rows = usize::try_from(sample).unwrap_or(usize::MAX);
            input::limit_transactions(&p.ctx, &job.spec.inputs, rows).await?;
        }
        let steps = steps::check(&p.ctx, job, &p.sql_params).await?;
        let validated = job
            .spec
            .inputs
            .values()
            .any(|i| i.kind == crate::job::InputKind::Transactions);
        let sample = match sample {
            n if n > 0 && validated => SampleReport::compute(&p.ctx, job, &p.sql_params, n).await?,
            _ => None,
        };
        Ok(CheckReport { steps, sample })
    }
    .await;
    let result = match result {
        Ok(r) => Ok(r),
        Err(e) => Err(input::blame_mapping(&p.ctx, &p.inputs, e).await),
    };
    scratch.remove().await;
    result.map_err(|e| name_the_inputs(&p.inputs, e))
}

/// `custval run`: compute every step, check the gates, publish the outputs.
/// With `lineage`, OpenLineage START and COMPLETE or FAIL events are sent.
pub async fn run(job: &Job, opts: &RunOptions) -> Result<RunReport> {
    let job = &job_to_run(job, opts)?;
    let lineage = opts
        .lineage
        .as_deref()
        .map(|t| Lineage::new(t, &job.spec.name));
    let started = Instant::now();
    let selection = StepGraph::of(job).and_then(|g| g.select(job, &opts.select, &opts.exclude));
    let result = match selection {
        Ok(selection) => match prepare(job, opts).await {
            Ok((p, scratch)) => {
                let r = run_prepared(job, p, &selection, lineage.as_ref(), started, &scratch).await;
                scratch.remove().await;
                r
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    log_summary(job, &result, started);
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

/// The run's one summary line at the default level ([`crate::progress`]).
fn log_summary(job: &Job, result: &Result<RunReport>, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(r) => {
            let rows: u64 = r.tables.iter().map(|t| t.rows).sum();
            tracing::info!(target: crate::progress::TARGET, job = %r.job, as_of = %r.as_of, run_id = %r.run_id, steps = r.steps.len(), tables = r.tables.len(), rows, seconds, "run succeeded");
        }
        Err(e) => {
            tracing::info!(target: crate::progress::TARGET, job = %job.spec.name, exit_code = e.exit_code(), seconds, "run failed")
        }
    }
}

async fn run_prepared(
    job: &Job,
    p: Prepared,
    selection: &Selection,
    lineage: Option<&Lineage>,
    started: Instant,
    scratch: &Scratch,
) -> Result<RunReport> {
    let run_id = p.run_id.clone();
    let as_of = p.params.as_of;
    tracing::info!(job = %job.spec.name, %as_of, run_id = %run_id, output = %p.output.root(), steps = selection.steps.len(), tables = ?selection.tables, "run started");
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
    let store = storage::register_store(&p.ctx, p.output.root())?;
    let lock = RunLock::acquire(store.clone(), &p.output, &job.spec.name, as_of, &run_id).await?;
    let inputs = p.inputs.clone();
    let ctx = p.ctx.clone();
    let result = run_locked(job, p, selection, &lock, store, started, scratch).await;
    lock.release().await;
    match result {
        Ok(r) => Ok(r),
        Err(e) => Err(name_the_inputs(
            &inputs,
            input::blame_mapping(&ctx, &inputs, e).await,
        )),
    }
}

/// Errors that are about the data read get the inputs' names: a failed gate
/// names the data it judged, and a malformed file found while reading rows
/// (past the sample the schema was read from) is bad input, not a failed
/// run: [`Error::InputData`], exit 2.
fn name_the_inputs(inputs: &[InputReport], e: Error) -> Error {
    let read: Vec<&InputReport> = inputs.iter().filter(|i| i.url.is_some()).collect();
    let names: Vec<&str> = read.iter().map(|i| i.name.as_str()).collect();
    let urls: Vec<&str> = read.iter().filter_map(|i| i.url.as_deref()).collect();
    match e {
        Error::Gate {
            gate,
            message,
            evidence,
        } => {
            let read: Vec<String> = names
                .iter()
                .zip(&urls)
                .map(|(n, u)| format!("{n} = {u}"))
                .collect();
            Error::Gate {
                gate,
                message: format!("{message} (input {})", read.join(", ")),
                evidence,
            }
        }
        Error::Step { ref source, .. } if crate::error::is_read_fault(source) => Error::InputData {
            input: names.join(", "),
            file: urls.join(", "),
            message: e.to_string().replace('\n', ": "),
        },
        Error::DataFusion(ref source) if crate::error::is_read_fault(source) => Error::InputData {
            input: names.join(", "),
            file: urls.join(", "),
            message: e.to_string().replace('\n', ": "),
        },
        other => other,
    }
}

async fn run_locked(
    job: &Job,
    p: Prepared,
    selection: &Selection,
    lock: &RunLock,
    store: Arc<dyn ObjectStore>,
    started: Instant,
    scratch: &Scratch,
) -> Result<RunReport> {
    // Only Parquet outputs have manifests and run folders to repair; a
    // Delta table's as-of folders belong to its log.
    let tables: Vec<String> = job
        .spec
        .outputs
        .iter()
        .filter(|o| o.format == OutputFormat::Parquet)
        .map(|o| o.table.clone())
        .collect();
    for out in &job.spec.outputs {
        let delta = out.format == OutputFormat::Delta;
        publish::delta::check_format(&p.output, &store, &out.table, delta).await?;
    }
    let repaired =
        publish::repair::repair(&store, &p.output, &job.spec.name, p.params.as_of, &tables).await?;
    let step_reports = run_steps(job, &p, selection, &store, scratch).await?;
    let record = RunRecord {
        job: job.spec.name.clone(),
        run_id: p.run_id.clone(),
        as_of: p.params.as_of,
        parameters: p.params.to_json(),
        inputs: serde_json::to_value(&p.inputs)?,
        quality: table::first_row_json(&p.ctx, "quality").await?,
        model_fit: table::rows_json(&p.ctx, "model_fit").await?,
        steps: serde_json::to_value(&step_reports)?,
    };
    let staged = stage_all(job, selection, &p, &store).await?;
    let carried: Vec<String> = tables
        .iter()
        .filter(|t| !selection.publishes(t))
        .cloned()
        .collect();
    let commit = Commit {
        record: &record,
        staged: &staged,
        carried: &carried,
        selection,
        repaired: &repaired,
    };
    let (loc, pending, delta) = commit_run(job, &p, lock, &store, &commit).await?;
    let mut tables: Vec<TableReport> = staged
        .iter()
        .map(|s| TableReport {
            table: s.table.clone(),
            rows: s.rows,
            location: s.partition.to_string(),
            files: s.files.len(),
        })
        .collect();
    tables.extend(delta.iter().map(|(table, c)| TableReport {
        table: table.clone(),
        rows: c.rows,
        location: c.location.clone(),
        files: 0,
    }));
    // report.html charts the whole run's tables: a selection leaves the
    // date's report as it was.
    let report_html = match selection.whole {
        true => write_html_report(&p, job, &store).await,
        false => None,
    };
    Ok(RunReport {
        report_html,
        custval_version: env!("CARGO_PKG_VERSION").into(),
        job: record.job,
        run_id: record.run_id,
        as_of: record.as_of.to_string(),
        status: "success".into(),
        seconds: started.elapsed().as_secs_f64(),
        parameters: record.parameters,
        inputs: p.inputs,
        steps: step_reports,
        selected: (!selection.whole).then(|| {
            let mut v: Vec<String> = selection.selected.iter().cloned().collect();
            v.sort_by_key(|s| job.spec.steps.iter().position(|j| &j.name == s));
            v
        }),
        tables,
        quality: record.quality,
        model_fit: record.model_fit,
        run_record: loc.to_string(),
        repairs: repaired.repairs,
        pending,
    })
}

/// Run the selected steps in order, each followed by the gates now due,
/// then the remaining gates; the first failure (a gate's with its evidence)
/// ends the run.
async fn run_steps(
    job: &Job,
    p: &Prepared,
    selection: &Selection,
    store: &Arc<dyn ObjectStore>,
    scratch: &Scratch,
) -> Result<Vec<steps::StepReport>> {
    let mut step_reports = Vec::new();
    let mut done: Vec<String> = Vec::new();
    let mut judged = std::collections::HashSet::new();
    for step in job.spec.steps.iter().filter(|s| selection.runs(&s.name)) {
        step_reports.push(steps::run_step(&p.ctx, job, step, &p.sql_params, scratch).await?);
        done.push(step.name.clone());
        let verdict = steps::run_gates(&p.ctx, job, Some(&done), &mut judged, &p.sql_params).await;
        with_evidence(job, p, store, verdict).await?;
    }
    let verdict = steps::run_gates(&p.ctx, job, None, &mut judged, &p.sql_params).await;
    with_evidence(job, p, store, verdict).await?;
    Ok(step_reports)
}

/// A failed gate's error with the evidence of [`rejections::gate_evidence`]:
/// the quality counts, the reasons rows were rejected, and those rows kept
/// under `OUTPUT/_failed/`. Other results pass through.
async fn with_evidence(
    job: &Job,
    p: &Prepared,
    store: &Arc<dyn ObjectStore>,
    judged: Result<()>,
) -> Result<()> {
    match judged {
        Err(Error::Gate { gate, message, .. }) => {
            let run = FailedRun {
                ctx: &p.ctx,
                job,
                params: &p.sql_params,
                output: &p.output,
                store,
                as_of: p.params.as_of,
                run_id: &p.run_id,
            };
            Err(rejections::gate_evidence(&run, gate, message).await)
        }
        other => other,
    }
}

/// The commit of a run: verify the lock, put the run record (the one
/// commit point of every table), then roll each table's manifest forward
/// and remove older runs' files. Before the record lands a failure removes
/// the staged files and publishes nothing; after it, the run is published
/// and a manifest that cannot be written is left to the next run's repair
/// (returned as pending, with a warning).
/// What one commit writes: the record of the run, the tables it staged, and
/// the tables of a selection it did not compute (kept from the previous
/// record).
struct Commit<'a> {
    record: &'a RunRecord,
    staged: &'a [Staged],
    carried: &'a [String],
    /// Which outputs the run publishes (Delta outputs too).
    selection: &'a Selection,
    /// What repair found committed for the date before this run.
    repaired: &'a Repaired,
}

async fn commit_run(
    job: &Job,
    p: &Prepared,
    lock: &RunLock,
    store: &Arc<dyn ObjectStore>,
    c: &Commit<'_>,
) -> Result<(Location, Vec<String>, DeltaCommits)> {
    let (record, staged, repaired) = (c.record, c.staged, c.repaired);
    if let Err(e) = lock.verify().await {
        discard(store, staged).await;
        return Err(e);
    }
    let delta = match publish_delta(job, p, store, record, c.selection).await {
        Ok(d) => d,
        Err(e) => {
            discard(store, staged).await;
            return Err(e);
        }
    };
    let previous = repaired.committed.as_ref();
    let mut commit = record.commit(staged, previous.map(|c| &c.record), c.carried);
    commit.delta = delta.clone();
    let loc = p.output.run_record(&record.job, record.as_of)?;
    match publish::record::put_record(store, &loc, &commit, previous.map(|c| &c.version)).await {
        Ok(()) => {}
        Err(e @ Error::Conflict { .. }) => {
            discard(store, staged).await;
            return Err(e);
        }
        // Whether the put landed is unknown: leave the files to the next
        // run's repair rather than delete what may be committed.
        Err(e) => return Err(e),
    }
    tracing::info!(run_id = %record.run_id, record = %loc, tables = staged.len(), "run committed");
    let mut pending = Vec::new();
    for s in staged {
        let rolled = async {
            let m = commit.manifest(&s.table).ok_or_else(|| {
                Error::Internal(format!("{} missing from its run record", s.table))
            })?;
            publish::write_manifest(store, &m, &s.partition).await?;
            publish::cleanup(store, &s.partition, &m.files).await
        };
        match rolled.await {
            Ok(_) => {
                tracing::info!(table = %s.table, rows = s.rows, location = %s.partition, "table published")
            }
            Err(e) => {
                tracing::warn!(table = %s.table, error = %e, "published by the run record; its manifest or cleanup is left to the next run");
                pending.push(format!("{}: {e}", s.table));
            }
        }
    }
    Ok((loc, pending, delta))
}

/// The Delta tables a run committed, by table name.
type DeltaCommits = BTreeMap<String, publish::delta::DeltaCommit>;

/// Publish every Delta output ([`publish::delta::publish`]): one Delta
/// commit per table, in the job's order, after every step and gate passed
/// and the lock was verified. A failure stops at that table: the tables
/// committed before it keep the run's version (Delta has no transaction
/// across tables), the others their previous one; re-running the date
/// replaces them all.
async fn publish_delta(
    job: &Job,
    p: &Prepared,
    store: &Arc<dyn ObjectStore>,
    record: &RunRecord,
    selection: &Selection,
) -> Result<DeltaCommits> {
    let mut commits = BTreeMap::new();
    for out in job
        .spec
        .outputs
        .iter()
        .filter(|o| o.format == OutputFormat::Delta && selection.publishes(&o.table))
    {
        let df = p.ctx.table(out.from.as_str()).await?;
        let run = (record.job.as_str(), record.run_id.as_str());
        let c =
            publish::delta::publish(&p.ctx, &p.output, store, &out.table, df, record.as_of, run)
                .await?;
        tracing::info!(table = %out.table, rows = c.rows, version = c.version, location = %c.location, "delta table committed");
        commits.insert(out.table.clone(), c);
    }
    Ok(commits)
}

/// Stage every output the selection publishes; on a failure remove what
/// was staged.
async fn stage_all(
    job: &Job,
    selection: &Selection,
    p: &Prepared,
    store: &Arc<dyn ObjectStore>,
) -> Result<Vec<Staged>> {
    let mut staged: Vec<Staged> = Vec::new();
    for out in job
        .spec
        .outputs
        .iter()
        .filter(|o| o.format == OutputFormat::Parquet && selection.publishes(&o.table))
    {
        let staging = async {
            let partition = p.output.partition(&out.table, p.params.as_of)?;
            let df = p.ctx.table(out.from.as_str()).await?;
            publish::stage(&out.table, df, store.clone(), &partition, &p.run_id).await
        };
        match staging.await {
            Ok(s) => {
                tracing::info!(table = %out.table, rows = s.rows, files = s.files.len(), "table staged");
                staged.push(s)
            }
            Err(e) => {
                discard(store, &staged).await;
                return Err(e);
            }
        }
    }
    Ok(staged)
}

/// Render and write the run's `report.html` ([`OutputLayout::report`]). The
/// tables are already published: a report that cannot be written is a warning.
async fn write_html_report(
    p: &Prepared,
    job: &Job,
    store: &Arc<dyn ObjectStore>,
) -> Option<String> {
    let as_of = p.params.as_of;
    let rendered = crate::report::render(
        &p.ctx,
        &p.sql_params,
        &job.spec.name,
        &as_of.to_string(),
        &p.run_id,
    )
    .await;
    let html = match rendered {
        Ok(Some(h)) => h,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "could not render report.html");
            return None;
        }
    };
    let loc = p.output.report(&job.spec.name, as_of).ok()?;
    let payload = object_store::PutPayload::from(html.into_bytes());
    match store.put(&loc.path(), payload).await {
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

async fn discard(store: &Arc<dyn ObjectStore>, staged: &[Staged]) {
    for s in staged {
        let files: Vec<String> = s.files.iter().map(|f| f.path.clone()).collect();
        publish::discard_files(store, &s.partition, &files).await;
    }
}
