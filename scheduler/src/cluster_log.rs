//! What the web console shows of the cluster: its executors now, how many there were
//! and how busy over the last minutes, and the autoscaler's decisions.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::cluster_view::{ClusterView, ExecutorState};

/// Observations kept: ten minutes at one every half second.
const POINTS: usize = 1200;
/// Autoscaler decisions kept.
const DECISIONS: usize = 200;

#[derive(Default)]
struct Log {
    latest: Value,
    points: VecDeque<Value>,
    decisions: VecDeque<Value>,
}

/// The cluster as the console sees it, written by the observer loop.
#[derive(Default)]
pub(crate) struct ClusterLog {
    log: Mutex<Log>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |age| age.as_millis() as u64)
}

impl ClusterLog {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps one observation.
    pub(crate) fn observed(&self, view: &ClusterView) {
        let executors: Vec<Value> = view
            .executors
            .iter()
            .map(|executor| {
                json!({
                    "id": executor.address.id,
                    "host": format!("{}:{}", executor.address.host, executor.address.port),
                    "slots": executor.slots,
                    "busy": executor.running_tasks,
                    "draining": executor.state == ExecutorState::Draining,
                    "state": executor.state.label(),
                })
            })
            .collect();
        let point = json!({
            "at_ms": now_ms(),
            "executors": view.executors.len(),
            "slots": view.executors.iter().map(|executor| executor.slots).sum::<usize>(),
            "busy": view.running_tasks,
            "pending": view.pending_tasks,
        });
        let mut log = self.log();
        log.latest = json!({ "executors": executors, "pending_tasks": view.pending_tasks });
        log.points.push_back(point);
        if log.points.len() > POINTS {
            log.points.pop_front();
        }
    }

    /// Keeps one of the autoscaler's decisions, in words.
    pub(crate) fn decided(&self, decision: String) {
        let mut log = self.log();
        log.decisions
            .push_back(json!({ "at_ms": now_ms(), "decision": decision }));
        if log.decisions.len() > DECISIONS {
            log.decisions.pop_front();
        }
    }

    /// `{"executors": [...], "history": [...], "decisions": [...]}`, newest decision first.
    pub(crate) fn snapshot(&self) -> Value {
        let log = self.log();
        let mut decisions: Vec<Value> = log.decisions.iter().cloned().collect();
        decisions.reverse();
        json!({
            "executors": log.latest.get("executors").cloned().unwrap_or(json!([])),
            "pending_tasks": log.latest.get("pending_tasks").cloned().unwrap_or(json!(0)),
            "history": log.points.iter().cloned().collect::<Vec<_>>(),
            "decisions": decisions,
        })
    }
}
