//! The CLI's error type: every failure a user can see, with what was being done.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The engine rejected or failed the SQL; its message is shown as is.
    #[error("{0}")]
    Query(#[from] DataFusionError),
    /// Results could not be rendered in the chosen format.
    #[error("cannot format results as {format}: {source}")]
    Format {
        format: &'static str,
        source: ArrowError,
    },
    /// Results could not be written out (for example a closed pipe).
    #[error("cannot write results: {0}")]
    Output(#[from] std::io::Error),
}
