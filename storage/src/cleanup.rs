//! Removing what a stopped run wrote but never committed, so no file of it is left
//! for a reader that lists directories instead of reading commits.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use strata_language::{Format, TableName};

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

/// Removes the run's uncommitted files from the tables it built.
///
/// A Delta table whose log exists but cannot be read is skipped (and named in the
/// sweep): deleting by age alone could delete committed files.
pub async fn remove_uncommitted(
    warehouse: &Warehouse,
    tables: &[TableName],
    run_id: &str,
    since_ms: u64,
) -> Sweep {
    let mut sweep = Sweep::default();
    for table in tables {
        let dir = warehouse.table(table);
        if table.layer.format() == Some(Format::Avro) {
            sweep.removed += remove_with_prefix(dir.path(), &paths::run_file_prefix(run_id));
            continue;
        }
        remove_dir(&dir.staging(run_id));
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
            for file in data_files(dir.path()) {
                let relative = file
                    .strip_prefix(dir.path())
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                if !committed.contains(&relative) && modified_ms(&file) >= since_ms {
                    sweep.removed += usize::from(remove_file(&file));
                }
            }
        }
    }
    sweep
}

/// Removes files whose name starts with `prefix`, in `dir` and below; returns how many went.
pub fn remove_with_prefix(dir: &Path, prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            removed += remove_with_prefix(&path, prefix);
        } else if entry.file_name().to_string_lossy().starts_with(prefix) {
            removed += usize::from(remove_file(&path));
        }
    }
    removed
}

/// Removes a directory and what it holds; one that is not there is already removed.
pub fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!("removing {}: {error}", dir.display()),
    }
}

fn remove_file(file: &Path) -> bool {
    match std::fs::remove_file(file) {
        Ok(()) => true,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => {
            tracing::warn!("removing {}: {error}", file.display());
            false
        }
    }
}

/// The data files the Delta table in `dir` names now: none if it has no log yet, an
/// error if it has one that cannot be read.
async fn committed_files(dir: &TableDir) -> Result<HashSet<String>> {
    let log = dir.delta_log();
    let has_log = match std::fs::read_dir(&log) {
        Ok(mut entries) => entries.next().is_some(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => return Err(StorageError::io(&log, error)),
    };
    if !has_log {
        return Ok(HashSet::new());
    }
    let table = delta_publish::load(dir, None).await?;
    let snapshot = table
        .snapshot()
        .map_err(|error| StorageError::delta(dir.path(), error))?;
    Ok(snapshot
        .log_data()
        .iter()
        .map(|file| file.path().to_string())
        .collect())
}

/// Parquet files under a Delta table's directory, outside its log and staging area.
fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if TableDir::is_data_entry(&name) {
                files.extend(data_files(&path));
            }
        } else if name.ends_with(".parquet") {
            files.push(path);
        }
    }
    files
}

fn modified_ms(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |age| age.as_millis() as u64)
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
        std::fs::create_dir_all(dir.delta_log()).unwrap();
        // Injected failure: a log that deltalake cannot read.
        std::fs::write(
            dir.delta_log().join("00000000000000000000.json"),
            "not json",
        )
        .unwrap();
        let committed = dir.join("part-00000-committed.parquet");
        std::fs::write(&committed, b"PAR1").unwrap();
        let unlogged = warehouse
            .table(&events.quarantine())
            .join("part-00000-new.parquet");
        std::fs::create_dir_all(unlogged.parent().unwrap()).unwrap();
        std::fs::write(&unlogged, b"PAR1").unwrap();

        let sweep = remove_uncommitted(&warehouse, std::slice::from_ref(&events), "run-1", 0).await;

        assert!(committed.exists(), "a file of an unreadable table is kept");
        assert_eq!(sweep.skipped.len(), 1);
        assert_eq!(sweep.skipped[0].0, events);
        assert!(
            !unlogged.exists(),
            "a table with no log has nothing committed"
        );
        assert_eq!(sweep.removed, 1);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
