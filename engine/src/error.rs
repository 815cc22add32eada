//! The error type of `strata-engine`: why a pipeline could not be compiled, or why a
//! table build or a cluster call failed, in variants callers match.

use datafusion::error::DataFusionError;
use strata_language::LanguageError;
use strata_storage::StorageError;

/// Result with the engine's error.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Why the engine could not compile or run something.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The pipeline could not be read, or it has problems, each with its place in the source.
    #[error(transparent)]
    Language(#[from] LanguageError),
    /// A backfill reads a table as it stands, and no run has built it.
    #[error(
        "{table} has no data yet; a backfill reads the tables it does not rebuild as they stand: run the pipeline first"
    )]
    NotBuiltYet { table: String },
    /// An `ON VIOLATION FAIL` expectation was broken; the build committed nothing.
    #[error(
        "expectation {expectation} failed on {rows} row(s) (ON VIOLATION FAIL); nothing was committed"
    )]
    ExpectationFailed { expectation: String, rows: u64 },
    /// A task could not reach its input (a landing file gone or hidden from it): not bad
    /// data, so no file is rejected for it.
    #[error("executor {executor} cannot read its input {path}: {cause}")]
    UnreadableInput {
        executor: String,
        path: String,
        cause: String,
    },
    /// A landing file's bad rows failed the build, as its `bad_rows` option says.
    #[error("{file}: {why}; nothing was committed")]
    BadRows { file: String, why: String },
    /// The keys to decrypt a landing file cannot be read; the file waits for the next run.
    #[error(
        "{file}: {why}; nothing was committed, and the file is read again once its keys can be read"
    )]
    Keys { file: String, why: String },
    /// One step of a table build failed in the engine.
    #[error("{step}: {source}")]
    Build {
        step: BuildStep,
        source: DataFusionError,
    },
    /// A task of the build failed on an executor; `why` is its innermost message.
    #[error("{step}: {why}")]
    TaskFailed { step: BuildStep, why: String },
    /// The build's files could not be committed, or the warehouse could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A table's masks and row filters could not be kept in the warehouse.
    #[error(transparent)]
    Access(#[from] strata_access::AccessError),
    /// A Kafka source's brokers could not be asked what to read, or refused.
    #[error(transparent)]
    Kafka(#[from] strata_kafka::KafkaError),
    /// No Strata scheduler answered at the address.
    #[error("cannot reach the Strata scheduler at {url} after {attempts} attempts: {cause}")]
    SchedulerUnreachable {
        url: String,
        attempts: u32,
        cause: String,
    },
    /// A scheduler address that is not a URL.
    #[error("{url} is not a scheduler address: {cause}")]
    BadSchedulerAddress { url: String, cause: String },
    /// The address answers, but not as a Strata scheduler.
    #[error("{url} is not a Strata scheduler (it has no pipeline service)")]
    NotAScheduler { url: String },
    /// The scheduler needs a token and was given none, or one it does not accept.
    #[error("the scheduler at {url} refused the call: {reason}")]
    SchedulerAuth { url: String, reason: String },
    /// The cluster's identity (`--cluster-tls`) cannot be read or is not what it should be.
    #[error("the cluster identity {}: {why}", path.display())]
    ClusterTls {
        path: std::path::PathBuf,
        why: String,
    },
    /// A token with characters a header cannot carry.
    #[error("the token has characters a gRPC header cannot carry (use printable ASCII)")]
    BadToken,
    /// The scheduler refused this process (another Strata version, say).
    #[error("the scheduler at {url} refused this {role}: {reason}")]
    SchedulerRefused {
        url: String,
        role: String,
        reason: String,
    },
    /// The engine failed outside of any one build step.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

/// The step of a table build an error happened in, as the run report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStep {
    Planning,
    Expectations,
    RunningTheQuery,
    ReadingStagedRows,
    DerivingHistory,
    Registering,
}

impl std::fmt::Display for BuildStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BuildStep::Planning => "planning",
            BuildStep::Expectations => "expectations",
            BuildStep::RunningTheQuery => "running the query",
            BuildStep::ReadingStagedRows => "reading the staged rows",
            BuildStep::DerivingHistory => "deriving SCD2 history",
            BuildStep::Registering => "registering the published table",
        })
    }
}

impl EngineError {
    /// Whether the error is in the pipeline's text or plan (a syntax error, an unknown
    /// table or column, a type mismatch): running it again cannot help.
    pub fn is_in_the_pipeline(&self) -> bool {
        match self {
            EngineError::Language(_) => true,
            EngineError::DataFusion(error) | EngineError::Build { source: error, .. } => matches!(
                error.find_root(),
                DataFusionError::Plan(_)
                    | DataFusionError::SQL(..)
                    | DataFusionError::SchemaError(..)
                    | DataFusionError::NotImplemented(_)
            ),
            _ => false,
        }
    }

    /// A failure of one build step, or the task error it carries from wherever it ran.
    pub fn at(step: BuildStep, source: DataFusionError) -> Self {
        match crate::task_error::TaskError::find(&source) {
            Some(task) => task.into_engine_error(None),
            None => match crate::task_error::cluster_failure_sentence(&source) {
                Some(why) => EngineError::TaskFailed { step, why },
                None => EngineError::Build { step, source },
            },
        }
    }
}
