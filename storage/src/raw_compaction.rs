//! Compacting a raw table: the small Avro files of its builds (a continuous run writes
//! one per batch) rewritten, partition by partition, into few large ones, so reading the
//! table, and folding its log, cost what its rows do rather than its history of builds.
//!
//! A compaction changes no row: its commit puts the new files where the old ones were,
//! with the old files' versions, so a reader that had read them reads nothing new.
//! Only files every reader has read are merged ([`compact`]'s `read_through`); a reader
//! behind them would have to read the whole table. The replaced files stay on disk for
//! the retention, for reads that started before the commit, and are named in a record
//! (`_strata_replaced/<version>.json`) until they are removed.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use crate::avro_sink::{AvroFileSink, FileSink, WrittenFile};
use crate::cleanup;
use crate::commit_log::{Added, Commit, CommitLog};
use crate::error::{Result, StorageError};
use crate::paths::{self, TableDir};
use crate::raw_table;
use crate::store::StoreRegistry;

/// Files smaller than this are worth merging.
pub const SMALL_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// A compacted file holds at most about this much (Delta's `OPTIMIZE` aims at 100 MB).
pub const TARGET_FILE_BYTES: u64 = 128 * 1024 * 1024;

/// The files one compaction replaced, kept until they are removed.
#[derive(Debug, Serialize, Deserialize)]
struct Replaced {
    files: Vec<String>,
}

/// Merges the small files of the versions before `read_through` (every reader of the
/// table has read them), each partition's into files of up to [`TARGET_FILE_BYTES`],
/// and commits them as one version. Returns how many files were replaced: none when
/// there was nothing to merge, or a build committed first (the next pass tries again).
pub async fn compact(dir: &TableDir, read_through: u64, run_id: &str) -> Result<u64> {
    let log = CommitLog::new(dir);
    let folded = log.folded().await?;
    let bins = bins(&folded.files, read_through);
    if bins.is_empty() {
        return Ok(0);
    }
    let version = folded.next_version;
    let ctx = SessionContext::new_with_state(
        SessionStateBuilder::new()
            .with_default_features()
            .with_runtime_env(StoreRegistry::runtime())
            .build(),
    );
    let mut rewrite = Rewrite::default();
    for (index, (partition_dir, files)) in bins.into_iter().enumerate() {
        let relative = paths::compacted_file(version, index, &partition_dir);
        match merge(dir, &ctx, &files, relative).await {
            Ok(file) => rewrite.files.push(file),
            Err(error) => {
                rewrite.abandon(dir).await;
                return Err(error);
            }
        }
        rewrite
            .replaced
            .extend(files.into_iter().map(|file| file.path));
    }
    let count = rewrite.replaced.len() as u64;
    Ok(
        if commit_rewrite(dir, &log, version, run_id, rewrite).await? {
            count
        } else {
            0
        },
    )
}

/// Files written in the place of others (a compaction's, an erasure's), to commit.
#[derive(Debug, Default)]
pub(crate) struct Rewrite {
    pub(crate) files: Vec<WrittenFile>,
    pub(crate) rejects: Vec<WrittenFile>,
    pub(crate) replaced: Vec<String>,
}

impl Rewrite {
    /// Removes what was written, which no commit will name.
    pub(crate) async fn abandon(&self, dir: &TableDir) {
        cleanup::remove_written(dir, &self.files).await;
        cleanup::remove_written(dir, &self.rejects).await;
    }
}

/// Commits a rewrite as `version`, after recording the files it replaces (kept for the
/// retention, for reads begun before). False, with nothing committed or left behind,
/// when another commit took the version first.
pub(crate) async fn commit_rewrite(
    dir: &TableDir,
    log: &CommitLog,
    version: u64,
    run_id: &str,
    rewrite: Rewrite,
) -> Result<bool> {
    // Recorded first: a record of files still committed (the commit lost) removes nothing.
    let record = match record_replaced(dir, version, rewrite.replaced.clone()).await {
        Ok(record) => record,
        Err(error) => {
            rewrite.abandon(dir).await;
            return match error {
                StorageError::CommitConflict { .. } => Ok(false),
                error => Err(error),
            };
        }
    };
    let commit = Commit {
        files: rewrite.files.clone(),
        rejects: rewrite.rejects.clone(),
        replaced: rewrite.replaced.clone(),
        ..Commit::new(version, run_id)
    };
    match log.commit(commit).await {
        Ok(_) => Ok(true),
        Err(error) => {
            rewrite.abandon(dir).await;
            cleanup::remove_file(dir, &record).await;
            match error {
                StorageError::CommitConflict { .. } => Ok(false),
                error => Err(error),
            }
        }
    }
}

/// The groups of small files to merge: by partition directory, oldest first, each up
/// to [`TARGET_FILE_BYTES`] and of two files or more.
fn bins(files: &[Added], read_through: u64) -> Vec<(String, Vec<WrittenFile>)> {
    let mut open: Vec<(String, Vec<WrittenFile>, u64)> = Vec::new();
    let mut full = Vec::new();
    for added in files {
        let file = &added.file;
        if added.version >= read_through || file.bytes >= SMALL_FILE_BYTES {
            continue;
        }
        let partition_dir = file
            .path
            .rsplit_once('/')
            .map_or("", |(dir, _)| dir)
            .to_owned();
        let at = match open.iter().position(|(dir, _, _)| *dir == partition_dir) {
            Some(at) => at,
            None => {
                open.push((partition_dir, Vec::new(), 0));
                open.len() - 1
            }
        };
        if open[at].2 + file.bytes > TARGET_FILE_BYTES {
            let files = std::mem::take(&mut open[at].1);
            open[at].2 = 0;
            full.push((open[at].0.clone(), files));
        }
        open[at].1.push(file.clone());
        open[at].2 += file.bytes;
    }
    full.extend(open.into_iter().map(|(dir, files, _)| (dir, files)));
    full.retain(|(_, files)| files.len() > 1);
    full
}

/// Writes the rows of `files` into one new file at `relative`.
async fn merge(
    dir: &TableDir,
    ctx: &SessionContext,
    files: &[WrittenFile],
    relative: String,
) -> Result<WrittenFile> {
    let failed = |error: DataFusionError| StorageError::Compaction {
        table: dir.to_string(),
        reason: error.to_string(),
    };
    let provider = raw_table::avro_files(dir, files, &ctx.state())
        .await
        .map_err(failed)?
        .ok_or_else(|| failed(DataFusionError::Internal("no files to compact".into())))?;
    let schema = provider.schema();
    let mut rows = ctx
        .read_table(provider)
        .map_err(failed)?
        .execute_stream()
        .await
        .map_err(failed)?;
    let mut sink = Box::new(AvroFileSink::create(dir, relative, &schema).map_err(failed)?);
    while let Some(batch) = rows.next().await {
        let written = match batch {
            Ok(batch) => sink.write(&batch).await,
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            sink.abort().await;
            return Err(failed(error));
        }
    }
    sink.finish().await.map_err(failed)
}

/// Records that the commit of `version` replaces `files`: they stay for the retention,
/// for reads begun before it, and are then removed. A version already recorded is a
/// conflict (another commit of it came first).
pub async fn record_replaced(
    dir: &TableDir,
    version: u64,
    files: Vec<String>,
) -> Result<StorePath> {
    let record = dir
        .replaced_records()
        .join(paths::replaced_record_file(version));
    let location = dir.location().url_of(&record);
    let body = serde_json::to_vec(&Replaced { files }).map_err(|error| StorageError::Corrupt {
        location: location.clone(),
        reason: error.to_string(),
    })?;
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match dir.store().put_opts(&record, body.into(), create).await {
        Ok(_) => Ok(record),
        Err(object_store::Error::AlreadyExists { .. }) => Err(StorageError::CommitConflict {
            table: dir.to_string(),
            version,
        }),
        Err(error) => Err(StorageError::store(&location, &error)),
    }
}

/// Removes now every file a compaction, an erasure or a full refresh replaced, whatever the retention,
/// and the records that named them; how many files went. Reads of versions before
/// those commits can no longer be made.
pub(crate) async fn remove_all_replaced(dir: &TableDir) -> Result<u64> {
    // A record whose commit lost names files still committed: those stay.
    let folded = CommitLog::new(dir).folded().await?;
    let live: HashSet<&str> = folded
        .files
        .iter()
        .chain(&folded.rejects)
        .map(|added| added.file.path.as_str())
        .collect();
    let mut removed = 0;
    for record in cleanup::listed(dir, &dir.replaced_records()).await {
        let location = dir.location().url_of(&record.location);
        let bytes = match dir.store().get(&record.location).await {
            Ok(got) => got.bytes().await,
            Err(error) => Err(error),
        }
        .map_err(|error| StorageError::store(&location, &error))?;
        let replaced: Replaced =
            serde_json::from_slice(&bytes).map_err(|error| StorageError::Corrupt {
                location,
                reason: error.to_string(),
            })?;
        for file in replaced
            .files
            .iter()
            .filter(|file| !live.contains(file.as_str()))
        {
            if cleanup::remove_file(dir, &dir.join(file)).await {
                removed += 1;
            }
        }
        cleanup::remove_file(dir, &record.location).await;
    }
    Ok(removed)
}

/// What compactions replaced, as a sweep of the table's files needs it.
#[derive(Debug, Default)]
pub(crate) struct RecentlyReplaced {
    /// Files replaced within the retention: reads begun before may still open them.
    pub files: HashSet<String>,
    /// A record within the retention could not be read: no file is known to be free.
    pub unknown: bool,
    /// Records of compactions older than the retention, removed after their files.
    pub old_records: Vec<StorePath>,
}

/// Reads the compaction records of the table against `retention`.
pub(crate) async fn recently_replaced(dir: &TableDir, retention: Duration) -> RecentlyReplaced {
    let cutoff = SystemTime::now()
        .checked_sub(retention)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut recent = RecentlyReplaced::default();
    for record in cleanup::listed(dir, &dir.replaced_records()).await {
        if SystemTime::from(record.last_modified) < cutoff {
            recent.old_records.push(record.location);
            continue;
        }
        let read = match dir.store().get(&record.location).await {
            Ok(got) => got.bytes().await.ok(),
            Err(_) => None,
        };
        match read.and_then(|bytes| serde_json::from_slice::<Replaced>(&bytes).ok()) {
            Some(replaced) => recent.files.extend(replaced.files),
            None => recent.unknown = true,
        }
    }
    recent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(version: u64, path: &str, bytes: u64) -> Added {
        Added {
            version,
            first_version: None,
            file: WrittenFile {
                path: path.into(),
                rows: 1,
                bytes,
            },
        }
    }

    #[test]
    fn small_files_every_reader_has_read_are_binned_by_partition() {
        let big = SMALL_FILE_BYTES;
        let files = [
            added(0, "day=1/a.avro", 10),
            added(1, "day=2/b.avro", 10),
            added(2, "day=1/c.avro", 10),
            added(3, "day=1/large.avro", big),
            added(4, "day=2/d.avro", 10),
            added(5, "day=1/unread.avro", 10),
        ];
        let bins = bins(&files, 5);
        let paths: Vec<(&str, Vec<&str>)> = bins
            .iter()
            .map(|(dir, files)| {
                (
                    dir.as_str(),
                    files.iter().map(|f| f.path.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            paths,
            [
                ("day=1", vec!["day=1/a.avro", "day=1/c.avro"]),
                ("day=2", vec!["day=2/b.avro", "day=2/d.avro"]),
            ]
        );
        assert!(
            super::bins(&files[..2], 5).is_empty(),
            "one file per partition"
        );
    }
}
