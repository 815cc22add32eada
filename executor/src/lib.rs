//! Strata's executor: Ballista's executor with every Strata function and the plan
//! codec installed, an explicit work directory, `/healthz` and `/readyz`, and, with a
//! cluster identity, both its ports over mutual TLS.

mod health;
mod mutual_tls;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::extension::{SessionConfigExt, ballista_scalar_functions};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::default_config_producer;
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_executor::health::ExecutorHealth;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use strata_engine::codec::StrataPhysicalCodec;
use strata_engine::scheduler_client::Credentials;
use strata_engine::{EngineError, scheduler_client};
use strata_storage::StoreRegistry;

/// How to run an executor.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `host:port`.
    pub scheduler: String,
    /// The address to listen on and to advertise to the scheduler.
    pub host: String,
    /// Arrow Flight port for shuffle and results; 0 picks a free one.
    pub flight_port: u16,
    /// Executor gRPC port for tasks the scheduler pushes; 0 picks a free one.
    pub grpc_port: u16,
    /// Port of `/healthz` and `/readyz`; none when not given.
    pub health_port: Option<u16>,
    /// Where shuffle files and spills go; removed when the executor stops cleanly.
    pub work_dir: PathBuf,
    /// Tasks run at once; 0 means one per core.
    pub concurrent_tasks: usize,
    /// Seconds between heartbeats; well under the scheduler's executor timeout, or
    /// the scheduler counts an idle executor as lost.
    pub heartbeat_interval_seconds: u64,
    /// What it presents to the scheduler: a token, and the CA to trust over TLS.
    pub credentials: Credentials,
}

/// Why an executor could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scheduler could not be reached, or refused this executor.
    #[error(transparent)]
    Connect(#[from] EngineError),
    /// An address given to the executor is not one.
    #[error("{0}")]
    Address(String),
    #[error("cannot use {}: {source}", path.display())]
    WorkDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find a free port on {host}: {source}")]
    Port {
        host: String,
        source: std::io::Error,
    },
    #[error("cannot serve health checks on {address}: {source}")]
    Health {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("Ballista's executor failed: {0}")]
    Ballista(ballista_core::error::BallistaError),
}

/// Checks the scheduler, then runs the executor until the process is stopped.
pub async fn run(options: ExecutorOptions) -> Result<(), Error> {
    let name = format!("{}:{}", options.host, std::process::id());
    scheduler_client::connect(&options.scheduler, "executor", &name, &options.credentials).await?;
    let (scheduler_host, scheduler_port) = split_address(&options.scheduler)?;
    std::fs::create_dir_all(&options.work_dir).map_err(|source| Error::WorkDir {
        path: options.work_dir.clone(),
        source,
    })?;
    let health = ExecutorHealth::new();
    if let Some(port) = options.health_port {
        let address: SocketAddr = format!("{}:{port}", options.host)
            .parse()
            .map_err(|error| Error::Address(format!("bad health address: {error}")))?;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| Error::Health { address, source })?;
        tokio::spawn(health::serve(listener, health.clone()));
    }

    // Ballista's default registry leaves out DataFusion's nested functions (cardinality, ...).
    let mut functions = BallistaFunctionRegistry::default();
    for udf in ballista_scalar_functions()
        .into_iter()
        .chain(strata_udfs::scalar_functions())
    {
        functions
            .scalar_functions
            .insert(udf.name().to_owned(), udf);
    }
    for udaf in strata_udfs::aggregate_functions() {
        functions
            .aggregate_functions
            .insert(udaf.name().to_owned(), udaf);
    }
    let port = free_port(&options.host, options.flight_port)?;
    let grpc_port = free_port(&options.host, options.grpc_port)?;
    let endpoints =
        scheduler_client::endpoint_override(&options.scheduler, &options.credentials, true);
    let mut config = ExecutorProcessConfig {
        bind_host: options.host.clone(),
        external_host: Some(options.host.clone()),
        port,
        grpc_port,
        scheduler_host,
        scheduler_port,
        vcores: options.concurrent_tasks,
        executor_heartbeat_interval_seconds: options.heartbeat_interval_seconds.max(1),
        work_dir: Some(options.work_dir.display().to_string()),
        override_function_registry: Some(Arc::new(functions)),
        override_runtime_producer: Some(runtime_producer(options.work_dir.clone())),
        override_physical_codec: Some(StrataPhysicalCodec::shared()),
        override_create_grpc_client_endpoint: endpoints.clone(),
        health,
        ..ExecutorProcessConfig::default()
    };
    let mut task_port = None;
    if let Some(tls) = &options.credentials.cluster {
        let (public, internal) = mutual_tls::addresses(&options.host)?;
        config.bind_host = internal.to_string();
        config.override_arrow_flight_service = Some(mutual_tls::data_port(public, tls.clone()));
        // Shuffle reads run in tasks, with the session settings made here.
        config.override_config_producer = endpoints.map(|endpoints| -> ConfigProducer {
            Arc::new(move || {
                default_config_producer()
                    .with_ballista_override_create_grpc_client_endpoint(endpoints.clone())
            })
        });
        task_port = Some(
            mutual_tls::task_port(
                SocketAddr::new(public, grpc_port),
                SocketAddr::new(internal, grpc_port),
                tls,
            )
            .await?,
        );
    }
    let outcome = start_executor_process(Arc::new(config)).await;
    if let Some(task_port) = task_port {
        task_port.abort();
    }
    let _ = std::fs::remove_dir_all(&options.work_dir);
    outcome.map_err(Error::Ballista)
}

/// Each session's runtime: spill files in the work directory, and every store Strata
/// knows, opened from the URLs the plans name and the executor's environment.
fn runtime_producer(work_dir: PathBuf) -> RuntimeProducer {
    Arc::new(move |_| {
        let runtime = RuntimeEnvBuilder::new()
            .with_temp_file_path(work_dir.clone())
            .with_object_store_registry(StoreRegistry::shared())
            .build()?;
        Ok(Arc::new(runtime))
    })
}

fn split_address(address: &str) -> Result<(String, u16), Error> {
    let bare = address.rsplit("://").next().unwrap_or(address);
    let (host, port) = bare
        .rsplit_once(':')
        .ok_or_else(|| Error::Address(format!("{address}: expected host:port")))?;
    let port = port
        .trim_end_matches('/')
        .parse()
        .map_err(|_| Error::Address(format!("{address}: {port} is not a port")))?;
    Ok((host.to_owned(), port))
}

/// The port asked for, or a free one if 0 (Ballista advertises the port it is given).
fn free_port(host: &str, port: u16) -> Result<u16, Error> {
    if port != 0 {
        return Ok(port);
    }
    TcpListener::bind((host, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|source| Error::Port {
            host: host.to_owned(),
            source,
        })
}
