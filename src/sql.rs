//! `custval sql`: ad-hoc SQL over registered tables with every custval
//! function; read-only unless `--allow-write`; a shell on a terminal with
//! history, completion of table and function names and meta commands
//! (`\d`, `\d TABLE`, `\functions`, `\timing`, `\q`).

use std::io::Write;
use std::time::Instant;

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

use crate::engine::{self, EngineOptions};
use crate::error::{Error, Result};
use crate::storage::{self, Location};
use crate::table::{self, OutputFormat};

/// Register `--table NAME=URL` pairs. A folder of `key=value` partition
/// folders (a published table: `OUTPUT/customer_tiers/`) becomes one table
/// with the partition column, each partition read through its manifest.
pub async fn register_tables(ctx: &SessionContext, tables: &[(String, String)]) -> Result<()> {
    for (name, url) in tables {
        let loc = Location::parse(url, url.ends_with('/'))?;
        if loc.is_dir_like() && register_partitioned(ctx, name, &loc).await? {
            continue;
        }
        crate::input::register_source(ctx, name, &loc, None, false).await?;
    }
    Ok(())
}

/// Hive-style partitions below `loc`, if its children are all `key=value`
/// folders with one key; registers `name` as their union and returns true.
async fn register_partitioned(ctx: &SessionContext, name: &str, loc: &Location) -> Result<bool> {
    // A published partition's `run=<id>/` folders are runs, not partitions:
    // the partition is read through its run record and manifest.
    if crate::publish::OutputLayout::of_partition(loc).is_some() {
        return Ok(false);
    }
    let store = storage::register_store(ctx, loc)?;
    let listing = store
        .list_with_delimiter(Some(&loc.path()))
        .await
        .map_err(|e| Error::storage(loc.to_string(), e))?;
    let data_files = listing.objects.iter().any(|o| {
        o.location
            .filename()
            .is_some_and(|f| !f.starts_with('_') && !f.starts_with('.'))
    });
    let parts: Vec<(String, String)> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename())
        .filter_map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let key = match parts.first() {
        Some((k, _))
            if !data_files
                && parts.len() == listing.common_prefixes.len()
                && parts.iter().all(|(k2, _)| k2 == k) =>
        {
            k.clone()
        }
        _ => return Ok(false),
    };
    let mut selects = Vec::new();
    let mut columns: Option<Vec<String>> = None;
    for (i, (_, value)) in parts.iter().enumerate() {
        let part = loc.join(&format!("{key}={value}/"))?;
        let raw = format!("__{name}_part_{i}");
        let (schema, _, _) = crate::input::register_source(ctx, &raw, &part, None, false).await?;
        let cols = columns.get_or_insert_with(|| {
            schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|c| c != &key)
                .collect()
        });
        let list: Vec<String> = cols
            .iter()
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect();
        selects.push(format!(
            "SELECT {}, '{}' AS \"{}\" FROM \"{raw}\"",
            list.join(", "),
            value.replace('\'', "''"),
            key.replace('"', "\"\"")
        ));
    }
    let df = ctx.sql(&selects.join(" UNION ALL ")).await?;
    ctx.register_table(name, df.into_view())?;
    Ok(true)
}

/// Is this plan a statement that writes or changes the catalog?
fn is_write(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
    )
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
    execute_to(ctx, text, &Sink::Print(format), allow_write, out).await
}

/// Run statements, sending query results to `sink`.
pub async fn execute_to(
    ctx: &SessionContext,
    text: &str,
    sink: &Sink,
    allow_write: bool,
    out: &mut dyn Write,
) -> Result<()> {
    // DataFusion's own parser: it knows COPY ... STORED AS, CREATE EXTERNAL TABLE.
    let statements = datafusion::sql::parser::DFParser::parse_sql(text)
        .map_err(|e| Error::Query(format!("SQL does not parse: {e}")))?;
    if statements.is_empty() {
        return Err(Error::Query("no SQL statement given".into()));
    }
    for stmt in statements {
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
                let batches = df.collect().await?;
                table::write(out, &batches, *format)?;
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

/// The `custval sql` command.
pub async fn run(
    query: Option<String>,
    tables: &[(String, String)],
    sink: Sink,
    allow_write: bool,
    engine_opts: &EngineOptions,
) -> Result<()> {
    if matches!(sink, Sink::Parquet(_)) && !allow_write {
        return Err(Error::Argument(
            "--format parquet writes files: add --allow-write".into(),
        ));
    }
    let ctx = engine::open(engine_opts).await?;
    register_tables(&ctx, tables).await?;
    match query {
        Some(q) => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            execute_to(&ctx, &q, &sink, allow_write, &mut out).await
        }
        None => repl(&ctx, sink, allow_write).await,
    }
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
                let q = format!(
                    "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = '{name}' ORDER BY ordinal_position"
                );
                execute(ctx, &q, OutputFormat::Table, true, out).await?;
            }
        }
        "\\?" | "\\help" => {
            writeln!(out, "\\d [TABLE]  list tables or describe one\n\\functions  custval's SQL functions\n\\timing [on|off]  show query times\n\\q  quit\nStatements end with ';'.").map_err(io)?;
        }
        other => writeln!(out, "unknown command {other} (\\? lists them)").map_err(io)?,
    }
    Ok(Meta::Handled)
}

/// Table and function names for completion.
async fn completion_words(ctx: &SessionContext) -> Vec<String> {
    let mut words: Vec<String> = crate::udf::all_functions()
        .iter()
        .map(|f| f.name.to_string())
        .collect();
    if let Ok(df) = ctx
        .sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        .await
    {
        if let Ok(batches) = df.collect().await {
            if let Ok(rows) = table::to_json_rows(&batches) {
                words.extend(
                    rows.iter()
                        .filter_map(|r| r.get("table_name")?.as_str().map(String::from)),
                );
            }
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
async fn repl(ctx: &SessionContext, sink: Sink, allow_write: bool) -> Result<()> {
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
        allow_write,
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
            if let Err(e) = execute_to(ctx, &q, &shell.sink, shell.allow_write, &mut out).await {
                eprintln!("error: {e}");
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
    }
}
