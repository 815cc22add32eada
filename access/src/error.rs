//! The error type of `strata-access`.

use strata_storage::StorageError;

/// Result with the access error.
pub type Result<T, E = AccessError> = std::result::Result<T, E>;

/// Why a table's policies could not be kept or applied.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The warehouse's store failed reading or writing a policy or the pseudonym key.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A policy's SQL does not parse (a policy file written by another Strata version).
    #[error("the policies of {table}: {reason}")]
    Invalid { table: String, reason: String },
    /// The operating system gave no randomness for a new pseudonym key.
    #[error("no randomness for the warehouse's pseudonym key")]
    NoRandomness,
}
