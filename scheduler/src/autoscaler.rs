//! The autoscaler's loop: observe the cluster, let the policy decide, have the backend
//! carry it out, and stop drained executors once no running job needs them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_autoscale::Backend;
use strata_autoscale::policy::{self, Decision, Memory, Settings};

use crate::cluster_log::ClusterLog;
use crate::cluster_view::{ClusterView, ExecutorState};
use crate::draining::Draining;
use crate::metrics::Metrics;

/// How long an executor asked for may take to register before it is no longer expected.
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// What the scheduler needs to scale its executors.
#[derive(Clone)]
pub struct Autoscale {
    pub settings: Settings,
    pub backend: Arc<dyn Backend>,
}

/// Acts on one observation of the cluster: the autoscaler decides on it and the
/// metrics show it. A cluster whose state could not be read is not an empty one, so
/// then nothing is decided or shown, and the next tick tries again.
pub(crate) async fn observed(
    observation: Result<ClusterView, ballista_core::error::BallistaError>,
    autoscaler: Option<&mut Autoscaler>,
    draining: &Draining,
    metrics: &Metrics,
    log: &ClusterLog,
) {
    let mut view = match observation {
        Ok(view) => view,
        Err(error) => {
            tracing::warn!(
                "cannot read the cluster's state, so nothing is scaled this tick: {error}"
            );
            return;
        }
    };
    let starting = match autoscaler {
        Some(autoscaler) => {
            autoscaler.step(&mut view, draining, metrics, log).await;
            autoscaler.starting()
        }
        None => 0,
    };
    metrics.observe(&view, starting);
    log.observed(&view);
}

/// The policy's memory and what the loop knows beyond the scheduler's state.
pub(crate) struct Autoscaler {
    settings: Settings,
    backend: Arc<dyn Backend>,
    memory: Memory,
    began: Instant,
    /// When each executor still expected was asked for.
    starting: Vec<Instant>,
    /// Executors registered at the last tick.
    known: HashSet<String>,
    /// Executors this autoscaler chose to drain (a preStop drain is not ours to stop).
    chosen: HashSet<String>,
    /// Drained executors the backend was told to stop.
    stopped: HashSet<String>,
}

impl Autoscaler {
    pub(crate) fn new(autoscale: Autoscale) -> Self {
        Self {
            settings: autoscale.settings,
            backend: autoscale.backend,
            memory: Memory::default(),
            began: Instant::now(),
            starting: Vec::new(),
            known: HashSet::new(),
            chosen: HashSet::new(),
            stopped: HashSet::new(),
        }
    }

    /// Executors asked for that have not registered yet.
    pub(crate) fn starting(&self) -> usize {
        self.starting.len()
    }

    /// One tick: marks stopped executors in `view`, stops drained ones, then decides.
    pub(crate) async fn step(
        &mut self,
        view: &mut ClusterView,
        draining: &Draining,
        metrics: &Metrics,
        log: &ClusterLog,
    ) {
        let registered: HashSet<String> = view
            .executors
            .iter()
            .map(|e| e.address.id.clone())
            .collect();
        for _ in registered.difference(&self.known) {
            if !self.starting.is_empty() {
                self.starting.remove(0);
            }
        }
        self.starting
            .retain(|asked| asked.elapsed() < START_TIMEOUT);
        self.known = registered.clone();
        self.chosen.retain(|id| registered.contains(id));
        self.stopped.retain(|id| registered.contains(id));
        draining.retain(&registered);
        for executor in &mut view.executors {
            if self.stopped.contains(&executor.address.id) {
                executor.state = ExecutorState::Stopping;
            }
        }

        self.stop_drained(view, metrics, log).await;

        let snapshot = view.snapshot(
            self.began.elapsed(),
            self.starting.len(),
            self.backend.slots_per_executor(),
        );
        let (decision, next) = policy::decide(&self.settings, &self.memory, &snapshot);
        let backend = self.backend.name();
        match decision {
            Decision::Hold => self.memory = next,
            Decision::Add { count, reason } => match self.backend.add(count).await {
                Ok(()) => {
                    tracing::info!("autoscaler: adding {count} executor(s) ({backend}): {reason}");
                    log.decided(format!("add {count} executor(s) ({backend}): {reason}"));
                    metrics.decided("add");
                    self.starting
                        .extend(std::iter::repeat_n(Instant::now(), count));
                    self.memory = next;
                }
                Err(error) => {
                    tracing::warn!("autoscaler: cannot add {count} executor(s): {error}");
                    metrics.backend_failed();
                    // Keep the timers, not the change, so the next tick tries again.
                    self.memory = Memory {
                        last_add: self.memory.last_add,
                        ..next
                    };
                }
            },
            Decision::Drain { executor, reason } => {
                let address = view
                    .executor(&executor)
                    .map_or_else(|| executor.clone(), |e| e.address.to_string());
                tracing::info!("autoscaler: draining executor {address}: {reason}");
                log.decided(format!("drain executor {address}: {reason}"));
                draining.insert(&executor);
                self.chosen.insert(executor);
                metrics.decided("drain");
                self.memory = next;
            }
        }
    }

    /// Stops each draining executor that runs nothing and holds nothing a running job needs.
    async fn stop_drained(&mut self, view: &mut ClusterView, metrics: &Metrics, log: &ClusterLog) {
        for executor in &mut view.executors {
            let drained = executor.state == ExecutorState::Draining
                && self.chosen.contains(&executor.address.id)
                && executor.running_tasks == 0
                && !executor.holds_shuffle;
            if !drained {
                continue;
            }
            match self.backend.remove(&executor.address).await {
                Ok(()) => {
                    tracing::info!(
                        "autoscaler: stopping drained executor {} ({})",
                        executor.address,
                        self.backend.name()
                    );
                    metrics.decided("stop");
                    log.decided(format!(
                        "stop drained executor {} ({})",
                        executor.address,
                        self.backend.name()
                    ));
                    self.stopped.insert(executor.address.id.clone());
                    executor.state = ExecutorState::Stopping;
                }
                Err(error) => {
                    tracing::warn!(
                        "autoscaler: cannot stop drained executor {}: {error}",
                        executor.address
                    );
                    metrics.backend_failed();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use ballista_core::error::BallistaError;
    use strata_autoscale::{ExecutorAddress, policy::Settings};

    use super::*;

    /// A backend that only records what it was asked to do.
    #[derive(Default)]
    struct Recording {
        added: Mutex<usize>,
    }

    #[async_trait::async_trait]
    impl strata_autoscale::Backend for Recording {
        fn name(&self) -> &'static str {
            "recording"
        }

        fn slots_per_executor(&self) -> usize {
            2
        }

        async fn add(&self, count: usize) -> strata_autoscale::Result<()> {
            *self.added.lock().unwrap() += count;
            Ok(())
        }

        async fn remove(&self, _executor: &ExecutorAddress) -> strata_autoscale::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_unreadable_cluster_is_not_an_empty_one() {
        let backend = Arc::new(Recording::default());
        let settings = Settings {
            min: 1,
            ..Settings::default()
        };
        let mut autoscaler = Autoscaler::new(Autoscale {
            settings,
            backend: Arc::clone(&backend) as Arc<dyn Backend>,
        });
        let (draining, metrics) = (Draining::default(), Metrics::default());
        let log = ClusterLog::default();

        // Injected failure: the scheduler cannot list its executors.
        let failed = Err(BallistaError::General(
            "injected: executor listing failed".into(),
        ));
        observed(failed, Some(&mut autoscaler), &draining, &metrics, &log).await;
        assert_eq!(
            *backend.added.lock().unwrap(),
            0,
            "nothing is added on a failed read"
        );

        // The same tick on a cluster that really is empty reaches the minimum at once.
        observed(
            Ok(ClusterView::default()),
            Some(&mut autoscaler),
            &draining,
            &metrics,
            &log,
        )
        .await;
        assert_eq!(*backend.added.lock().unwrap(), 1);
        let decisions = log.snapshot()["decisions"].to_string();
        assert!(decisions.contains("add 1 executor(s)"), "{decisions}");
    }
}
