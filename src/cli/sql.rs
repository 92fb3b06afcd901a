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
    /// Tab-separated values with a header line.
    Tsv,
    /// One JSON array of row objects, keys in SELECT order.
    Json,
    /// One JSON object per line, keys in SELECT order (also `nd-json`).
    #[value(alias = "nd-json")]
    Ndjson,
    /// A Markdown table.
    Markdown,
    /// Parquet files at `--out` (needs `--allow-write`).
    Parquet,
}

/// `custval sql [QUERY] ...`
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query; read from standard input when absent (and no -c or -f).
    pub query: Option<String>,
    /// SQL to run (repeatable; each may hold several statements separated by ';').
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub commands: Vec<String>,
    /// A file of SQL statements separated by ';' (repeatable; run after -c).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<String>,
    /// Register a table: NAME=URL (Parquet, CSV, a folder, a published
    /// partition), or a bare URL named after its table folder or file
    /// (a published partition folder of `customer_tiers` is `customer_tiers`).
    #[arg(long = "table", value_name = "NAME=URL")]
    pub tables: Vec<String>,
    /// Register every published table of a custval output (a folder or URL)
    /// by its name, read at its latest published partition.
    #[arg(long, value_name = "OUT")]
    pub output_dir: Option<String>,
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

/// `custval sql`: the query argument, then each `-c`, then each `-f` file;
/// without any, standard input, or the shell on a terminal. `quiet` (`-q`)
/// leaves out the `N rows in X s` footer on stderr.
pub async fn run(args: SqlArgs, quiet: bool) -> Result<()> {
    let sink = match (args.format, args.out) {
        (SqlFormat::Parquet, Some(o)) => Sink::Parquet(Location::parse(&o, o.ends_with('/'))?),
        (SqlFormat::Parquet, None) => {
            return Err(Error::Argument("--format parquet needs --out URL".into()))
        }
        (_, Some(_)) => return Err(Error::Argument("--out goes with --format parquet".into())),
        (SqlFormat::Table, None) => Sink::Print(OutputFormat::Table),
        (SqlFormat::Csv, None) => Sink::Print(OutputFormat::Csv),
        (SqlFormat::Tsv, None) => Sink::Print(OutputFormat::Tsv),
        (SqlFormat::Json, None) => Sink::Print(OutputFormat::Json),
        (SqlFormat::Ndjson, None) => Sink::Print(OutputFormat::Ndjson),
        (SqlFormat::Markdown, None) => Sink::Print(OutputFormat::Markdown),
    };
    let mut scripts: Vec<String> = args.query.into_iter().chain(args.commands).collect();
    for f in &args.files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Error::Argument(format!("cannot read the SQL file -f {f}: {e}")))?;
        scripts.push(text);
    }
    if scripts.is_empty() && !std::io::stdin().is_terminal() {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::io("<stdin>", e))?;
        scripts.push(s);
    }
    let tables = table_flags(&args.tables)?;
    let csv = key_values("--csv", &args.csv)?;
    let session = crate::sql::SessionArgs {
        tables,
        csv,
        output_dir: args.output_dir,
        allow_write: args.allow_write,
        footer: !quiet,
    };
    crate::sql::run(scripts, &session, sink, &args.engine.options()?).await
}

/// `--table` values: `NAME=URL`, or a bare URL or path (whose `=` belong to
/// `key=value` folders such as a partition's) named after its last folder that
/// is not `key=value`, or its file name without extensions.
///
/// Errors: [`Error::Argument`] when no name can be derived.
fn table_flags(raw: &[String]) -> Result<Vec<(String, String)>> {
    let is_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    raw.iter()
        .map(|r| match r.split_once('=') {
            Some((name, _)) if is_name(name) => {
                key_values("--table", std::slice::from_ref(r)).map(|mut v| v.remove(0))
            }
            _ => {
                let last = r
                    .split('/')
                    .rfind(|p| !p.is_empty() && !p.contains('=') && !p.ends_with(':'))
                    .unwrap_or("");
                let stem = last.split('.').next().unwrap_or("");
                let name: String = stem
                    .chars()
                    .map(|c| if c.is_alphanumeric() { c } else { '_' })
                    .collect();
                if is_name(&name) {
                    Ok((name, r.clone()))
                } else {
                    Err(Error::Argument(format!(
                        "--table {r}: no table name in it; write NAME={r}"
                    )))
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_table_url_is_named_after_its_folder_or_file() {
        let date = chrono::NaiveDate::from_ymd_opt(2024, 12, 31).unwrap();
        let out = crate::storage::Location::parse("out", true).unwrap();
        let part = crate::publish::OutputLayout::new(out)
            .partition("customer_tiers", date)
            .unwrap()
            .to_string();
        let got = table_flags(&[
            part.clone(),
            format!("t={part}"),
            "s3://bucket/data/sales-2024.csv.gz".into(),
            "x=1".into(),
        ])
        .unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["customer_tiers", "t", "sales_2024", "x"]);
        assert_eq!(got[0].1, part);
        assert_eq!(got[1].1, part);
        assert!(table_flags(&["/".into()]).is_err());
    }
}
