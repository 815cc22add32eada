//! Strata's scheduler: Ballista's scheduler with every Strata function and the plan
//! codec installed, and the pipeline service on the same port, which runs submitted
//! pipelines here so a run goes on when its client goes away.

mod error;
mod pipeline_service;
mod runs;

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::utils::{default_config_producer, default_session_builder};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::create_scheduler;
use datafusion::execution::FunctionRegistry;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use strata_proto::pipeline::pipeline_service_server::PipelineServiceServer;
use strata_sql::codec::StrataPhysicalCodec;
use tokio::net::TcpListener;

pub use error::{Error, Result};
pub use pipeline_service::VERSION;

/// How to run a scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Where to listen for executors, clients and pipeline submissions.
    pub listen: SocketAddr,
    /// Seconds without a heartbeat after which an executor counts as lost and its tasks run again.
    pub executor_timeout_seconds: u64,
}

/// A scheduler bound to its port, not yet serving.
pub struct Scheduler {
    listener: TcpListener,
    options: SchedulerOptions,
}

impl Scheduler {
    /// Binds the port, so the address is known (and taken) before serving starts.
    pub async fn bind(options: SchedulerOptions) -> Result<Self> {
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|source| Error::Bind {
                address: options.listen,
                source,
            })?;
        Ok(Self { listener, options })
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
        let mut config = SchedulerConfig {
            bind_host: address.ip().to_string(),
            external_host: address.ip().to_string(),
            bind_port: address.port(),
            executor_timeout_seconds: self.options.executor_timeout_seconds,
            expire_dead_executor_interval_seconds: (self.options.executor_timeout_seconds / 3)
                .clamp(1, 15),
            no_executors_grace_period_seconds: self.options.executor_timeout_seconds,
            // Spread a stage's tasks over the executors, so they write in parallel.
            task_distribution: TaskDistributionPolicy::RoundRobin,
            ..SchedulerConfig::default()
        };
        config.override_session_builder = Some(Arc::new(|config| {
            let mut state = default_session_builder(config)?;
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
        let config = Arc::new(config);
        config.validate().map_err(Error::Ballista)?;
        let cluster = BallistaCluster::new_from_config(&config)
            .await
            .map_err(Error::Ballista)?;
        let scheduler =
            create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::clone(&config))
                .await
                .map_err(Error::Ballista)?;
        let max_message = config.grpc_server_max_decoding_message_size as usize;
        let ballista = SchedulerGrpcServer::new(scheduler.clone())
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        let pipelines = PipelineServiceServer::new(pipeline_service::PipelineService::new(
            scheduler,
            format!("http://{}", self.client_address()?),
        ));
        tracing::info!("Strata scheduler {VERSION} listening on {address}");
        tonic::transport::Server::builder()
            .add_service(ballista)
            .add_service(pipelines)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(self.listener),
                shutdown,
            )
            .await
            .map_err(Error::Serve)
    }
}
