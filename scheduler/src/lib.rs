//! Strata's scheduler: Ballista's scheduler with every Strata function and the plan
//! codec installed, and the pipeline service on the same port, which runs submitted
//! pipelines here so a run goes on when its client goes away; plus the executor
//! autoscaler and the Prometheus metrics.

mod access;
mod autoscaler;
mod cluster_log;
mod cluster_state;
mod cluster_view;
mod draining;
mod error;
mod jobs;
mod metrics;
mod pipeline_service;
mod runs;

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::utils::{default_config_producer, default_session_builder};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::create_scheduler;
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use strata_engine::Engine;
use strata_engine::cluster_tls::ClusterTls;
use strata_engine::codec::StrataPhysicalCodec;
use strata_engine::scheduler_client::{self, Credentials};
use strata_orchestrate::Orchestrator;
use strata_proto::pipeline::pipeline_service_server::PipelineServiceServer;
use strata_storage::{StoreRegistry, Warehouse};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, ServerTlsConfig};

use crate::access::Gate;

use crate::autoscaler::Autoscaler;
use crate::cluster_log::ClusterLog;
use crate::cluster_state::StrataClusterState;
use crate::cluster_view::ClusterView;
use crate::draining::Draining;
use crate::metrics::Metrics;
use crate::runs::Runs;

pub use access::{Access, Tokens, TokensError};
pub use autoscaler::Autoscale;
pub use error::{Error, Result};
pub use jobs::JobCanceller;
pub use pipeline_service::VERSION;

/// How to run a scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Where to listen for executors, clients and pipeline submissions.
    pub listen: SocketAddr,
    /// Seconds without a heartbeat after which an executor counts as lost and its tasks run again.
    pub executor_timeout_seconds: u64,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; none when not given.
    pub metrics_listen: Option<SocketAddr>,
    /// The host executors send task results to [default: the listen address, or this
    /// machine's hostname when that is a wildcard].
    pub advertise_host: Option<String>,
    /// The tokens every call must present; none lets anyone who reaches the port call it.
    pub tokens: Tokens,
    /// Serve the port over TLS with this certificate and key (PEM).
    pub tls: Option<ServerTls>,
    /// The cluster's identity, presented to the executors when their ports speak mutual TLS.
    pub cluster_tls: Option<ClusterTls>,
    /// The warehouse whose schedules it runs on the cluster and whose tables its
    /// console shows.
    pub warehouse: Option<Warehouse>,
    /// Serve the web console (it needs the warehouse).
    pub console: Option<ConsoleSettings>,
}

/// Where the scheduler serves its web console, and to whom.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub listen: SocketAddr,
    /// The Flight SQL server's users; none leaves the console open (loopback only).
    pub users: Vec<strata_flightsql::User>,
    /// Serve an open console on an address others can reach.
    pub insecure: bool,
}

/// A certificate and its key, PEM, for serving the scheduler's port over TLS.
#[derive(Clone)]
pub struct ServerTls {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    /// What this process's own clients trust: the CA the certificate chains to; none
    /// trusts the certificate itself (a self-signed one).
    pub ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls(<redacted>)")
    }
}

/// How often the cluster is observed for the metrics and the autoscaler.
const OBSERVE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A scheduler bound to its ports, not yet serving.
pub struct Scheduler {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    console_listener: Option<TcpListener>,
    options: SchedulerOptions,
    autoscale: Option<Autoscale>,
    /// What this process's own clients present: the runs and queries it starts and the
    /// executors it spawns. Its token is a full one of its own, made at start.
    own: Credentials,
    /// Cancels jobs by name once this scheduler serves.
    jobs: JobCanceller,
}

impl Scheduler {
    /// Binds the ports, so the addresses are known (and taken) before serving starts.
    pub async fn bind(options: SchedulerOptions) -> Result<Self> {
        let bind = |address: SocketAddr| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| Error::Bind { address, source })
        };
        let listener = bind(options.listen).await?;
        let metrics_listener = match options.metrics_listen {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        let console_listener = match &options.console {
            Some(console) => Some(bind(console.listen).await?),
            None => None,
        };
        let mut options = options;
        let own_token = if options.tokens.is_empty() {
            None
        } else {
            let token = random_token()?;
            options
                .tokens
                .add(&token, Access::Full)
                .map_err(Error::Token)?;
            Some(token)
        };
        let own = Credentials {
            token: own_token,
            tls_ca: options
                .tls
                .as_ref()
                .map(|tls| tls.ca.clone().unwrap_or_else(|| tls.cert.clone())),
            tls_domain: options.advertise_host.clone(),
            cluster: options.cluster_tls.clone(),
        };
        Ok(Self {
            listener,
            metrics_listener,
            console_listener,
            options,
            autoscale: None,
            own,
            jobs: JobCanceller::default(),
        })
    }

    /// What this process's own clients present (see [`Scheduler::bind`]).
    pub fn own_credentials(&self) -> &Credentials {
        &self.own
    }

    /// Cancels this scheduler's jobs by name, once it serves: for a Flight SQL server in
    /// this process, whose clients may go away mid-query.
    pub fn job_canceller(&self) -> JobCanceller {
        self.jobs.clone()
    }

    /// Scales the executors with this policy and backend while serving.
    pub fn autoscale(&mut self, autoscale: Autoscale) {
        self.autoscale = Some(autoscale);
    }

    /// The bound console address, if the console is served.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// The bound metrics address, if metrics are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|source| Error::Bind {
            address: self.options.listen,
            source,
        })
    }

    /// Where clients in this process reach the scheduler: loopback when bound to a wildcard.
    pub fn client_address(&self) -> Result<SocketAddr> {
        let address = self.local_addr()?;
        if !address.ip().is_unspecified() {
            return Ok(address);
        }
        let loopback: std::net::IpAddr = match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        Ok(SocketAddr::new(loopback, address.port()))
    }

    /// Serves Ballista's scheduler and the pipeline service until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let address = self.local_addr()?;
        let own_url = format!("http://{}", self.client_address()?);
        // Executors report task results to this host: a wildcard would send them to themselves.
        let external_host = match &self.options.advertise_host {
            Some(host) => host.clone(),
            None if address.ip().is_unspecified() => hostname(),
            None => address.ip().to_string(),
        };
        let mut config = SchedulerConfig {
            bind_host: address.ip().to_string(),
            external_host,
            bind_port: address.port(),
            executor_timeout_seconds: self.options.executor_timeout_seconds,
            expire_dead_executor_interval_seconds: (self.options.executor_timeout_seconds / 3)
                .clamp(1, 15),
            no_executors_grace_period_seconds: self.options.executor_timeout_seconds,
            // Ballista's default of 0 would drop a draining executor at its first heartbeat.
            executor_termination_grace_period: self.options.executor_timeout_seconds,
            // Spread a stage's tasks over the executors, so they write in parallel.
            task_distribution: TaskDistributionPolicy::RoundRobin,
            ..SchedulerConfig::default()
        };
        config.override_session_builder = Some(Arc::new(|config| {
            let mut state =
                SessionStateBuilder::new_from_existing(default_session_builder(config)?)
                    .with_runtime_env(StoreRegistry::runtime())
                    .build();
            for udf in strata_udfs::scalar_functions() {
                state.register_udf(udf)?;
            }
            for udaf in strata_udfs::aggregate_functions() {
                state.register_udaf(udaf)?;
            }
            Ok(state)
        }));
        config.override_config_producer = Some(Arc::new(default_config_producer));
        config.override_physical_codec = Some(StrataPhysicalCodec::shared());
        // Tasks go to the executors' ports with the cluster's identity, when they ask for it.
        config.override_create_grpc_client_endpoint =
            scheduler_client::endpoint_override(&own_url, &self.own, false);
        let config = Arc::new(config);
        config.validate().map_err(Error::Ballista)?;
        let cluster = BallistaCluster::new_from_config(&config)
            .await
            .map_err(Error::Ballista)?;
        let draining = Draining::default();
        let state = Arc::new(StrataClusterState::new(
            cluster.cluster_state(),
            draining.clone(),
        ));
        let cluster = BallistaCluster::new(Arc::clone(&state) as _, cluster.job_state());
        let scheduler =
            create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::clone(&config))
                .await
                .map_err(Error::Ballista)?;
        state.serve(scheduler.clone());
        self.jobs.serve(scheduler.clone());
        let max_message = config.grpc_server_max_decoding_message_size as usize;
        let tokens = Arc::new(self.options.tokens.clone());
        if tokens.is_empty() {
            tracing::warn!(
                "no tokens: anyone who can reach {address} can run pipelines and read what \
                 the executors can read; give the scheduler --token-file or STRATA_TOKEN"
            );
        }
        // Executors and query clients run work through Ballista's service: a full token only.
        let ballista = InterceptedService::new(
            SchedulerGrpcServer::new(scheduler.clone())
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
            Gate::new(Arc::clone(&tokens), Access::Full),
        );
        let metrics = Arc::new(Metrics::default());
        let schedules = self
            .options
            .warehouse
            .clone()
            .map(|warehouse| (warehouse, Engine::cluster(&own_url, &self.own)));
        let runs = Arc::new(Runs::default());
        let cluster_log = Arc::new(ClusterLog::default());
        let pipelines = PipelineServiceServer::with_interceptor(
            pipeline_service::PipelineService::new(
                scheduler.clone(),
                own_url,
                self.own.clone(),
                draining.clone(),
                Arc::clone(&metrics),
                Arc::clone(&runs),
            ),
            Gate::new(tokens, Access::ReadOnly),
        );
        let console = match (
            self.console_listener,
            &self.options.console,
            &self.options.warehouse,
        ) {
            (Some(listener), Some(settings), Some(warehouse)) => {
                let options = console_options(
                    warehouse,
                    settings,
                    Arc::clone(&cluster_log),
                    Arc::clone(&runs),
                )
                .await;
                strata_console::check_open(
                    listener.local_addr().map_err(|source| Error::Bind {
                        address: settings.listen,
                        source,
                    })?,
                    &options,
                )
                .map_err(|error| Error::Console(error.to_string()))?;
                Some(tokio::spawn(async move {
                    if let Err(error) =
                        strata_console::serve(listener, options, std::future::pending()).await
                    {
                        tracing::error!("the console stopped: {error}");
                    }
                }))
            }
            _ => None,
        };
        // The cluster is observed only for someone: the metrics port or the autoscaler.
        let observed =
            self.metrics_listener.is_some() || self.autoscale.is_some() || console.is_some();
        if let Some(listener) = self.metrics_listener {
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                if let Err(error) = metrics::serve(listener, metrics).await {
                    tracing::error!("the metrics server stopped: {error}");
                }
            });
        }
        let mut autoscaler = self.autoscale.map(Autoscaler::new);
        let observer = tokio::spawn(async move {
            if !observed {
                return;
            }
            let mut ticks = tokio::time::interval(OBSERVE_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let observation = ClusterView::observe(&scheduler, &draining).await;
                autoscaler::observed(
                    observation,
                    autoscaler.as_mut(),
                    &draining,
                    &metrics,
                    &cluster_log,
                )
                .await;
            }
        });
        let orchestrator = schedules.map(|(warehouse, engine)| {
            tokio::spawn(Orchestrator::new(warehouse, engine).run(std::future::pending()))
        });
        tracing::info!("Strata scheduler {VERSION} listening on {address}");
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = &self.options.tls {
            strata_engine::scheduler_client::install_crypto();
            server = server
                .tls_config(
                    ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert, &tls.key)),
                )
                .map_err(|error| Error::Tls(error.to_string()))?;
        }
        let served = server
            .add_service(ballista)
            .add_service(pipelines)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(self.listener),
                shutdown,
            )
            .await
            .map_err(Error::Serve);
        // Dropping the autoscaler stops the executor processes it started.
        observer.abort();
        let _ = observer.await;
        // Runs of schedules under way stop with the scheduler, as submitted runs do; their
        // reports say they were interrupted.
        for task in [orchestrator, console].into_iter().flatten() {
            task.abort();
            let _ = task.await;
        }
        served
    }
}

/// A fresh random token, URL-safe.
fn random_token() -> Result<String> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| Error::Token(error.to_string()))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// This machine's name, for executors on other machines to reach the scheduler by.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The console of a scheduler: its warehouse, the pipelines its schedules run, its
/// cluster and its runs under way.
async fn console_options(
    warehouse: &Warehouse,
    settings: &ConsoleSettings,
    cluster: Arc<ClusterLog>,
    runs: Arc<Runs>,
) -> strata_console::ConsoleOptions {
    let pipelines = match strata_orchestrate::Schedules::new(warehouse.clone())
        .list()
        .await
    {
        Ok(schedules) => schedules
            .into_iter()
            .map(|schedule| strata_console::Pipeline {
                sources: schedule.sources(),
                name: schedule.name,
            })
            .collect(),
        Err(error) => {
            tracing::warn!("the console shows no pipeline: {error}");
            Vec::new()
        }
    };
    strata_console::ConsoleOptions {
        warehouse: warehouse.clone(),
        pipelines,
        users: settings.users.clone(),
        insecure: settings.insecure,
        cluster: Some(Arc::new(move || cluster.snapshot())),
        live: Some(Arc::new(move || runs.progress())),
    }
}
