//! The error type of `strata-sql`: what went wrong, with the file or table it concerns.

use std::path::{Path, PathBuf};

use datafusion::error::DataFusionError;

use crate::language::Diagnostic;

/// Result with Strata's SQL-layer error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a pipeline could not be read, checked or planned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pipeline file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A directory given as a pipeline holds no `.sql` file.
    #[error("no .sql files in {}", .0.display())]
    NoPipelineFiles(PathBuf),
    /// The pipeline has problems a person must fix; each names its place in the source.
    #[error("{} problem(s) in the pipeline", .0.len())]
    Invalid(Vec<Diagnostic>),
    /// A file Strata keeps (a commit log, a run report) could not be understood.
    #[error("cannot read {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The engine failed outside of any one statement.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

impl Error {
    /// An I/O error on a path.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
