//! The error type of `strata-storage`: which file, table or store could not be read or
//! written. Locations are paths or URLs as users wrote them, never credentials.

use datafusion::error::DataFusionError;
use deltalake_core::DeltaTableError;
use deltalake_core::kernel::transaction::{CommitConflictError, TransactionError};

use crate::store::describe;

/// Result with the storage layer's error.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Why the warehouse could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A warehouse or landing location is not a path or a URL Strata can reach.
    #[error("{location}: {reason}")]
    InvalidLocation { location: String, reason: String },
    /// A store refused or failed a request (a missing bucket, wrong credentials, no answer).
    #[error("{location}: {reason}")]
    Store { location: String, reason: String },
    /// A file Strata keeps was removed as it was read (a checkpoint made it redundant).
    #[error("{location} is gone")]
    NotFound { location: String },
    /// A file Strata keeps (a commit, a run report) could not be understood.
    #[error("cannot read {location}: {reason}")]
    Corrupt { location: String, reason: String },
    /// Another build committed this version of a raw table first; nothing was committed.
    #[error("another run committed version {version} of {table} first; nothing was committed")]
    CommitConflict { table: String, version: u64 },
    /// Another run committed to a Delta table while this build ran, in a way that
    /// conflicts with what this build read; nothing was committed.
    #[error(
        "{table}: another run committed to this table while this build ran ({what}); nothing was committed, and the next run builds from what that run committed"
    )]
    DeltaConflict { table: String, what: &'static str },
    /// Two tasks reported writing one file, so one overwrote the other.
    #[error("two tasks reported writing {0}; nothing was committed")]
    DuplicateFile(String),
    /// A raw table's small files could not be rewritten; nothing was committed.
    #[error("cannot compact {table}: {reason}; nothing was committed")]
    Compaction { table: String, reason: String },
    /// A Delta table could not be opened, written or committed.
    #[error("{table}: {source}")]
    Delta {
        table: String,
        source: Box<DeltaTableError>,
    },
    /// DataFusion failed reading or registering a table.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

impl StorageError {
    /// A store's error on a location, described without credentials.
    pub fn store(location: &str, source: &object_store::Error) -> Self {
        StorageError::Store {
            location: location.to_owned(),
            reason: describe(source),
        }
    }

    /// A Delta error on the table at `table`; a commit conflict says which run won.
    pub fn delta(table: impl std::fmt::Display, source: DeltaTableError) -> Self {
        let what = match &source {
            DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(conflict),
            } => match conflict {
                CommitConflictError::ConcurrentTransaction => {
                    Some("it built from the same rows of the same stream")
                }
                CommitConflictError::ConcurrentAppend => Some("it added rows this build read"),
                CommitConflictError::ConcurrentDeleteRead
                | CommitConflictError::ConcurrentDeleteDelete => {
                    Some("it rewrote files this build read")
                }
                CommitConflictError::MetadataChanged => Some("it changed the table's columns"),
                _ => None,
            },
            _ => None,
        };
        match what {
            Some(what) => StorageError::DeltaConflict {
                table: table.to_string(),
                what,
            },
            None => StorageError::Delta {
                table: table.to_string(),
                source: Box::new(source),
            },
        }
    }
}

impl From<StorageError> for DataFusionError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::DataFusion(error) => error,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
