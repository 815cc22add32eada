//! The error type of `strata-language`: a pipeline that cannot be read, or has problems.

use std::path::PathBuf;

use crate::diagnostic::Diagnostic;

/// Result with the language's error.
pub type Result<T, E = LanguageError> = std::result::Result<T, E>;

/// Why a pipeline could not be read or checked.
#[derive(Debug, thiserror::Error)]
pub enum LanguageError {
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
}

impl LanguageError {
    /// An I/O error on a path.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        LanguageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
