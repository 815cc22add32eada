//! Draining executors: the set of executors that get no new tasks, shared by the
//! autoscaler, the drain RPC and the cluster state.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// The executors being drained.
#[derive(Debug, Clone, Default)]
pub(crate) struct Draining(Arc<Mutex<BTreeSet<String>>>);

impl Draining {
    fn lock(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks an executor: from now on it gets no new tasks. False if it already was.
    pub(crate) fn insert(&self, executor_id: &str) -> bool {
        self.lock().insert(executor_id.to_owned())
    }

    pub(crate) fn contains(&self, executor_id: &str) -> bool {
        self.lock().contains(executor_id)
    }

    /// Forgets executors that are no longer registered.
    pub(crate) fn retain(&self, registered: &HashSet<String>) {
        self.lock().retain(|id| registered.contains(id));
    }
}
