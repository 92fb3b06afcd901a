//! The command line: clap definitions, and one function per subcommand in
//! the files beside this one. Every command returns a `Result`; `main`
//! prints the error once and maps it to an exit code.

#[cfg(feature = "cluster")]
mod cluster;
mod generate;
mod job;
mod sql;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::{parse_size, EngineOptions};
use crate::error::{Error, Result};
use crate::job::{parse_date, parse_key_value};

pub use generate::GenerateArgs;
pub use job::{CheckArgs, JobArgs, RunArgs};
pub use sql::{SqlArgs, SqlFormat};

#[cfg(feature = "cluster")]
pub use cluster::{ExecutorArgs, SchedulerArgs};

/// `custval [-v|-q] [--log-format F] COMMAND ...`
#[derive(Debug, Parser)]
#[command(
    name = "custval",
    version,
    about = "Customer value analytics on Apache DataFusion: CLV, retention, share, Pareto concentration"
)]
pub struct Cli {
    /// The subcommand to run.
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

/// How log lines on stderr look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON lines otherwise.
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The flags that shape the query engine, shared by the commands that run SQL.
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
    /// TLS to the cluster (with `--engine ballista://...`).
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// `--tls-cert`, `--tls-key`, `--tls-ca`: PEM files for a cluster's TLS, on
/// the scheduler, the executors and the clients of `--engine ballista://`.
/// The cluster secret is never a flag: `CUSTVAL_CLUSTER_SECRET` or
/// `CUSTVAL_CLUSTER_SECRET_FILE`.
#[derive(Debug, Args, Clone, Default)]
pub struct TlsArgs {
    /// This process's certificate chain (PEM); with --tls-key, turns TLS on
    /// for a scheduler or executor, and is shown to servers that ask for one.
    #[arg(long, env = "CUSTVAL_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "CUSTVAL_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// The CA that signed the cluster's certificates (PEM): clients verify
    /// servers with it (turning TLS on); a scheduler or executor given one
    /// also requires client certificates it signed (mutual TLS).
    #[arg(long, env = "CUSTVAL_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The files, not yet read.
    pub fn files(&self) -> crate::security::TlsFiles {
        crate::security::TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
        }
    }
}

impl EngineArgs {
    /// The engine options these flags ask for; [`Error::Argument`] when a
    /// size, thread count or engine URL is invalid.
    pub fn options(&self) -> Result<EngineOptions> {
        let mut o = EngineOptions::default();
        if let Some(m) = &self.memory_limit {
            o.memory_limit = parse_size(m)?;
        }
        if let Some(t) = self.threads {
            if t == 0 {
                return Err(Error::Argument("--threads must be at least 1".into()));
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
        // Read only when a cluster is used: a local run ignores them.
        o.cluster_tls = self.tls.files();
        Ok(o)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job and publish its tables.
    Run(RunArgs),
    /// Validate a job against its real inputs; writes nothing.
    Check(CheckArgs),
    /// Ad-hoc SQL with every custval function.
    Sql(SqlArgs),
    /// Synthetic transactions from known BG/NBD and Gamma-Gamma parameters.
    Generate(GenerateArgs),
    /// Generate a small data set and run the nightly job on it, locally.
    Demo(DemoArgs),
    /// Write a starter project: a job file, an Airflow DAG, a README.
    Init(InitArgs),
    /// List the SQL functions.
    Functions,
    /// Describe a published table's columns: description and unit.
    Describe(DescribeArgs),
    /// Start a Ballista scheduler that plans with custval's functions.
    #[cfg(feature = "cluster")]
    Scheduler(SchedulerArgs),
    /// Start a Ballista executor with custval's functions.
    #[cfg(feature = "cluster")]
    Executor(ExecutorArgs),
}

/// `custval demo [DIR] [--customers N]`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Working folder (default: ./custval-demo).
    pub dir: Option<PathBuf>,
    /// Customers in the generated data set.
    #[arg(long, default_value_t = 5000)]
    pub customers: u64,
}

/// `custval init DIR`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project folder (created if absent; existing files are never overwritten).
    pub dir: PathBuf,
}

/// `custval describe [TABLE] [--markdown [--job JOB]]`
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The table (without it: the list of published tables).
    pub table: Option<String>,
    /// Print the whole table reference as Markdown (the README's).
    #[arg(long, conflicts_with = "table")]
    pub markdown: bool,
    /// With --markdown: only the tables this shipped job publishes (nightly, clv, subscriptions).
    #[arg(long, requires = "markdown")]
    pub job: Option<String>,
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => job::run(args).await,
        Command::Check(args) => job::check(args).await,
        Command::Sql(args) => sql::run(args, cli.quiet).await,
        Command::Generate(args) => generate::run(args).await,
        Command::Demo(args) => demo(args).await,
        Command::Init(args) => init(args),
        Command::Functions => functions(),
        Command::Describe(args) => describe(args),
        #[cfg(feature = "cluster")]
        Command::Scheduler(args) => cluster::scheduler(args).await,
        #[cfg(feature = "cluster")]
        Command::Executor(args) => cluster::executor(args).await,
    }
}

/// `custval demo`.
async fn demo(args: DemoArgs) -> Result<()> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("custval-demo"));
    let summary = crate::demo::run(&dir, args.customers).await?;
    say(format_args!("{summary}"))
}

/// `custval init`: write the starter project, list it, say what is next.
fn init(args: InitArgs) -> Result<()> {
    let written = crate::init::init(&args.dir)?;
    for path in &written {
        say(format_args!("wrote {}\n", path.display()))?;
    }
    let job = args.dir.join("job.toml");
    say(format_args!(
        "next: map your columns in {job}, then\n  custval check {job} --input transactions=YOUR_EXPORT\n  custval run {job} --input transactions=YOUR_EXPORT --as-of YYYY-MM-DD\n",
        job = job.display()
    ))
}

/// `custval functions`.
fn functions() -> Result<()> {
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

/// `custval describe`: one table's columns, the list of tables, or the
/// Markdown reference ([`crate::columns`]).
fn describe(args: DescribeArgs) -> Result<()> {
    use crate::columns;
    if args.markdown {
        return say(format_args!("{}", columns::markdown(args.job.as_deref())));
    }
    match args.table {
        Some(t) => say(format_args!("{}", columns::describe(&t)?)),
        None => {
            for t in columns::TABLES {
                say(format_args!("{:<24} one row per {}\n", t.name, t.row))?;
            }
            Ok(())
        }
    }
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

/// Split repeated `NAME=VALUE` flags.
fn key_values(flag: &str, raw: &[String]) -> Result<Vec<(String, String)>> {
    raw.iter().map(|r| parse_key_value(flag, r)).collect()
}

/// `--input NAME=URL` flags as a map; a name given twice is an error.
fn inputs_map(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for (k, v) in key_values("--input", raw)? {
        if m.insert(k.clone(), v).is_some() {
            return Err(Error::Argument(format!("--input {k} given twice")));
        }
    }
    Ok(m)
}

/// A `YYYY-MM-DD` flag value.
fn date_flag(flag: &str, raw: &str) -> Result<chrono::NaiveDate> {
    parse_date(raw).map_err(|m| Error::Argument(format!("{flag}: {m}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} {id} has no help text");
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&Cli::command(), "custval");
    }

    #[test]
    fn formats_are_a_closed_list() {
        let cli = Cli::try_parse_from(["custval", "sql", "--format", "csv", "SELECT 1"]).unwrap();
        match cli.command {
            Command::Sql(a) => assert_eq!(a.format, SqlFormat::Csv),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["custval", "sql", "--format", "xml", "SELECT 1"]).is_err());
    }
}
