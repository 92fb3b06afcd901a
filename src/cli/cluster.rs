//! `custval scheduler` and `custval executor`: the processes of a cluster.

use std::path::PathBuf;

use clap::Args;

use super::TlsArgs;
use crate::engine::{default_memory_limit, parse_size};
use crate::error::Result;

/// `custval scheduler ...`
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_host: String,
    /// Host name executors and clients use to reach this scheduler.
    #[arg(long, default_value = "localhost")]
    pub external_host: String,
    /// gRPC port of the scheduler.
    #[arg(long, default_value_t = 50050)]
    pub port: u16,
    /// TLS (and mutual TLS with --tls-ca).
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// `custval executor --work-dir DIR ...`
#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_host: String,
    /// Host name the scheduler, clients and other executors use to reach this one.
    #[arg(long, default_value = "localhost")]
    pub external_host: String,
    /// Arrow Flight port (results and shuffle data).
    #[arg(long, default_value_t = 50051)]
    pub port: u16,
    /// gRPC port (tasks from the scheduler).
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
    /// Host name of the scheduler.
    #[arg(long, default_value = "localhost")]
    pub scheduler_host: String,
    /// Port of the scheduler.
    #[arg(long, default_value_t = 50050)]
    pub scheduler_port: u16,
    /// Shuffle files and spills (created if missing).
    #[arg(long)]
    pub work_dir: PathBuf,
    /// Tasks at once (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub concurrent_tasks: usize,
    /// Memory all tasks may use before spilling (e.g. 4GiB).
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// TLS (and mutual TLS with --tls-ca).
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// `custval scheduler`: run until stopped.
pub async fn scheduler(args: SchedulerArgs) -> Result<()> {
    crate::cluster::run_scheduler(crate::cluster::SchedulerOptions {
        bind_host: args.bind_host,
        external_host: args.external_host,
        port: args.port,
        tls: args.tls.files(),
    })
    .await
}

/// `custval executor`: run until stopped.
pub async fn executor(args: ExecutorArgs) -> Result<()> {
    let memory_limit = match &args.memory_limit {
        Some(m) => parse_size(m)?,
        None => default_memory_limit(),
    };
    crate::cluster::run_executor(crate::cluster::ExecutorOptions {
        bind_host: args.bind_host,
        external_host: args.external_host,
        port: args.port,
        grpc_port: args.grpc_port,
        scheduler_host: args.scheduler_host,
        scheduler_port: args.scheduler_port,
        work_dir: args.work_dir,
        concurrent_tasks: args.concurrent_tasks,
        memory_limit,
        tls: args.tls.files(),
    })
    .await
}
