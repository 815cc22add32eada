//! Removing what a stopped run wrote but never committed, so no file of it is left
//! for a reader that lists directories instead of reading commits.

use std::collections::HashSet;

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStoreExt};
use strata_language::{Format, TableName};

use crate::avro_sink::WrittenFile;
use crate::delta_publish;
use crate::error::{Result, StorageError};
use crate::paths::{self, TableDir, Warehouse};

/// What a sweep did: files removed, and tables it left alone because it could not
/// tell their committed files from the run's.
#[derive(Debug, Default)]
pub struct Sweep {
    pub removed: usize,
    pub skipped: Vec<(TableName, StorageError)>,
}

/// Removes the run's uncommitted files from the tables it built: those named with its
/// run id ([`paths::run_file_prefix`]), never another run's, whatever their age.
///
/// A Delta table whose log exists but cannot be read is skipped (and named in the
/// sweep): a file of this run that a commit names must stay.
pub async fn remove_uncommitted(
    warehouse: &Warehouse,
    tables: &[TableName],
    run_id: &str,
) -> Sweep {
    let mut sweep = Sweep::default();
    let prefix = paths::run_file_prefix(run_id);
    for table in tables {
        let dir = warehouse.table(table);
        if table.layer.format() == Some(Format::Avro) {
            sweep.removed += remove_with_prefix(&dir, &prefix).await;
            continue;
        }
        remove_below(&dir, &dir.staging(run_id).path().clone()).await;
        for name in [table.clone(), table.quarantine()] {
            let dir = warehouse.table(&name);
            let committed = match committed_files(&dir).await {
                Ok(committed) => committed,
                Err(error) => {
                    tracing::warn!("not sweeping {name}: {error}");
                    sweep.skipped.push((name, error));
                    continue;
                }
            };
            for file in data_files(&dir).await {
                let relative = relative_to(&dir, &file.location);
                let ours = file
                    .location
                    .filename()
                    .is_some_and(|name| name.starts_with(&prefix));
                if ours && !committed.contains(&relative) {
                    sweep.removed += usize::from(remove_file(&dir, &file.location).await);
                }
            }
        }
    }
    sweep
}

/// Removes the table's files whose name starts with `prefix`, at any depth; returns how many went.
pub async fn remove_with_prefix(dir: &TableDir, prefix: &str) -> usize {
    let mut removed = 0;
    for file in listed(dir, dir.path()).await {
        if file
            .location
            .filename()
            .is_some_and(|name| name.starts_with(prefix))
        {
            removed += usize::from(remove_file(dir, &file.location).await);
        }
    }
    removed
}

/// Removes files the table's build wrote and will not commit, by their known paths (no listing).
pub async fn remove_written(dir: &TableDir, files: &[WrittenFile]) -> usize {
    let mut removed = 0;
    for file in files {
        removed += usize::from(remove_file(dir, &dir.join(&file.path)).await);
    }
    removed
}

/// Removes a directory of the table and what it holds; one that is not there is already removed.
pub async fn remove_below(dir: &TableDir, below: &StorePath) {
    for file in listed(dir, below).await {
        remove_file(dir, &file.location).await;
    }
    if let Some(local) = dir.local_dir() {
        // A local store leaves empty directories behind.
        let relative = relative_to(dir, below);
        let _ = std::fs::remove_dir_all(local.join(relative));
    }
}

/// Every file under `below`, or none if it cannot be listed (a sweep is tidiness).
pub(crate) async fn listed(dir: &TableDir, below: &StorePath) -> Vec<ObjectMeta> {
    match dir.store().list(Some(below)).try_collect().await {
        Ok(files) => files,
        Err(error) => {
            tracing::debug!("listing {}: {error}", dir.location().url_of(below));
            Vec::new()
        }
    }
}

pub(crate) async fn remove_file(dir: &TableDir, file: &StorePath) -> bool {
    match dir.store().delete(file).await {
        Ok(()) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(error) => {
            tracing::warn!("removing {}: {error}", dir.location().url_of(file));
            false
        }
    }
}

/// A path in the table, relative to the table's directory.
pub(crate) fn relative_to(dir: &TableDir, path: &StorePath) -> String {
    path.prefix_match(dir.path())
        .map(|parts| {
            parts
                .map(|part| part.as_ref().to_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_else(|| path.to_string())
}

/// The data files the Delta table in `dir` names now: none if it has no log yet, an
/// error if it has one that cannot be read.
async fn committed_files(dir: &TableDir) -> Result<HashSet<String>> {
    if !delta_publish::has_table(dir).await {
        return Ok(HashSet::new());
    }
    let table = delta_publish::load(dir, None).await?;
    let snapshot = table
        .snapshot()
        .map_err(|error| StorageError::delta(dir, error))?;
    Ok(snapshot
        .log_data()
        .iter()
        .map(|file| file.path().to_string())
        .collect())
}

/// Parquet files under a Delta table's directory, outside its log and staging area.
async fn data_files(dir: &TableDir) -> Vec<ObjectMeta> {
    listed(dir, dir.path())
        .await
        .into_iter()
        .filter(|file| {
            let relative = relative_to(dir, &file.location);
            relative.ends_with(".parquet")
                && relative
                    .split('/')
                    .rev()
                    .skip(1)
                    .all(TableDir::is_data_entry)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_language::Layer;

    #[tokio::test]
    async fn an_unreadable_delta_log_is_skipped_not_swept() {
        let root = std::env::temp_dir().join(format!("strata-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let warehouse = Warehouse::local(&root);
        let events = TableName {
            layer: Layer::Enriched,
            name: "events".into(),
        };
        let dir = warehouse.table(&events);
        let store = warehouse.store();
        // Injected failure: a log that deltalake cannot read.
        store
            .put(
                &dir.delta_log().join("00000000000000000000.json"),
                "not json".into(),
            )
            .await
            .unwrap();
        let ours = paths::run_file_prefix("run-1");
        let committed = dir.join(&format!("{ours}00000-committed.parquet"));
        store.put(&committed, "PAR1".into()).await.unwrap();
        let quarantine = warehouse.table(&events.quarantine());
        let unlogged = quarantine.join(&format!("{ours}00000-new.parquet"));
        store.put(&unlogged, "PAR1".into()).await.unwrap();
        let another_run_s = quarantine.join(&format!(
            "{}00000-new.parquet",
            paths::run_file_prefix("run-2")
        ));
        store.put(&another_run_s, "PAR1".into()).await.unwrap();
        let staged = quarantine.join("_strata_staging/run-1/part-1.parquet");
        store.put(&staged, "PAR1".into()).await.unwrap();

        let sweep = remove_uncommitted(&warehouse, std::slice::from_ref(&events), "run-1").await;

        assert!(
            store.head(&committed).await.is_ok(),
            "a file of an unreadable table is kept"
        );
        assert_eq!(sweep.skipped.len(), 1);
        assert_eq!(sweep.skipped[0].0, events);
        assert!(
            store.head(&unlogged).await.is_err(),
            "a table with no log has nothing committed"
        );
        assert!(
            store.head(&another_run_s).await.is_ok(),
            "another run's uncommitted file is never swept"
        );
        assert!(
            store.head(&staged).await.is_ok(),
            "staged files are not data files"
        );
        assert_eq!(sweep.removed, 1);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn a_raw_run_s_files_are_removed_by_prefix_in_a_store() {
        let warehouse = Warehouse::open("memory://sweep-raw/wh").unwrap();
        let events = TableName {
            layer: Layer::Raw,
            name: "events".into(),
        };
        let dir = warehouse.table(&events);
        let ours = dir.join(&format!(
            "day=1/{}00001-0.avro",
            paths::run_file_prefix("run-1")
        ));
        let theirs = dir.join(&format!(
            "day=1/{}00001-0.avro",
            paths::run_file_prefix("run-2")
        ));
        for file in [&ours, &theirs] {
            warehouse.store().put(file, "Obj".into()).await.unwrap();
        }
        let sweep = remove_uncommitted(&warehouse, &[events], "run-1").await;
        assert_eq!(sweep.removed, 1);
        assert!(warehouse.store().head(&ours).await.is_err());
        assert!(warehouse.store().head(&theirs).await.is_ok());
    }
}
