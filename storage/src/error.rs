//! The error type of `strata-storage`: which file or table could not be read or written.

use std::path::PathBuf;

use datafusion::error::DataFusionError;
use deltalake_core::DeltaTableError;

/// Result with the storage layer's error.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Why the warehouse could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file Strata keeps (a commit, a run report) could not be understood.
    #[error("cannot read {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// Another build committed this version of a raw table first; nothing was committed.
    #[error("another run committed version {version} of {} first; nothing was committed", table.display())]
    CommitConflict { table: PathBuf, version: u64 },
    /// Two tasks reported writing one file, so one overwrote the other.
    #[error("two tasks reported writing {0}; nothing was committed")]
    DuplicateFile(String),
    /// A Delta table could not be opened, written or committed.
    #[error("{}: {source}", table.display())]
    Delta {
        table: PathBuf,
        source: Box<DeltaTableError>,
    },
    /// DataFusion failed reading or registering a table.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

impl StorageError {
    /// An I/O error on a path.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A Delta error on the table in `table`.
    pub fn delta(table: &std::path::Path, source: DeltaTableError) -> Self {
        StorageError::Delta {
            table: table.to_path_buf(),
            source: Box::new(source),
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
