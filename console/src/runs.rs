//! The runs a console lists: the warehouse's history, and where a scheduler serves the
//! console, its runs under way with each table's progress.

use serde_json::{Value, json};
use strata_engine::run::{ReportState, RunReport};
use strata_storage::Warehouse;

use crate::error::{Error, Result};

/// Every run, newest first, with its totals; runs under way come first.
pub(crate) async fn list(warehouse: &Warehouse, live: Option<Value>) -> Result<Value> {
    let live = live.unwrap_or(json!([]));
    let history = RunReport::history(warehouse).await?;
    let runs: Vec<Value> = history
        .iter()
        .map(|report| summary(report, is_live(&live, &report.run_id)))
        .collect();
    Ok(json!({ "live": live, "runs": runs }))
}

fn is_live(live: &Value, run_id: &str) -> bool {
    live.as_array()
        .is_some_and(|runs| runs.iter().any(|run| run["run_id"] == run_id))
}

fn summary(report: &RunReport, live: bool) -> Value {
    let total = |rows: fn(&strata_engine::run::TableReport) -> u64| -> u64 {
        report.tables.iter().map(rows).sum()
    };
    let state = match (&report.state, live) {
        (ReportState::Started, true) => "running",
        // A report still "started" with nothing running it: its run stopped part way.
        (ReportState::Started, false) => "interrupted",
        (ReportState::Finished, _) if report.succeeded() => "succeeded",
        (ReportState::Finished, _) => "failed",
    };
    json!({
        "run_id": report.run_id,
        "state": state,
        "started_at_ms": report.started_at_ms,
        "duration_ms": report.duration_ms,
        "tables": report.tables.len(),
        "failures": report.failures(),
        "rows_read": total(|table| table.rows_read),
        "rows_written": total(|table| table.rows_written),
        "rows_dropped": total(|table| table.rows_dropped),
        "rows_quarantined": total(|table| table.rows_quarantined),
        "rows_rejected": total(|table| table.rows_rejected),
    })
}

/// The report of one run, read alone rather than with the whole history.
async fn read(warehouse: &Warehouse, run_id: &str) -> Result<RunReport> {
    let unknown = || Error::UnknownRun(run_id.to_owned());
    // A run id names a file: nothing that could step out of the history's directory.
    if run_id.is_empty()
        || !run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(unknown());
    }
    RunReport::load(warehouse, run_id)
        .await?
        .ok_or_else(unknown)
}

/// One run: its summary and its report, tables, errors and all.
pub(crate) async fn one(warehouse: &Warehouse, run_id: &str, live: Option<Value>) -> Result<Value> {
    let live = live.unwrap_or(json!([]));
    let report = read(warehouse, run_id).await?;
    let progress = live
        .as_array()
        .and_then(|runs| runs.iter().find(|run| run["run_id"] == run_id).cloned());
    Ok(json!({
        "summary": summary(&report, progress.is_some()),
        "report": serde_json::to_value(&report).unwrap_or_default(),
        "progress": progress,
    }))
}
