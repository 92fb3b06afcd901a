//! The engine: the one place that builds a DataFusion session (memory pool
//! with spilling, target partitions, custval's functions), local or as the
//! client of a cluster. Object stores are [`crate::storage`]'s.

use std::sync::Arc;

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{Error, Result};

/// Settings of one session.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Bytes the memory pool may hand out before operators spill to disk.
    pub memory_limit: usize,
    /// Parallelism; the core count by default.
    pub target_partitions: usize,
    /// `ballista://HOST:PORT` of a scheduler: run on that cluster instead of here.
    pub cluster: Option<String>,
    /// TLS files of the client side of `cluster` (none: plain gRPC).
    pub cluster_tls: crate::security::TlsFiles,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memory_limit: default_memory_limit(),
            target_partitions: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            cluster: None,
            cluster_tls: Default::default(),
        }
    }
}

/// A quarter of physical memory, at most 4 GiB, at least 256 MiB: room for
/// the process around the pool and for Arrow buffers the pool does not see.
pub fn default_memory_limit() -> usize {
    const GIB: usize = 1 << 30;
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<usize>().ok())
        })
        .map(|kb| kb * 1024);
    match total {
        Some(t) => (t / 4).clamp(GIB / 4, 4 * GIB),
        None => 2 * GIB,
    }
}

/// Parse sizes such as `512MiB`, `4GB`, `2g`, `1073741824`.
pub fn parse_size(raw: &str) -> Result<usize> {
    let s = raw.trim().to_ascii_lowercase();
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let num: f64 = num
        .parse()
        .map_err(|_| Error::Argument(format!("invalid size {raw:?} (e.g. 4GiB, 512MiB)")))?;
    let mult: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(Error::Argument(format!("invalid size unit in {raw:?}"))),
    };
    let bytes = num * mult;
    if !(bytes.is_finite() && bytes >= 1024.0 * 1024.0) {
        return Err(Error::Argument(format!("size {raw:?} is below 1MiB")));
    }
    Ok(bytes as usize)
}

/// Build a session with custval's functions registered.
pub fn session(opts: &EngineOptions) -> Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(opts.memory_limit)))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::OsTmpDirectory),
        )
        .build_arc()?;
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(configure(SessionConfig::new(), opts))
        .with_runtime_env(runtime)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(crate::udf::summary::SinglePhaseSummary))
        .build();
    let ctx = SessionContext::new_with_state(state);
    crate::udf::register_all(&ctx);
    Ok(ctx)
}

/// The session settings every engine shares, local or cluster.
pub fn configure(config: SessionConfig, opts: &EngineOptions) -> SessionConfig {
    config
        .with_target_partitions(opts.target_partitions.max(1))
        .with_information_schema(true)
        .set_bool("datafusion.execution.parquet.pushdown_filters", false)
        .set_bool("datafusion.sql_parser.enable_ident_normalization", true)
}

/// Open the session a command runs in: local, or the client of a Ballista
/// cluster when `opts.cluster` names a scheduler.
pub async fn open(opts: &EngineOptions) -> Result<SessionContext> {
    match &opts.cluster {
        None => session(opts),
        #[cfg(feature = "cluster")]
        Some(url) => {
            crate::cluster::connect(
                url,
                configure(SessionConfig::new(), opts),
                &opts.cluster_tls,
            )
            .await
        }
        #[cfg(not(feature = "cluster"))]
        Some(url) => Err(Error::Argument(format!(
            "--engine {url}: this custval was built without the `cluster` feature"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("4g").unwrap(), 4 << 30);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("10").is_err());
    }
}
