//! Errors raised inside a task that the orchestrator must tell apart, as they cross
//! Ballista. A cluster returns a task's error only as text (often debug-formatted,
//! with quotes escaped), so each error is written as a sentence for people followed
//! by a marker for Strata, and read back from that marker alone. Encoding and
//! decoding live here together; nothing else reads an error's text.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datafusion::error::DataFusionError;
use serde::{Deserialize, Serialize};
use strata_storage::landing::OnBadRow;

use crate::error::{BuildStep, EngineError};

/// Starts the marker; what follows up to [`MARKER_END`] is base64 (URL-safe), which no
/// debug formatting escapes.
const MARKER_START: &str = "[strata-task-error:";
const MARKER_END: char = ']';

/// An error a task raises for the orchestrator to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskError {
    /// An `ON VIOLATION FAIL` expectation was broken by `rows` rows of one partition.
    ExpectationFailed { expectation: String, rows: u64 },
    /// The task could not reach its input, as opposed to finding bad data in it.
    UnreadableInput { executor: String, cause: String },
    /// A landing file cannot be read as its format (a gzip stream cut off, say).
    CorruptFile { file: String, why: String },
    /// The task's input failed as it was read (a corrupt Parquet file, say), as
    /// opposed to its output or the task itself.
    BadInput { why: String },
    /// A landing file's bad rows stopped its scan: its policy says fail, or there are
    /// more than its limit.
    BadRows {
        file: String,
        policy: OnBadRow,
        why: String,
    },
}

impl TaskError {
    /// The error as a task raises it: readable text with the marker at its end.
    pub fn into_datafusion(self) -> DataFusionError {
        let sentence = match &self {
            TaskError::ExpectationFailed { expectation, rows } => format!(
                "expectation {expectation} failed on {rows} row(s) (ON VIOLATION FAIL); nothing was committed"
            ),
            TaskError::UnreadableInput { executor, cause } => {
                format!("executor {executor} cannot read its input: {cause}")
            }
            TaskError::BadRows { file, why, .. } | TaskError::CorruptFile { file, why } => {
                format!("{file}: {why}")
            }
            TaskError::BadInput { why } => why.clone(),
        };
        let json = serde_json::to_vec(&self).unwrap_or_default();
        DataFusionError::Execution(format!(
            "{sentence} {MARKER_START}{}{MARKER_END}",
            URL_SAFE_NO_PAD.encode(json)
        ))
    }

    /// The task error an error carries, however Ballista or DataFusion wrapped it.
    pub fn find(error: &DataFusionError) -> Option<TaskError> {
        let text = error.to_string();
        let start = text.find(MARKER_START)? + MARKER_START.len();
        let end = start + text[start..].find(MARKER_END)?;
        let json = URL_SAFE_NO_PAD.decode(&text[start..end]).ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// The engine's error for this task error; `path` names the input being read, when known.
    pub fn into_engine_error(self, path: Option<&str>) -> EngineError {
        match self {
            TaskError::ExpectationFailed { expectation, rows } => {
                EngineError::ExpectationFailed { expectation, rows }
            }
            TaskError::UnreadableInput { executor, cause } => EngineError::UnreadableInput {
                executor,
                path: path.unwrap_or("(unknown)").to_owned(),
                cause,
            },
            TaskError::BadRows { file, why, .. } | TaskError::CorruptFile { file, why } => {
                EngineError::BadRows { file, why }
            }
            TaskError::BadInput { why } => EngineError::Build {
                step: BuildStep::RunningTheQuery,
                source: DataFusionError::Execution(why),
            },
        }
    }
}

/// Whether an error reading a task's input means the input could not be reached (it is
/// missing, or hidden from this process) rather than that its data is bad.
pub fn is_unreadable(error: &DataFusionError) -> bool {
    use datafusion::arrow::error::ArrowError;
    use datafusion::object_store::Error as StoreError;
    fn io(error: &std::io::Error) -> bool {
        matches!(
            error.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
        )
    }
    fn store(error: &StoreError) -> bool {
        matches!(
            error,
            StoreError::NotFound { .. }
                | StoreError::PermissionDenied { .. }
                | StoreError::Unauthenticated { .. }
        )
    }
    match error {
        DataFusionError::IoError(error) => io(error),
        DataFusionError::ObjectStore(error) => store(error),
        DataFusionError::ArrowError(error, _) => match error.as_ref() {
            ArrowError::IoError(_, error) => io(error),
            ArrowError::ExternalError(error) => {
                error.downcast_ref::<std::io::Error>().is_some_and(io)
                    || error.downcast_ref::<StoreError>().is_some_and(store)
                    || error
                        .downcast_ref::<DataFusionError>()
                        .is_some_and(is_unreadable)
            }
            _ => false,
        },
        DataFusionError::External(error) => {
            error.downcast_ref::<std::io::Error>().is_some_and(io)
                || error.downcast_ref::<StoreError>().is_some_and(store)
                || error
                    .downcast_ref::<DataFusionError>()
                    .is_some_and(is_unreadable)
        }
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            is_unreadable(inner)
        }
        DataFusionError::Shared(inner) => is_unreadable(inner),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn as_ballista_reports(error: DataFusionError) -> DataFusionError {
        // Ballista hands a task's failure back debug-formatted inside another error.
        let wrapped = DataFusionError::Shared(Arc::new(DataFusionError::External(Box::new(error))));
        DataFusionError::Execution(format!("Job failed: task failed: {wrapped:?}"))
    }

    #[test]
    fn task_errors_survive_the_trip_through_a_cluster() {
        for task in [
            TaskError::ExpectationFailed {
                expectation: "score_is_\"sane\"]".into(),
                rows: 3,
            },
            TaskError::UnreadableInput {
                executor: "host:42".into(),
                cause: "No such file or directory (os error 2)".into(),
            },
        ] {
            let raised = task.clone().into_datafusion();
            assert_eq!(TaskError::find(&raised), Some(task.clone()), "embedded");
            assert_eq!(
                TaskError::find(&as_ballista_reports(raised)),
                Some(task),
                "from a cluster"
            );
        }
    }

    #[test]
    fn other_errors_carry_no_task_error() {
        let plain = DataFusionError::Execution("expectation x failed on 3 row(s)".into());
        assert_eq!(TaskError::find(&plain), None);
        let broken = DataFusionError::Execution(format!("{MARKER_START}not-base64!{MARKER_END}"));
        assert_eq!(TaskError::find(&broken), None);
    }

    #[test]
    fn the_sentence_reads_without_the_marker() {
        let raised = TaskError::ExpectationFailed {
            expectation: "positive".into(),
            rows: 2,
        }
        .into_datafusion();
        assert!(raised.to_string().contains(
            "expectation positive failed on 2 row(s) (ON VIOLATION FAIL); nothing was committed"
        ));
        let engine = TaskError::find(&raised).unwrap().into_engine_error(None);
        assert!(matches!(
            engine,
            EngineError::ExpectationFailed { rows: 2, .. }
        ));
    }

    #[test]
    fn a_missing_file_is_unreadable_and_bad_data_is_not() {
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(is_unreadable(&DataFusionError::IoError(missing)));
        let store = datafusion::object_store::Error::NotFound {
            path: "landing/a.csv".into(),
            source: "gone".into(),
        };
        let wrapped = DataFusionError::Context(
            "scanning".into(),
            Box::new(DataFusionError::ObjectStore(Box::new(store))),
        );
        assert!(is_unreadable(&wrapped));
        let parse = DataFusionError::ArrowError(
            Box::new(datafusion::arrow::error::ArrowError::ParseError(
                "bad".into(),
            )),
            None,
        );
        assert!(!is_unreadable(&parse));
    }
}
