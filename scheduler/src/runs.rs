//! The runs a scheduler knows: each one's summary, every event so far, and a live feed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use strata_language::TableName;
use strata_proto::pipeline::{RunEvent, RunFinished, RunState, RunSummary, run_event};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

/// Events a slow watcher may fall behind by before it misses some (it is told so).
const LIVE_BUFFER: usize = 4096;

/// One submitted run.
pub(crate) struct Run {
    /// The tables the run builds, to tidy if it is cancelled.
    tables: Vec<TableName>,
    summary: Mutex<RunSummary>,
    events: Mutex<Vec<RunEvent>>,
    live: broadcast::Sender<RunEvent>,
    task: Mutex<Option<AbortHandle>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Run {
    fn new(tables: Vec<TableName>, summary: RunSummary) -> Self {
        Self {
            tables,
            summary: Mutex::new(summary),
            events: Mutex::new(Vec::new()),
            live: broadcast::channel(LIVE_BUFFER).0,
            task: Mutex::new(None),
        }
    }

    pub(crate) fn tables(&self) -> &[TableName] {
        &self.tables
    }

    pub(crate) fn summary(&self) -> RunSummary {
        lock(&self.summary).clone()
    }

    pub(crate) fn state(&self) -> RunState {
        lock(&self.summary).state()
    }

    /// Keeps an event and sends it to every watcher.
    pub(crate) fn record(&self, event: RunEvent) {
        let mut events = lock(&self.events);
        let _ = self.live.send(event.clone());
        events.push(event);
    }

    /// Every event so far and a feed of the ones to come, with nothing lost in between.
    pub(crate) fn subscribe(&self) -> (Vec<RunEvent>, broadcast::Receiver<RunEvent>) {
        let events = lock(&self.events);
        (events.clone(), self.live.subscribe())
    }

    pub(crate) fn set_task(&self, task: AbortHandle) {
        *lock(&self.task) = Some(task);
    }

    /// Ends the run once: its state, duration and error, and the final event. False if it had ended.
    pub(crate) fn finish(
        &self,
        state: RunState,
        report_json: String,
        error: String,
        now_ms: u64,
    ) -> bool {
        {
            let mut summary = lock(&self.summary);
            if summary.state() != RunState::Running {
                return false;
            }
            summary.set_state(state);
            summary.duration_ms = now_ms.saturating_sub(summary.submitted_at_ms);
            summary.error = error.clone();
        }
        self.record(RunEvent {
            event: Some(run_event::Event::RunFinished(RunFinished {
                state: state as i32,
                report_json,
                error,
            })),
        });
        true
    }

    /// Stops the orchestration; what it had not committed stays uncommitted.
    pub(crate) fn abort(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// Every run of this scheduler process (state is in memory, like Ballista's).
#[derive(Default)]
pub(crate) struct Runs {
    runs: Mutex<BTreeMap<String, Arc<Run>>>,
}

impl Runs {
    pub(crate) fn add(&self, tables: Vec<TableName>, summary: RunSummary) -> Arc<Run> {
        let run = Arc::new(Run::new(tables, summary.clone()));
        lock(&self.runs).insert(summary.run_id, Arc::clone(&run));
        run
    }

    pub(crate) fn get(&self, run_id: &str) -> Option<Arc<Run>> {
        lock(&self.runs).get(run_id).cloned()
    }

    /// The runs under way, each table's state and rows read so far, for the console:
    /// `[{"run_id", "tables": {table: {"state", "rows_read"}}}]`.
    pub(crate) fn progress(&self) -> serde_json::Value {
        let runs: Vec<Arc<Run>> = lock(&self.runs).values().cloned().collect();
        let live: Vec<serde_json::Value> = runs
            .iter()
            .filter(|run| run.state() == RunState::Running)
            .map(|run| {
                let mut tables = serde_json::Map::new();
                for event in lock(&run.events).iter() {
                    let (table, state, rows) = match &event.event {
                        Some(run_event::Event::Started(started)) => {
                            (started.table.clone(), "building".to_owned(), None)
                        }
                        Some(run_event::Event::Progress(progress)) => (
                            progress.table.clone(),
                            "building".to_owned(),
                            Some(progress.rows_read),
                        ),
                        Some(run_event::Event::Finished(finished)) => {
                            let report: serde_json::Value =
                                serde_json::from_str(&finished.report_json).unwrap_or_default();
                            let table = report["table"].as_str().unwrap_or_default().to_owned();
                            let rows = report["rows_read"].as_u64();
                            let state = report["status"].as_str().unwrap_or("finished");
                            (table, state.to_owned(), rows)
                        }
                        _ => continue,
                    };
                    let entry = tables
                        .entry(table)
                        .or_insert_with(|| serde_json::json!({ "rows_read": 0 }));
                    entry["state"] = serde_json::json!(state);
                    if let Some(rows) = rows {
                        entry["rows_read"] = serde_json::json!(rows);
                    }
                }
                serde_json::json!({ "run_id": run.summary().run_id, "tables": tables })
            })
            .collect();
        serde_json::Value::Array(live)
    }

    /// Summaries, newest first.
    pub(crate) fn summaries(&self) -> Vec<RunSummary> {
        let mut summaries: Vec<RunSummary> =
            lock(&self.runs).values().map(|run| run.summary()).collect();
        summaries.sort_by_key(|summary| std::cmp::Reverse(summary.submitted_at_ms));
        summaries
    }
}
