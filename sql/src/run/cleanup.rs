//! Removing what a stopped run wrote but never committed, so no file of it is left
//! for a reader that lists directories instead of reading commits.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use deltalake_core::{DeltaTableBuilder, ensure_table_uri};

use crate::language::{Layer, TableName};
use crate::storage::catalog::QUARANTINE_SUFFIX;
use crate::warehouse::Warehouse;

/// Where MERGE KEY and SCD2 builds stage their checked rows, inside the table's directory.
pub const STAGING_DIR: &str = "_strata_staging";

/// Removes the run's uncommitted files from the tables it built; returns how many went.
pub async fn remove_uncommitted(
    warehouse: &Warehouse,
    tables: &[TableName],
    run_id: &str,
    since_ms: u64,
) -> usize {
    let mut removed = 0;
    for table in tables {
        let dir = warehouse.table_path(table);
        if table.layer == Layer::Raw {
            removed += remove_with_prefix(&dir, &format!("part-{run_id}-"));
            continue;
        }
        let _ = std::fs::remove_dir_all(dir.join(STAGING_DIR).join(run_id));
        let quarantine = dir.with_file_name(format!("{}{QUARANTINE_SUFFIX}", table.name));
        for dir in [dir, quarantine] {
            let committed = committed_files(&dir).await;
            for file in data_files(&dir) {
                let relative = file
                    .strip_prefix(&dir)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                if !committed.contains(&relative) && modified_ms(&file) >= since_ms {
                    removed += usize::from(std::fs::remove_file(&file).is_ok());
                }
            }
        }
    }
    removed
}

/// Removes files whose name starts with `prefix`, in `dir` and below.
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
            removed += usize::from(std::fs::remove_file(path).is_ok());
        }
    }
    removed
}

/// The data files the Delta table in `dir` names now (none if it has no commit).
async fn committed_files(dir: &Path) -> HashSet<String> {
    let Ok(url) = ensure_table_uri(dir.display().to_string()) else {
        return HashSet::new();
    };
    let Ok(builder) = DeltaTableBuilder::from_url(url) else {
        return HashSet::new();
    };
    match builder.load().await {
        Ok(table) => match table.snapshot() {
            Ok(snapshot) => snapshot
                .log_data()
                .iter()
                .map(|file| file.path().to_string())
                .collect(),
            Err(_) => HashSet::new(),
        },
        Err(_) => HashSet::new(),
    }
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
            if !name.starts_with('_') {
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
