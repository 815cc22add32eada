//! The error type of `strata-scheduler`.

use std::net::SocketAddr;

/// Result with the scheduler's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the scheduler could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("Ballista's scheduler failed: {0}")]
    Ballista(ballista_core::error::BallistaError),
    #[error("the scheduler's gRPC server failed: {0}")]
    Serve(tonic::transport::Error),
    #[error("cannot make the scheduler's own token: {0}")]
    Token(String),
    #[error("cannot serve TLS: {0}")]
    Tls(String),
    /// The web console cannot be served as asked.
    #[error("{0}")]
    Console(String),
}
