//! Where built tables live: the raw zone's Avro files and the commit log that makes
//! each raw build all-or-nothing, the Delta tables, and the catalog of what is published.

pub mod avro_sink;
pub mod catalog;
pub mod commit_log;
pub mod compressed_scan;
pub mod delta_files;
pub mod delta_publish;
pub mod landing_files;
pub mod raw_table;
pub mod write_files;

pub use avro_sink::{AvroFileSink, FileSink, WrittenFile, storage_schema};
pub use commit_log::{Commit, CommitLog, SourceFile};
pub use landing_files::list_files;
