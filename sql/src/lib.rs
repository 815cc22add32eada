//! Strata's SQL layer: the pipeline language, the table graph and planning.
//!
//! Everything here works on any DataFusion `SessionContext`, embedded or Ballista,
//! so one pipeline behaves the same on a laptop and on a cluster.

pub mod codec;
pub mod error;
pub mod expectations;
pub mod graph;
pub mod language;
pub mod plan;
pub mod run;
pub mod storage;
pub mod warehouse;

pub use error::{Error, Result};
