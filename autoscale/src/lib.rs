//! Executors that come when work queues and go when idle: a pure policy that decides,
//! and backends that carry decisions out on this machine or on Kubernetes.

mod backend;
mod error;
pub mod kubernetes;
pub mod policy;
pub mod process;

pub use backend::{Backend, ExecutorAddress};
pub use error::{Error, Result};
