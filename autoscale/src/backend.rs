//! What carries out the policy's decisions: processes here or pods on Kubernetes.

use async_trait::async_trait;

use crate::error::Result;

/// Where a registered executor listens, as the scheduler knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorAddress {
    /// Ballista's executor id.
    pub id: String,
    /// The host it advertises (a pod IP on Kubernetes).
    pub host: String,
    /// Its Arrow Flight port.
    pub port: u16,
}

impl std::fmt::Display for ExecutorAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Starts and stops executors.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Task slots each new executor brings.
    fn slots_per_executor(&self) -> usize;
    /// Asks for `count` more executors; they register with the scheduler when up.
    async fn add(&self, count: usize) -> Result<()>;
    /// Stops an executor that has been drained.
    async fn remove(&self, executor: &ExecutorAddress) -> Result<()>;
}
