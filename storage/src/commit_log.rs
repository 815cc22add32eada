//! A raw table's commit log: one JSON file per successful build, naming the landing
//! files it ingested, the data files it wrote, and the files of its rejected rows, so
//! rows and rejects become visible together, once.
//!
//! Readers see only files named in a commit, so a build that fails or is killed part
//! way leaves nothing visible, and a landing file named in a commit is never ingested
//! again (idempotent re-runs).

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use crate::avro_sink::WrittenFile;
use crate::error::{Result, StorageError};
use crate::paths::{self, TableDir};

/// One delivered landing file, identified by path, size, modification time and, where
/// the store has one, its ETag: a file delivered again under the same name is new.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceFile {
    pub path: String,
    pub size: u64,
    pub modified_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// One successful build of a raw table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub version: u64,
    pub run_id: String,
    /// A full refresh: this commit replaces everything before it.
    pub reset: bool,
    pub sources: Vec<SourceFile>,
    pub files: Vec<WrittenFile>,
    /// Files of the rows it set aside (`raw.<table>__rejects`), relative to the table.
    #[serde(default)]
    pub rejects: Vec<WrittenFile>,
    /// Landing files no longer tracked: ingested, and since removed from their location
    /// (`after_ingest`), so they cannot be seen again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forgotten: Vec<String>,
    /// Data files this commit's `files` hold the rows of (a compaction): no row is new.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<String>,
    /// A stream source's positions after this build: where the next build reads from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positions: Vec<StreamPosition>,
    /// Messages deleted from the stream before they were read, skipped by this build
    /// (`'on_data_loss' 'skip'`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub messages_lost: u64,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// The next offset to read of one partition of a stream source's topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    pub topic: String,
    pub partition: i32,
    pub next: i64,
}

impl Commit {
    /// A commit of nothing yet, as `version`, by `run_id`.
    pub fn new(version: u64, run_id: &str) -> Self {
        Self {
            version,
            run_id: run_id.to_owned(),
            reset: false,
            sources: Vec::new(),
            files: Vec::new(),
            rejects: Vec::new(),
            forgotten: Vec::new(),
            replaced: Vec::new(),
            positions: Vec::new(),
            messages_lost: 0,
        }
    }
}

/// What a build reads of the log before it starts.
#[derive(Debug, Clone, Default)]
pub struct LogState {
    /// The version the build's commit claims.
    pub next_version: u64,
    /// The landing files the table holds now.
    pub ingested: HashSet<SourceFile>,
    /// Where each partition of a stream source was read up to.
    pub positions: Vec<StreamPosition>,
}

/// Every this many commits the log is folded into a checkpoint, so a build reads one
/// checkpoint and at most this many commits, however long the table has been appended to.
pub const CHECKPOINT_INTERVAL: u64 = 100;

/// A data or rejects file readers see, with the version that added it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    /// The newest version whose rows the file holds.
    pub version: u64,
    /// The oldest, when the file is a compaction of several versions' files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_version: Option<u64>,
    #[serde(flatten)]
    pub file: WrittenFile,
}

impl Added {
    fn first_version(&self) -> u64 {
        self.first_version.unwrap_or(self.version)
    }
}

/// The log folded up to a version: what builds and readers need of every commit before
/// it. A checkpoint stores one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folded {
    /// The version the next commit claims.
    pub next_version: u64,
    /// The newest commit that replaced everything before it.
    pub last_reset: Option<u64>,
    /// The landing files the table holds now.
    pub ingested: Vec<SourceFile>,
    /// The data files readers see, oldest first.
    pub files: Vec<Added>,
    /// The files of the rejects table readers see, oldest first.
    pub rejects: Vec<Added>,
    /// Where each partition of a stream source was read up to, by topic and partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positions: Vec<StreamPosition>,
}

/// Puts `files` in the place of the `replaced` ones among `held`, with the versions of
/// the rows they held: readers see the same rows, added when they were.
fn replace(held: &mut Vec<Added>, replaced: &[String], files: Vec<WrittenFile>) {
    let replaced: HashSet<&str> = replaced.iter().map(String::as_str).collect();
    let at = held
        .iter()
        .position(|added| replaced.contains(added.file.path.as_str()))
        .unwrap_or(held.len());
    let (gone, kept): (Vec<Added>, Vec<Added>) = std::mem::take(held)
        .into_iter()
        .partition(|added| replaced.contains(added.file.path.as_str()));
    *held = kept;
    let first = gone.iter().map(Added::first_version).min();
    let last = gone.iter().map(|added| added.version).max();
    let (Some(first), Some(version)) = (first, last) else {
        return;
    };
    let added = files.into_iter().map(|file| Added {
        version,
        first_version: (first < version).then_some(first),
        file,
    });
    held.splice(at..at, added);
}

impl Folded {
    fn apply(&mut self, commit: Commit) {
        let version = commit.version;
        if commit.reset {
            self.last_reset = Some(version);
            self.ingested.clear();
            self.files.clear();
            self.rejects.clear();
            self.positions.clear();
        }
        self.next_version = version + 1;
        for position in commit.positions {
            match self
                .positions
                .iter_mut()
                .find(|held| held.topic == position.topic && held.partition == position.partition)
            {
                Some(held) => held.next = position.next,
                None => self.positions.push(position),
            }
        }
        if !commit.forgotten.is_empty() {
            let forgotten: HashSet<&str> = commit.forgotten.iter().map(String::as_str).collect();
            self.ingested
                .retain(|file| !forgotten.contains(file.path.as_str()));
        }
        self.ingested.extend(commit.sources);
        let added = |file| Added {
            version,
            first_version: None,
            file,
        };
        if commit.replaced.is_empty() {
            self.files.extend(commit.files.into_iter().map(added));
            self.rejects.extend(commit.rejects.into_iter().map(added));
        } else {
            replace(&mut self.files, &commit.replaced, commit.files);
            replace(&mut self.rejects, &commit.replaced, commit.rejects);
        }
    }

    /// The data files added at or after version `since`; `None` when the table was
    /// rewritten since (or `since` is ahead of it), or a compaction merged rows from
    /// before `since` with rows from after it, so only a whole read makes sense.
    pub fn files_since(&self, since: u64) -> Option<Vec<WrittenFile>> {
        if since > self.next_version || self.last_reset.is_some_and(|reset| reset >= since) {
            return None;
        }
        if self
            .files
            .iter()
            .any(|added| added.first_version() < since && since <= added.version)
        {
            return None;
        }
        Some(
            self.files
                .iter()
                .filter(|added| added.version >= since)
                .map(|added| added.file.clone())
                .collect(),
        )
    }

    /// The data files of the versions before `since`: what a reader at that position
    /// had read. `None` when the table was rewritten since, or a compaction merged rows
    /// from before `since` with rows from after it.
    pub fn files_before(&self, since: u64) -> Option<Vec<WrittenFile>> {
        self.files_since(since)?;
        Some(
            self.files
                .iter()
                .filter(|added| added.version < since)
                .map(|added| added.file.clone())
                .collect(),
        )
    }

    /// Every data file readers see.
    pub fn data_files(&self) -> Vec<WrittenFile> {
        self.files.iter().map(|added| added.file.clone()).collect()
    }
}

/// The log's files, from one listing: commits and checkpoints by version, oldest first.
#[derive(Debug, Default)]
struct Listing {
    commits: Vec<u64>,
    checkpoints: Vec<u64>,
}

/// How often a read starts again when a file it listed was removed under it (a
/// checkpoint made the file redundant), before it reports the store's error.
const READ_ATTEMPTS: usize = 3;

/// The log of one table.
#[derive(Debug, Clone)]
pub struct CommitLog {
    table: TableDir,
    dir: StorePath,
}

impl CommitLog {
    /// The log of the raw table stored in `table`.
    pub fn new(table: &TableDir) -> Self {
        Self {
            table: table.clone(),
            dir: table.raw_log(),
        }
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        self.table.store()
    }

    fn location(&self, path: &StorePath) -> String {
        self.table.location().url_of(path)
    }

    /// Every commit still in the log, oldest first (a checkpoint's older commits are
    /// removed after the next one), for showing a table's history.
    pub async fn commits(&self) -> Result<Vec<Commit>> {
        let mut commits = Vec::new();
        for version in self.listing().await?.commits {
            match self.read_commit(version).await {
                Ok(commit) => commits.push(commit),
                Err(StorageError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(commits)
    }

    /// The log folded to its newest commit: the newest checkpoint and the commits after it.
    pub async fn folded(&self) -> Result<Folded> {
        let mut attempt = 1;
        loop {
            match self.fold_once().await {
                Err(StorageError::NotFound { .. }) if attempt < READ_ATTEMPTS => attempt += 1,
                folded => return folded,
            }
        }
    }

    async fn fold_once(&self) -> Result<Folded> {
        let listing = self.listing().await?;
        let (mut folded, after) = match listing.checkpoints.last() {
            Some(&version) => (self.read_checkpoint(version).await?, Some(version)),
            None => (Folded::default(), None),
        };
        for version in listing
            .commits
            .into_iter()
            .filter(|version| after.is_none_or(|after| *version > after))
        {
            folded.apply(self.read_commit(version).await?);
        }
        Ok(folded)
    }

    async fn read_commit(&self, version: u64) -> Result<Commit> {
        self.read(&self.dir.clone().join(paths::raw_commit_file(version)))
            .await
    }

    async fn read_checkpoint(&self, version: u64) -> Result<Folded> {
        self.read(&self.dir.clone().join(paths::raw_checkpoint_file(version)))
            .await
    }

    async fn read<T: serde::de::DeserializeOwned>(&self, path: &StorePath) -> Result<T> {
        let bytes = match self.store().get(path).await {
            Ok(got) => got.bytes().await,
            Err(error) => Err(error),
        };
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::NotFound {
                    location: self.location(path),
                });
            }
            Err(error) => return Err(StorageError::store(&self.location(path), &error)),
        };
        serde_json::from_slice(&bytes).map_err(|error| StorageError::Corrupt {
            location: self.location(path),
            reason: error.to_string(),
        })
    }

    /// Whether readers see any data file, reading the newest commits only as far as it
    /// must (a catalog listing asks this of every raw table).
    pub async fn has_data_files(&self) -> Result<bool> {
        self.any_live(
            |commit| !commit.files.is_empty(),
            |folded| !folded.files.is_empty(),
        )
        .await
    }

    /// Whether readers see any file of rejected rows, read as [`Self::has_data_files`].
    pub async fn has_reject_files(&self) -> Result<bool> {
        self.any_live(
            |commit| !commit.rejects.is_empty(),
            |folded| !folded.rejects.is_empty(),
        )
        .await
    }

    /// Whether a live commit matches, newest first, stopping at the last reset, then
    /// whether the checkpoint before them does.
    async fn any_live(
        &self,
        matches: impl Fn(&Commit) -> bool,
        checkpoint_matches: impl Fn(&Folded) -> bool,
    ) -> Result<bool> {
        let listing = self.listing().await?;
        let after = listing.checkpoints.last().copied();
        for &version in listing.commits.iter().rev() {
            if after.is_some_and(|after| version <= after) {
                break;
            }
            let commit = match self.read_commit(version).await {
                Err(StorageError::NotFound { .. }) => {
                    return Ok(checkpoint_matches(&self.folded().await?));
                }
                read => read?,
            };
            if matches(&commit) {
                return Ok(true);
            }
            // A rewrite may have replaced the last files an older commit added.
            if !commit.replaced.is_empty() {
                return Ok(checkpoint_matches(&self.folded().await?));
            }
            if commit.reset {
                return Ok(false);
            }
        }
        match after {
            Some(version) => Ok(checkpoint_matches(&self.read_checkpoint(version).await?)),
            None => Ok(false),
        }
    }

    /// The log's commits and checkpoints, from one listing (a request per thousand files).
    async fn listing(&self) -> Result<Listing> {
        let files: Vec<StorePath> = self
            .store()
            .list(Some(&self.dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|error| StorageError::store(&self.location(&self.dir), &error))?;
        let mut listing = Listing::default();
        for name in files.iter().filter_map(|path| path.filename()) {
            if paths::is_raw_commit_file(name) {
                listing.commits.extend(paths::raw_commit_version(name));
            } else {
                listing
                    .checkpoints
                    .extend(paths::raw_checkpoint_version(name));
            }
        }
        listing.commits.sort_unstable();
        listing.checkpoints.sort_unstable();
        Ok(listing)
    }

    /// The landing files already ingested into the table as it stands.
    pub async fn ingested(&self) -> Result<HashSet<SourceFile>> {
        Ok(self.state().await?.ingested)
    }

    /// The version the next commit claims, from one listing of the log (no commit is read).
    pub async fn next_version(&self) -> Result<u64> {
        let listing = self.listing().await?;
        Ok(listing
            .commits
            .last()
            .max(listing.checkpoints.last())
            .map_or(0, |last| last + 1))
    }

    /// The table as a build starts from it: the version its commit must claim, and the
    /// landing files ingested so far. Claiming that version fails if another build
    /// committed after this was read, so no landing file is ingested twice.
    pub async fn state(&self) -> Result<LogState> {
        let folded = self.folded().await?;
        Ok(LogState {
            next_version: folded.next_version,
            ingested: folded.ingested.into_iter().collect(),
            positions: folded.positions,
        })
    }

    /// The data files readers see, relative to the table directory.
    pub async fn data_files(&self) -> Result<Vec<WrittenFile>> {
        Ok(self.folded().await?.data_files())
    }

    /// The files of the rejects table readers see, relative to the table directory.
    pub async fn reject_files(&self) -> Result<Vec<WrittenFile>> {
        Ok(self
            .folded()
            .await?
            .rejects
            .into_iter()
            .map(|added| added.file)
            .collect())
    }

    /// Records a build as its version (see [`LogState::next_version`]); fails with
    /// [`StorageError::CommitConflict`] if another build holds it. Every
    /// [`CHECKPOINT_INTERVAL`] commits, folds the log into a checkpoint.
    pub async fn commit(&self, commit: Commit) -> Result<Commit> {
        let version = commit.version;
        self.claim(&commit).await?;
        if (version + 1).is_multiple_of(CHECKPOINT_INTERVAL) {
            // A build's rows are committed already: a checkpoint that fails is retried
            // by the next interval's, and until then reads cost a little more.
            if let Err(error) = self.checkpoint(version).await {
                tracing::warn!(
                    "no checkpoint of {} at version {version}: {error}",
                    self.table
                );
            }
        }
        Ok(commit)
    }

    /// Writes a commit under its version with a create-only put: of two writers claiming
    /// one version, exactly one succeeds, on a local disk as on every object store.
    ///
    /// A version a checkpoint already holds was claimed long ago, and its file removed
    /// since: a writer that read the log that long ago loses, as to a newer commit.
    async fn claim(&self, commit: &Commit) -> Result<()> {
        let version = commit.version;
        let path = self.dir.clone().join(paths::raw_commit_file(version));
        let conflict = || StorageError::CommitConflict {
            table: self.table.to_string(),
            version,
        };
        if !self.put_new(&path, commit, true).await? {
            return Err(conflict());
        }
        let listing = self.listing().await?;
        if listing
            .checkpoints
            .last()
            .is_some_and(|last| *last >= version)
        {
            let _ = self.store().delete(&path).await;
            return Err(conflict());
        }
        Ok(())
    }

    /// Writes `value` as JSON at `path` (indented for people to read, or compact for
    /// checkpoints, which every build parses) with a create-only put; false if the file
    /// exists.
    async fn put_new(
        &self,
        path: &StorePath,
        value: &impl Serialize,
        pretty: bool,
    ) -> Result<bool> {
        let text = if pretty {
            serde_json::to_vec_pretty(value)
        } else {
            serde_json::to_vec(value)
        };
        let text = text.map_err(|error| StorageError::Corrupt {
            location: self.location(path),
            reason: error.to_string(),
        })?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self.store().put_opts(path, text.into(), options).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(StorageError::store(&self.location(path), &error)),
        }
    }

    /// Folds the log up to `version` into a checkpoint, then removes what the previous
    /// checkpoint made redundant (readers that listed before this one still find the
    /// commits after the previous).
    async fn checkpoint(&self, version: u64) -> Result<()> {
        let folded = self.folded().await?;
        if folded.next_version != version + 1 {
            // A newer commit came first; its own interval will fold it.
            return Ok(());
        }
        // Another writer's copy is the same fold of the same immutable commits.
        let path = self.dir.clone().join(paths::raw_checkpoint_file(version));
        self.put_new(&path, &folded, false).await?;
        let listing = self.listing().await?;
        let Some(&previous) = listing.checkpoints.iter().rev().find(|c| **c < version) else {
            return Ok(());
        };
        let redundant = listing
            .commits
            .iter()
            .filter(|commit| **commit <= previous)
            .map(|commit| paths::raw_commit_file(*commit))
            .chain(
                listing
                    .checkpoints
                    .iter()
                    .filter(|checkpoint| **checkpoint < previous)
                    .map(|checkpoint| paths::raw_checkpoint_file(*checkpoint)),
            );
        for name in redundant {
            let path = self.dir.clone().join(name);
            match self.store().delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(StorageError::store(&self.location(&path), &error)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn landing(path: &str) -> SourceFile {
        SourceFile {
            path: path.into(),
            size: 10,
            modified_ms: 1,
            etag: None,
        }
    }

    fn built(
        version: u64,
        run_id: &str,
        reset: bool,
        sources: Vec<SourceFile>,
        files: Vec<WrittenFile>,
        rejects: Vec<WrittenFile>,
    ) -> Commit {
        Commit {
            reset,
            sources,
            files,
            rejects,
            ..Commit::new(version, run_id)
        }
    }

    fn written(path: &str) -> WrittenFile {
        WrittenFile {
            path: path.into(),
            rows: 2,
            bytes: 100,
        }
    }

    /// A raw table in a store of its own, in memory.
    fn temp_table(name: &str) -> TableDir {
        let events = strata_language::TableName {
            layer: strata_language::Layer::Raw,
            name: "events".into(),
        };
        crate::Warehouse::open(&format!("memory://commit-log-{name}/wh"))
            .unwrap()
            .table(&events)
    }

    #[tokio::test]
    async fn commits_accumulate_until_a_reset() {
        let table = temp_table("reset");
        let log = CommitLog::new(&table);
        assert!(log.commits().await.unwrap().is_empty());
        log.commit(built(
            0,
            "run-1",
            false,
            vec![landing("a.csv")],
            vec![written("a.avro")],
            vec![written("_rejects/a.avro")],
        ))
        .await
        .unwrap();
        log.commit(built(
            1,
            "run-2",
            false,
            vec![landing("b.csv")],
            vec![written("b.avro")],
            Vec::new(),
        ))
        .await
        .unwrap();
        assert_eq!(log.ingested().await.unwrap().len(), 2);
        assert_eq!(
            log.reject_files().await.unwrap(),
            [written("_rejects/a.avro")]
        );
        let reset = log
            .commit(built(
                2,
                "run-3",
                true,
                vec![landing("a.csv")],
                vec![written("c.avro")],
                Vec::new(),
            ))
            .await
            .unwrap();
        assert_eq!(reset.version, 2);
        assert_eq!(
            log.ingested().await.unwrap(),
            HashSet::from([landing("a.csv")])
        );
        let files: Vec<String> = log
            .data_files()
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(files, ["c.avro"]);
        assert!(
            log.reject_files().await.unwrap().is_empty(),
            "a reset drops old rejects too"
        );
        assert!(log.has_data_files().await.unwrap());
        log.commit(built(
            3,
            "run-4",
            true,
            vec![landing("empty.csv")],
            Vec::new(),
            Vec::new(),
        ))
        .await
        .unwrap();
        assert!(
            !log.has_data_files().await.unwrap(),
            "a reset to nothing hides the older files"
        );
    }

    #[tokio::test]
    async fn stream_positions_are_the_newest_per_partition_across_checkpoints() {
        let table = temp_table("positions");
        let log = CommitLog::new(&table);
        let at = |partition, next| StreamPosition {
            topic: "events".into(),
            partition,
            next,
        };
        for version in 0..CHECKPOINT_INTERVAL + 2 {
            let positions = if version == 0 {
                vec![at(0, 10), at(1, 4)]
            } else {
                vec![at(0, 10 + version as i64)]
            };
            log.commit(Commit {
                positions,
                ..Commit::new(version, "run")
            })
            .await
            .unwrap();
        }
        assert!(!log.listing().await.unwrap().checkpoints.is_empty());
        let state = log.state().await.unwrap();
        assert_eq!(
            state.positions,
            [at(0, 11 + CHECKPOINT_INTERVAL as i64), at(1, 4)]
        );
    }

    #[tokio::test]
    async fn a_taken_version_is_a_conflict_and_a_corrupt_commit_an_error() {
        let table = temp_table("conflict");
        let log = CommitLog::new(&table);
        let first = log
            .commit(built(
                0,
                "run-1",
                false,
                vec![landing("a.csv")],
                Vec::new(),
                Vec::new(),
            ))
            .await
            .unwrap();
        // A second writer that read the log before the first committed claims the same version.
        assert_eq!(log.state().await.unwrap().next_version, 1);
        assert_eq!(log.next_version().await.unwrap(), 1);
        let late = Commit {
            run_id: "run-2".into(),
            ..first
        };
        let conflict = log.claim(&late).await;
        assert!(
            matches!(
                conflict,
                Err(StorageError::CommitConflict { version: 0, .. })
            ),
            "{conflict:?}"
        );
        assert_eq!(
            log.commits().await.unwrap().len(),
            1,
            "the loser left no commit"
        );
        table
            .store()
            .put(&table.raw_log().join(paths::raw_commit_file(1)), "{".into())
            .await
            .unwrap();
        assert!(matches!(
            log.ingested().await,
            Err(StorageError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn a_long_log_is_read_from_its_newest_checkpoint_and_the_commits_after_it() {
        let table = temp_table("checkpoints");
        let log = CommitLog::new(&table);
        for version in 0..250 {
            let name = format!("{version}.csv");
            log.commit(built(
                version,
                "run",
                false,
                vec![landing(&name)],
                vec![written(&format!("{version}.avro"))],
                Vec::new(),
            ))
            .await
            .unwrap();
        }
        let listing = log.listing().await.unwrap();
        assert_eq!(listing.checkpoints, [99, 199]);
        assert_eq!(
            listing.commits.first(),
            Some(&100),
            "commits the previous checkpoint holds are removed"
        );
        let folded = log.folded().await.unwrap();
        assert_eq!(folded.next_version, 250);
        assert_eq!(folded.ingested.len(), 250);
        assert_eq!(folded.files.len(), 250);
        assert_eq!(log.next_version().await.unwrap(), 250);
        assert!(log.has_data_files().await.unwrap());
        // A reader's position before a checkpoint still reads only what came after it.
        assert_eq!(folded.files_since(50).unwrap().len(), 200);
        assert_eq!(folded.files_since(245).unwrap()[0].path, "245.avro");

        // A writer that read the log before version 10 was folded away loses its claim.
        let stale = log
            .commit(built(
                10,
                "run-late",
                false,
                Vec::new(),
                Vec::new(),
                Vec::new(),
            ))
            .await;
        assert!(
            matches!(stale, Err(StorageError::CommitConflict { version: 10, .. })),
            "{stale:?}"
        );
        assert!(!log.listing().await.unwrap().commits.contains(&10));

        // A reset is seen across a checkpoint.
        log.commit(built(
            250,
            "run-full",
            true,
            Vec::new(),
            vec![written("all.avro")],
            Vec::new(),
        ))
        .await
        .unwrap();
        let folded = log.folded().await.unwrap();
        assert_eq!(folded.files_since(100), None, "rewritten since");
        assert_eq!(folded.data_files(), [written("all.avro")]);
    }

    #[tokio::test]
    async fn forgotten_files_leave_the_state_and_a_compaction_keeps_readers_positions() {
        let table = temp_table("compaction");
        let log = CommitLog::new(&table);
        for version in 0..4 {
            log.commit(Commit {
                sources: vec![landing(&format!("{version}.csv"))],
                files: vec![written(&format!("day=1/{version}.avro"))],
                forgotten: (version > 0)
                    .then(|| format!("{}.csv", version - 1))
                    .into_iter()
                    .collect(),
                ..Commit::new(version, "run")
            })
            .await
            .unwrap();
        }
        assert_eq!(
            log.ingested().await.unwrap(),
            HashSet::from([landing("3.csv")]),
            "only the file still delivered is remembered"
        );

        // Versions 0 to 2 merged into one file: it holds their rows, as they were added.
        log.commit(Commit {
            files: vec![written("day=1/compacted.avro")],
            replaced: (0..3)
                .map(|version| format!("day=1/{version}.avro"))
                .collect(),
            ..Commit::new(4, "tidy")
        })
        .await
        .unwrap();
        let folded = log.folded().await.unwrap();
        let paths = |files: Vec<WrittenFile>| -> Vec<String> {
            files.into_iter().map(|file| file.path).collect()
        };
        assert_eq!(
            paths(folded.data_files()),
            ["day=1/compacted.avro", "day=1/3.avro"]
        );
        assert_eq!(paths(folded.files_since(3).unwrap()), ["day=1/3.avro"]);
        assert_eq!(paths(folded.files_since(5).unwrap()), Vec::<String>::new());
        assert_eq!(
            paths(folded.files_since(0).unwrap()),
            ["day=1/compacted.avro", "day=1/3.avro"]
        );
        assert_eq!(
            folded.files_since(1),
            None,
            "a reader between the merged versions reads the table whole"
        );
        assert_eq!(folded.ingested, [landing("3.csv")]);
        assert_eq!(
            paths(folded.files_before(3).unwrap()),
            ["day=1/compacted.avro"]
        );
        assert_eq!(folded.files_before(2), None, "inside the merged versions");
    }

    #[tokio::test]
    async fn a_rewrite_replaces_rejects_too_and_may_leave_no_file() {
        let table = temp_table("rewrite");
        let log = CommitLog::new(&table);
        log.commit(built(
            0,
            "run-1",
            false,
            vec![landing("a.csv")],
            vec![written("a.avro")],
            vec![written("_rejects/a.avro")],
        ))
        .await
        .unwrap();
        // Every row of a.avro was the subject's; one rejected row of two was too.
        log.commit(Commit {
            rejects: vec![written("_rejects/erased.avro")],
            replaced: vec!["a.avro".into(), "_rejects/a.avro".into()],
            ..Commit::new(1, "erasure")
        })
        .await
        .unwrap();
        let folded = log.folded().await.unwrap();
        assert!(folded.data_files().is_empty());
        let rejects: Vec<(String, u64)> = folded
            .rejects
            .iter()
            .map(|added| (added.file.path.clone(), added.version))
            .collect();
        assert_eq!(rejects, [("_rejects/erased.avro".to_owned(), 0)]);
        assert_eq!(folded.files_since(1).unwrap(), Vec::new(), "no row is new");
        assert!(!log.has_data_files().await.unwrap());
        assert!(log.has_reject_files().await.unwrap());
        assert_eq!(folded.ingested, [landing("a.csv")], "still ingested once");
    }
}
