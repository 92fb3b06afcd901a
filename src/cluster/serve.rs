//! The scheduler and executor servers custval assembles from Ballista's
//! public services when TLS or a cluster secret is on. Ballista 55's own
//! process functions serve plain gRPC only: the scheduler through
//! `axum::serve` on a plain listener, the executor's task server through a
//! plain `tonic` builder with no hook for TLS or a layer. So here the
//! scheduler's gRPC service gets a TLS server with the secret check in front
//! of every request, and the executor runs pull-based (it asks the scheduler
//! for tasks over a TLS channel carrying the secret, so it listens for no
//! task RPCs at all) and serves its Flight data (results, shuffles) over TLS,
//! with the check of the secret-derived Flight token in front of every
//! request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::serde::{
    BallistaCodec, BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec,
};
use ballista_core::utils::{create_grpc_server, GrpcServerConfig};
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::execution_engine::DefaultExecutionEngine;
use ballista_executor::execution_loop::poll_loop;
use ballista_executor::executor::Executor;
use ballista_executor::executor_process::{structure_executor_metadata, ExecutorProcessConfig};
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::health::ExecutorHealth;
use ballista_executor::metrics::LoggingMetricsCollector;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::create_scheduler;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tonic::service::InterceptorLayer;
use tonic::transport::Server;

use super::guard::Guard;
use super::{cluster_err, runtime};
use crate::error::{Error, Result};

/// A Ballista server builder with Ballista's settings and this guard's TLS.
fn server(guard: &Guard, address: &str) -> Result<Server> {
    let server = create_grpc_server(&GrpcServerConfig::default());
    match guard.server_tls() {
        Some(tls) => server.tls_config(tls).map_err(|e| cluster_err(address, e)),
        None => Ok(server),
    }
}

/// Serve the scheduler on `addr` with TLS and the secret check, until stopped.
pub(super) async fn scheduler(
    cluster: BallistaCluster,
    addr: SocketAddr,
    config: Arc<SchedulerConfig>,
    guard: &Guard,
) -> Result<()> {
    let address = addr.to_string();
    config.validate().map_err(|e| cluster_err(&address, e))?;
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config.clone())
        .await
        .map_err(|e| cluster_err(&address, e))?;
    let service = SchedulerGrpcServer::new(scheduler)
        .max_encoding_message_size(config.grpc_server_max_encoding_message_size as usize)
        .max_decoding_message_size(config.grpc_server_max_decoding_message_size as usize);
    tracing::info!(%address, tls = guard.tls(), secret = guard.has_secret(), "custval scheduler listening");
    server(guard, &address)?
        .layer(InterceptorLayer::new(guard.check("scheduler")))
        .add_service(service)
        .serve(addr)
        .await
        .map_err(|e| cluster_err(&address, e))
}

/// The channel to the scheduler, retried while it starts (up to the
/// config's connect timeout); a refused secret fails at once.
async fn scheduler_channel(
    opt: &ExecutorProcessConfig,
    guard: &Guard,
) -> Result<tonic::transport::Channel> {
    let (host, port) = (opt.scheduler_host.as_str(), opt.scheduler_port);
    let deadline =
        Instant::now() + Duration::from_secs(opt.scheduler_connect_timeout_seconds as u64);
    loop {
        match guard.probe(host, port).await {
            Ok(channel) => return Ok(channel),
            Err(e @ Error::ClusterRefused { .. }) => return Err(e),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(e) => {
                tracing::warn!("{e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Run a pull-based executor described by `opt` (its runtime producer sets
/// the stores and temp folder; `memory_limit` bytes are shared by its
/// task slots), with TLS on Flight and on its channel to the scheduler; with
/// a secret, its Flight port requires the Flight token and its own Flight
/// fetches (shuffles) send it.
pub(super) async fn executor(
    opt: ExecutorProcessConfig,
    memory_limit: usize,
    guard: &Guard,
) -> Result<()> {
    let scheduler = format!("{}:{}", opt.scheduler_host, opt.scheduler_port);
    let opt = Arc::new(opt);
    let vcores = match opt.vcores {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let mut metadata = structure_executor_metadata(&opt, vcores as u32);
    // No task server: the scheduler has nothing to dial back.
    metadata.grpc_port = 0;
    let work_dir = opt.work_dir.clone().unwrap_or_default();
    let per_task = memory_limit / vcores;
    let temp = std::path::PathBuf::from(&work_dir);
    let runtime_producer: RuntimeProducer = Arc::new(move |_| runtime(Some(&temp), Some(per_task)));
    let endpoint = guard.endpoint_override();
    let tls = guard.tls();
    let config_producer: ConfigProducer = Arc::new(move || {
        let config = SessionConfig::new_with_ballista().with_ballista_use_tls(tls);
        match &endpoint {
            Some(f) => config.with_ballista_override_create_grpc_client_endpoint(f.clone()),
            None => config,
        }
    });
    let executor = Arc::new(Executor::new(
        metadata,
        &work_dir,
        runtime_producer,
        config_producer,
        opt.override_function_registry.clone().unwrap_or_default(),
        Arc::new(LoggingMetricsCollector::default()),
        vcores,
        Arc::new(DefaultExecutionEngine::new()),
    ));

    let flight_address = format!("{}:{}", opt.bind_host, opt.port);
    let addr: SocketAddr = flight_address
        .parse()
        .map_err(|e| Error::Argument(format!("executor address {flight_address}: {e}")))?;
    let flight = FlightServiceServer::new(BallistaFlightService::new(work_dir.clone()))
        .max_encoding_message_size(opt.grpc_max_encoding_message_size as usize)
        .max_decoding_message_size(opt.grpc_max_decoding_message_size as usize);
    let name = format!(
        "executor {}:{}",
        opt.external_host.as_deref().unwrap_or(&opt.bind_host),
        opt.port
    );
    let flight = server(guard, &flight_address)?
        .layer(InterceptorLayer::new(guard.flight_check(&name)))
        .add_service(flight)
        .serve(addr);
    tracing::info!(address = %flight_address, tls = tls, secret = guard.has_secret(), "custval executor: Flight listening");
    let flight = tokio::spawn(flight);

    let channel = scheduler_channel(&opt, guard).await?;
    let client = SchedulerGrpcClient::with_interceptor(channel, guard.interceptor())
        .max_encoding_message_size(opt.grpc_max_encoding_message_size as usize)
        .max_decoding_message_size(opt.grpc_max_decoding_message_size as usize);
    let codec: BallistaCodec<LogicalPlanNode, PhysicalPlanNode> = BallistaCodec::new(
        Arc::new(BallistaLogicalExtensionCodec::default()),
        Arc::new(BallistaPhysicalExtensionCodec::default()),
    );
    tracing::info!(scheduler = %scheduler, "custval executor polling the scheduler for tasks");
    let polling = poll_loop(client, executor, codec, None, None, ExecutorHealth::new());
    tokio::select! {
        served = flight => match served {
            Ok(r) => r.map_err(|e| cluster_err(&flight_address, e)),
            Err(e) => Err(cluster_err(&flight_address, e)),
        },
        polled = polling => polled.map_err(|e| cluster_err(&scheduler, e)),
    }
}
