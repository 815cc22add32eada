//! Strata's warehouse: the stores it lives in ([`store`]), every path in it ([`paths`]), the raw zone's Avro files and
//! the commit log that makes each raw build all-or-nothing, the Delta tables of the
//! enriched and ranked zones, and the catalog of what is published.

pub mod audit;
pub mod avro_sink;
pub mod catalog;
pub mod cleanup;
pub mod commit_log;
pub mod delta_files;
pub mod delta_publish;
pub mod erasure;
mod error;
pub mod increment;
pub mod key_set;
pub mod landing;
pub mod maintenance;
pub mod paths;
pub mod raw_compaction;
pub mod raw_table;
pub mod run_named;
pub mod snapshots;
pub mod store;
pub mod suppression;

pub use avro_sink::{AvroFileSink, FileSink, WrittenFile, storage_schema, to_storage};
pub use commit_log::{Commit, CommitLog, SourceFile, StreamPosition};
pub use error::{Result, StorageError};
pub use paths::{TableDir, Warehouse};
pub use snapshots::DeltaSnapshots;
pub use store::{StoreOptions, StoreRegistry, StoreUrl};
pub use suppression::{Suppressed, Suppressions};
