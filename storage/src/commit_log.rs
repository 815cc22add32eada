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
}

/// What a build reads of the log before it starts.
#[derive(Debug, Clone, Default)]
pub struct LogState {
    /// The version the build's commit claims.
    pub next_version: u64,
    /// The landing files the table holds now.
    pub ingested: HashSet<SourceFile>,
}

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

    /// Every commit, oldest first.
    pub async fn commits(&self) -> Result<Vec<Commit>> {
        let mut commits = Vec::new();
        for path in self.commit_files().await? {
            commits.push(self.read_commit(&path).await?);
        }
        Ok(commits)
    }

    /// Reads one commit file.
    async fn read_commit(&self, path: &StorePath) -> Result<Commit> {
        let location = || self.table.location().url_of(path);
        let bytes = async { self.store().get(path).await?.bytes().await }
            .await
            .map_err(|error| StorageError::store(&location(), &error))?;
        serde_json::from_slice(&bytes).map_err(|error| StorageError::Corrupt {
            location: location(),
            reason: error.to_string(),
        })
    }

    /// Whether readers see any data file, reading the newest commits only as far as it
    /// must (a catalog listing asks this of every raw table).
    pub async fn has_data_files(&self) -> Result<bool> {
        self.any_live(|commit| !commit.files.is_empty()).await
    }

    /// Whether readers see any file of rejected rows, read as [`Self::has_data_files`].
    pub async fn has_reject_files(&self) -> Result<bool> {
        self.any_live(|commit| !commit.rejects.is_empty()).await
    }

    /// Whether a live commit matches, newest first, stopping at the last reset.
    async fn any_live(&self, matches: impl Fn(&Commit) -> bool) -> Result<bool> {
        for path in self.commit_files().await?.iter().rev() {
            let commit = self.read_commit(path).await?;
            if matches(&commit) {
                return Ok(true);
            }
            if commit.reset {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// The commit files of the log, oldest first (one listing request per thousand commits).
    async fn commit_files(&self) -> Result<Vec<StorePath>> {
        let mut paths: Vec<StorePath> = self
            .store()
            .list(Some(&self.dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|error| {
                StorageError::store(&self.table.location().url_of(&self.dir), &error)
            })?;
        paths.retain(|path| path.filename().is_some_and(paths::is_raw_commit_file));
        paths.sort();
        Ok(paths)
    }

    /// The commits that make up the table now: the last reset and everything after it.
    pub async fn live(&self) -> Result<Vec<Commit>> {
        let mut commits = self.commits().await?;
        if let Some(reset) = commits.iter().rposition(|commit| commit.reset) {
            commits.drain(..reset);
        }
        Ok(commits)
    }

    /// The landing files already ingested into the table as it stands.
    pub async fn ingested(&self) -> Result<HashSet<SourceFile>> {
        Ok(self.state().await?.ingested)
    }

    /// The version the next commit claims, from one listing of the log (no commit is read).
    pub async fn next_version(&self) -> Result<u64> {
        Ok(self
            .commit_files()
            .await?
            .last()
            .and_then(|path| paths::raw_commit_version(path.filename()?))
            .map_or(0, |last| last + 1))
    }

    /// The table as a build starts from it: the version its commit must claim, and the
    /// landing files ingested so far. Claiming that version fails if another build
    /// committed after this was read, so no landing file is ingested twice.
    pub async fn state(&self) -> Result<LogState> {
        let commits = self.commits().await?;
        let next_version = commits.last().map_or(0, |last| last.version + 1);
        let reset = commits.iter().rposition(|commit| commit.reset).unwrap_or(0);
        Ok(LogState {
            next_version,
            ingested: commits
                .into_iter()
                .skip(reset)
                .flat_map(|commit| commit.sources)
                .collect(),
        })
    }

    /// The data files readers see, relative to the table directory.
    pub async fn data_files(&self) -> Result<Vec<WrittenFile>> {
        Ok(self
            .live()
            .await?
            .into_iter()
            .flat_map(|commit| commit.files)
            .collect())
    }

    /// The files of the rejects table readers see, relative to the table directory.
    pub async fn reject_files(&self) -> Result<Vec<WrittenFile>> {
        Ok(self
            .live()
            .await?
            .into_iter()
            .flat_map(|commit| commit.rejects)
            .collect())
    }

    /// Records a build as `version` (see [`LogState::next_version`]); fails with
    /// [`StorageError::CommitConflict`] if another build holds it.
    pub async fn commit(
        &self,
        version: u64,
        run_id: &str,
        reset: bool,
        sources: Vec<SourceFile>,
        files: Vec<WrittenFile>,
        rejects: Vec<WrittenFile>,
    ) -> Result<Commit> {
        let commit = Commit {
            version,
            run_id: run_id.to_owned(),
            reset,
            sources,
            files,
            rejects,
        };
        self.claim(&commit).await?;
        Ok(commit)
    }

    /// Writes a commit under its version with a create-only put: of two writers claiming
    /// one version, exactly one succeeds, on a local disk as on every object store.
    async fn claim(&self, commit: &Commit) -> Result<()> {
        let version = commit.version;
        let path = self.dir.clone().join(paths::raw_commit_file(version));
        let text = serde_json::to_vec_pretty(commit).map_err(|error| StorageError::Corrupt {
            location: self.table.location().url_of(&path),
            reason: error.to_string(),
        })?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self.store().put_opts(&path, text.into(), options).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(StorageError::CommitConflict {
                table: self.table.to_string(),
                version,
            }),
            Err(error) => Err(StorageError::store(
                &self.table.location().url_of(&path),
                &error,
            )),
        }
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
        log.commit(
            0,
            "run-1",
            false,
            vec![landing("a.csv")],
            vec![written("a.avro")],
            vec![written("_rejects/a.avro")],
        )
        .await
        .unwrap();
        log.commit(
            1,
            "run-2",
            false,
            vec![landing("b.csv")],
            vec![written("b.avro")],
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(log.ingested().await.unwrap().len(), 2);
        assert_eq!(
            log.reject_files().await.unwrap(),
            [written("_rejects/a.avro")]
        );
        let reset = log
            .commit(
                2,
                "run-3",
                true,
                vec![landing("a.csv")],
                vec![written("c.avro")],
                Vec::new(),
            )
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
        log.commit(
            3,
            "run-4",
            true,
            vec![landing("empty.csv")],
            Vec::new(),
            Vec::new(),
        )
        .await
        .unwrap();
        assert!(
            !log.has_data_files().await.unwrap(),
            "a reset to nothing hides the older files"
        );
    }

    #[tokio::test]
    async fn a_taken_version_is_a_conflict_and_a_corrupt_commit_an_error() {
        let table = temp_table("conflict");
        let log = CommitLog::new(&table);
        let first = log
            .commit(
                0,
                "run-1",
                false,
                vec![landing("a.csv")],
                Vec::new(),
                Vec::new(),
            )
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
}
