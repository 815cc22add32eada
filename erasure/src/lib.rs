//! Erasure of one person (`strata forget`): from column lineage, every table and column
//! that holds or is computed from a subject's rows; those rows removed (raw files
//! rewritten, Delta rows deleted, quarantine and rejects too), what was computed from
//! them recomputed, the subject kept out of every later ingest, and a report that
//! lists it all.

mod error;
pub mod forget;
pub mod plan;

pub use error::{ErasureError, Result};
pub use forget::{ErasureReport, Options, forget};
pub use plan::{ErasurePlan, Holding, Subject};
