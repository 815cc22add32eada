//! The console's errors, one enum for callers to match; each maps to an HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;
use strata_storage::StorageError;

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No published table of that name.
    #[error("no table {0} in the warehouse")]
    UnknownTable(String),
    /// No run of that id in the warehouse's history.
    #[error("no run {0} in the warehouse's history")]
    UnknownRun(String),
    /// No pipeline the console knows builds that table.
    #[error("no pipeline the console was given builds {0}")]
    NoLineage(String),
    /// The warehouse could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A table could not be read.
    #[error(transparent)]
    Query(#[from] DataFusionError),
    /// A Delta table's log could not be read.
    #[error(transparent)]
    Delta(#[from] deltalake_core::DeltaTableError),
    /// A table's rows could not be turned into JSON.
    #[error(transparent)]
    Json(#[from] datafusion::arrow::error::ArrowError),
    /// A table's masks and row filters could not be read, so nothing of it is shown.
    #[error("the policies of the table: {0}")]
    Policy(String),
    /// Lineage could not be worked out.
    #[error(transparent)]
    Lineage(#[from] strata_lineage::Error),
    /// The login could not be set up (no randomness for its decoy password).
    #[error(transparent)]
    Login(#[from] strata_flightsql::Error),
    /// The console's port could not be served.
    #[error("serving the console on {address}: {source}")]
    Serve {
        address: String,
        source: std::io::Error,
    },
    /// Users are needed on an address others can reach.
    #[error(
        "the console at {0} would show the warehouse to anyone who reaches it: give it users \
         (--users or a Flight SQL config file), listen on 127.0.0.1, or pass --insecure"
    )]
    Unauthenticated(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::UnknownTable(_) | Error::UnknownRun(_) | Error::NoLineage(_) => {
                StatusCode::NOT_FOUND
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            axum::Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}
