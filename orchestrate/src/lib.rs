//! Strata as its own orchestrator: schedules (cron, new landing files) registered in the
//! warehouse start runs of a pipeline, one at a time, retried with backoff, and tell a
//! webhook when a schedule fails and when it recovers. The scheduler runs them on its
//! cluster; `strata run --schedule` runs them on one machine.

pub mod cron;
pub mod declared;
mod error;
pub mod lease;
pub mod orchestrator;
pub mod schedule;
pub mod webhook;

pub use cron::Cron;
pub use error::{Error, Result};
pub use orchestrator::Orchestrator;
pub use schedule::{Firing, PipelineFile, Retry, Schedule, ScheduleState, Schedules, Triggers};
