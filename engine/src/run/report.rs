//! What a run did, table by table: shown after a run and kept in the run history.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use strata_storage::{StorageError, Warehouse};

/// How a table's build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    /// New data was committed.
    Built,
    /// Nothing new to do (for raw tables: no new landing files).
    UpToDate,
    /// A landing source: read in place, nothing to build.
    Source,
    /// The build failed and committed nothing.
    Failed,
    /// Not built because a table it reads failed.
    Skipped,
}

/// A landing file that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedFile {
    pub path: String,
    pub reason: String,
}

/// One table's line in the run summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableReport {
    pub table: String,
    pub layer: String,
    pub status: TableStatus,
    pub rows_read: u64,
    pub rows_written: u64,
    pub rows_dropped: u64,
    pub rows_quarantined: u64,
    pub files: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub rejected_files: Vec<RejectedFile>,
    /// The processes (`host:pid`) that wrote the table's new files.
    #[serde(default)]
    pub writers: Vec<String>,
}

impl TableReport {
    /// An empty report for a table, filled in as the build goes.
    pub fn new(table: String, layer: String, status: TableStatus) -> Self {
        Self {
            table,
            layer,
            status,
            rows_read: 0,
            rows_written: 0,
            rows_dropped: 0,
            rows_quarantined: 0,
            files: 0,
            bytes: 0,
            duration_ms: 0,
            error: None,
            rejected_files: Vec::new(),
            writers: Vec::new(),
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub started_at_ms: u64,
    pub duration_ms: u64,
    pub tables: Vec<TableReport>,
}

impl RunReport {
    /// Whether every table built, was up to date, or is a source.
    pub fn succeeded(&self) -> bool {
        self.tables
            .iter()
            .all(|table| !matches!(table.status, TableStatus::Failed | TableStatus::Skipped))
    }

    /// Each table that failed or was skipped, as `table: why`.
    pub fn failures(&self) -> Vec<String> {
        self.tables
            .iter()
            .filter(|table| matches!(table.status, TableStatus::Failed | TableStatus::Skipped))
            .map(|table| format!("{}: {}", table.table, table.error.as_deref().unwrap_or("")))
            .collect()
    }

    /// Where the report is kept in the warehouse's run history.
    pub fn history_path(&self, warehouse: &Warehouse) -> PathBuf {
        warehouse.run_report(&self.run_id)
    }

    /// Saves the report in the warehouse's run history.
    pub fn save(&self, warehouse: &Warehouse) -> Result<PathBuf, StorageError> {
        let path = self.history_path(warehouse);
        let dir = warehouse.runs_dir();
        std::fs::create_dir_all(&dir).map_err(|source| StorageError::io(&dir, source))?;
        let text = serde_json::to_string_pretty(self).map_err(|error| StorageError::Corrupt {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|source| StorageError::io(&path, source))?;
        Ok(path)
    }
}
