//! `custval sql`: where results go (`--format`, `--out`) and the query.

use std::io::{IsTerminal, Read};

use clap::Args;

use super::{key_values, EngineArgs};
use crate::error::{Error, Result};
use crate::sql::Sink;
use crate::storage::Location;
use crate::table::OutputFormat;

/// What `custval sql` prints, or writes with `--out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqlFormat {
    /// Aligned columns.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row.
    Json,
    /// Parquet files at `--out` (needs `--allow-write`).
    Parquet,
}

/// `custval sql [QUERY] ...`
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query; read from standard input when absent.
    pub query: Option<String>,
    /// Register a table: NAME=URL (Parquet, CSV, a folder, a published partition).
    #[arg(long = "table", value_name = "NAME=URL")]
    pub tables: Vec<String>,
    /// A CSV option of a table: NAME.OPTION=VALUE, e.g. t.delimiter=; (repeatable;
    /// options as in a job's [inputs.NAME.csv]).
    #[arg(long = "csv", value_name = "NAME.OPTION=VALUE")]
    pub csv: Vec<String>,
    /// How results are shown, or written with --out and --allow-write.
    #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
    pub format: SqlFormat,
    /// With --format parquet: where to write the result (file or folder URL).
    #[arg(long)]
    pub out: Option<String>,
    /// Allow DDL and DML (CREATE, INSERT, COPY, ...) and writing results.
    #[arg(long)]
    pub allow_write: bool,
    /// The query engine's settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `custval sql`: one query (argument or standard input) or the shell.
pub async fn run(args: SqlArgs) -> Result<()> {
    let sink = match (args.format, args.out) {
        (SqlFormat::Parquet, Some(o)) => Sink::Parquet(Location::parse(&o, o.ends_with('/'))?),
        (SqlFormat::Parquet, None) => {
            return Err(Error::Argument("--format parquet needs --out URL".into()))
        }
        (_, Some(_)) => return Err(Error::Argument("--out goes with --format parquet".into())),
        (SqlFormat::Table, None) => Sink::Print(OutputFormat::Table),
        (SqlFormat::Csv, None) => Sink::Print(OutputFormat::Csv),
        (SqlFormat::Json, None) => Sink::Print(OutputFormat::Json),
    };
    let query = match args.query {
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
    let tables = key_values("--table", &args.tables)?;
    let csv = key_values("--csv", &args.csv)?;
    crate::sql::run(
        query,
        &tables,
        &csv,
        sink,
        args.allow_write,
        &args.engine.options()?,
    )
    .await
}
