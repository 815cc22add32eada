//! The one place an engine error becomes the gRPC status a client sees. Every kind
//! of cause has its own arm and no arm catches "the rest", so a new kind of error
//! must be placed on purpose: a user's bad SQL or bad data is `INVALID_ARGUMENT`, a
//! missing table `NOT_FOUND`, a server or storage fault `INTERNAL` or `UNAVAILABLE`.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::object_store::Error as StoreError;
use strata_engine::task_error::{ClusterFault, cluster_fault};
use strata_storage::StorageError;
use tonic::{Code, Status};

/// The status for an error met while planning or running a client's query.
pub(crate) fn status(error: DataFusionError) -> Status {
    Status::new(code(&error), error.strip_backtrace())
}

/// The code of the deepest cause that decides it.
fn code(error: &DataFusionError) -> Code {
    // A lost executor or a failed job on a cluster is not the user's mistake, though
    // Ballista reports most of them as execution errors.
    match cluster_fault(error) {
        Some(ClusterFault::Unavailable) => return Code::Unavailable,
        Some(ClusterFault::Internal) => return Code::Internal,
        Some(ClusterFault::ResourcesExhausted) => return Code::ResourceExhausted,
        None => {}
    }
    match error {
        DataFusionError::Plan(_)
        | DataFusionError::SQL(..)
        | DataFusionError::SchemaError(..)
        | DataFusionError::Configuration(_)
        | DataFusionError::Substrait(_) => Code::InvalidArgument,
        // DataFusion raises execution errors for values a query cannot compute (a
        // function given an argument it refuses): the user's data or SQL, once the
        // cluster's faults are told apart above.
        DataFusionError::Execution(_) => Code::InvalidArgument,
        DataFusionError::ArrowError(error, _) => arrow_code(error),
        DataFusionError::NotImplemented(_) => Code::Unimplemented,
        DataFusionError::ResourcesExhausted(_) => Code::ResourceExhausted,
        DataFusionError::ObjectStore(error) => store_code(error),
        DataFusionError::IoError(_)
        | DataFusionError::ParquetError(_)
        | DataFusionError::Internal(_)
        | DataFusionError::ExecutionJoin(_)
        | DataFusionError::Ffi(_) => Code::Internal,
        DataFusionError::External(error) => {
            if let Some(inner) = error.downcast_ref::<DataFusionError>() {
                code(inner)
            } else if let Some(storage) = error.downcast_ref::<StorageError>() {
                storage_code(storage)
            } else if let Some(store) = error.downcast_ref::<StoreError>() {
                store_code(store)
            } else {
                Code::Internal
            }
        }
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => code(inner),
        DataFusionError::Shared(inner) => code(inner),
        DataFusionError::Collection(errors) => errors.first().map_or(Code::Internal, code),
    }
}

fn arrow_code(error: &ArrowError) -> Code {
    match error {
        ArrowError::CastError(_)
        | ArrowError::ParseError(_)
        | ArrowError::ComputeError(_)
        | ArrowError::DivideByZero
        | ArrowError::ArithmeticOverflow(_)
        | ArrowError::InvalidArgumentError(_)
        | ArrowError::SchemaError(_)
        | ArrowError::CsvError(_)
        | ArrowError::JsonError(_)
        | ArrowError::DictionaryKeyOverflowError
        | ArrowError::RunEndIndexOverflowError
        | ArrowError::OffsetOverflowError(_) => Code::InvalidArgument,
        ArrowError::NotYetImplemented(_) => Code::Unimplemented,
        ArrowError::MemoryError(_) => Code::ResourceExhausted,
        ArrowError::AvroError(_)
        | ArrowError::IoError(..)
        | ArrowError::IpcError(_)
        | ArrowError::ParquetError(_)
        | ArrowError::CDataInterface(_) => Code::Internal,
        ArrowError::ExternalError(error) => match error.downcast_ref::<DataFusionError>() {
            Some(inner) => code(inner),
            None => Code::Internal,
        },
    }
}

fn store_code(error: &StoreError) -> Code {
    match error {
        StoreError::NotFound { .. } => Code::NotFound,
        StoreError::PermissionDenied { .. } | StoreError::Unauthenticated { .. } => {
            Code::Unavailable
        }
        StoreError::InvalidPath { .. } => Code::InvalidArgument,
        StoreError::NotImplemented { .. } | StoreError::NotSupported { .. } => Code::Unimplemented,
        StoreError::Generic { .. }
        | StoreError::JoinError { .. }
        | StoreError::AlreadyExists { .. }
        | StoreError::Precondition { .. }
        | StoreError::NotModified { .. }
        | StoreError::UnknownConfigurationKey { .. } => Code::Internal,
        // object_store may add kinds of error; until one is placed here, it is the store's fault.
        _ => Code::Internal,
    }
}

fn storage_code(error: &StorageError) -> Code {
    match error {
        StorageError::DataFusion(inner) => code(inner),
        // The warehouse's store did not answer, or refused the server's credentials.
        StorageError::Store { .. } | StorageError::NotFound { .. } => Code::Unavailable,
        StorageError::InvalidLocation { .. }
        | StorageError::Corrupt { .. }
        | StorageError::CommitConflict { .. }
        | StorageError::DeltaConflict { .. }
        | StorageError::DuplicateFile(_)
        | StorageError::Compaction { .. }
        | StorageError::Delta { .. } => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_users_sql_or_data_is_an_invalid_argument() {
        let cases = [
            DataFusionError::Plan("No field named x".into()),
            DataFusionError::Execution("skill_match: have must be a list".into()),
            DataFusionError::ArrowError(
                Box::new(ArrowError::CastError(
                    "Cannot cast string 'abc' to Int64".into(),
                )),
                None,
            ),
            DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None),
            DataFusionError::Context(
                "while planning".into(),
                Box::new(DataFusionError::Shared(Arc::new(DataFusionError::Plan(
                    "ambiguous".into(),
                )))),
            ),
            DataFusionError::External(Box::new(DataFusionError::Plan("wrapped".into()))),
        ];
        for error in cases {
            let shown = error.to_string();
            assert_eq!(status(error).code(), Code::InvalidArgument, "{shown}");
        }
    }

    #[test]
    fn server_faults_are_not_blamed_on_the_user() {
        let io = std::io::Error::other("disk gone");
        assert_eq!(status(DataFusionError::IoError(io)).code(), Code::Internal);
        assert_eq!(
            status(DataFusionError::Internal("bug".into())).code(),
            Code::Internal
        );
        assert_eq!(
            status(DataFusionError::ResourcesExhausted("memory".into())).code(),
            Code::ResourceExhausted
        );
        let corrupt = StorageError::Corrupt {
            location: "raw/jobs/_strata_log/0.json".into(),
            reason: "eof".into(),
        };
        assert_eq!(
            status(DataFusionError::External(Box::new(corrupt))).code(),
            Code::Internal
        );
        let missing = StoreError::NotFound {
            path: "ranked/x/part-0.parquet".into(),
            source: "gone".into(),
        };
        assert_eq!(
            status(DataFusionError::ObjectStore(Box::new(missing))).code(),
            Code::NotFound
        );
    }

    #[test]
    fn a_lost_executor_on_a_cluster_is_unavailable_not_the_user_s_mistake() {
        let lost = DataFusionError::Context(
            "on the Strata scheduler at http://127.0.0.1:50050".into(),
            Box::new(DataFusionError::Execution(
                "Job 8Xk failed: Cancelled".into(),
            )),
        );
        assert_eq!(status(lost).code(), Code::Unavailable);
        let answer_gone = DataFusionError::Execution(
            "GrpcConnectionError(\"Error connecting to Ballista scheduler or executor at http://127.0.0.1:1\")".into(),
        );
        assert_eq!(status(answer_gone).code(), Code::Unavailable);
        let user_s = DataFusionError::Execution(
            "Job 8Xk failed: Job failed due to stage 1 failed: Task failed due to runtime execution error: DataFusionError(Execution(\"bad\"))\n".into(),
        );
        assert_eq!(status(user_s).code(), Code::InvalidArgument);
    }
}
