//! The error type of `strata-erasure`.

use strata_engine::EngineError;
use strata_storage::StorageError;

pub type Result<T, E = ErasureError> = std::result::Result<T, E>;

/// Why a subject could not be erased; what was erased before it stays erased.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    /// `--subject` is not `column=value`.
    #[error("a subject is written column=value (candidate_id=C000123), not {0:?}")]
    InvalidSubject(String),
    /// No landing table of the pipeline has the subject's column.
    #[error("no landing table of the pipeline has a column {column}{hint}")]
    UnknownColumn { column: String, hint: String },
    /// Lineage could not be worked out.
    #[error(transparent)]
    Lineage(#[from] strata_lineage::Error),
    /// A table could not be read, rewritten or committed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Recomputing the tables derived from the subject's rows failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The erasure's report could not be written.
    #[error("{location}: {reason}")]
    Report { location: String, reason: String },
}
