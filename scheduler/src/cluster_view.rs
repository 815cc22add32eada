//! What the cluster looks like now, read from Ballista's scheduler state: tasks
//! waiting and running, and each executor's slots, state and shuffle output.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use ballista_core::serde::protobuf::{executor_status, task_status};
use ballista_scheduler::scheduler_server::SchedulerServer;
use ballista_scheduler::state::execution_stage::{ExecutionStage, StageOutput, TaskInfo};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use strata_autoscale::ExecutorAddress;
use strata_autoscale::policy;

use crate::draining::Draining;

type Scheduler = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// Where an executor is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExecutorState {
    /// Takes tasks.
    Active,
    /// Marked for removal: takes no new tasks.
    Draining,
    /// Shutting down or silent: still registered, but gone for scheduling.
    Stopping,
}

impl ExecutorState {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Draining => "draining",
            Self::Stopping => "stopping",
        }
    }
}

/// One registered executor.
#[derive(Debug, Clone)]
pub(crate) struct ExecutorView {
    pub address: ExecutorAddress,
    pub slots: usize,
    pub running_tasks: usize,
    pub state: ExecutorState,
    /// A running job still needs shuffle output stored on it.
    pub holds_shuffle: bool,
}

/// The cluster at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterView {
    /// Tasks ready to run that no executor has taken, plus jobs not yet planned.
    pub pending_tasks: usize,
    pub running_tasks: usize,
    pub executors: Vec<ExecutorView>,
}

impl ClusterView {
    /// Reads the scheduler's state; cheap enough to do every tick. An executor list
    /// that cannot be read is an error, never an empty cluster.
    pub(crate) async fn observe(
        scheduler: &Scheduler,
        draining: &Draining,
    ) -> Result<Self, ballista_core::error::BallistaError> {
        let tasks = &scheduler.state.task_manager;
        let mut pending_tasks = tasks.pending_job_number();
        let mut running: HashMap<String, usize> = HashMap::new();
        let mut needed: HashSet<String> = HashSet::new();
        for job in tasks.get_running_job_cache().values() {
            let graph = job.execution_graph.read().await;
            pending_tasks += graph.available_tasks();
            for task in graph.running_tasks() {
                *running.entry(task.executor_id).or_default() += 1;
            }
            for stage in graph.stages().values() {
                needed.extend(shuffle_holders(stage));
            }
        }
        let executors_state = scheduler
            .state
            .executor_manager
            .get_executors_state()
            .await?;
        let timeout = scheduler.state.config.executor_timeout_seconds;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |age| age.as_secs());
        let executors: Vec<ExecutorView> = executors_state
            .into_iter()
            .map(|(metadata, last_seen, _)| {
                let heartbeat = scheduler
                    .state
                    .executor_manager
                    .get_executor_hearbeat(&metadata.id);
                let stopping = heartbeat
                    .as_ref()
                    .and_then(|heartbeat| heartbeat.status.as_ref())
                    .and_then(|status| status.status.as_ref())
                    .is_some_and(|status| !matches!(status, executor_status::Status::Active(_)));
                let silent =
                    last_seen.is_none_or(|seen| now.saturating_sub(seen.as_secs()) > timeout);
                let state = if draining.contains(&metadata.id) {
                    ExecutorState::Draining
                } else if stopping || silent {
                    ExecutorState::Stopping
                } else {
                    ExecutorState::Active
                };
                ExecutorView {
                    slots: metadata.specification.vcores as usize,
                    running_tasks: running.get(&metadata.id).copied().unwrap_or(0),
                    holds_shuffle: needed.contains(&metadata.id),
                    state,
                    address: ExecutorAddress {
                        id: metadata.id,
                        host: metadata.host,
                        port: metadata.port,
                    },
                }
            })
            .collect();
        Ok(Self {
            pending_tasks,
            running_tasks: running.values().sum(),
            executors,
        })
    }

    /// The executors the autoscaler can count on or drain: stopping ones are gone already.
    pub(crate) fn snapshot(
        &self,
        now: std::time::Duration,
        starting: usize,
        slots_per_executor: usize,
    ) -> policy::Snapshot {
        policy::Snapshot {
            now,
            pending_tasks: self.pending_tasks,
            executors: self
                .executors
                .iter()
                .filter(|e| e.state != ExecutorState::Stopping)
                .map(|e| policy::Executor {
                    id: e.address.id.clone(),
                    slots: e.slots,
                    running_tasks: e.running_tasks,
                    draining: e.state == ExecutorState::Draining,
                    holds_shuffle: e.holds_shuffle,
                })
                .collect(),
            starting,
            slots_per_executor,
        }
    }

    pub(crate) fn executor(&self, id: &str) -> Option<&ExecutorView> {
        self.executors.iter().find(|e| e.address.id == id)
    }
}

/// Executors whose output a stage of a running job has written or will read.
fn shuffle_holders(stage: &ExecutionStage) -> Vec<String> {
    let from_inputs = |inputs: &HashMap<usize, StageOutput>| -> Vec<String> {
        inputs
            .values()
            .flat_map(|output| output.partition_locations.values())
            .flatten()
            .map(|location| location.executor_meta.id.clone())
            .collect()
    };
    let from_tasks = |tasks: &[TaskInfo]| -> Vec<String> {
        tasks
            .iter()
            .filter_map(|task| match &task.task_status {
                task_status::Status::Successful(done) => Some(done.executor_id.clone()),
                _ => None,
            })
            .collect()
    };
    match stage {
        ExecutionStage::UnResolved(stage) => from_inputs(&stage.inputs),
        ExecutionStage::Resolved(stage) => from_inputs(&stage.inputs),
        ExecutionStage::Running(stage) => {
            let mut holders = from_inputs(&stage.inputs);
            holders.extend(from_tasks(&stage.task_infos));
            holders
        }
        ExecutionStage::Successful(stage) => {
            let mut holders = from_inputs(&stage.inputs);
            holders.extend(from_tasks(&stage.task_infos));
            holders
        }
        ExecutionStage::Failed(stage) => from_tasks(&stage.task_infos),
    }
}
