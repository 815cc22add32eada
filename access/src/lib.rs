//! What a reader sees of a Strata warehouse: the published tables as a DataFusion
//! catalog, each read through the masks and row filters its pipeline declares, applied
//! before any predicate, statistic, limit or error of the reader's query can touch the
//! stored values.

pub mod catalog;
mod error;
mod guard;
mod masking;
mod policy;
mod viewer;

pub use catalog::{
    AUDIT_SCHEMA, AUDIT_TABLE, CATALOG, Reader, SCHEMAS, Visibility, WarehouseCatalog,
};
pub use error::{AccessError, Result};
pub use guard::{PolicyBoundaryExec, reads_guarded};
pub use masking::{HashPii, masking_functions};
pub use policy::{Mask, RowFilter, TablePolicy};
pub use viewer::Viewer;
