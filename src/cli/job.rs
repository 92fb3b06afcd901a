//! `custval run` and `custval check`: one setup (job loaded, overrides
//! applied, options built), then run-and-publish or plan-only.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{date_flag, inputs_map, key_values, say, EngineArgs};
use crate::error::{Error, Result};
use crate::job::{Job, OutputFormat};
use crate::runner::{self, RunOptions, RunReport};

/// The flags `run` and `check` share.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job file (TOML).
    pub job: PathBuf,
    /// Last day of data to use (default: yesterday, UTC); later rows are ignored.
    #[arg(long)]
    pub as_of: Option<String>,
    /// Override an input's URL: NAME=URL (repeatable).
    #[arg(long = "input", value_name = "NAME=URL")]
    pub inputs: Vec<String>,
    /// A CSV option of an input: NAME.OPTION=VALUE, e.g. transactions.delimiter=;
    /// (repeatable; overrides the job's [inputs.NAME.csv]).
    #[arg(long = "csv", value_name = "NAME.OPTION=VALUE")]
    pub csv: Vec<String>,
    /// Override a parameter: KEY=VALUE (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// The query engine's settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `custval run JOB ...`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job, its dates, inputs, parameters and engine.
    #[command(flatten)]
    pub job: JobArgs,
    /// Where tables are published (overrides the job's output).
    #[arg(long)]
    pub output: Option<String>,
    /// Publish every output as `parquet` (partitions with manifests) or as
    /// `delta` (Delta Lake tables partitioned by as_of); overrides each
    /// output's `format` in the job.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub output_format: Option<OutputFormat>,
    /// Write a JSON run report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Send OpenLineage events to an http(s) endpoint or append them to a file.
    #[arg(long)]
    pub lineage: Option<String>,
    /// Run only these steps and publish only their outputs, dbt-style:
    /// STEP, STEP+ (and every step that reads it), +STEP (and every step it
    /// reads); repeatable, or several separated by spaces or commas. The
    /// steps they read and every gate still run, unpublished.
    #[arg(long = "select", short = 's', value_name = "STEP[+]")]
    pub select: Vec<String>,
    /// Leave these steps (same syntax) out of what is published.
    #[arg(long = "exclude", value_name = "STEP[+]")]
    pub exclude: Vec<String>,
    /// Print the steps in order with their SQL after parameter binding and
    /// the tables that would be published; read and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// An incremental night (as the job parameter `incremental = true`):
    /// fold the rows since the previous run's kept state (`customer_state`,
    /// less `lookback_days` for late rows) instead of reading all history;
    /// a full night when there is no usable state.
    #[arg(long)]
    pub incremental: bool,
}

/// `custval check JOB ...`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The job, its dates, inputs, parameters and engine.
    #[command(flatten)]
    pub job: JobArgs,
    /// Validate the first N rows of each transactions input and report the
    /// rejected fraction and reasons; exit 3 above max_rejected_fraction.
    /// 0 skips reading rows.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub sample: u64,
}

/// The job with its `--set` overrides applied, and the run options.
fn setup(args: &JobArgs) -> Result<(Job, RunOptions)> {
    let mut job = Job::load(&args.job)?;
    let sets = key_values("--set", &args.sets)?;
    job.apply_overrides(&sets)?;
    job.apply_csv_flags(&key_values("--csv", &args.csv)?)?;
    let opts = RunOptions {
        as_of: args
            .as_of
            .as_deref()
            .map(|d| date_flag("--as-of", d))
            .transpose()?,
        inputs: inputs_map(&args.inputs)?,
        sets,
        output: None,
        engine: args.engine.options()?,
        lineage: None,
        select: Vec::new(),
        exclude: Vec::new(),
    };
    Ok((job, opts))
}

/// `custval run`: run the job, write the report file if asked, list the tables.
pub async fn run(args: RunArgs) -> Result<()> {
    let (mut job, mut opts) = setup(&args.job)?;
    if let Some(format) = args.output_format {
        for out in &mut job.spec.outputs {
            out.format = format;
        }
    }
    opts.output = args.output;
    opts.lineage = args.lineage;
    opts.select = args.select;
    opts.exclude = args.exclude;
    if args.incremental {
        job.params
            .insert("incremental".into(), crate::job::Param::Bool(true));
    }
    if args.dry_run {
        return say(format_args!("{}", runner::dry_run(&job, &opts)?));
    }
    let result = runner::run(&job, &opts).await;
    if let Some(path) = &args.report {
        write_report(path, &job, &opts, &result)?;
    }
    for t in &result?.tables {
        say(format_args!(
            "{:<26} {:>10} rows  {}\n",
            t.table, t.rows, t.location
        ))?;
    }
    Ok(())
}

/// `custval check`: plan every step against the real inputs; writes nothing.
pub async fn check(args: CheckArgs) -> Result<()> {
    let (job, mut opts) = setup(&args.job)?;
    // Check publishes nothing, but the scratch space and store checks need
    // an output location.
    opts.output = Some(
        std::env::temp_dir()
            .join("custval-check-unused")
            .to_string_lossy()
            .into_owned(),
    );
    let report = runner::check(&job, &opts, args.sample).await?;
    say(format_args!(
        "{}: ok ({} steps planned: {})\n",
        args.job.job.display(),
        report.steps.len(),
        report.steps.join(", ")
    ))?;
    match &report.sample {
        Some(sample) => {
            say(format_args!("{}", sample.describe()))?;
            sample.judge()
        }
        None => Ok(()),
    }
}

/// The `--report` file: the run report, or the error with its exit code.
fn write_report(
    path: &Path,
    job: &Job,
    opts: &RunOptions,
    result: &Result<RunReport>,
) -> Result<()> {
    let value = match result {
        Ok(r) => serde_json::to_value(r)?,
        Err(e) => {
            let mut v = serde_json::json!({
                "custval_version": env!("CARGO_PKG_VERSION"),
                "job": job.spec.name,
                "as_of": opts.as_of.map(|d| d.to_string()),
                "status": "error",
                "exit_code": e.exit_code(),
                "error": e.to_string(),
            });
            // A failed gate's evidence: run id, quality counts, the reasons
            // rows were rejected and where those rows were kept.
            if let (Error::Gate { evidence, .. }, Some(m)) = (e, v.as_object_mut()) {
                if let Some(fields) = evidence.as_object() {
                    m.extend(fields.clone());
                }
            }
            v
        }
    };
    let text = serde_json::to_string_pretty(&value)?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
