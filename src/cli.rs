//! The command line: clap definitions and dispatch to the library. Every
//! command returns a `Result`; `main` maps the error to an exit code.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::{parse_size, EngineOptions};
use crate::error::{Error, Result};
use crate::job::{parse_date, parse_key_value, Job};
use crate::runner::{self, RunOptions};
use crate::storage::Location;
use crate::table::OutputFormat;

#[derive(Debug, Parser)]
#[command(
    name = "custval",
    version,
    about = "Customer value analytics on Apache DataFusion: CLV, retention, share, Pareto concentration"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log format: text on a terminal, JSON lines otherwise (auto).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct EngineArgs {
    /// Memory the query engine may use before spilling to disk (e.g. 4GiB).
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Parallelism (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where queries run: `local` (default) or `ballista://HOST:PORT`, a
    /// scheduler started with `custval scheduler`. Publishing stays here.
    #[arg(
        long,
        env = "CUSTVAL_ENGINE",
        value_name = "local|ballista://HOST:PORT"
    )]
    pub engine: Option<String>,
}

impl EngineArgs {
    fn options(&self) -> Result<EngineOptions> {
        let mut o = EngineOptions::default();
        if let Some(m) = &self.memory_limit {
            o.memory_limit = parse_size(m)?;
        }
        if let Some(t) = self.threads {
            if t == 0 {
                return Err(Error::Usage("--threads must be at least 1".into()));
            }
            o.target_partitions = t;
        }
        match self.engine.as_deref().map(str::trim) {
            None | Some("") | Some("local") => {}
            Some(url) => {
                #[cfg(feature = "cluster")]
                crate::cluster::scheduler_address(url)?;
                o.cluster = Some(url.to_string());
            }
        }
        Ok(o)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job and publish its tables.
    Run {
        job: PathBuf,
        /// Last day of data to use (default: yesterday, UTC); later rows are ignored.
        #[arg(long)]
        as_of: Option<String>,
        /// Override an input's URL: NAME=URL (repeatable).
        #[arg(long = "input", value_name = "NAME=URL")]
        inputs: Vec<String>,
        /// Override a parameter: KEY=VALUE (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Where tables are published (overrides the job's output).
        #[arg(long)]
        output: Option<String>,
        /// Write a JSON run report to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Send OpenLineage events to an http(s) endpoint or append them to a file.
        #[arg(long)]
        lineage: Option<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Validate a job against its real inputs; writes nothing.
    Check {
        job: PathBuf,
        #[arg(long = "input", value_name = "NAME=URL")]
        inputs: Vec<String>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[arg(long)]
        as_of: Option<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Ad-hoc SQL with every custval function.
    Sql {
        /// The query; read from standard input when absent.
        query: Option<String>,
        /// Register a table: NAME=URL (Parquet, CSV, a folder, a published partition).
        #[arg(long = "table", value_name = "NAME=URL")]
        tables: Vec<String>,
        /// table, csv, json, or parquet (with --out and --allow-write).
        #[arg(long, default_value = "table")]
        format: String,
        /// With --format parquet: where to write the result (file or folder URL).
        #[arg(long)]
        out: Option<String>,
        /// Allow DDL and DML (CREATE, INSERT, COPY, ...) and writing results.
        #[arg(long)]
        allow_write: bool,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Synthetic transactions from known BG/NBD and Gamma-Gamma parameters.
    Generate {
        #[arg(long)]
        customers: u64,
        /// Output folder (local path or URL).
        #[arg(long)]
        out: String,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        /// BG/NBD r, alpha, a, b (weeks) and Gamma-Gamma p, q, v.
        #[arg(long)]
        r: Option<f64>,
        #[arg(long)]
        alpha: Option<f64>,
        #[arg(long)]
        a: Option<f64>,
        #[arg(long)]
        b: Option<f64>,
        #[arg(long)]
        p: Option<f64>,
        #[arg(long)]
        q: Option<f64>,
        #[arg(long)]
        v: Option<f64>,
        /// Days over which customers make their first purchase.
        #[arg(long)]
        acquisition_days: Option<i64>,
    },
    /// Generate a small data set and run the nightly job on it, locally.
    Demo {
        /// Working folder (default: ./custval-demo).
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 5000)]
        customers: u64,
    },
    /// List the SQL functions.
    Functions,
    /// Start a Ballista scheduler that plans with custval's functions.
    #[cfg(feature = "cluster")]
    Scheduler {
        #[arg(long, default_value = "0.0.0.0")]
        bind_host: String,
        /// Host name executors and clients use to reach this scheduler.
        #[arg(long, default_value = "localhost")]
        external_host: String,
        #[arg(long, default_value_t = 50050)]
        port: u16,
    },
    /// Start a Ballista executor with custval's functions.
    #[cfg(feature = "cluster")]
    Executor {
        #[arg(long, default_value = "0.0.0.0")]
        bind_host: String,
        /// Host name the scheduler, clients and other executors use to reach this one.
        #[arg(long, default_value = "localhost")]
        external_host: String,
        /// Arrow Flight port (results and shuffle data).
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// gRPC port (tasks from the scheduler).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        #[arg(long, default_value = "localhost")]
        scheduler_host: String,
        #[arg(long, default_value_t = 50050)]
        scheduler_port: u16,
        /// Shuffle files and spills (created if missing).
        #[arg(long)]
        work_dir: PathBuf,
        /// Tasks at once (default: one per core).
        #[arg(long, default_value_t = 0)]
        concurrent_tasks: usize,
        /// Memory all tasks may use before spilling (e.g. 4GiB).
        #[arg(long)]
        memory_limit: Option<String>,
    },
}

/// Print to stdout; a closed pipe (`custval ... | head`) is an error the
/// caller maps to a quiet exit, not a panic.
fn say(args: std::fmt::Arguments<'_>) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("<stdout>", e))
}

fn key_values(flag: &str, raw: &[String]) -> Result<Vec<(String, String)>> {
    raw.iter().map(|r| parse_key_value(flag, r)).collect()
}

fn inputs_map(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for (k, v) in key_values("--input", raw)? {
        if m.insert(k.clone(), v).is_some() {
            return Err(Error::Usage(format!("--input {k} given twice")));
        }
    }
    Ok(m)
}

fn as_of(raw: &Option<String>) -> Result<Option<chrono::NaiveDate>> {
    raw.as_deref()
        .map(|r| parse_date(r).map_err(|m| Error::Usage(format!("--as-of: {m}"))))
        .transpose()
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            job,
            as_of: a,
            inputs,
            sets,
            output,
            report,
            lineage,
            engine,
        } => {
            let mut j = Job::load(&job)?;
            let sets = key_values("--set", &sets)?;
            j.apply_overrides(&sets)?;
            let opts = RunOptions {
                as_of: as_of(&a)?,
                inputs: inputs_map(&inputs)?,
                sets,
                output,
                engine: engine.options()?,
                lineage,
            };
            let result = runner::run(&j, &opts).await;
            if let Some(path) = &report {
                write_report(path, &j, &opts, &result)?;
            }
            let rep = result?;
            for t in &rep.tables {
                say(format_args!(
                    "{:<26} {:>10} rows  {}\n",
                    t.table, t.rows, t.location
                ))?;
            }
            Ok(())
        }
        Command::Check {
            job,
            inputs,
            sets,
            as_of: a,
            engine,
        } => {
            let mut j = Job::load(&job)?;
            let sets = key_values("--set", &sets)?;
            j.apply_overrides(&sets)?;
            let opts = RunOptions {
                as_of: as_of(&a)?,
                inputs: inputs_map(&inputs)?,
                sets,
                output: Some(
                    std::env::temp_dir()
                        .join("custval-check-unused")
                        .to_string_lossy()
                        .into_owned(),
                ),
                engine: engine.options()?,
                lineage: None,
            };
            let steps = runner::check(&j, &opts).await?;
            say(format_args!(
                "{}: ok ({} steps planned: {})\n",
                job.display(),
                steps.len(),
                steps.join(", ")
            ))?;
            Ok(())
        }
        Command::Sql {
            query,
            tables,
            format,
            out,
            allow_write,
            engine,
        } => {
            let sink = match (format.as_str(), out) {
                ("parquet", Some(o)) => {
                    crate::sql::Sink::Parquet(Location::parse(&o, o.ends_with('/'))?)
                }
                ("parquet", None) => {
                    return Err(Error::Usage("--format parquet needs --out URL".into()))
                }
                (_, Some(_)) => {
                    return Err(Error::Usage("--out goes with --format parquet".into()))
                }
                ("table", None) => crate::sql::Sink::Print(OutputFormat::Table),
                ("csv", None) => crate::sql::Sink::Print(OutputFormat::Csv),
                ("json", None) => crate::sql::Sink::Print(OutputFormat::Json),
                (other, None) => {
                    return Err(Error::Usage(format!(
                        "--format {other}: use table, csv, json or parquet"
                    )))
                }
            };
            let query = match query {
                Some(q) => Some(q),
                None if std::io::stdin().is_terminal() => None,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .map_err(|e| Error::io("<stdin>", e))?;
                    Some(s)
                }
            };
            let tables = key_values("--table", &tables)?;
            crate::sql::run(query, &tables, sink, allow_write, &engine.options()?).await
        }
        Command::Generate {
            customers,
            out,
            seed,
            start,
            end,
            r,
            alpha,
            a,
            b,
            p,
            q,
            v,
            acquisition_days,
        } => {
            let mut o = crate::generate::GenerateOptions {
                customers,
                seed,
                ..Default::default()
            };
            if let Some(s) = start {
                o.start = parse_date(&s).map_err(|m| Error::Usage(format!("--start: {m}")))?;
            }
            if let Some(e) = end {
                o.end = parse_date(&e).map_err(|m| Error::Usage(format!("--end: {m}")))?;
            }
            for (slot, val) in [
                (&mut o.r, r),
                (&mut o.alpha, alpha),
                (&mut o.a, a),
                (&mut o.b, b),
                (&mut o.p, p),
                (&mut o.q, q),
                (&mut o.v, v),
            ] {
                if let Some(x) = val {
                    *slot = x;
                }
            }
            if let Some(d) = acquisition_days {
                o.acquisition_days = d;
            }
            let loc = Location::parse(&out, true)?;
            let s = crate::generate::generate(&loc, &o).await?;
            say(format_args!(
                "generated {} rows for {} customers in {} file(s); true parameters in {}\n",
                s.rows,
                s.customers,
                s.files.len(),
                s.truth
            ))?;
            Ok(())
        }
        Command::Demo { dir, customers } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("custval-demo"));
            let summary = crate::demo::run(&dir, customers).await?;
            say(format_args!("{summary}"))?;
            Ok(())
        }
        Command::Functions => {
            for f in crate::udf::all_functions() {
                let kind = match f.udf {
                    crate::udf::Udf::Scalar(_) => "scalar",
                    crate::udf::Udf::Aggregate(_) => "aggregate",
                };
                say(format_args!(
                    "{:<9} {}\n          {}\n",
                    kind, f.signature, f.description
                ))?;
            }
            Ok(())
        }
        #[cfg(feature = "cluster")]
        Command::Scheduler {
            bind_host,
            external_host,
            port,
        } => {
            crate::cluster::run_scheduler(crate::cluster::SchedulerOptions {
                bind_host,
                external_host,
                port,
            })
            .await
        }
        #[cfg(feature = "cluster")]
        Command::Executor {
            bind_host,
            external_host,
            port,
            grpc_port,
            scheduler_host,
            scheduler_port,
            work_dir,
            concurrent_tasks,
            memory_limit,
        } => {
            let memory_limit = match memory_limit {
                Some(m) => parse_size(&m)?,
                None => crate::engine::default_memory_limit(),
            };
            crate::cluster::run_executor(crate::cluster::ExecutorOptions {
                bind_host,
                external_host,
                port,
                grpc_port,
                scheduler_host,
                scheduler_port,
                work_dir,
                concurrent_tasks,
                memory_limit,
            })
            .await
        }
    }
}

fn write_report(
    path: &std::path::Path,
    job: &Job,
    opts: &RunOptions,
    result: &Result<runner::RunReport>,
) -> Result<()> {
    let value = match result {
        Ok(r) => serde_json::to_value(r).map_err(|e| Error::Internal(e.to_string()))?,
        Err(e) => serde_json::json!({
            "custval_version": env!("CARGO_PKG_VERSION"),
            "job": job.spec.name,
            "as_of": opts.as_of.map(|d| d.to_string()),
            "status": "error",
            "exit_code": e.exit_code(),
            "error": e.to_string(),
        }),
    };
    let text = serde_json::to_string_pretty(&value).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
