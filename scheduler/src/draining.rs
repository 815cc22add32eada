//! Draining executors: Ballista's cluster state with a set of executors that get no
//! new tasks. Ballista already skips an executor whose heartbeat says Terminating, so
//! a draining executor's heartbeats read as Terminating here while the real ones are
//! kept underneath.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use ballista_core::JobId;
use ballista_core::error::Result;
use ballista_core::serde::protobuf::{ExecutorHeartbeat, ExecutorStatus, executor_status};
use ballista_core::serde::scheduler::{ExecutorData, ExecutorMetadata};
use ballista_scheduler::cluster::{BoundTask, ClusterState, ClusterStateEventStream, ExecutorSlot};
use ballista_scheduler::config::TaskDistributionPolicy;
use ballista_scheduler::state::task_manager::JobInfoCache;

/// The executors being drained, shared by the autoscaler, the drain RPC and the cluster state.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<Mutex<BTreeSet<String>>>);

impl Draining {
    fn lock(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks an executor: from now on it gets no new tasks. False if it already was.
    pub fn insert(&self, executor_id: &str) -> bool {
        self.lock().insert(executor_id.to_owned())
    }

    pub fn contains(&self, executor_id: &str) -> bool {
        self.lock().contains(executor_id)
    }

    /// Forgets executors that are no longer registered.
    pub fn retain(&self, registered: &HashSet<String>) {
        self.lock().retain(|id| registered.contains(id));
    }
}

/// Ballista's cluster state, with draining executors shown as Terminating.
pub struct DrainingClusterState {
    inner: Arc<dyn ClusterState>,
    draining: Draining,
}

impl DrainingClusterState {
    pub fn new(inner: Arc<dyn ClusterState>, draining: Draining) -> Self {
        Self { inner, draining }
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

#[async_trait::async_trait]
impl ClusterState for DrainingClusterState {
    async fn init(&self) -> Result<()> {
        self.inner.init().await
    }

    async fn bind_schedulable_tasks(
        &self,
        distribution: TaskDistributionPolicy,
        active_jobs: Arc<HashMap<JobId, JobInfoCache>>,
        executors: Option<HashSet<String>>,
    ) -> Result<Vec<BoundTask>> {
        let executors = executors
            .unwrap_or_else(|| self.inner.executor_heartbeats().into_keys().collect())
            .into_iter()
            .filter(|id| !self.draining.contains(id))
            .collect();
        self.inner
            .bind_schedulable_tasks(distribution, active_jobs, Some(executors))
            .await
    }

    async fn unbind_tasks(&self, executor_slots: Vec<ExecutorSlot>) -> Result<()> {
        self.inner.unbind_tasks(executor_slots).await
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

    async fn remove_executor(&self, executor_id: &str) -> Result<()> {
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
