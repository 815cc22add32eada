//! Strata's read-only Arrow Flight SQL service: data scientists query the published
//! tables of a warehouse from ADBC, JDBC or pyarrow, each query on one snapshot.

mod audit;
mod auth;
mod config;
mod endpoint;
mod error;
mod handle;
mod interrupt;
mod limits;
mod metadata;
pub mod password;
mod query;
mod service;
mod status;
mod time_travel;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use strata_engine::Engine;
use strata_storage::Warehouse;
use strata_storage::audit::AuditLog;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

pub use config::{ServerConfig, TlsFiles, User, viewer_of};
pub use error::{Error, Result};
pub use limits::Limits;
pub use query::{CATALOG, DEFAULT_SCHEMA};

use crate::auth::Authenticator;
use crate::endpoint::Endpoint;
use crate::limits::Admission;
use crate::query::Planner;
use crate::service::StrataFlightSql;

/// How long a stopping server waits for its last audit records to be committed.
const AUDIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// A Flight SQL server bound to its address, ready to serve.
pub struct FlightSqlServer {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    endpoint: Endpoint,
    tls: Option<ServerTlsConfig>,
    admission: Arc<Admission>,
    /// Commits the audit trail; it ends once the service is gone.
    audit_writer: tokio::task::JoinHandle<()>,
}

impl FlightSqlServer {
    /// Checks the configuration and binds `addr` (port 0 picks a free port).
    /// Queries run on `engine`: in this process, or on a Ballista cluster.
    pub async fn bind(
        warehouse: Warehouse,
        addr: SocketAddr,
        config: ServerConfig,
        engine: Engine,
    ) -> Result<Self> {
        match warehouse.local_dir() {
            Some(dir) if !dir.is_dir() => return Err(Error::NoWarehouse(warehouse.to_string())),
            Some(_) => {}
            None => warehouse.check().await?,
        }
        if config.users.is_empty() && !addr.ip().is_loopback() && !config.insecure {
            return Err(Error::Unauthenticated { addr });
        }
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        let auth = Arc::new(Authenticator::new(config.users.clone(), config.token_ttl)?);
        let admission = Arc::new(Admission::new(config.limits.clone()));
        let (audit, audit_writer) = AuditLog::start(warehouse.clone());
        let planner = Planner::new(
            warehouse,
            config.show_quarantine,
            engine,
            Arc::clone(&admission),
            config.snapshot_refresh,
        );
        let user_limits = config
            .users
            .iter()
            .map(|user| (user.name.clone(), user.limits()))
            .collect();
        let service =
            StrataFlightSql::new(planner, auth, Arc::clone(&admission), user_limits, audit)
                .map_err(|status| Error::Tls(status.to_string()))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        Ok(Self {
            listener,
            local_addr,
            endpoint: Endpoint::new(service),
            tls,
            admission,
            audit_writer,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether clients must connect with TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` completes; then running queries are cancelled, so the
    /// server stops without waiting for them.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let admission = Arc::clone(&self.admission);
        let shutdown = async move {
            shutdown.await;
            let cancelled = admission.cancel_all();
            if cancelled > 0 {
                tracing::info!("stopping: cancelled {cancelled} running queries");
            }
        };
        let mut builder = Server::builder();
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls)?;
        }
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        builder
            .add_service(FlightServiceServer::new(self.endpoint))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        // The service is gone: the queries it recorded are committed before the end.
        if tokio::time::timeout(AUDIT_PATIENCE, self.audit_writer)
            .await
            .is_err()
        {
            tracing::warn!("the audit trail's last records were not committed in time");
        }
        Ok(())
    }
}

fn load_tls(files: &TlsFiles) -> Result<ServerTlsConfig> {
    // rustls cannot choose between the two crypto providers the dependency graph enables;
    // an error only means a provider is already installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })
    };
    let identity = Identity::from_pem(read(&files.cert)?, read(&files.key)?);
    Ok(ServerTlsConfig::new().identity(identity))
}
