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
    /// The keys a source names to decrypt `file` cannot be read where the task runs:
    /// the source's fault, not the file's, which is read again next run.
    Keys { file: String, why: String },
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
            TaskError::Keys { file, why } => format!("{file}: {why}"),
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
            TaskError::Keys { file, why } => EngineError::Keys { file, why },
            TaskError::BadInput { why } => EngineError::TaskFailed {
                step: BuildStep::RunningTheQuery,
                why: plain(&why).to_owned(),
            },
        }
    }
}

/// Whether an error is Ballista's failure to fetch a shuffle partition (its executor
/// is gone, say), which must reach Ballista as it is: the scheduler then runs the
/// map stage again instead of failing the job.
pub fn is_shuffle_fetch_failure(error: &DataFusionError) -> bool {
    use ballista_core::error::BallistaError;
    fn ballista(error: &BallistaError) -> bool {
        match error {
            BallistaError::FetchFailed(..) => true,
            BallistaError::DataFusionError(error) => is_shuffle_fetch_failure(error),
            _ => false,
        }
    }
    match error.find_root() {
        DataFusionError::External(inner) => {
            inner.downcast_ref::<BallistaError>().is_some_and(ballista)
        }
        _ => false,
    }
}

/// Whether a job's answer could not be fetched from the executor that held it (the
/// executor is gone). Ballista raises this on the client, and when it cannot connect
/// it hands the error over only as its debug text, so that text is read here.
pub fn is_lost_result(error: &DataFusionError) -> bool {
    if is_shuffle_fetch_failure(error) {
        return true;
    }
    match error.find_root() {
        DataFusionError::Execution(text) => text.starts_with("GrpcConnectionError("),
        _ => false,
    }
}

/// Ballista's failure text of a cancelled job: `Job <id> failed: Cancelled`.
const CANCELLED_JOB: &str = " failed: Cancelled";

/// Whether a job failed because it was cancelled. A run's own cancellation stops its
/// orchestration first, so a table build that sees this was cancelled by the scheduler
/// after it lost an executor. Ballista states a job's failure only as text.
pub fn is_cancelled_job(error: &DataFusionError) -> bool {
    match error.find_root() {
        DataFusionError::Execution(text) => {
            text.starts_with("Job ") && text.ends_with(CANCELLED_JOB)
        }
        _ => false,
    }
}

/// A fault of the cluster rather than of the query: what a query's caller is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterFault {
    /// An executor or the scheduler was lost or could not be reached; the same query
    /// may succeed when tried again.
    Unavailable,
    /// The cluster failed the query for a reason of its own.
    Internal,
    /// A task ran out of memory.
    ResourcesExhausted,
}

/// What Ballista says, in a job's failure, of a task that failed reading or writing.
const TASK_IO_FAILED: &str = "Task failed due to IO error";

/// Whether an error is the cluster's fault, and which, as opposed to the query's (bad
/// SQL or data an executor refused). Ballista's client flattens most of these into
/// text, so the text of the kinds [`is_lost_result`] and [`is_cancelled_job`] read is
/// read here too; typed errors are matched by type.
pub fn cluster_fault(error: &DataFusionError) -> Option<ClusterFault> {
    use ballista_core::error::BallistaError;
    if is_lost_result(error) || is_cancelled_job(error) {
        return Some(ClusterFault::Unavailable);
    }
    match error.find_root() {
        DataFusionError::External(inner) => match inner.downcast_ref::<BallistaError>()? {
            BallistaError::GrpcConnectionError(_)
            | BallistaError::TonicError(_)
            | BallistaError::GrpcError(_)
            | BallistaError::FetchFailed(..)
            | BallistaError::Cancelled => Some(ClusterFault::Unavailable),
            BallistaError::DataFusionError(inner) => cluster_fault(inner),
            BallistaError::IoError(_)
            | BallistaError::Internal(_)
            | BallistaError::General(_)
            | BallistaError::TokioError(_)
            | BallistaError::GrpcActionError(_) => Some(ClusterFault::Internal),
            BallistaError::NotImplemented(_)
            | BallistaError::Configuration(_)
            | BallistaError::ArrowError(_)
            | BallistaError::SqlError(_) => None,
        },
        DataFusionError::Execution(text) if text.starts_with("Job ") => {
            if text.contains(TASK_IO_FAILED) {
                return Some(ClusterFault::Unavailable);
            }
            let Some(start) = text.find(TASK_FAILED) else {
                // A job failed, but no task said why: the scheduler's own failure.
                return Some(ClusterFault::Internal);
            };
            // The task's error as debug text: its kinds, outermost first, up to its message.
            let task = &text[start + TASK_FAILED.len()..];
            let task = task.split('"').next().unwrap_or(task);
            let mut kinds = task.split(|c: char| !c.is_alphanumeric()).filter(|word| {
                matches!(
                    *word,
                    "ResourcesExhausted" | "IoError" | "ObjectStore" | "Internal" | "ExecutionJoin"
                )
            });
            match kinds.next_back() {
                Some("ResourcesExhausted") => Some(ClusterFault::ResourcesExhausted),
                Some("IoError" | "ObjectStore") => Some(ClusterFault::Unavailable),
                Some(_) => Some(ClusterFault::Internal),
                None => None,
            }
        }
        _ => None,
    }
}

/// What Ballista puts before the debug text of a task's error in a job's failure.
const TASK_FAILED: &str = "Task failed due to runtime execution error: ";

/// A job's failure as one sentence: Ballista reports a failed task as the debug text of
/// its nested error (`DataFusionError(Shared(External(…Execution("…"))))`), and only
/// the innermost message says anything.
pub fn cluster_failure_sentence(error: &DataFusionError) -> Option<String> {
    let text = error.to_string();
    let start = text.find(TASK_FAILED)? + TASK_FAILED.len();
    let stage = text[..start]
        .rsplit_once("due to stage ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .filter(|id| id.chars().all(|c| c.is_ascii_digit()));
    let message = innermost_quoted(&text[start..])?;
    let message = match message.find(MARKER_START) {
        Some(marker) => message[..marker].trim_end(),
        None => message.as_str(),
    };
    let message = plain(message);
    Some(match stage {
        Some(stage) => format!("a task of stage {stage} failed on an executor: {message}"),
        None => format!("a task failed on an executor: {message}"),
    })
}

/// A message without the kinds DataFusion and Arrow put before it, which say nothing
/// to the reader.
fn plain(message: &str) -> &str {
    let mut message = message;
    while let Some(rest) = ["Execution error: ", "External error: ", "Arrow error: "]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
    {
        message = rest;
    }
    message
}

/// The first string literal in debug-formatted text, unescaped.
fn innermost_quoted(debug: &str) -> Option<String> {
    let mut chars = debug[debug.find('"')? + 1..].chars();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
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
            TaskError::Keys {
                file: "s3://drop/a.csv.gpg".into(),
                why: "'decrypt.key_file' /etc/k.asc: cannot read the key file".into(),
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
    fn a_shuffle_fetch_failure_is_told_apart_however_wrapped() {
        use ballista_core::error::BallistaError;
        let fetch = BallistaError::FetchFailed("executor-1".into(), 3, 2, "refused".into());
        let wrapped = DataFusionError::Shared(Arc::new(DataFusionError::Context(
            "reading".into(),
            Box::new(DataFusionError::External(Box::new(fetch))),
        )));
        assert!(is_shuffle_fetch_failure(&wrapped));
        let other = DataFusionError::External(Box::new(BallistaError::General("x".into())));
        assert!(!is_shuffle_fetch_failure(&other));
        assert!(!is_shuffle_fetch_failure(&DataFusionError::Execution(
            "Shuffle fetch partition error".into()
        )));
    }

    #[test]
    fn a_failed_task_on_a_cluster_reads_as_one_sentence() {
        let inner = DataFusionError::Execution("Arrow error: Divide by \"zero\"".into());
        let reported = DataFusionError::Execution(format!(
            "Job 038H failed: Job failed due to stage 4 failed: {TASK_FAILED}{:?}",
            DataFusionError::Shared(Arc::new(DataFusionError::External(Box::new(inner))))
        ));
        assert_eq!(
            cluster_failure_sentence(&reported).as_deref(),
            Some("a task of stage 4 failed on an executor: Divide by \"zero\"")
        );
        assert_eq!(
            cluster_failure_sentence(&DataFusionError::Execution("no such table".into())),
            None
        );
    }

    #[test]
    fn an_answer_lost_with_its_executor_is_told_apart() {
        let refused = DataFusionError::Execution(
            "GrpcConnectionError(\"Error connecting to Ballista scheduler or executor at http://127.0.0.1:1\")".into(),
        );
        assert!(is_lost_result(&DataFusionError::Context(
            "on the Strata scheduler".into(),
            Box::new(refused)
        )));
        assert!(!is_lost_result(&DataFusionError::Execution(
            "Job 1 failed: GrpcConnectionError(".into()
        )));
    }

    #[test]
    fn the_cluster_s_faults_are_told_apart_from_the_query_s() {
        use ballista_core::error::BallistaError;
        let job = |task: &str| {
            DataFusionError::Execution(format!(
                "Job 8Xk failed: Job failed due to stage 2 failed: {task}\n"
            ))
        };
        let cases = [
            (
                job(
                    "Task failed due to runtime execution error: DataFusionError(ArrowError(CastError(\"Cannot cast string 'x' to Int64\"), None))",
                ),
                None,
            ),
            (
                job(
                    "Task failed due to runtime execution error: DataFusionError(Execution(\"IoError is in the message, not a kind\"))",
                ),
                None,
            ),
            (
                job(
                    "Task failed due to runtime execution error: DataFusionError(ResourcesExhausted(\"Failed to allocate\"))",
                ),
                Some(ClusterFault::ResourcesExhausted),
            ),
            (
                job(
                    "Task failed due to runtime execution error: DataFusionError(ObjectStore(NotFound { path: \"a\" }))",
                ),
                Some(ClusterFault::Unavailable),
            ),
            (
                job("Task failed due to IO error: Broken pipe"),
                Some(ClusterFault::Unavailable),
            ),
            (
                DataFusionError::Execution("Job 8Xk failed: Cancelled".into()),
                Some(ClusterFault::Unavailable),
            ),
            (
                DataFusionError::External(Box::new(BallistaError::GrpcConnectionError(
                    "Error connecting to Ballista scheduler or executor at http://127.0.0.1:1"
                        .into(),
                ))),
                Some(ClusterFault::Unavailable),
            ),
            (
                DataFusionError::External(Box::new(BallistaError::Internal("x".into()))),
                Some(ClusterFault::Internal),
            ),
            (
                DataFusionError::Execution("skill_match: have must be a list".into()),
                None,
            ),
            (DataFusionError::Plan("No field named x".into()), None),
        ];
        for (error, fault) in cases {
            assert_eq!(cluster_fault(&error), fault, "{error}");
        }
    }

    #[test]
    fn a_cancelled_job_is_told_apart_from_a_failed_one() {
        let cancelled = DataFusionError::Execution("Job 038HP failed: Cancelled".into());
        assert!(is_cancelled_job(&DataFusionError::Context(
            "building ranked.x".into(),
            Box::new(cancelled)
        )));
        assert!(!is_cancelled_job(&DataFusionError::Execution(
            "Job 038HP failed: Task failed due to runtime execution error: Cancelled".into()
        )));
        assert!(!is_cancelled_job(&DataFusionError::Execution(
            "Job 038HP failed: Divide by zero".into()
        )));
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
