//! Tables named by their URL inside SQL: a path or URL in FROM
//! (`SELECT * FROM 'out/customer_tiers/'`) and the table functions
//! `read_parquet(url)` and `read_csv(url, 'OPTION=VALUE', ...)`. Every one is
//! read through [`crate::input::register_source`], as `--table` is: a
//! published table folder reads its committed partitions through their
//! manifests, Hive folders become columns, any supported store works.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{
    DynamicFileCatalog, TableFunctionArgs, TableFunctionImpl, TableProvider, UrlTableFactory,
};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;

use crate::error::{Error, Result};
use crate::input::{CsvOptions, ReadOptions};
use crate::job::{apply_csv_flags, CsvSpec, Format};
use crate::scratch::Scratch;
use crate::storage::Location;

/// Reads a URL into a table provider through custval's input reader, in a
/// private session (sharing the caller's object stores and settings) so
/// nothing is left registered under a name.
pub struct SourceReader {
    reader: SessionContext,
    scratch: Arc<Scratch>,
    next: AtomicUsize,
}

impl std::fmt::Debug for SourceReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceReader")
    }
}

/// Does a table name look like a path or URL rather than an identifier?
/// (`out/t/`, `data.parquet`, `s3://b/k`; not `customer_tiers`.)
pub fn looks_like_url(name: &str) -> bool {
    name.contains('/') || name.contains('.') || name.contains('*')
}

impl SourceReader {
    /// A reader sharing `ctx`'s runtime (object stores, memory pool) and a
    /// copy of its settings; CSV files in another encoding are transcoded
    /// into `scratch`.
    pub fn new(ctx: &SessionContext, scratch: Arc<Scratch>) -> SourceReader {
        let reader = SessionContext::new_with_config_rt(ctx.copied_config(), ctx.runtime_env());
        SourceReader {
            reader,
            scratch,
            next: AtomicUsize::new(0),
        }
    }

    /// The table at `url` (a file, a folder, a published table or
    /// partition) in `format` (`None`: by the file names, as `--table`);
    /// `csv` holds `OPTION=VALUE` settings of the CSV dialect (as under a
    /// job's `[inputs.NAME.csv]`).
    ///
    /// Errors: [`Error::Argument`] for an option custval does not know;
    /// those of [`crate::input::register_source`] (no data files, an
    /// unreadable file, a failing store) naming the URL.
    pub async fn provider(
        &self,
        url: &str,
        format: Option<Format>,
        csv: &[String],
    ) -> Result<Arc<dyn TableProvider>> {
        match url.find(['*', '?', '[']) {
            Some(at) => self.glob(url, at, format, csv).await,
            None => self.one(url, format, csv).await,
        }
    }

    /// The files matching a glob (`data/2024-*.csv`; `*` stays within one
    /// folder), each read as [`SourceReader::provider`] reads a file, and
    /// their rows together by column name (columns one file lacks are null).
    ///
    /// Errors: [`Error::Argument`] for a pattern that does not parse or
    /// matches no file; those of reading each file.
    async fn glob(
        &self,
        url: &str,
        at: usize,
        format: Option<Format>,
        csv: &[String],
    ) -> Result<Arc<dyn TableProvider>> {
        use futures::TryStreamExt;
        let base = &url[..url[..at].rfind('/').map_or(0, |i| i + 1)];
        let base_loc = Location::parse(if base.is_empty() { "./" } else { base }, true)?;
        let pattern = glob::Pattern::new(&url[base.len()..])
            .map_err(|e| Error::Argument(format!("{url}: not a glob pattern: {e}")))?;
        let store = crate::storage::register_store(&self.reader, &base_loc)?;
        let prefix = base_loc.path();
        let metas: Vec<object_store::ObjectMeta> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| Error::storage(base_loc.to_string(), e))?;
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        let mut matched: Vec<String> = metas
            .iter()
            .filter_map(|m| m.location.prefix_match(&prefix).map(|rel| (m, rel)))
            .map(|(m, rel)| (m, rel.map(|p| p.as_ref().to_string()).collect::<Vec<_>>()))
            .filter(|(_, rel)| !rel.iter().any(|p| p.starts_with(['_', '.'])))
            .filter(|(_, rel)| pattern.matches_with(&rel.join("/"), options))
            .map(|(_, rel)| format!("{}{}", base_loc.url(), rel.join("/")))
            .collect();
        matched.sort();
        let mut frames = Vec::with_capacity(matched.len());
        for file in &matched {
            let provider = self.one(file, format, csv).await?;
            frames.push(self.reader.read_table(provider)?);
        }
        let mut frames = frames.into_iter();
        let Some(mut all) = frames.next() else {
            return Err(Error::Argument(format!("{url}: no file matches")));
        };
        for f in frames {
            all = all.union_by_name(f)?;
        }
        Ok(all.into_view())
    }

    /// One file or folder, as `--table` reads it.
    async fn one(
        &self,
        url: &str,
        format: Option<Format>,
        csv: &[String],
    ) -> Result<Arc<dyn TableProvider>> {
        let dir = url.ends_with('/') || std::path::Path::new(url).is_dir();
        let loc = Location::parse(url, dir)?;
        let flags = csv
            .iter()
            .map(|o| match o.split_once('=') {
                Some((k, v)) => Ok((format!("t.{}", k.trim()), v.to_string())),
                None => Err(Error::Argument(format!(
                    "read_csv option {o:?}: expected OPTION=VALUE, e.g. 'delimiter=;'"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut specs: BTreeMap<String, CsvSpec> = BTreeMap::new();
        apply_csv_flags(&mut specs, &flags, "table", &|n| n == "t")?;
        let spec = specs.remove("t").unwrap_or_default();
        let name = format!("__url_{}", self.next.fetch_add(1, Ordering::Relaxed));
        let read = ReadOptions {
            format,
            csv: CsvOptions::resolve(url, &spec)?,
            csv_as_text: false,
            scratch: Some(&self.scratch),
        };
        crate::input::register_source(&self.reader, &name, &loc, &read).await?;
        let provider = self.reader.table_provider(name.as_str()).await?;
        self.reader.deregister_table(name.as_str())?;
        Ok(provider)
    }
}

impl SourceReader {
    /// [`SourceReader::provider`] from synchronous code on a worker of a
    /// multi-threaded runtime (table functions plan synchronously; the input
    /// reader's futures are not `Send` for every lifetime, as
    /// [`UrlTableFactory`] would need).
    ///
    /// Errors: those of [`SourceReader::provider`]; [`Error::Internal`]
    /// outside a multi-threaded runtime.
    fn provider_blocking(
        &self,
        url: &str,
        format: Option<Format>,
        csv: &[String],
    ) -> Result<Arc<dyn TableProvider>> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::Internal(format!("reading {url} needs a runtime: {e}")))?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(Error::Internal(format!(
                "reading {url} in SQL needs a multi-threaded runtime"
            )));
        }
        tokio::task::block_in_place(|| handle.block_on(self.provider(url, format, csv)))
    }
}

#[async_trait]
impl UrlTableFactory for SourceReader {
    async fn try_new(
        &self,
        url: &str,
    ) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        if !looks_like_url(url) {
            // An unknown identifier stays "table not found".
            return Ok(None);
        }
        Ok(Some(self.provider_blocking(url, None, &[])?))
    }
}

/// `read_parquet(url)` or `read_csv(url, 'OPTION=VALUE', ...)`.
#[derive(Debug)]
struct ReadFunction {
    name: &'static str,
    reader: Arc<SourceReader>,
}

impl TableFunctionImpl for ReadFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let texts = args
            .exprs()
            .iter()
            .map(|e| match e {
                Expr::Literal(ScalarValue::Utf8(Some(s)), _)
                | Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _)
                | Expr::Literal(ScalarValue::Utf8View(Some(s)), _) => Ok(s.clone()),
                other => Err(Error::Argument(format!(
                    "{}: arguments are text literals (a URL, then OPTION=VALUE), got {other}",
                    self.name
                ))),
            })
            .collect::<Result<Vec<String>>>()?;
        let Some((url, options)) = texts.split_first() else {
            return Err(Error::Argument(format!("{}(url) needs a URL", self.name)).into());
        };
        if self.name == "read_parquet" && !options.is_empty() {
            return Err(Error::Argument("read_parquet(url) takes only the URL".into()).into());
        }
        let format = match self.name {
            "read_csv" => Format::Csv,
            _ => Format::Parquet,
        };
        Ok(self.reader.provider_blocking(url, Some(format), options)?)
    }
}

/// Make `ctx` read paths and URLs in FROM and know `read_parquet` and
/// `read_csv`, all through one [`SourceReader`]. Returns the new context
/// (DataFusion's catalog list is fixed at construction, as in
/// `SessionContext::enable_url_table`). Needs a multi-threaded runtime for
/// the table functions.
pub fn enable(ctx: SessionContext, scratch: Arc<Scratch>) -> SessionContext {
    let reader = Arc::new(SourceReader::new(&ctx, scratch));
    let catalogs = Arc::new(DynamicFileCatalog::new(
        ctx.state().catalog_list().clone(),
        reader.clone() as Arc<dyn UrlTableFactory>,
    ));
    let session_id = ctx.session_id();
    let ctx: SessionContext = ctx
        .into_state_builder()
        .with_session_id(session_id)
        .with_catalog_list(catalogs)
        .build()
        .into();
    for name in ["read_parquet", "read_csv"] {
        ctx.register_udtf(
            name,
            Arc::new(ReadFunction {
                name,
                reader: reader.clone(),
            }),
        );
    }
    ctx
}
