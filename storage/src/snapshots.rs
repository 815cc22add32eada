//! Delta tables kept loaded for readers that query them again and again (a Flight SQL
//! server): each table's newest snapshot, brought up to date by reading only the log
//! entries after it, at most once per interval, instead of the whole log per query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deltalake_core::DeltaTable;

use crate::delta_publish;
use crate::error::Result;
use crate::paths::TableDir;

/// One table's snapshot, and when its log was last looked at.
#[derive(Default)]
struct Entry {
    table: Option<DeltaTable>,
    checked: Option<Instant>,
}

/// The newest snapshots of the Delta tables read through it.
#[derive(Default)]
pub struct DeltaSnapshots {
    /// How long a snapshot is served before the log is looked at again; zero looks at
    /// it for every read.
    interval: Duration,
    /// By table location; each entry has its own lock, so reads of one table share one
    /// look at its log and reads of others do not wait.
    tables: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>,
}

impl std::fmt::Debug for DeltaSnapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaSnapshots")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl DeltaSnapshots {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            tables: Mutex::default(),
        }
    }

    /// The newest version of the Delta table in `dir` as of at most the interval ago;
    /// `None` when there is no table there.
    pub async fn latest(&self, dir: &TableDir) -> Result<Option<DeltaTable>> {
        let entry = {
            let mut tables = self
                .tables
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(tables.entry(dir.to_string()).or_default())
        };
        let mut entry = entry.lock().await;
        let fresh = entry
            .checked
            .is_some_and(|checked| checked.elapsed() < self.interval);
        if fresh {
            return Ok(entry.table.clone());
        }
        // A table dropped since (its log gone) reads as no new commit: looked for first.
        let table = if !delta_publish::has_table(dir).await {
            None
        } else {
            match entry.table.take() {
                Some(mut table) => match table.update_incremental(None).await {
                    Ok(()) => Some(table),
                    // Its log rewritten: it is loaded anew.
                    Err(error) => {
                        tracing::debug!("{dir}: reloading its snapshot: {error}");
                        Some(delta_publish::load(dir, None).await?)
                    }
                },
                None => Some(delta_publish::load(dir, None).await?),
            }
        };
        entry.table = table.clone();
        entry.checked = Some(Instant::now());
        Ok(table)
    }

    /// Whether a table was seen in `dir` within the interval (no request is made).
    pub fn seen_recently(&self, dir: &TableDir) -> bool {
        let tables = self
            .tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tables.get(&dir.to_string()).is_some_and(|entry| {
            entry.try_lock().is_ok_and(|entry| {
                entry.table.is_some()
                    && entry
                        .checked
                        .is_some_and(|checked| checked.elapsed() < self.interval)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use strata_language::{Layer, TableName};

    use super::*;
    use crate::Warehouse;
    use crate::delta_publish::Provenance;

    async fn append(dir: &TableDir, id: i64) {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![id]))]).unwrap();
        let table = delta_publish::open(dir).await.unwrap();
        let provenance = Provenance {
            inputs: None,
            stream_position: None,
        };
        delta_publish::write(table, vec![batch], false, &[], "t", provenance)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_snapshot_follows_new_commits_once_its_interval_has_passed() {
        let root = std::env::temp_dir().join(format!("strata-snapshots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let warehouse = Warehouse::local(&root);
        let dir = warehouse.table(&TableName {
            layer: Layer::Enriched,
            name: "scores".into(),
        });
        let every_read = DeltaSnapshots::new(Duration::ZERO);
        let kept = DeltaSnapshots::new(Duration::from_secs(3600));
        assert!(
            every_read.latest(&dir).await.unwrap().is_none(),
            "no table yet"
        );
        append(&dir, 1).await;
        let version = |table: Option<DeltaTable>| table.and_then(|table| table.version());
        assert_eq!(version(every_read.latest(&dir).await.unwrap()), Some(0));
        assert_eq!(version(kept.latest(&dir).await.unwrap()), Some(0));
        assert!(kept.seen_recently(&dir));
        assert!(!every_read.seen_recently(&dir), "zero keeps nothing fresh");

        append(&dir, 2).await;
        assert_eq!(version(every_read.latest(&dir).await.unwrap()), Some(1));
        assert_eq!(
            version(kept.latest(&dir).await.unwrap()),
            Some(0),
            "within its interval a snapshot is served as it was"
        );

        std::fs::remove_dir_all(&root).unwrap();
        assert!(every_read.latest(&dir).await.unwrap().is_none(), "dropped");
    }
}
