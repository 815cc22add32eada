//! What can stop the Flight SQL server from starting or serving.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of `strata-flightsql`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("users (--users or STRATA_FLIGHT_USERS): {0}")]
    Users(String),
    #[error("no warehouse at {0}: run a pipeline into it first, or check the path")]
    NoWarehouse(String),
    /// The warehouse's store cannot be reached (a missing bucket, wrong credentials).
    #[error("{0}")]
    Store(#[from] strata_storage::StorageError),
    #[error(
        "refusing to serve {addr} without credentials: only loopback addresses may be served \
         without users; configure users (--config or STRATA_FLIGHT_USERS) or pass --insecure"
    )]
    Unauthenticated { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    /// A password could not be hashed.
    #[error("cannot hash the password: {0}")]
    Password(String),
    #[error("serving Flight SQL: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
