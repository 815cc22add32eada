//! Strata's engine: a pipeline compiled once ([`compile`]), its table builds run in
//! this process or as jobs on a Ballista cluster ([`Engine`]), each writing its files
//! in parallel ([`write`]) and committing them once, and every outcome in a run report
//! ([`run`]).

pub mod cluster_tls;
pub mod codec;
pub mod compile;
pub mod engine;
mod error;
pub mod expectations;
#[cfg(feature = "faults")]
pub mod faults;
pub mod landing;
pub mod run;
pub mod scheduler_client;
pub mod stream;
pub mod task_error;
pub mod write;

pub use compile::{Compiled, compile, landing_sources};
pub use engine::Engine;
pub use error::{BuildStep, EngineError, Result};
