//! Keeping a table's storage bounded when it is committed to every few seconds (a
//! continuous run): a Delta table's small files compacted into large ones (`OPTIMIZE`),
//! and files that no version within the table's retention reads removed (`VACUUM`),
//! with what killed builds left behind (uncommitted files, staging directories) once it
//! is older than that retention.
//!
//! Age is what makes removal safe while other runs write: a file younger than the
//! retention is kept whoever wrote it, committed or not.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use deltalake_core::DeltaTable;
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::table::config::TablePropertiesExt;
use object_store::path::Path as StorePath;
use strata_language::{Format, TableName};

use crate::cleanup;
use crate::commit_log::CommitLog;
use crate::delta_publish;
use crate::error::{Result, StorageError};
use crate::paths::{TableDir, Warehouse};
use crate::raw_compaction;

/// How long a file no version reads is kept in a raw table: what Delta keeps one for
/// when a table does not say (`delta.deletedFileRetentionDuration`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What one pass did to a table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tidied {
    /// Small data files rewritten into fewer, larger ones.
    pub compacted: u64,
    /// Files removed: replaced or compacted away, or left by killed builds, and older
    /// than the retention.
    pub removed: u64,
}

impl std::ops::AddAssign for Tidied {
    fn add_assign(&mut self, other: Self) {
        self.compacted += other.compacted;
        self.removed += other.removed;
    }
}

/// Tidies one table of `warehouse`, and the tables beside it: its quarantine, and the
/// keys it deleted. A raw table keeps files no version reads for `raw_retention`; a
/// Delta table for its own `delta.deletedFileRetentionDuration`.
pub async fn tidy(
    warehouse: &Warehouse,
    table: &TableName,
    raw_retention: Duration,
) -> Result<Tidied> {
    match table.layer.format() {
        Some(Format::Avro) => tidy_raw(&warehouse.table(table), raw_retention).await,
        Some(_) => {
            let mut tidied = tidy_delta(&warehouse.table(table)).await?;
            for beside in [table.quarantine(), table.deleted()] {
                tidied += tidy_delta(&warehouse.table(&beside)).await?;
            }
            Ok(tidied)
        }
        None => Ok(Tidied::default()),
    }
}

/// Compacts a Delta table's small files, vacuums it with its own retention (the files
/// of no log entry too, which killed builds leave), and removes staging directories
/// older than that retention (Delta leaves `_`-prefixed directories alone).
async fn tidy_delta(dir: &TableDir) -> Result<Tidied> {
    if !delta_publish::has_table(dir).await {
        return Ok(Tidied::default());
    }
    let delta = |error| StorageError::delta(dir, error);
    let table = delta_publish::load(dir, None).await?;
    let (table, metrics) = table.optimize().await.map_err(delta)?;
    let retention = retention(&table).map_err(delta)?;
    let (_, vacuumed) = table
        .vacuum()
        .with_mode(VacuumMode::Full)
        .await
        .map_err(delta)?;
    let staged = remove_older(dir, &dir.staging_root(), retention, &HashSet::new()).await;
    Ok(Tidied {
        compacted: metrics.num_files_removed,
        removed: vacuumed.files_deleted.len() as u64 + staged,
    })
}

/// How long the table keeps files its versions no longer read.
fn retention(table: &DeltaTable) -> std::result::Result<Duration, deltalake_core::DeltaTableError> {
    Ok(table
        .snapshot()?
        .table_config()
        .deleted_file_retention_duration())
}

/// Removes a raw table's files that its log does not name (replaced by a full refresh
/// or a compaction, or written by builds that never committed) once older than
/// `retention`, and the records of compactions whose files are gone.
async fn tidy_raw(dir: &TableDir, retention: Duration) -> Result<Tidied> {
    let folded = CommitLog::new(dir).folded().await?;
    let recent = raw_compaction::recently_replaced(dir, retention).await;
    if recent.unknown {
        return Ok(Tidied::default());
    }
    let kept: HashSet<String> = folded
        .files
        .iter()
        .chain(&folded.rejects)
        .map(|added| added.file.path.clone())
        .chain(recent.files)
        .collect();
    let removed = remove_older(dir, dir.path(), retention, &kept).await;
    for record in &recent.old_records {
        cleanup::remove_file(dir, record).await;
    }
    Ok(Tidied {
        compacted: 0,
        removed,
    })
}

/// Removes the files under `below` not in `keep` (paths relative to the table) and
/// last modified more than `retention` ago, except the table's own logs.
async fn remove_older(
    dir: &TableDir,
    below: &StorePath,
    retention: Duration,
    keep: &HashSet<String>,
) -> u64 {
    let Some(cutoff) = SystemTime::now().checked_sub(retention) else {
        return 0;
    };
    let mut removed = 0;
    for file in cleanup::listed(dir, below).await {
        let relative = cleanup::relative_to(dir, &file.location);
        let old = SystemTime::from(file.last_modified) < cutoff;
        if old && !keep.contains(&relative) && !TableDir::is_log(&relative) {
            removed += u64::from(cleanup::remove_file(dir, &file.location).await);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;
    use strata_language::Layer;

    use super::*;
    use crate::commit_log::Commit;
    use crate::delta_publish::Provenance;
    use crate::increment;

    fn batch(from: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![from, from + 1]))],
        )
        .unwrap()
    }

    async fn append(dir: &TableDir, from: i64, inputs: &str) {
        let table = delta_publish::open(dir).await.unwrap();
        let provenance = Provenance {
            inputs: Some(serde_json::json!(inputs)),
            stream_position: None,
        };
        delta_publish::write(table, vec![batch(from)], false, &[], "t", provenance)
            .await
            .unwrap();
    }

    async fn ids(rows: Arc<dyn datafusion::catalog::TableProvider>) -> Vec<i64> {
        let ctx = SessionContext::new();
        let frame = ctx.read_table(rows).unwrap();
        let mut ids: Vec<i64> = frame
            .collect()
            .await
            .unwrap()
            .iter()
            .flat_map(|batch| {
                let column = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap();
                column.values().to_vec()
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Sets a file's modification time `age` back, as if written that long ago.
    fn age(path: &std::path::Path, age: Duration) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    fn parquet_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".parquet")
            })
            .count()
    }

    #[tokio::test]
    async fn a_tidied_delta_table_has_few_files_and_its_readers_still_read_only_what_is_new() {
        let root = std::env::temp_dir().join(format!("strata-tidy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let warehouse = Warehouse::local(&root);
        let name = TableName {
            layer: Layer::Enriched,
            name: "events".into(),
        };
        let dir = warehouse.table(&name);
        let local = dir.local_dir().unwrap();
        for batch in 0..6 {
            append(&dir, batch * 10, "built from raw v1").await;
        }
        let retain = |seconds: u64| {
            let dir = dir.clone();
            async move {
                let properties = [(
                    "delta.deletedFileRetentionDuration".to_owned(),
                    format!("interval {seconds} seconds"),
                )];
                delta_publish::load(&dir, None)
                    .await
                    .unwrap()
                    .set_tbl_properties()
                    .with_properties(properties.into())
                    .await
                    .unwrap();
            }
        };
        retain(30).await;
        // A killed build's file and staging, and a running build's, too young to touch.
        let killed = local.join("part-run-killed-00000.parquet");
        std::fs::write(&killed, "PAR1").unwrap();
        age(&killed, Duration::from_secs(60));
        let young = local.join("part-run-running-00000.parquet");
        std::fs::write(&young, "PAR1").unwrap();
        let staged = local.join("_strata_staging/run-killed/part-0.parquet");
        std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
        std::fs::write(&staged, "PAR1").unwrap();
        age(&staged, Duration::from_secs(60));
        let reader_at = delta_publish::latest_version(&dir).await.unwrap() + 1;
        assert_eq!(parquet_files(&local), 8);

        let tidied = tidy(&warehouse, &name, DEFAULT_RETENTION).await.unwrap();

        assert_eq!(
            tidied,
            Tidied {
                compacted: 6,
                removed: 2
            }
        );
        assert!(young.exists() && !killed.exists() && !staged.exists());
        // The compacted files are kept for readers of older versions, within the retention.
        assert_eq!(parquet_files(&local), 6 + 1 + 1);
        retain(0).await;
        let tidied = tidy(&warehouse, &name, DEFAULT_RETENTION).await.unwrap();
        assert_eq!(
            tidied,
            Tidied {
                compacted: 0,
                removed: 7
            }
        );
        assert_eq!(parquet_files(&local), 1, "the compacted file");
        let table = delta_publish::load(&dir, None).await.unwrap();
        assert_eq!(
            delta_publish::recorded_inputs(&table).await,
            Some(serde_json::json!("built from raw v1")),
            "compaction and vacuum are not builds"
        );

        // A reader from before the compaction reads only the rows added after it.
        append(&dir, 100, "built from raw v2").await;
        let planned = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let ctx = SessionContext::new();
        let state = ctx.state();
        let new = increment::read(
            &dir,
            strata_language::Format::Delta,
            Some(reader_at),
            &planned,
            &state,
        )
        .await
        .unwrap();
        assert!(!new.whole);
        assert_eq!(ids(new.rows).await, vec![100, 101]);
        let all = increment::read(&dir, strata_language::Format::Delta, None, &planned, &state)
            .await
            .unwrap();
        assert_eq!(ids(all.rows).await.len(), 14);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn a_raw_table_loses_only_old_files_its_log_does_not_name() {
        let root = std::env::temp_dir().join(format!("strata-tidy-raw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let warehouse = Warehouse::local(&root);
        let name = TableName {
            layer: Layer::Raw,
            name: "events".into(),
        };
        let dir = warehouse.table(&name);
        let local = dir.local_dir().unwrap();
        let written = |path: &str| crate::avro_sink::WrittenFile {
            path: path.to_owned(),
            rows: 1,
            bytes: 3,
        };
        let committed = "ingest_date=2026-11-01/part-run-1-0.avro";
        let rejected = "_rejects/part-run-1-0.avro";
        let old_orphan = "ingest_date=2026-11-01/part-run-killed-0.avro";
        let young_orphan = "ingest_date=2026-12-06/part-run-now-0.avro";
        for file in [committed, rejected, old_orphan, young_orphan] {
            let path = local.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "Obj").unwrap();
        }
        CommitLog::new(&dir)
            .commit(Commit {
                files: vec![written(committed)],
                rejects: vec![written(rejected)],
                ..Commit::new(0, "run-1")
            })
            .await
            .unwrap();
        let old = DEFAULT_RETENTION + Duration::from_secs(60);
        for file in [committed, rejected, old_orphan] {
            age(&local.join(file), old);
        }
        let log_entry = std::fs::read_dir(local.join("_strata_log"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        age(&log_entry.path(), old);

        let tidied = tidy(&warehouse, &name, DEFAULT_RETENTION).await.unwrap();

        assert_eq!(
            tidied,
            Tidied {
                compacted: 0,
                removed: 1
            }
        );
        for kept in [committed, rejected, young_orphan] {
            assert!(local.join(kept).exists(), "{kept}");
        }
        assert!(!local.join(old_orphan).exists());
        assert!(log_entry.path().exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn a_compacted_raw_table_reads_the_same_rows_and_keeps_replaced_files_for_the_retention()
    {
        use crate::avro_sink::{AvroFileSink, FileSink};

        let root = std::env::temp_dir().join(format!("strata-compact-raw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let warehouse = Warehouse::local(&root);
        let name = TableName {
            layer: Layer::Raw,
            name: "readings".into(),
        };
        let dir = warehouse.table(&name);
        let log = CommitLog::new(&dir);
        let schema = batch(0).schema();
        for version in 0..5_u64 {
            let day = if version < 3 { "day=1" } else { "day=2" };
            let mut sink = Box::new(
                AvroFileSink::create(&dir, format!("{day}/part-{version}.avro"), &schema).unwrap(),
            );
            sink.write(&batch(version as i64 * 10)).await.unwrap();
            let file = sink.finish().await.unwrap();
            log.commit(Commit {
                files: vec![file],
                ..Commit::new(version, "run")
            })
            .await
            .unwrap();
        }
        let ctx = SessionContext::new();
        let read = |dir: TableDir| {
            let state = ctx.state();
            async move {
                ids(crate::raw_table::provider(&dir, &state)
                    .await
                    .unwrap()
                    .unwrap())
                .await
            }
        };
        let before = read(dir.clone()).await;
        assert_eq!(before.len(), 10);

        // Every reader has read versions 0 to 3: day=1's three files merge, day=2's one
        // old file has no partner, and version 4 is not read by all yet.
        let replaced = raw_compaction::compact(&dir, 4, "tidy-1").await.unwrap();
        assert_eq!(replaced, 3);
        assert_eq!(read(dir.clone()).await, before);
        let folded = log.folded().await.unwrap();
        assert_eq!(folded.files.len(), 3);
        let new: Vec<String> = folded
            .files_since(4)
            .unwrap()
            .into_iter()
            .map(|file| file.path)
            .collect();
        assert_eq!(
            new,
            ["day=2/part-4.avro"],
            "a reader at 4 reads only version 4"
        );
        assert_eq!(
            raw_compaction::compact(&dir, 4, "tidy-2").await.unwrap(),
            0,
            "nothing left to merge"
        );

        // The replaced files outlive the sweep within the retention, whatever their age.
        let local = dir.local_dir().unwrap();
        for version in 0..3 {
            age(
                &local.join(format!("day=1/part-{version}.avro")),
                Duration::from_secs(3600),
            );
        }
        let tidied = tidy_raw(&dir, Duration::from_secs(60)).await.unwrap();
        assert_eq!(tidied.removed, 0);
        assert!(local.join("day=1/part-0.avro").exists());
        // Once its record is older than the retention, they go, and the record with them.
        let records = local.join("_strata_replaced");
        for record in std::fs::read_dir(&records).unwrap() {
            age(&record.unwrap().path(), Duration::from_secs(3600));
        }
        let tidied = tidy_raw(&dir, Duration::from_secs(60)).await.unwrap();
        assert_eq!(tidied.removed, 3);
        assert_eq!(std::fs::read_dir(&records).unwrap().count(), 0);
        assert_eq!(read(dir.clone()).await, before);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
