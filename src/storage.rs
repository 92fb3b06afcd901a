//! Storage: user URLs and paths ([`Location`]), the object store of each
//! (built from the environment, with retries and timeouts), and redaction of
//! URLs for messages. Credentials come only from the environment and never
//! appear in a `Location`'s display.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::SessionContext;
use object_store::path::Path as StorePath;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use url::Url;

use crate::error::{Error, Result};

/// An object-store registry that builds the store of any URL from the
/// environment on first use. Cluster processes need it: a scheduler lists and
/// an executor reads whatever buckets the client's job names, and nobody
/// registers those stores on their side.
#[derive(Debug, Default)]
pub struct EnvStores {
    stores: std::sync::RwLock<std::collections::HashMap<String, Arc<dyn ObjectStore>>>,
}

impl EnvStores {
    fn key(url: &Url) -> String {
        format!("{}://{}", url.scheme(), url.authority())
    }
}

impl datafusion::execution::object_store::ObjectStoreRegistry for EnvStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let mut m = self.stores.write().unwrap_or_else(|p| p.into_inner());
        m.insert(Self::key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let mut m = self.stores.write().unwrap_or_else(|p| p.into_inner());
        m.remove(&Self::key(url)).ok_or_else(|| {
            datafusion::error::DataFusionError::Execution(format!(
                "no object store registered for {}",
                redact(url)
            ))
        })
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let key = Self::key(url);
        if let Some(s) = self
            .stores
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(s.clone());
        }
        let loc = Location::parse(&format!("{key}/"), true)?;
        let store = build_store(&loc)?;
        let mut m = self.stores.write().unwrap_or_else(|p| p.into_inner());
        Ok(m.entry(key).or_insert(store).clone())
    }
}

/// A user-given location: a local path or a URL, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    url: Url,
    /// `url`'s path decoded by object_store, checked once when the location is made.
    path: StorePath,
}

/// `path` with `.` and `..` resolved lexically (`/a/job/../data` is
/// `/a/data`), as a shell's `cd` does: object store paths refuse `..`, and
/// job files name inputs relative to themselves (`../data/tx.csv`).
fn without_dot_dot(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl Location {
    /// Parse a local path, `file://`, `s3://`, `gs://`, `az://`, `abfss://` or
    /// `http(s)://` URL. `dir` marks locations that are folders (outputs).
    pub fn parse(raw: &str, dir: bool) -> Result<Location> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Error::Argument("empty URL or path".into()));
        }
        let url = match Url::parse(raw) {
            Ok(u) if u.scheme().len() > 1 => u,
            _ => {
                // A plain path (or a Windows drive letter parsed as a scheme).
                let abs = std::path::absolute(Path::new(raw)).map_err(|e| Error::io(raw, e))?;
                let abs = without_dot_dot(&abs);
                let u = if dir || raw.ends_with('/') {
                    Url::from_directory_path(&abs)
                } else {
                    Url::from_file_path(&abs)
                };
                u.map_err(|_| Error::url(raw, "not a usable path"))?
            }
        };
        match url.scheme() {
            "file" | "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" | "http" | "https" => {}
            other => {
                return Err(Error::url(
                    redact(&url),
                    format!("unsupported URL scheme {other:?} (use a path, file://, s3://, gs://, az://, abfss:// or https://)"),
                ))
            }
        }
        if url.scheme() != "file" && url.host_str().unwrap_or("").is_empty() {
            return Err(Error::url(redact(&url), "names no bucket or container"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::url(
                redact(&url),
                "URLs must not carry credentials; use the cloud's environment variables",
            ));
        }
        let mut url = url;
        if dir && !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        Location::from_url(url)
    }

    /// Decode the store path of a checked URL.
    fn from_url(url: Url) -> Result<Location> {
        let path = StorePath::from_url_path(url.path())
            .map_err(|e| Error::url(redact(&url), format!("not a usable path: {e}")))?;
        Ok(Location { url, path })
    }

    /// The normalised URL (may carry a query string: print [`Location`]'s
    /// `Display`, which redacts it, never this).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `scheme://host/`, the key of the object-store registry.
    pub fn store_url(&self) -> Result<ObjectStoreUrl> {
        let base = match self.url.scheme() {
            "file" => "file://".to_string(),
            s => format!("{s}://{}", self.url.authority()),
        };
        ObjectStoreUrl::parse(base).map_err(Error::from)
    }

    /// The path inside the store, percent-decoded.
    pub fn path(&self) -> StorePath {
        self.path.clone()
    }

    /// A location below this one (this one must be a folder).
    pub fn join(&self, segment: &str) -> Result<Location> {
        let mut base = self.url.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let url = base
            .join(segment)
            .map_err(|e| Error::url(redact(&self.url), format!("cannot join {segment:?}: {e}")))?;
        Location::from_url(url)
    }

    /// Is this a local path?
    pub fn is_local(&self) -> bool {
        self.url.scheme() == "file"
    }

    /// Local file-system path, for local locations.
    pub fn local_path(&self) -> Option<std::path::PathBuf> {
        if self.is_local() {
            self.url.to_file_path().ok()
        } else {
            None
        }
    }

    /// The file extension of the last path segment, lower-case.
    pub fn extension(&self) -> Option<String> {
        let last = self.url.path().rsplit('/').next()?;
        let (_, ext) = last.rsplit_once('.')?;
        Some(ext.to_ascii_lowercase())
    }

    /// True when the location names a folder (ends with `/`).
    pub fn is_dir_like(&self) -> bool {
        self.url.path().ends_with('/')
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.url))
    }
}

/// The URL without query string or user info: SAS tokens and signed URLs
/// carry secrets in the query.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Retry and timeout settings for remote stores. Deliberate defaults, tunable
/// from the environment: `CUSTVAL_STORE_MAX_RETRIES` (default 5),
/// `CUSTVAL_STORE_RETRY_TIMEOUT_SECS` (120), `CUSTVAL_STORE_TIMEOUT_SECS`
/// (per request, 60), `CUSTVAL_STORE_CONNECT_TIMEOUT_SECS` (10).
#[derive(Debug, Clone)]
pub struct StoreTuning {
    /// Retries of a failed request.
    pub max_retries: usize,
    /// Give up retrying after this long.
    pub retry_timeout: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Timeout of opening a connection.
    pub connect_timeout: Duration,
}

impl StoreTuning {
    /// The settings from the environment; [`Error::Env`] for a value that is not a whole number.
    pub fn from_env() -> Result<StoreTuning> {
        fn var(name: &str, default: u64) -> Result<u64> {
            match std::env::var(name) {
                Ok(v) => v.trim().parse().map_err(|_| Error::Env {
                    var: name.to_string(),
                    message: format!("{v:?} is not a whole number"),
                }),
                Err(_) => Ok(default),
            }
        }
        Ok(StoreTuning {
            max_retries: var("CUSTVAL_STORE_MAX_RETRIES", 5)? as usize,
            retry_timeout: Duration::from_secs(var("CUSTVAL_STORE_RETRY_TIMEOUT_SECS", 120)?),
            request_timeout: Duration::from_secs(var("CUSTVAL_STORE_TIMEOUT_SECS", 60)?),
            connect_timeout: Duration::from_secs(var("CUSTVAL_STORE_CONNECT_TIMEOUT_SECS", 10)?),
        })
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
            ..RetryConfig::default()
        }
    }

    fn client(&self) -> ClientOptions {
        ClientOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(self.connect_timeout)
    }
}

/// Sends a request again when it failed before any answer came back in a way
/// object_store does not retry itself: a connection dropped just after it was
/// opened surfaces from reqwest as an error of unknown kind ("error sending
/// request"), which object_store never retries, even for a GET. Re-sending is
/// safe for every request custval makes: reads and overwrites are
/// idempotent, and the run lock's conditional create recognises its own body.
#[derive(Debug)]
struct Resend(object_store::client::HttpClient);

/// Extra attempts for a request that got no answer at all.
const RESEND_ATTEMPTS: u32 = 3;

#[async_trait::async_trait]
impl object_store::client::HttpService for Resend {
    async fn call(
        &self,
        req: object_store::client::HttpRequest,
    ) -> Result<object_store::client::HttpResponse, object_store::client::HttpError> {
        let (parts, body) = req.into_parts();
        let mut attempt = 0;
        loop {
            let mut r = object_store::client::HttpRequest::new(body.clone());
            *r.method_mut() = parts.method.clone();
            *r.uri_mut() = parts.uri.clone();
            *r.headers_mut() = parts.headers.clone();
            *r.version_mut() = parts.version;
            match self.0.execute(r).await {
                Err(e)
                    if e.kind() == object_store::client::HttpErrorKind::Unknown
                        && attempt < RESEND_ATTEMPTS =>
                {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "re-sending a request that got no answer");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                other => return other,
            }
        }
    }
}

#[derive(Debug, Default)]
struct ResendConnector;

impl object_store::client::HttpConnector for ResendConnector {
    fn connect(
        &self,
        options: &ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        let inner = object_store::client::ReqwestConnector::default().connect(options)?;
        Ok(object_store::client::HttpClient::new(Resend(inner)))
    }
}

/// Build the object store for a location from the environment.
pub fn build_store(loc: &Location) -> Result<Arc<dyn ObjectStore>> {
    let tuning = StoreTuning::from_env()?;
    let url = loc.url();
    let shown = loc.to_string();
    let err = |e: object_store::Error| Error::storage(shown.clone(), e);
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "file" => Arc::new(object_store::local::LocalFileSystem::new()),
        "s3" | "s3a" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(url.host_str().unwrap_or_default())
                .with_retry(tuning.retry())
                .with_http_connector(ResendConnector)
                .with_client_options(tuning.client());
            // Local S3-compatible servers speak plain HTTP.
            if let Ok(ep) =
                std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT"))
            {
                if ep.starts_with("http://") {
                    b = b.with_allow_http(true);
                }
                b = b.with_endpoint(ep);
            }
            Arc::new(b.build().map_err(err)?)
        }
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(url.host_str().unwrap_or_default())
                .with_retry(tuning.retry())
                .with_http_connector(ResendConnector)
                .with_client_options(tuning.client())
                .build()
                .map_err(err)?,
        ),
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(tuning.retry())
                .with_http_connector(ResendConnector);
            let mut client = tuning.client();
            if std::env::var("AZURE_STORAGE_USE_EMULATOR").is_ok_and(|v| v == "true" || v == "1") {
                client = client.with_allow_http(true);
                b = b.with_use_emulator(true);
            }
            Arc::new(b.with_client_options(client).build().map_err(err)?)
        }
        "http" | "https" => Arc::new(
            object_store::http::HttpBuilder::new()
                .with_url(format!("{}://{}", url.scheme(), url.authority()))
                .with_retry(tuning.retry())
                .with_http_connector(ResendConnector)
                .with_client_options(tuning.client().with_allow_http(url.scheme() == "http"))
                .build()
                .map_err(err)?,
        ),
        other => return Err(Error::url(shown, format!("unsupported URL scheme {other}"))),
    };
    Ok(store)
}

/// Register the store of a location with the session (idempotent) and return it.
pub fn register_store(ctx: &SessionContext, loc: &Location) -> Result<Arc<dyn ObjectStore>> {
    let key = loc.store_url()?;
    if let Ok(existing) = ctx.runtime_env().object_store(&key) {
        return Ok(existing);
    }
    let store = build_store(loc)?;
    let base = Url::parse(key.as_str()).map_err(|e| Error::Internal(e.to_string()))?;
    ctx.register_object_store(&base, store.clone());
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_with_dot_dot_resolve() {
        // A job in /w/jobs naming ../data/tx.csv (found by a fresh-user
        // trial: "Encountered illegal character sequence '..'", exit 2).
        let loc = Location::parse("/w/jobs/../data/./tx.csv", false).unwrap();
        assert_eq!(loc.to_string(), "file:///w/data/tx.csv");
        let dir = Location::parse("/w/jobs/../out/", true).unwrap();
        assert_eq!(dir.to_string(), "file:///w/out/");
        assert_eq!(dir.path().as_ref(), "w/out");
    }

    #[test]
    fn locations_normalise_paths_and_urls() {
        let l = Location::parse("s3://bucket/out", true).unwrap();
        assert_eq!(l.url().as_str(), "s3://bucket/out/");
        assert_eq!(l.path().as_ref(), "out");
        assert_eq!(l.store_url().unwrap().as_str(), "s3://bucket/");
        let t = l.join("customer_tiers/day=2024-01-01/").unwrap();
        assert_eq!(t.path().as_ref(), "out/customer_tiers/day=2024-01-01");
        let local = Location::parse("some/dir", true).unwrap();
        assert!(local.is_local());
        assert!(local.url().as_str().ends_with("/some/dir/"));
        assert!(Location::parse("ftp://x/y", false).is_err());
        assert!(Location::parse("s3://user:pw@bucket/x", false).is_err());
    }

    #[test]
    fn store_paths_are_percent_decoded() {
        let l = Location::parse("s3://bucket/a%20b/c%3Dd.csv", false).unwrap();
        assert_eq!(l.path().as_ref(), "a b/c=d.csv");
        let local = Location::parse("dir with space/x.csv", false).unwrap();
        assert!(local.path().as_ref().ends_with("dir with space/x.csv"));
    }

    #[test]
    fn redaction_drops_query_strings() {
        let u = Url::parse("https://acct.blob.core.windows.net/c/x.parquet?sig=SECRET").unwrap();
        assert!(!redact(&u).contains("SECRET"));
    }
}
