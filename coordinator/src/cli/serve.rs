//! `coordinator serve`: the store, the two services, their security and limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ibsweep_proto::connect::token_from;

use super::{CliResult, shutdown_signal};
use crate::scheduler::{Limits, Timing};
use crate::security::{Security, ServeLimits, TlsFiles};
use crate::service::{self, CheckpointSettings, Config, ServeOptions};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. A non-loopback address needs --token (or --insecure).
    #[arg(long, env = "IBSWEEP_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// The store's directory (created if missing).
    #[arg(long, env = "IBSWEEP_DATA_DIR", default_value = "./ibsweep-data")]
    data_dir: PathBuf,
    /// Keep each finished job's last checkpoint (its trained weights) for
    /// `coordinator checkpoint JOB --out FILE`; by default checkpoints go when a job ends.
    #[arg(long, env = "IBSWEEP_KEEP_FINAL_CHECKPOINTS")]
    keep_final_checkpoints: bool,
    /// Largest checkpoint a worker may upload, in bytes.
    #[arg(long, env = "IBSWEEP_MAX_CHECKPOINT_BYTES", default_value_t = crate::checkpoints::DEFAULT_MAX_CHECKPOINT_BYTES)]
    max_checkpoint_bytes: u64,
    /// Seconds without a heartbeat after which a job goes back to pending.
    #[arg(long, env = "IBSWEEP_LEASE_TTL", default_value_t = 60)]
    lease_ttl: u64,
    /// Most jobs one submitted sweep may have.
    #[arg(long, env = "IBSWEEP_MAX_POINTS", default_value_t = ibsweep_shared::grid::DEFAULT_MAX_POINTS)]
    max_points: u64,
    /// Seconds after which a silent worker drops out of `status` and `workers`.
    #[arg(long, env = "IBSWEEP_WORKER_TIMEOUT", default_value_t = 600)]
    worker_timeout: u64,
    /// Most workers registered at once; more are refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "IBSWEEP_MAX_WORKERS", default_value_t = 10_000)]
    max_workers: u64,
    /// The worker token: the only token the worker service accepts (default: the user token).
    #[arg(long, env = "IBSWEEP_WORKER_TOKEN", hide_env_values = true)]
    worker_token: Option<String>,
    /// Read the worker token from this file instead.
    #[arg(long, env = "IBSWEEP_WORKER_TOKEN_FILE", value_name = "FILE")]
    worker_token_file: Option<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key, both services speak TLS only.
    #[arg(long, env = "IBSWEEP_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "IBSWEEP_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Workers must present a certificate signed by this CA (mutual TLS).
    #[arg(long, env = "IBSWEEP_TLS_CLIENT_CA", value_name = "PEM", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Allow a non-loopback --listen without any token (a trusted network only).
    #[arg(long, env = "IBSWEEP_INSECURE")]
    insecure: bool,
    /// Open connections at once; more are closed at accept.
    #[arg(long, env = "IBSWEEP_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Concurrent requests (HTTP/2 streams) per connection; more wait for a free stream.
    #[arg(long, env = "IBSWEEP_MAX_STREAMS", default_value_t = 64)]
    max_streams: u32,
    /// Seconds a request may run before it is cancelled.
    #[arg(long, env = "IBSWEEP_REQUEST_TIMEOUT", default_value_t = 120)]
    request_timeout: u64,
    /// Largest message the sweep service accepts, in bytes (grids are at most 1 MiB).
    #[arg(long, env = "IBSWEEP_MAX_REQUEST_BYTES", default_value_t = 2 << 20)]
    max_request_bytes: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (plain HTTP: bind it to loopback or a
    /// cluster-internal address).
    #[arg(long, env = "IBSWEEP_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Serve the read-only HTTP data API (status, results as CSV, JSON lines or Parquet,
    /// workers) at http://ADDR/api/v1/, guarded by the user token; the same address rules
    /// as --listen.
    #[arg(long, env = "IBSWEEP_HTTP_LISTEN", value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// Largest message the worker service accepts, in bytes (histogram pieces are at most 1 MiB).
    #[arg(long, env = "IBSWEEP_MAX_UPLOAD_BYTES", default_value_t = 2 << 20)]
    max_upload_bytes: usize,
}

pub async fn run(args: ServeArgs, user_token: Option<String>) -> CliResult<()> {
    if args.lease_ttl == 0 {
        anyhow::bail!("--lease-ttl must be at least 1 second");
    }
    let security = Security {
        user_token,
        worker_token: token_from(args.worker_token, args.worker_token_file.as_deref(), "--worker-token")?,
        tls: args.tls_cert.map(|cert| TlsFiles {
            cert,
            key: args.tls_key.expect("clap requires --tls-key with --tls-cert"),
            client_ca: args.tls_client_ca,
        }),
    };
    security.check(args.listen, args.insecure)?;
    if let Some(http) = args.http_listen {
        security.check(http, args.insecure)?;
        if security.tls.is_some() && !http.ip().is_loopback() {
            anyhow::bail!(
                "--http-listen {http}: the HTTP API speaks plain HTTP, and with --tls-cert the tokens must not cross \
                 a network in clear; bind it to loopback (behind a TLS proxy) or leave it off"
            );
        }
    }
    if security.user_token.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!("--insecure: serving {} without any token", args.listen);
    }
    let listen = args.listen;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let timing = Timing {
        lease_ttl_ms: args.lease_ttl * 1000,
        heartbeat_interval_ms: (args.lease_ttl * 1000 / 6).max(500),
        worker_timeout_ms: args.worker_timeout.saturating_mul(1000),
    };
    let limits = ServeLimits {
        max_connections: args.max_connections.max(1),
        max_streams: args.max_streams.max(1),
        request_timeout: Duration::from_secs(args.request_timeout.max(1)),
        max_request_bytes: args.max_request_bytes,
        max_upload_bytes: args.max_upload_bytes,
    };
    let shutdown = async {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight, flushing the store");
    };
    tracing::info!("store at {}", args.data_dir.display());
    let config = Config {
        data_dir: args.data_dir,
        checkpoints: CheckpointSettings {
            keep_final: args.keep_final_checkpoints,
            max_bytes: args.max_checkpoint_bytes,
        },
        timing,
        limits: Limits { max_points: args.max_points, max_workers: args.max_workers },
        options: ServeOptions { security, limits },
        metrics_listen: args.metrics_listen,
        http_listen: args.http_listen,
    };
    service::serve(listener, config, shutdown).await?;
    Ok(())
}
