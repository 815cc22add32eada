//! What a run did, table by table: shown after a run and kept in the run history.

use object_store::ObjectStoreExt;
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

/// A landing file rejected whole, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedFile {
    pub path: String,
    pub reason: String,
    /// Its source's policy is `fail_file`: the run's exit status says so.
    #[serde(default)]
    pub fails_run: bool,
}

/// One landing file a raw build read: rows in = rows ingested + rows rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandingFileReport {
    pub path: String,
    /// Rows read, good and bad (not blank lines, comments or the header); unknown
    /// (zero) for a file rejected whole.
    pub rows_read: u64,
    pub rows_ingested: u64,
    pub rows_rejected: u64,
    /// The whole file was rejected (see the table's `rejected_files` for why).
    pub rejected_whole: bool,
}

impl LandingFileReport {
    /// A file read to its end.
    pub fn read(path: &str, rows_read: u64, rows_rejected: u64) -> Self {
        Self {
            path: path.to_owned(),
            rows_read,
            rows_ingested: rows_read - rows_rejected.min(rows_read),
            rows_rejected,
            rejected_whole: false,
        }
    }

    /// A file rejected whole.
    pub fn rejected(path: &str) -> Self {
        Self {
            path: path.to_owned(),
            rows_read: 0,
            rows_ingested: 0,
            rows_rejected: 0,
            rejected_whole: true,
        }
    }
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
    /// A raw table's landing rows set aside in its rejects table.
    #[serde(default)]
    pub rows_rejected: u64,
    /// A raw table's landing files read to their end with no bad row.
    #[serde(default)]
    pub files_ingested: u64,
    /// A raw table's landing files whose good rows were ingested and bad rows rejected.
    #[serde(default)]
    pub files_partly_rejected: u64,
    /// A raw table's landing files rejected whole.
    #[serde(default)]
    pub files_rejected: u64,
    /// A raw table's landing files that a concurrent run committed first; this run
    /// dropped what it wrote from them, so each is ingested once.
    #[serde(default)]
    pub files_raced: u64,
    /// A raw table's landing files deleted or moved away once committed (`after_ingest`).
    #[serde(default)]
    pub landing_files_removed: u64,
    /// When the oldest landing file this raw build found new was delivered (its
    /// modification time, ms since the epoch): how far behind its deliveries it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_new_file_ms: Option<u64>,
    /// A raw table's landing files, one by one.
    #[serde(default)]
    pub landing_files: Vec<LandingFileReport>,
    /// What a table that reads a `STREAM` read of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamRead>,
    /// How a table that reads no `STREAM` was built: from the rows added to one input
    /// (`incremental: …`) or whole, and why (`full: …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// What a raw table of a Kafka source read of its topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicRead>,
}

/// The offsets a raw build read of each partition of its Kafka topic, and what it left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRead {
    pub topic: String,
    /// Each partition read: `[partition, first offset, offset after the last]`.
    pub partitions: Vec<(i32, i64, i64)>,
    /// Messages in the topic not read yet, after this build (the per-build bound).
    pub lag_messages: i64,
    /// How long the oldest message left unread had waited, in milliseconds, when the
    /// build planned; none when nothing is left or the brokers did not say in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
    /// Each partition with messages left unread, in partition order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<PartitionLag>,
    /// Messages deleted before they were read, skipped (`'on_data_loss' 'skip'`).
    pub messages_lost: u64,
}

/// A partition a build left messages in, and how long the oldest of them had waited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLag {
    pub partition: i32,
    pub messages: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
}

/// How far a run's Kafka sources are behind their topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaLag {
    pub messages: i64,
    pub lag_ms: Option<u64>,
}

/// The part of its stream an incremental build read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRead {
    pub table: String,
    /// The position read from; none when the whole table was read (a first build, a
    /// full refresh, a changed definition, or a stream rewritten since).
    pub from: Option<u64>,
    /// The position read up to, recorded in the build's commit.
    pub to: u64,
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
            rows_rejected: 0,
            files_ingested: 0,
            files_partly_rejected: 0,
            files_rejected: 0,
            files_raced: 0,
            landing_files_removed: 0,
            oldest_new_file_ms: None,
            landing_files: Vec::new(),
            stream: None,
            strategy: None,
            topic: None,
        }
    }

    /// Takes back a landing file that a concurrent run committed first: its rows and
    /// rejects are that run's, and this run dropped what it wrote from it.
    pub fn withdraw_landing_file(&mut self, path: &str) {
        if let Some(index) = self.landing_files.iter().position(|file| file.path == path) {
            let file = self.landing_files.remove(index);
            self.rows_read -= file.rows_read;
            self.rows_rejected -= file.rows_rejected;
            self.rows_written -= file.rows_ingested;
            let counter = match (file.rejected_whole, file.rows_rejected) {
                (true, _) => &mut self.files_rejected,
                (false, 0) => &mut self.files_ingested,
                (false, _) => &mut self.files_partly_rejected,
            };
            *counter -= 1;
        }
        self.rejected_files.retain(|file| file.path != path);
        self.files_raced += 1;
    }

    /// Counts a landing file a raw build read or rejected.
    pub fn add_landing_file(&mut self, file: LandingFileReport) {
        self.rows_read += file.rows_read;
        self.rows_rejected += file.rows_rejected;
        match (file.rejected_whole, file.rows_rejected) {
            (true, _) => self.files_rejected += 1,
            (false, 0) => self.files_ingested += 1,
            (false, _) => self.files_partly_rejected += 1,
        }
        self.landing_files.push(file);
    }
}

/// Whether a report is a run's last word, or what was saved when it started: a
/// history entry still `started` after its run is gone says the run was interrupted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    Started,
    #[default]
    Finished,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub started_at_ms: u64,
    pub duration_ms: u64,
    pub tables: Vec<TableReport>,
    #[serde(default)]
    pub state: ReportState,
}

impl RunReport {
    /// Whether every table built, was up to date, or is a source, and no file was
    /// rejected by a `fail_file` policy.
    pub fn succeeded(&self) -> bool {
        self.failures().is_empty()
    }

    /// Each table that failed or was skipped, as `table: why`, and each file a
    /// `fail_file` policy rejected.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for table in &self.tables {
            if matches!(table.status, TableStatus::Failed | TableStatus::Skipped) {
                failures.push(format!(
                    "{}: {}",
                    table.table,
                    table.error.as_deref().unwrap_or("")
                ));
            }
            for file in table.rejected_files.iter().filter(|file| file.fails_run) {
                failures.push(format!("{}: {}: {}", table.table, file.path, file.reason));
            }
        }
        failures
    }

    /// Each raw table that set rows or files aside, as `table: what`, for `--strict`.
    pub fn rejections(&self) -> Vec<String> {
        self.tables
            .iter()
            .filter(|table| table.rows_rejected > 0 || table.files_rejected > 0)
            .map(|table| {
                format!(
                    "{}: {} row(s) and {} file(s) rejected (--strict)",
                    table.table, table.rows_rejected, table.files_rejected
                )
            })
            .collect()
    }

    /// How long the oldest landing file the run ingested had waited when the run started.
    pub fn lag_ms(&self) -> u64 {
        self.tables
            .iter()
            .filter_map(|table| table.oldest_new_file_ms)
            .min()
            .map_or(0, |oldest| self.started_at_ms.saturating_sub(oldest))
    }

    /// The messages of the Kafka topics its raw tables read that are left for later
    /// builds, and the longest any of them had waited; `None` when no table reads a topic.
    pub fn kafka_lag(&self) -> Option<KafkaLag> {
        self.tables
            .iter()
            .filter_map(|table| table.topic.as_ref())
            .map(|topic| KafkaLag {
                messages: topic.lag_messages,
                lag_ms: topic.lag_ms,
            })
            .reduce(|total, lag| KafkaLag {
                messages: total.messages + lag.messages,
                lag_ms: total.lag_ms.max(lag.lag_ms),
            })
    }

    /// Where the report is kept in the warehouse's run history (a path or a URL).
    pub fn history_path(&self, warehouse: &Warehouse) -> String {
        warehouse.display_path(&warehouse.run_report(&self.run_id))
    }

    /// The warehouse's run history, newest first.
    pub async fn history(warehouse: &Warehouse) -> Result<Vec<RunReport>, StorageError> {
        use futures::TryStreamExt;
        let dir = warehouse.runs_dir();
        let listed: Vec<_> = warehouse
            .store()
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|error| StorageError::store(&warehouse.display_path(&dir), &error))?;
        let mut reports = Vec::new();
        for object in listed {
            if object.location.extension() != Some("json") {
                continue;
            }
            if let Some(report) = Self::read(warehouse, &object.location).await? {
                reports.push(report);
            }
        }
        reports.sort_by_key(|report| std::cmp::Reverse(report.started_at_ms));
        Ok(reports)
    }

    /// The report of one run in the warehouse's history, if it has one.
    pub async fn load(
        warehouse: &Warehouse,
        run_id: &str,
    ) -> Result<Option<RunReport>, StorageError> {
        Self::read(warehouse, &warehouse.run_report(run_id)).await
    }

    async fn read(
        warehouse: &Warehouse,
        path: &object_store::path::Path,
    ) -> Result<Option<RunReport>, StorageError> {
        let location = warehouse.display_path(path);
        let bytes = match warehouse.store().get(path).await {
            Ok(found) => found
                .bytes()
                .await
                .map_err(|error| StorageError::store(&location, &error))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(StorageError::store(&location, &error)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| StorageError::Corrupt {
                location,
                reason: error.to_string(),
            })
    }

    /// Removes from the run history the reports older than `older_than`, beyond the
    /// newest `keep`; how many went. A continuous run does this now and then, so its
    /// history stays a size `strata runs` and the console can read.
    pub async fn prune(
        warehouse: &Warehouse,
        older_than: std::time::Duration,
        keep: usize,
    ) -> Result<usize, StorageError> {
        use futures::TryStreamExt;
        let dir = warehouse.runs_dir();
        let mut listed: Vec<_> = warehouse
            .store()
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|error| StorageError::store(&warehouse.display_path(&dir), &error))?;
        listed.sort_by(|a, b| (b.last_modified, &b.location).cmp(&(a.last_modified, &a.location)));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64);
        let cutoff_ms = now_ms.saturating_sub(older_than.as_millis() as i64);
        let mut removed = 0;
        for old in listed
            .iter()
            .skip(keep)
            .filter(|object| object.last_modified.timestamp_millis() < cutoff_ms)
        {
            match warehouse.store().delete(&old.location).await {
                Ok(()) => removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => {
                    return Err(StorageError::store(
                        &warehouse.display_path(&old.location),
                        &error,
                    ));
                }
            }
        }
        Ok(removed)
    }

    /// Saves the report in the warehouse's run history.
    pub async fn save(&self, warehouse: &Warehouse) -> Result<String, StorageError> {
        let location = self.history_path(warehouse);
        let text = serde_json::to_vec_pretty(self).map_err(|error| StorageError::Corrupt {
            location: location.clone(),
            reason: error.to_string(),
        })?;
        warehouse
            .store()
            .put(&warehouse.run_report(&self.run_id), text.into())
            .await
            .map_err(|error| StorageError::store(&location, &error))?;
        Ok(location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pruning_keeps_the_newest_reports_and_those_within_the_retention() {
        let warehouse = Warehouse::open("memory://report-prune/wh").unwrap();
        for number in 0..5 {
            RunReport {
                run_id: format!("run-{number}"),
                started_at_ms: number,
                duration_ms: 0,
                tables: Vec::new(),
                state: ReportState::Finished,
            }
            .save(&warehouse)
            .await
            .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(RunReport::prune(&warehouse, day, 2).await.unwrap(), 0);
        let now = std::time::Duration::ZERO;
        assert_eq!(RunReport::prune(&warehouse, now, 2).await.unwrap(), 3);
        let left: Vec<String> = RunReport::history(&warehouse)
            .await
            .unwrap()
            .into_iter()
            .map(|report| report.run_id)
            .collect();
        assert_eq!(left, ["run-4", "run-3"]);
    }
}
