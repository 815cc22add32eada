//! Cancelling Ballista jobs by name: a cancelled run's table builds, and the query of a
//! Flight SQL client that went away.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ballista_core::error::BallistaError;
use ballista_core::serde::protobuf::job_status::Status as JobStatus;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use strata_engine::engine::CancelJobs;

type Scheduler = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// How long a cancellation waits for the jobs' tasks to stop.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

/// Cancels the running or queued jobs whose names `matches` and waits (bounded) until
/// none of them runs; returns how many it cancelled.
pub(crate) async fn cancel_jobs(
    scheduler: &Scheduler,
    matches: impl Fn(&str) -> bool,
) -> Result<usize, BallistaError> {
    let running = || async {
        // Ballista 55's `get_running_jobs` lists the completed jobs of its in-memory
        // state, not the running ones: every job, then their status, is what tells.
        let jobs = scheduler.state.task_manager.get_all_jobs().await?;
        Ok::<_, BallistaError>(
            jobs.into_iter()
                .filter(|job| matches(&job.job_name))
                .filter(|job| {
                    matches!(
                        job.status.status,
                        Some(JobStatus::Running(_)) | Some(JobStatus::Queued(_)) | None
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    let jobs = running().await?;
    for job in &jobs {
        if let Err(error) = scheduler.cancel_job(job.job_id.clone()).await {
            tracing::warn!("cancelling job {}: {error}", job.job_id);
        }
    }
    let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
    while !running().await?.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(jobs.len())
}

/// This process's scheduler as a [`CancelJobs`], for the Flight SQL server beside it;
/// it cancels nothing before the scheduler serves.
#[derive(Clone, Default)]
pub struct JobCanceller(Arc<OnceLock<Scheduler>>);

impl JobCanceller {
    pub(crate) fn serve(&self, scheduler: Scheduler) {
        let _ = self.0.set(scheduler);
    }
}

impl std::fmt::Debug for JobCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobCanceller(serving: {})", self.0.get().is_some())
    }
}

#[async_trait::async_trait]
impl CancelJobs for JobCanceller {
    async fn cancel_named(&self, job_name: &str) -> usize {
        let Some(scheduler) = self.0.get() else {
            return 0;
        };
        cancel_jobs(scheduler, |name| name == job_name)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!("cancelling {job_name}: {error}");
                0
            })
    }
}
