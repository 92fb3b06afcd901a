//! `custval sql`: ad-hoc SQL over registered tables with every custval
//! function; read-only unless `--allow-write`; a shell on a terminal with
//! history, Ctrl-C cancelling the running query, completion of table,
//! column and function names and meta commands
//! (`\d`, `\d TABLE` with the published columns' units and descriptions,
//! `\functions`, `\timing`, `\q`).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

use std::collections::BTreeMap;

use crate::columns;
use crate::engine::{self, EngineOptions};
use crate::error::{Error, Result};
use crate::input::{CsvOptions, ReadOptions};
use crate::job::apply_csv_flags;
use crate::scratch::Scratch;
use crate::storage::{self, Location};
use crate::table::{self, OutputFormat};

/// Register `--table NAME=URL` pairs, CSV files read with the
/// `--csv NAME.OPTION=VALUE` flags of their table (`csv`; files in another
/// encoding are transcoded into `scratch`). A folder of `key=value`
/// partition folders (a published table: `OUTPUT/customer_tiers/`) becomes
/// one table with the partition columns, each published partition read
/// through its manifest.
///
/// Errors: [`Error::Argument`] for a `--csv` flag naming no table or
/// option; [`Error::InputOption`] for a value custval cannot use; those of
/// [`crate::input::register_source`].
pub async fn register_tables(
    ctx: &SessionContext,
    tables: &[(String, String)],
    csv: &[(String, String)],
    scratch: &Scratch,
) -> Result<()> {
    let mut dialects = BTreeMap::new();
    apply_csv_flags(&mut dialects, csv, "table", &|n| {
        tables.iter().any(|(t, _)| t == n)
    })?;
    for (name, url) in tables {
        let loc = Location::parse(url, url.ends_with('/'))?;
        let spec = dialects.get(name).cloned().unwrap_or_default();
        let read = ReadOptions {
            format: None,
            csv: CsvOptions::resolve(name, &spec)?,
            csv_as_text: false,
            scratch: Some(scratch),
        };
        crate::input::register_source(ctx, name, &loc, &read).await?;
    }
    Ok(())
}

/// `--output-dir OUT`: register every table of a custval output under its
/// name, read at its latest published partition (through its manifest, so
/// the committed run); a Delta table whole, at its latest version, with its
/// `as_of` column. Returns the names registered with their partitions;
/// a folder with no published partition is left out.
///
/// Errors: [`Error::Storage`] when listing fails; those of
/// [`crate::input::register_source`].
pub async fn register_output(
    ctx: &SessionContext,
    output: &str,
    scratch: &Scratch,
) -> Result<Vec<(String, Location)>> {
    let root = Location::parse(output, true)?;
    let store = storage::register_store(ctx, &root)?;
    let layout = crate::publish::OutputLayout::new(root);
    let mut found = Vec::new();
    for name in layout.tables(&store).await? {
        // A Delta table reads whole, every as_of with its column.
        let folder = layout.table(&name)?;
        if crate::publish::delta::is_delta_table(&store, &folder).await? {
            if let Some(p) = crate::publish::delta::provider(&store, &folder).await? {
                ctx.register_table(name.as_str(), p)?;
                found.push((name, folder));
            }
            continue;
        }
        let Some(part) = layout.latest(&store, &name).await? else {
            tracing::debug!(table = %name, "no published partition: not registered");
            continue;
        };
        let read = ReadOptions {
            format: None,
            csv: CsvOptions::default(),
            csv_as_text: false,
            scratch: Some(scratch),
        };
        crate::input::register_source(ctx, &name, &part, &read).await?;
        found.push((name, part));
    }
    Ok(found)
}

/// Is this plan a statement that writes or changes the catalog? `SET` of a
/// session option (`SET datafusion.execution.batch_size = 1024`) is not: it
/// changes only this session, as DataFusion's own messages suggest.
fn is_write(plan: &LogicalPlan) -> bool {
    use datafusion::logical_expr::Statement;
    match plan {
        LogicalPlan::Statement(Statement::SetVariable(_)) => false,
        LogicalPlan::Dml(_)
        | LogicalPlan::Ddl(_)
        | LogicalPlan::Copy(_)
        | LogicalPlan::Statement(_) => true,
        _ => false,
    }
}

/// Where results go: printed in a format, or written as Parquet to a URL.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Print results to stdout in this format.
    Print(OutputFormat),
    /// Write results as Parquet at this location.
    Parquet(Location),
}

/// Run one query (or several, separated by `;`) and print the results.
pub async fn execute(
    ctx: &SessionContext,
    text: &str,
    format: OutputFormat,
    allow_write: bool,
    out: &mut dyn Write,
) -> Result<()> {
    execute_to(ctx, text, &Sink::Print(format), allow_write, false, out).await
}

/// Run statements, sending query results to `sink`; with `footer`, each
/// printed result is followed on stderr by `N rows in X.XXX s` (the time from
/// planning to the last row written, in seconds).
pub async fn execute_to(
    ctx: &SessionContext,
    text: &str,
    sink: &Sink,
    allow_write: bool,
    footer: bool,
    out: &mut dyn Write,
) -> Result<()> {
    // DataFusion's own parser: it knows COPY ... STORED AS, CREATE EXTERNAL TABLE.
    let statements = datafusion::sql::parser::DFParser::parse_sql(text)
        .map_err(|e| Error::Query(format!("SQL does not parse: {e}")))?;
    if statements.is_empty() {
        return Err(Error::Query("no SQL statement given".into()));
    }
    for stmt in statements {
        let t0 = Instant::now();
        // A query that does not plan (an unknown table, column or
        // function) is the user's to fix: exit 2, not a failed run.
        let plan = ctx
            .state()
            .statement_to_plan(stmt)
            .await
            .map_err(|e| Error::Query(e.to_string()))?;
        if is_write(&plan) && !allow_write {
            return Err(Error::Query(format!(
                "custval sql is read-only: {} statements need --allow-write",
                plan.display()
            )));
        }
        let df = ctx.execute_logical_plan(plan).await?;
        match sink {
            Sink::Print(format) => {
                let schema = df.schema().as_arrow().clone();
                let mut batches = df.collect().await?;
                if schema.fields().is_empty() {
                    // DDL and SET: nothing to show.
                    continue;
                }
                if batches.is_empty() {
                    // Headers of an empty result still show its columns.
                    batches.push(RecordBatch::new_empty(Arc::new(schema)));
                }
                table::write(out, &batches, *format)?;
                out.flush().map_err(|e| Error::io("<stdout>", e))?;
                if footer {
                    let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
                    let secs = t0.elapsed().as_secs_f64();
                    let rows = if n == 1 { "row" } else { "rows" };
                    eprintln!("{n} {rows} in {secs:.3} s");
                }
            }
            Sink::Parquet(loc) => {
                storage::register_store(ctx, loc)?;
                df.write_parquet(loc.url().as_str(), DataFrameWriteOptions::new(), None)
                    .await?;
                writeln!(out, "written to {loc}").map_err(|e| Error::io("<stdout>", e))?;
            }
        }
    }
    Ok(())
}

/// What a `custval sql` session is given besides its SQL.
#[derive(Debug, Clone, Default)]
pub struct SessionArgs {
    /// `--table NAME=URL` pairs.
    pub tables: Vec<(String, String)>,
    /// `--csv NAME.OPTION=VALUE` pairs.
    pub csv: Vec<(String, String)>,
    /// `--output-dir OUT`: a custval output whose tables are registered by
    /// name at their latest published partition (before `--table`, which
    /// may override a name).
    pub output_dir: Option<String>,
    /// Whether DDL, DML and writing are allowed (`--allow-write`).
    pub allow_write: bool,
    /// Print `N rows in X.XXX s` on stderr after each result (off with `-q`).
    pub footer: bool,
}

/// The `custval sql` command: run each script (a text of statements
/// separated by `;`) in order, stopping at the first error; with none, the
/// interactive shell.
pub async fn run(
    scripts: Vec<String>,
    session: &SessionArgs,
    sink: Sink,
    engine_opts: &EngineOptions,
) -> Result<()> {
    let allow_write = session.allow_write;
    if matches!(sink, Sink::Parquet(_)) && !allow_write {
        return Err(Error::Argument(
            "--format parquet writes files: add --allow-write".into(),
        ));
    }
    // Lives until the last query: CSV files in another encoding are read
    // from UTF-8 copies here.
    let scratch = Arc::new(Scratch::temporary()?);
    // Paths in FROM and read_parquet/read_csv read as --table does.
    let ctx = crate::url_tables::enable(engine::open(engine_opts).await?, scratch.clone());
    if let Some(out) = &session.output_dir {
        for (name, part) in register_output(&ctx, out, &scratch).await? {
            tracing::info!(table = %name, partition = %part, "registered");
        }
    }
    register_tables(&ctx, &session.tables, &session.csv, &scratch).await?;
    if scripts.is_empty() {
        return repl(&ctx, sink, session).await;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for script in &scripts {
        execute_to(&ctx, script, &sink, allow_write, session.footer, &mut out).await?;
    }
    Ok(())
}

/// State of the shell that meta commands change.
#[derive(Debug, Clone)]
pub struct Shell {
    /// Where results go.
    pub sink: Sink,
    /// Whether DDL, DML and writing are allowed.
    pub allow_write: bool,
    /// Print each statement's time (`\timing`).
    pub timing: bool,
}

/// What a line of input asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Meta {
    /// Leave the shell (`\q`).
    Quit,
    /// A meta command that was carried out.
    Handled,
    /// Not a meta command: SQL to run.
    NotMeta,
}

/// Handle a backslash command, writing its output.
pub async fn meta_command(
    ctx: &SessionContext,
    line: &str,
    shell: &mut Shell,
    out: &mut dyn Write,
) -> Result<Meta> {
    let t = line.trim();
    if !t.starts_with('\\') {
        return Ok(Meta::NotMeta);
    }
    let io = |e: std::io::Error| Error::io("<stdout>", e);
    let (cmd, arg) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    match cmd {
        "\\q" | "\\quit" => return Ok(Meta::Quit),
        "\\functions" | "\\df" => {
            for f in crate::udf::all_functions() {
                writeln!(out, "{}\n    {}", f.signature, f.description).map_err(io)?;
            }
        }
        "\\timing" => {
            shell.timing = match arg.trim() {
                "on" => true,
                "off" => false,
                _ => !shell.timing,
            };
            writeln!(out, "timing is {}", if shell.timing { "on" } else { "off" }).map_err(io)?;
        }
        "\\d" if arg.trim().is_empty() => {
            let q = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1";
            execute(ctx, q, OutputFormat::Table, true, out).await?;
        }
        "\\d" => {
            let name = arg.trim().replace('\'', "''");
            if !ctx.table_exist(name.as_str())? {
                writeln!(out, "no table {name}").map_err(io)?;
            } else {
                let batch = describe_table(ctx, &name).await?;
                table::write(out, &[batch], OutputFormat::Table)?;
            }
        }
        "\\?" | "\\help" => {
            writeln!(out, "\\d [TABLE]  list tables or describe one\n\\functions  custval's SQL functions\n\\timing [on|off]  show query times\n\\q  quit\nStatements end with ';'.").map_err(io)?;
        }
        other => writeln!(out, "unknown command {other} (\\? lists them)").map_err(io)?,
    }
    Ok(Meta::Handled)
}

/// `\d NAME`: each column's name, type and nullability, with its unit and
/// description ([`crate::columns`]) when the table is a published one: one
/// named NAME, or the one documented table holding all of NAME's columns
/// (the partition column `as_of` aside), so `--table t=OUTPUT/customer_tiers/`
/// is described too.
async fn describe_table(ctx: &SessionContext, name: &str) -> Result<RecordBatch> {
    let schema = ctx.table(name).await?.schema().as_arrow().clone();
    let names: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| *n != "as_of")
        .collect();
    let holds_all =
        |t: &&columns::Table| names.iter().all(|n| t.columns.iter().any(|c| c.name == *n));
    let candidates: Vec<&columns::Table> = columns::TABLES.iter().filter(holds_all).collect();
    let doc = match columns::table(name).filter(holds_all) {
        Some(t) => Some(t),
        None if candidates.len() == 1 => Some(candidates[0]),
        None => None,
    };
    let col = |n: &str| doc.and_then(|t| t.columns.iter().find(|c| c.name == n));
    let text = |v: Vec<String>| Arc::new(StringArray::from(v)) as ArrayRef;
    let fields = schema.fields();
    let out_schema = Arc::new(Schema::new(
        [
            "column_name",
            "data_type",
            "is_nullable",
            "unit",
            "description",
        ]
        .map(|n| Field::new(n, DataType::Utf8, false))
        .to_vec(),
    ));
    let batch = RecordBatch::try_new(
        out_schema,
        vec![
            text(fields.iter().map(|f| f.name().clone()).collect()),
            text(fields.iter().map(|f| f.data_type().to_string()).collect()),
            text(
                fields
                    .iter()
                    .map(|f| if f.is_nullable() { "YES" } else { "NO" }.into())
                    .collect(),
            ),
            text(
                fields
                    .iter()
                    .map(|f| col(f.name()).map_or("", |c| c.unit).into())
                    .collect(),
            ),
            text(
                fields
                    .iter()
                    .map(|f| col(f.name()).map_or("", |c| c.description).into())
                    .collect(),
            ),
        ],
    )?;
    Ok(batch)
}

/// Table and function names for completion.
async fn completion_words(ctx: &SessionContext) -> Vec<String> {
    let mut words: Vec<String> = crate::udf::all_functions()
        .iter()
        .map(|f| f.name.to_string())
        .collect();
    // Table names, then the registered tables' column names.
    for q in [
        "SELECT table_name AS w FROM information_schema.tables WHERE table_schema = 'public'",
        "SELECT DISTINCT column_name AS w FROM information_schema.columns WHERE table_schema = 'public'",
    ] {
        let Ok(df) = ctx.sql(q).await else { continue };
        let Ok(batches) = df.collect().await else {
            continue;
        };
        if let Ok(rows) = table::to_json_rows(&batches) {
            words.extend(
                rows.iter()
                    .filter_map(|r| r.get("w")?.as_str().map(String::from)),
            );
        }
    }
    for kw in [
        "SELECT",
        "FROM",
        "WHERE",
        "GROUP BY",
        "ORDER BY",
        "LIMIT",
        "WITH",
        "JOIN",
        "named_struct",
    ] {
        words.push(kw.to_string());
    }
    words.sort();
    words.dedup();
    words
}

struct Helper {
    words: Vec<String>,
}

impl rustyline::completion::Completer for Helper {
    type Candidate = String;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map(|i| i + 1)
            .unwrap_or(0);
        let prefix = line[start..pos].to_ascii_lowercase();
        if prefix.is_empty() {
            return Ok((pos, vec![]));
        }
        let found = self
            .words
            .iter()
            .filter(|w| w.to_ascii_lowercase().starts_with(&prefix))
            .cloned()
            .collect();
        Ok((start, found))
    }
}
impl rustyline::hint::Hinter for Helper {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Helper {}
impl rustyline::validate::Validator for Helper {}
impl rustyline::Helper for Helper {}

fn history_path() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".custval_history"))
}

/// The interactive shell.
async fn repl(ctx: &SessionContext, sink: Sink, session: &SessionArgs) -> Result<()> {
    use rustyline::error::ReadlineError;
    let mut editor: rustyline::Editor<Helper, rustyline::history::FileHistory> =
        rustyline::Editor::with_config(rustyline::Config::builder().auto_add_history(true).build())
            .map_err(|e| Error::Internal(format!("cannot start the shell: {e}")))?;
    editor.set_helper(Some(Helper {
        words: completion_words(ctx).await,
    }));
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let mut shell = Shell {
        sink,
        allow_write: session.allow_write,
        timing: false,
    };
    let mut buf = String::new();
    eprintln!("custval sql: end statements with ';'; \\? for help, \\q to quit");
    loop {
        let prompt = if buf.is_empty() {
            "custval> "
        } else {
            "     ...> "
        };
        let line = match editor.readline(prompt) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                buf.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Error::Internal(format!("shell input failed: {e}"))),
        };
        let mut out = std::io::stdout().lock();
        if buf.is_empty() {
            match meta_command(ctx, &line, &mut shell, &mut out).await {
                Ok(Meta::Quit) => break,
                Ok(Meta::Handled) => continue,
                Ok(Meta::NotMeta) => {}
                Err(e) => {
                    eprintln!("error: {e}");
                    continue;
                }
            }
        }
        buf.push_str(&line);
        buf.push('\n');
        if line.trim_end().ends_with(';') {
            let q = std::mem::take(&mut buf);
            let t0 = Instant::now();
            // Ctrl-C while a query runs (the terminal is not in raw mode
            // then: it is a SIGINT) cancels it: dropping the query's future
            // stops its tasks at their next batch. The shell goes on.
            let run = execute_to(
                ctx,
                &q,
                &shell.sink,
                shell.allow_write,
                session.footer,
                &mut out,
            );
            tokio::select! {
                r = run => if let Err(e) = r {
                    eprintln!("error: {e}");
                },
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("query cancelled after {:.3} s", t0.elapsed().as_secs_f64());
                }
            }
            if shell.timing {
                eprintln!("time: {:.3} s", t0.elapsed().as_secs_f64());
            }
            if let Some(helper) = editor.helper_mut() {
                helper.words = completion_words(ctx).await;
            }
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn meta_commands_describe_tables_functions_and_timing() {
        let ctx = engine::session(&Default::default()).unwrap();
        ctx.sql("CREATE TABLE sales(customer_id VARCHAR, amount DOUBLE) AS VALUES ('a', 1.0)")
            .await
            .unwrap();
        let mut shell = Shell {
            sink: Sink::Print(OutputFormat::Table),
            allow_write: false,
            timing: false,
        };
        let mut out = Vec::new();
        assert_eq!(
            meta_command(&ctx, "\\d", &mut shell, &mut out)
                .await
                .unwrap(),
            Meta::Handled
        );
        assert!(String::from_utf8_lossy(&out).contains("sales"));
        out.clear();
        meta_command(&ctx, "\\d sales", &mut shell, &mut out)
            .await
            .unwrap();
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("customer_id") && s.contains("amount"), "{s}");
        // A published table's columns come with their unit and description.
        ctx.sql("CREATE TABLE t(period_start DATE, churn_rate DOUBLE, as_of VARCHAR) AS VALUES (DATE '2024-01-01', 0.5, '2024-01-31')")
            .await
            .unwrap();
        out.clear();
        meta_command(&ctx, "\\d t", &mut shell, &mut out)
            .await
            .unwrap();
        let s = String::from_utf8_lossy(&out);
        assert!(
            s.contains("1 - retention_rate") && s.contains("share"),
            "{s}"
        );
        out.clear();
        meta_command(&ctx, "\\functions", &mut shell, &mut out)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&out).contains("bgnbd_fit(frequency, recency, t)"));
        meta_command(&ctx, "\\timing", &mut shell, &mut out)
            .await
            .unwrap();
        assert!(shell.timing);
        assert_eq!(
            meta_command(&ctx, "\\q", &mut shell, &mut out)
                .await
                .unwrap(),
            Meta::Quit
        );
        assert_eq!(
            meta_command(&ctx, "SELECT 1;", &mut shell, &mut out)
                .await
                .unwrap(),
            Meta::NotMeta
        );
    }

    #[tokio::test]
    async fn completion_offers_tables_and_functions() {
        use rustyline::completion::Completer;
        let ctx = engine::session(&Default::default()).unwrap();
        ctx.sql("CREATE TABLE customer_tiers(x INT) AS VALUES (1)")
            .await
            .unwrap();
        let h = Helper {
            words: completion_words(&ctx).await,
        };
        let history = rustyline::history::DefaultHistory::new();
        let c = rustyline::Context::new(&history);
        let (start, found) = h.complete("SELECT bgnbd_p", 14, &c).unwrap();
        assert_eq!(start, 7);
        assert_eq!(found, vec!["bgnbd_p_alive".to_string()]);
        let (_, found) = h.complete("SELECT * FROM customer_t", 24, &c).unwrap();
        assert_eq!(found, vec!["customer_tiers".to_string()]);
        // Column names of registered tables complete too.
        ctx.sql("CREATE TABLE s(predicted_clv DOUBLE) AS VALUES (1.0)")
            .await
            .unwrap();
        let h = Helper {
            words: completion_words(&ctx).await,
        };
        let (start, found) = h.complete("SELECT predicted_c", 18, &c).unwrap();
        assert_eq!(start, 7);
        assert_eq!(found, vec!["predicted_clv".to_string()]);
    }
}
