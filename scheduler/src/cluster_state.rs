//! Ballista's cluster state as Strata needs it: draining executors get no new tasks,
//! and each executor's free task slots are counted afresh from the tasks that run.
//!
//! Ballista keeps free slots as a running balance: a slot comes back when its task's
//! status arrives. When an executor is lost, the stages that read its output are
//! rolled back, and the statuses of their tasks on the executors that survive are
//! dropped as stale without giving their slots back. A survivor then has no free slot
//! for ever, and the run hangs (upstream: apache/datafusion-ballista#2418 is the same
//! leak on cancellation). Counting the running tasks at each binding cannot drift.
//!
//! A table build that loses an executor is cancelled whole, before Ballista patches
//! it up, and the engine runs it again. Ballista's recovery can read a map stage's
//! output twice: a stage rolled back after its own input was lost runs again from task
//! 0, while the stage reading it keeps what the first attempt's tasks on the surviving
//! executors reported. A build's files are committed only after its job ends, so a
//! second run of the job is always safe; a wrong answer is not.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use ballista_core::JobId;
use ballista_core::error::Result;
use ballista_core::serde::protobuf::{
    ExecutorHeartbeat, ExecutorStatus, executor_status, job_status, task_status,
};
use ballista_core::serde::scheduler::{ExecutorData, ExecutorMetadata};
use ballista_scheduler::cluster::memory::InMemoryClusterState;
use ballista_scheduler::cluster::{BoundTask, ClusterState, ClusterStateEventStream, ExecutorSlot};
use ballista_scheduler::config::TaskDistributionPolicy;
use ballista_scheduler::scheduler_server::SchedulerServer;
use ballista_scheduler::state::execution_stage::ExecutionStage;
use ballista_scheduler::state::task_manager::JobInfoCache;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use crate::draining::Draining;

type Scheduler = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// Ballista's cluster state, with draining executors shown as Terminating (Ballista
/// skips those), free slots counted from the running tasks, and table builds that
/// lose an executor cancelled.
pub(crate) struct StrataClusterState {
    inner: Arc<dyn ClusterState>,
    draining: Draining,
    /// The active jobs as of the last binding: every job with a task on an executor.
    jobs: Mutex<Arc<HashMap<JobId, JobInfoCache>>>,
    /// Set once the scheduler that owns this state exists.
    scheduler: OnceLock<Scheduler>,
}

impl StrataClusterState {
    pub(crate) fn new(inner: Arc<dyn ClusterState>, draining: Draining) -> Self {
        Self {
            inner,
            draining,
            jobs: Mutex::default(),
            scheduler: OnceLock::new(),
        }
    }

    /// Lets the state cancel jobs through `scheduler`, the one it serves.
    pub(crate) fn serve(&self, scheduler: Scheduler) {
        let _ = self.scheduler.set(scheduler);
    }

    fn shown(&self, mut heartbeat: ExecutorHeartbeat) -> ExecutorHeartbeat {
        if self.draining.contains(&heartbeat.executor_id) {
            heartbeat.status = Some(ExecutorStatus {
                status: Some(executor_status::Status::Terminating("draining".to_owned())),
            });
        }
        heartbeat
    }
}

/// The running table builds that ran a task on `executor`: those it had running, and
/// those whose finished map outputs it held.
async fn builds_on(jobs: &HashMap<JobId, JobInfoCache>, executor: &str) -> Vec<JobId> {
    let mut affected = Vec::new();
    for (job_id, job) in jobs {
        let graph = job.execution_graph.read().await;
        let running = matches!(
            graph.status().status,
            Some(job_status::Status::Running(_) | job_status::Status::Queued(_)) | None
        );
        if !running || !strata_engine::engine::is_strata_job(graph.job_name()) {
            continue;
        }
        let touched = graph.stages().values().any(|stage| {
            let tasks = match stage {
                ExecutionStage::Running(stage) => &stage.task_infos,
                ExecutionStage::Successful(stage) => &stage.task_infos,
                _ => return false,
            };
            tasks.iter().any(|task| match &task.task_status {
                task_status::Status::Running(running) => running.executor_id == executor,
                task_status::Status::Successful(done) => done.executor_id == executor,
                _ => false,
            })
        });
        if touched {
            affected.push(job_id.clone());
        }
    }
    affected
}

/// The slots each executor's running tasks hold, over every active job.
async fn slots_in_use(jobs: &HashMap<JobId, JobInfoCache>) -> HashMap<String, u32> {
    let mut in_use: HashMap<String, u32> = HashMap::new();
    for job in jobs.values() {
        let graph = job.execution_graph.read().await;
        for stage in graph.stages().values() {
            let ExecutionStage::Running(stage) = stage else {
                continue;
            };
            for task in &stage.task_infos {
                if let task_status::Status::Running(running) = &task.task_status {
                    *in_use.entry(running.executor_id.clone()).or_default() += task.vcores_consumed;
                }
            }
        }
    }
    in_use
}

#[async_trait::async_trait]
impl ClusterState for StrataClusterState {
    async fn init(&self) -> Result<()> {
        self.inner.init().await
    }

    async fn bind_schedulable_tasks(
        &self,
        distribution: TaskDistributionPolicy,
        active_jobs: Arc<HashMap<JobId, JobInfoCache>>,
        executors: Option<HashSet<String>>,
    ) -> Result<Vec<BoundTask>> {
        let alive =
            executors.unwrap_or_else(|| self.inner.executor_heartbeats().into_keys().collect());
        let in_use = slots_in_use(&active_jobs).await;
        *self.jobs.lock().expect("jobs lock") = Arc::clone(&active_jobs);
        // Ballista's binders are private to it: a state of this moment's free slots reuses them.
        let now = InMemoryClusterState::default();
        for metadata in self.inner.registered_executor_metadata().await {
            if !alive.contains(&metadata.id) || self.draining.contains(&metadata.id) {
                continue;
            }
            let total = metadata.specification.vcores;
            let free = total.saturating_sub(in_use.get(&metadata.id).copied().unwrap_or(0));
            let data = ExecutorData {
                executor_id: metadata.id.clone(),
                total_vcores: total,
                available_vcores: free,
            };
            now.register_executor(metadata, data).await?;
        }
        now.bind_schedulable_tasks(distribution, active_jobs, None)
            .await
    }

    /// Nothing to give back: free slots are counted from the running tasks at each binding.
    async fn unbind_tasks(&self, _executor_slots: Vec<ExecutorSlot>) -> Result<()> {
        Ok(())
    }

    async fn register_executor(
        &self,
        metadata: ExecutorMetadata,
        spec: ExecutorData,
    ) -> Result<()> {
        self.inner.register_executor(metadata, spec).await
    }

    async fn save_executor_metadata(&self, metadata: ExecutorMetadata) -> Result<()> {
        self.inner.save_executor_metadata(metadata).await
    }

    async fn get_executor_metadata(&self, executor_id: &str) -> Result<ExecutorMetadata> {
        self.inner.get_executor_metadata(executor_id).await
    }

    async fn registered_executor_metadata(&self) -> Vec<ExecutorMetadata> {
        self.inner.registered_executor_metadata().await
    }

    async fn save_executor_heartbeat(&self, heartbeat: ExecutorHeartbeat) -> Result<()> {
        self.inner.save_executor_heartbeat(heartbeat).await
    }

    /// Cancels the table builds that ran on the executor first: Ballista hears of the
    /// loss only after this returns, through the same event queue as the cancellations.
    async fn remove_executor(&self, executor_id: &str) -> Result<()> {
        if let Some(scheduler) = self.scheduler.get() {
            let jobs = Arc::clone(&self.jobs.lock().expect("jobs lock"));
            for job_id in builds_on(&jobs, executor_id).await {
                tracing::warn!(
                    "executor {executor_id} is gone: cancelling job {job_id}, which ran on \
                     it, for its run to start it again"
                );
                if let Err(error) = scheduler.cancel_job(job_id.clone()).await {
                    tracing::warn!("cancelling job {job_id}: {error}");
                }
            }
        }
        self.inner.remove_executor(executor_id).await
    }

    fn executor_heartbeats(&self) -> HashMap<String, ExecutorHeartbeat> {
        self.inner
            .executor_heartbeats()
            .into_iter()
            .map(|(id, heartbeat)| (id, self.shown(heartbeat)))
            .collect()
    }

    fn get_executor_heartbeat(&self, executor_id: &str) -> Option<ExecutorHeartbeat> {
        self.inner
            .get_executor_heartbeat(executor_id)
            .map(|heartbeat| self.shown(heartbeat))
    }

    async fn cluster_state_events(&self) -> Result<ClusterStateEventStream> {
        self.inner.cluster_state_events().await
    }
}

#[cfg(test)]
mod tests {
    use ballista_core::serde::scheduler::{
        ExecutorOperatingSystemSpecification, ExecutorSpecification,
    };

    use super::*;

    async fn register(state: &StrataClusterState, id: &str, vcores: u32) {
        let metadata = ExecutorMetadata {
            id: id.to_owned(),
            host: "127.0.0.1".to_owned(),
            port: 50051,
            grpc_port: 50052,
            specification: ExecutorSpecification { vcores },
            os_info: ExecutorOperatingSystemSpecification::default(),
        };
        let data = ExecutorData {
            executor_id: id.to_owned(),
            total_vcores: vcores,
            available_vcores: vcores,
        };
        state.register_executor(metadata, data).await.unwrap();
    }

    fn terminating(heartbeat: &ExecutorHeartbeat) -> bool {
        matches!(
            heartbeat
                .status
                .as_ref()
                .and_then(|status| status.status.as_ref()),
            Some(executor_status::Status::Terminating(_))
        )
    }

    #[tokio::test]
    async fn a_draining_executor_is_shown_terminating_and_given_back_slots_change_nothing() {
        let draining = Draining::default();
        let state =
            StrataClusterState::new(Arc::new(InMemoryClusterState::default()), draining.clone());
        register(&state, "kept", 2).await;
        register(&state, "drained", 2).await;
        draining.insert("drained");

        let heartbeats = state.executor_heartbeats();
        assert!(terminating(&heartbeats["drained"]), "{heartbeats:?}");
        assert!(!terminating(&heartbeats["kept"]), "{heartbeats:?}");
        assert!(terminating(
            &state.get_executor_heartbeat("drained").unwrap()
        ));

        // Slots handed back are not added to a balance: they are counted at each binding.
        state
            .unbind_tasks(vec![("kept".to_owned(), 5)])
            .await
            .unwrap();
        let bound = state
            .bind_schedulable_tasks(TaskDistributionPolicy::Bias, Arc::new(HashMap::new()), None)
            .await
            .unwrap();
        assert!(bound.is_empty(), "no job, no task bound");
    }
}
