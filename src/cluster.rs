//! The cluster: Apache DataFusion Ballista processes that know custval's
//! functions, and the client session behind `--engine ballista://HOST:PORT`.
//!
//! Ballista looks functions up by name in three places, and each needs all of
//! custval's: the client's session (planning), the scheduler's session builder
//! (decoding the client's logical plan), and the executor's function registry
//! (decoding physical tasks). Every process also resolves object stores from
//! its own environment ([`EnvStores`]), so credentials never travel in plans.
//!
//! With TLS files or a cluster secret (`crate::security`), `guard` puts them
//! on every connection and `serve` runs the servers custval assembles from
//! Ballista's services (Ballista 55's own serve plain gRPC only); without,
//! Ballista's own processes run as they are.

mod guard;
mod serve;

pub use guard::{Guard, SecretCheck};

use std::net::SocketAddr;
use std::sync::Arc;

use ballista::prelude::SessionContextExt;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{Error, Result};
use crate::security::{exposure, TlsFiles};
use crate::storage::EnvStores;

/// Where a scheduler listens.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on (e.g. `0.0.0.0`).
    pub bind_host: String,
    /// The host executors and clients reach this scheduler at.
    pub external_host: String,
    /// gRPC port.
    pub port: u16,
    /// TLS: certificate and key, and with a CA, mutual TLS.
    pub tls: TlsFiles,
}

/// An executor's ports, scheduler, working folder and capacity.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Address to listen on.
    pub bind_host: String,
    /// The host the scheduler, clients and other executors reach this one at.
    pub external_host: String,
    /// Arrow Flight port: clients and other executors fetch results here.
    pub port: u16,
    /// gRPC port: tasks from the scheduler.
    pub grpc_port: u16,
    /// Host of the scheduler.
    pub scheduler_host: String,
    /// Port of the scheduler.
    pub scheduler_port: u16,
    /// Shuffle files and spills.
    pub work_dir: std::path::PathBuf,
    /// Tasks run at once (0: one per core).
    pub concurrent_tasks: usize,
    /// Memory all tasks together may use before spilling.
    pub memory_limit: usize,
    /// TLS: certificate and key, and with a CA, mutual TLS.
    pub tls: TlsFiles,
}

/// The `host:port` of a `ballista://` (or `df://`) engine URL.
pub fn scheduler_address(url: &str) -> Result<(String, u16)> {
    let bad = || {
        Error::Argument(format!(
            "--engine {url:?}: expected ballista://HOST:PORT (or `local`)"
        ))
    };
    let parsed = url::Url::parse(url).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "ballista" | "df") {
        return Err(bad());
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(bad)?;
    Ok((host.to_string(), parsed.port().unwrap_or(50050)))
}

/// A runtime with stores from the environment, spills under `temp_dir`
/// and, with `pool`, a memory pool of that many bytes.
fn runtime(
    temp_dir: Option<&std::path::Path>,
    pool: Option<usize>,
) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let mut b = RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(EnvStores::default()));
    if let Some(dir) = temp_dir {
        b = b.with_temp_file_path(dir);
    }
    if let Some(bytes) = pool {
        b = b.with_memory_pool(Arc::new(FairSpillPool::new(bytes)));
    }
    b.build_arc()
}

/// The guard of a scheduler or executor listening on `bind_host`, with the
/// startup warning when it is reachable beyond loopback unprotected.
fn server_guard(role: &str, bind_host: &str, tls: &TlsFiles) -> Result<Guard> {
    let guard = Guard::load(tls, true)?;
    if let Some(warning) = exposure(role, bind_host, guard.tls(), guard.has_secret()) {
        tracing::warn!("{warning}");
    }
    Ok(guard)
}

/// The session state the scheduler plans with: Ballista's defaults, stores
/// from the environment, every custval function and its planner rule.
fn scheduler_state(config: SessionConfig) -> datafusion::error::Result<SessionState> {
    let base = ballista_core::utils::default_session_builder(config)?;
    let mut state = SessionStateBuilder::new_from_existing(base)
        .with_runtime_env(runtime(None, None)?)
        .with_physical_optimizer_rule(Arc::new(crate::udf::summary::SinglePhaseSummary))
        .build();
    crate::udf::register_all_state(&mut state)?;
    Ok(state)
}

fn cluster_err(address: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::Cluster {
        address: address.to_string(),
        message: e.to_string(),
    }
}

/// Run a scheduler until the process is stopped.
pub async fn run_scheduler(opts: SchedulerOptions) -> Result<()> {
    let address = format!("{}:{}", opts.bind_host, opts.port);
    let addr: SocketAddr = address
        .parse()
        .map_err(|e| Error::Argument(format!("scheduler address {address}: {e}")))?;
    let guard = server_guard("scheduler", &opts.bind_host, &opts.tls)?;
    let config = SchedulerConfig {
        bind_host: opts.bind_host.clone(),
        external_host: opts.external_host.clone(),
        bind_port: opts.port,
        override_session_builder: Some(Arc::new(scheduler_state)),
        // A secured executor asks for tasks (see `serve`); a plain one is sent them.
        scheduling_policy: if guard.secured() {
            TaskSchedulingPolicy::PullStaged
        } else {
            TaskSchedulingPolicy::PushStaged
        },
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| cluster_err(&address, e))?;
    if guard.secured() {
        return serve::scheduler(cluster, addr, Arc::new(config), &guard).await;
    }
    tracing::info!(%address, "custval scheduler listening");
    start_server(cluster, addr, Arc::new(config))
        .await
        .map_err(|e| cluster_err(&address, e))
}

/// Run an executor until the process is stopped.
pub async fn run_executor(opts: ExecutorOptions) -> Result<()> {
    let scheduler = format!("{}:{}", opts.scheduler_host, opts.scheduler_port);
    std::fs::create_dir_all(&opts.work_dir).map_err(|e| Error::io(&opts.work_dir, e))?;
    let work_dir = opts
        .work_dir
        .canonicalize()
        .map_err(|e| Error::io(&opts.work_dir, e))?;
    let functions =
        BallistaFunctionRegistry::from(&scheduler_state(SessionConfig::new_with_ballista())?);
    let guard = server_guard("executor", &opts.bind_host, &opts.tls)?;
    let temp = work_dir.clone();
    let config = ExecutorProcessConfig {
        bind_host: opts.bind_host.clone(),
        external_host: Some(opts.external_host.clone()),
        port: opts.port,
        grpc_port: opts.grpc_port,
        scheduler_host: opts.scheduler_host.clone(),
        scheduler_port: opts.scheduler_port,
        // Keep trying while the scheduler starts (it polls every 500 ms).
        scheduler_connect_timeout_seconds: 60,
        vcores: opts.concurrent_tasks,
        work_dir: Some(work_dir.to_string_lossy().into_owned()),
        memory_pool_size: Some(opts.memory_limit as u64),
        override_function_registry: Some(Arc::new(functions)),
        override_runtime_producer: Some(Arc::new(move |_| runtime(Some(&temp), None))),
        ..Default::default()
    };
    if guard.secured() {
        return serve::executor(config, opts.memory_limit, &guard).await;
    }
    tracing::info!(scheduler = %scheduler, port = opts.port, "custval executor starting");
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| cluster_err(&scheduler, e))
}

/// Fail early, naming the scheduler, when nothing answers at its address:
/// Ballista itself connects only when the first query runs.
async fn reachable(host: &str, port: u16) -> Result<()> {
    use std::net::{TcpStream, ToSocketAddrs};
    let shown = format!("ballista://{host}:{port}");
    let target = format!("{host}:{port}");
    let probe = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut last = std::io::Error::other("the host name resolves to no address");
        for addr in target.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10)) {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    })
    .await
    .map_err(|e| cluster_err(&shown, e))?;
    probe.map_err(|e| {
        cluster_err(
            &shown,
            format!("cannot reach the scheduler ({e}); start one with `custval scheduler`"),
        )
    })
}

/// A client session on the cluster at `url`, with custval's functions;
/// `config` holds the engine's settings, Ballista's are added here, with
/// the TLS of `tls` and the secret from the environment on every
/// connection. The scheduler is asked first, so a refusal (no or a wrong
/// secret, TLS) fails here naming it.
pub async fn connect(url: &str, config: SessionConfig, tls: &TlsFiles) -> Result<SessionContext> {
    let (host, port) = scheduler_address(url)?;
    let guard = Guard::load(tls, false)?;
    reachable(&host, port).await?;
    guard.probe(&host, port).await?;
    // The static distributed planner: Ballista 55's adaptive planner spent
    // minutes of scheduler CPU per job on custval's many-stage plans (its
    // `AdaptiveExecutionGraph::revive` runs on every task status update).
    let config = config
        .upgrade_for_ballista()
        .with_ballista_job_name("custval")
        .with_ballista_adaptive_query_planner(false)
        .with_ballista_use_tls(guard.tls())
        .with_ballista_grpc_metadata(guard.metadata());
    let config = match guard.endpoint_override() {
        Some(f) => config.with_ballista_override_create_grpc_client_endpoint(f),
        None => config,
    };
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime(None, None)?)
        .with_default_features()
        .build();
    let address = format!("df://{host}:{port}");
    let ctx = SessionContext::remote_with_state(&address, state)
        .await
        .map_err(|e| cluster_err(format!("ballista://{host}:{port}"), e))?;
    // Ballista rebuilds the state's function lists when it connects, so the
    // functions go in afterwards.
    crate::udf::register_all(&ctx);
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_urls_name_a_scheduler() {
        assert_eq!(
            scheduler_address("ballista://10.0.0.5:50050").unwrap(),
            ("10.0.0.5".to_string(), 50050)
        );
        assert_eq!(
            scheduler_address("ballista://sched").unwrap(),
            ("sched".to_string(), 50050)
        );
        for bad in ["localhost:50050", "http://h:1", "ballista://", "ballista"] {
            let e = scheduler_address(bad).unwrap_err().to_string();
            assert!(e.contains("ballista://HOST:PORT"), "{bad}: {e}");
        }
    }
}
