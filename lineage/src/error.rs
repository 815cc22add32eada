//! Lineage's errors, one enum for callers to match.

use datafusion::error::DataFusionError;

/// What can go wrong working out or exporting lineage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plan or an expectation could not be read for lineage.
    #[error("working out lineage: {0}")]
    Plan(#[from] DataFusionError),
    /// OpenLineage events could not be written to a file.
    #[error("cannot write OpenLineage events to {target}: {why}")]
    Write { target: String, why: String },
    /// An OpenLineage endpoint refused or did not answer.
    #[error("OpenLineage endpoint {target}: {why}")]
    Endpoint { target: String, why: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
