//! The orchestrator's errors, one enum for callers to match.

use strata_engine::EngineError;
use strata_storage::StorageError;

/// What can go wrong defining, storing or running a schedule.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cron expression that does not parse.
    #[error("the cron expression {expression:?} is wrong: {why}")]
    Cron { expression: String, why: String },
    /// A schedule whose definition cannot work (no trigger, a bad name).
    #[error("schedule {name:?}: {why}")]
    Invalid { name: String, why: String },
    /// No schedule of that name is registered in the warehouse.
    #[error("no schedule {name:?} in {warehouse}; `strata schedule list` shows those there are")]
    Unknown { name: String, warehouse: String },
    /// A declarative schedules file that cannot be read or understood.
    #[error("{file}: {why}")]
    File { file: String, why: String },
    /// The schedule's pipeline is wrong (it does not parse, plan or resolve): running it
    /// again cannot help, so it is not retried.
    #[error("schedule {schedule:?}: the pipeline is wrong: {source}")]
    Pipeline {
        schedule: String,
        source: EngineError,
    },
    /// A run that could not be started or finished; another attempt may succeed.
    #[error("schedule {schedule:?}: {source}")]
    Run {
        schedule: String,
        source: EngineError,
    },
    /// A webhook that could not be told.
    #[error("the webhook {url} was not told: {why}")]
    Webhook { url: String, why: String },
    /// The warehouse could not be read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
