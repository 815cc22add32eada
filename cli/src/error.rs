//! The CLI's error type: every failure a user can see, with what was being done.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use strata_language::{LanguageError, Sources};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The pipeline has problems; each is rendered with its file, line and column.
    #[error("{rendered}{count} problem(s) found; nothing was run")]
    Invalid { rendered: String, count: usize },
    /// The pipeline could not be read, planned or run.
    #[error(transparent)]
    Engine(strata_engine::EngineError),
    /// The warehouse could not be read.
    #[error(transparent)]
    Storage(#[from] strata_storage::StorageError),
    /// The engine rejected or failed the SQL; its message is shown as is.
    #[error("{0}")]
    Query(#[from] DataFusionError),
    /// Results could not be rendered in the chosen format.
    #[error("cannot format results as {format}: {source}")]
    Format {
        format: &'static str,
        source: ArrowError,
    },
    /// A table the warehouse does not have, or a name that is not one.
    #[error("{0}")]
    UnknownTable(String),
    /// Some tables could not be tidied (the others were).
    #[error("could not tidy {0}")]
    Tidy(String),
    /// The run finished, but some tables failed or were skipped.
    #[error("the run failed:\n  {0}")]
    RunFailed(String),
    /// Synthetic data could not be generated.
    #[error(transparent)]
    Generate(#[from] strata_gen::GenError),
    /// A file the command writes could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The SQL file given with `--file` could not be read.
    #[error("cannot read SQL file {}: {source}", path.display())]
    ReadSql {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The Flight SQL server could not start or stopped with an error.
    #[error(transparent)]
    Serve(#[from] strata_flightsql::Error),
    /// Lineage could not be worked out or its OpenLineage events not sent.
    #[error(transparent)]
    Lineage(#[from] strata_lineage::Error),
    /// The web console could not be served.
    #[error(transparent)]
    Console(#[from] strata_console::Error),
    /// A subject could not be erased, or not wholly.
    #[error(transparent)]
    Forget(#[from] strata_erasure::ErasureError),
    /// The erasure finished, but left something of the subject.
    #[error("{0}")]
    Erasure(String),
    /// A schedule could not be registered, read or run.
    #[error(transparent)]
    Schedule(#[from] strata_orchestrate::Error),
    /// A scheduler could not be reached, refused, or a cluster process failed.
    #[error("{0}")]
    Cluster(String),
    /// A warehouse only this process can see was given to a cluster.
    #[error(
        "{0} lives in this process's memory, which a cluster's processes cannot see; use a store URL (s3://, gs://, az://) or a shared path"
    )]
    NotShared(String),
    /// Arguments that parse but do not fit together (a date range that runs backwards).
    #[error("{0}")]
    Arguments(String),
    /// What the command reads from its standard input is missing or unreadable.
    #[error("{0}")]
    Input(String),
    /// Results could not be written out (for example a closed pipe).
    #[error("cannot write results: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// Wraps an engine error, rendering a pipeline's diagnostics against its files.
    pub(crate) fn pipeline(error: strata_engine::EngineError, sources: &Sources) -> Self {
        match error {
            strata_engine::EngineError::Language(LanguageError::Invalid(problems)) => {
                CliError::Invalid {
                    rendered: problems
                        .iter()
                        .map(|problem| format!("{}\n", problem.render(sources)))
                        .collect(),
                    count: problems.len(),
                }
            }
            other => CliError::Engine(other),
        }
    }
}

impl From<strata_engine::EngineError> for CliError {
    fn from(error: strata_engine::EngineError) -> Self {
        CliError::Engine(error)
    }
}

impl From<LanguageError> for CliError {
    fn from(error: LanguageError) -> Self {
        CliError::Engine(error.into())
    }
}
