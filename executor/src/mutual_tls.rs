//! The executor's two ports over mutual TLS, with the cluster's identity.
//!
//! Ballista 55 serves an executor's task port itself, in plain gRPC, on the address it
//! advertises. With a cluster identity, Ballista's task server listens on a loopback
//! address instead, and this module serves the advertised port: TLS that admits only
//! callers with a certificate of the cluster's CA, forwarding each call to the loopback
//! server. The data port (shuffle and results) is served here through Ballista's hook
//! for it, with the same TLS.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::error::BallistaError;
use ballista_core::serde::protobuf::executor_grpc_server::SERVICE_NAME;
use ballista_executor::ArrowFlightServerProvider;
use ballista_executor::flight_service::BallistaFlightService;
use strata_engine::cluster_tls::ClusterTls;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};

use crate::Error;

/// The advertised address, and where Ballista's own task server listens when the
/// advertised port is served here: a loopback address other than the advertised one,
/// so both can hold the same port.
pub(crate) fn addresses(public: &str) -> Result<(IpAddr, IpAddr), Error> {
    let public: IpAddr = public.parse().map_err(|_| {
        Error::Address(format!(
            "--host {public}: with a cluster identity the executor needs an IP address to serve on"
        ))
    })?;
    if public.is_unspecified() {
        return Err(Error::Address(format!(
            "--host {public}: with a cluster identity the executor serves on the address it \
             advertises, which cannot be a wildcard"
        )));
    }
    let first = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let loopback = if public == first {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
    } else {
        first
    };
    Ok((public, loopback))
}

/// Ballista's data port (its own Flight service) on `host` over mutual TLS.
pub(crate) fn data_port(host: IpAddr, tls: ClusterTls) -> Arc<ArrowFlightServerProvider> {
    Arc::new(move |work_dir, address, mut shutdown, _config| {
        let address = SocketAddr::new(host, address.port());
        let tls = tls.server();
        tokio::spawn(async move {
            tracing::info!("data port on {address}, mutual TLS");
            Server::builder()
                .tls_config(tls)
                .map_err(BallistaError::TonicError)?
                .add_service(
                    FlightServiceServer::new(BallistaFlightService::new(work_dir))
                        .max_decoding_message_size(MAX_MESSAGE)
                        .max_encoding_message_size(MAX_MESSAGE),
                )
                .serve_with_shutdown(address, shutdown.recv())
                .await
                .map_err(BallistaError::TonicError)
        })
    })
}

/// Ballista's default message bound on an executor's ports.
const MAX_MESSAGE: usize = 16 << 20;

/// Serves the task port at `public` over mutual TLS, forwarding to Ballista's task
/// server at `internal`; bound before it returns, so the scheduler's check that the
/// port answers cannot come first.
pub(crate) async fn task_port(
    public: SocketAddr,
    internal: SocketAddr,
    tls: &ClusterTls,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let listener = tokio::net::TcpListener::bind(public)
        .await
        .map_err(|source| Error::Port {
            host: public.to_string(),
            source,
        })?;
    let forward = Endpoint::from_shared(format!("http://{internal}"))
        .map_err(|error| Error::Address(error.to_string()))?
        .connect_lazy();
    let router = Server::builder()
        .tls_config(tls.server())
        .map_err(|error| Error::Address(format!("the cluster identity: {error}")))?
        .add_service(TaskPort(forward));
    tracing::info!("task port on {public}, mutual TLS, forwarding to {internal}");
    Ok(tokio::spawn(async move {
        let incoming = TcpIncoming::from(listener);
        if let Err(error) = router.serve_with_incoming(incoming).await {
            tracing::error!("the task port on {public} stopped: {error}");
        }
    }))
}

/// Every call of Ballista's executor service, passed on to its loopback server.
#[derive(Clone)]
struct TaskPort(Channel);

impl NamedService for TaskPort {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<Body>> for TaskPort {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let mut channel = self.0.clone();
        Box::pin(async move {
            let forwarded = async {
                std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(request).await
            };
            Ok(forwarded.await.unwrap_or_else(|error| {
                Status::unavailable(format!("the executor's task service: {error}")).into_http()
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_server_listens_on_a_loopback_other_than_the_advertised_address() {
        let loopback = |host| addresses(host).map(|(_, loopback)| loopback.to_string());
        assert_eq!(loopback("10.0.0.7").unwrap(), "127.0.0.1");
        assert_eq!(loopback("127.0.0.1").unwrap(), "127.0.0.2");
        assert!(loopback("0.0.0.0").is_err());
        assert!(loopback("exec-1.local").is_err());
    }
}
