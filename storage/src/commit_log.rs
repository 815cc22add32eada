//! A raw table's commit log: one JSON file per successful build, naming the landing
//! files it ingested, the data files it wrote, and the files of its rejected rows, so
//! rows and rejects become visible together, once.
//!
//! Readers see only files named in a commit, so a build that fails or is killed part
//! way leaves nothing visible, and a landing file named in a commit is never ingested
//! again (idempotent re-runs).

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::avro_sink::WrittenFile;
use crate::error::{Result, StorageError};
use crate::paths::{self, TableDir};

/// One delivered landing file, identified by path, size and modification time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceFile {
    pub path: String,
    pub size: u64,
    pub modified_ms: u64,
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

/// Reads one commit file.
fn read_commit(path: &std::path::Path) -> Result<Commit> {
    let text = std::fs::read_to_string(path).map_err(|source| StorageError::io(path, source))?;
    serde_json::from_str(&text).map_err(|error| StorageError::Corrupt {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })
}

/// The log of one table.
#[derive(Debug, Clone)]
pub struct CommitLog {
    dir: PathBuf,
}

impl CommitLog {
    /// The log of the raw table stored in `table`.
    pub fn new(table: &TableDir) -> Self {
        Self {
            dir: table.raw_log(),
        }
    }

    /// Every commit, oldest first.
    pub fn commits(&self) -> Result<Vec<Commit>> {
        self.commit_files()?
            .iter()
            .map(|path| read_commit(path))
            .collect()
    }

    /// Whether readers see any data file, reading the newest commits only as far as it
    /// must (a catalog listing asks this of every raw table).
    pub fn has_data_files(&self) -> Result<bool> {
        self.any_live(|commit| !commit.files.is_empty())
    }

    /// Whether readers see any file of rejected rows, read as [`Self::has_data_files`].
    pub fn has_reject_files(&self) -> Result<bool> {
        self.any_live(|commit| !commit.rejects.is_empty())
    }

    /// Whether a live commit matches, newest first, stopping at the last reset.
    fn any_live(&self, matches: impl Fn(&Commit) -> bool) -> Result<bool> {
        for path in self.commit_files()?.iter().rev() {
            let commit = read_commit(path)?;
            if matches(&commit) {
                return Ok(true);
            }
            if commit.reset {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// The commit files of the log, oldest first.
    fn commit_files(&self) -> Result<Vec<PathBuf>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|source| StorageError::io(&self.dir, source))?
            .filter_map(|entry| entry.ok())
            .filter(|entry| paths::is_raw_commit_file(&entry.file_name().to_string_lossy()))
            .map(|entry| entry.path())
            .collect();
        paths.sort();
        Ok(paths)
    }

    /// The commits that make up the table now: the last reset and everything after it.
    pub fn live(&self) -> Result<Vec<Commit>> {
        let mut commits = self.commits()?;
        if let Some(reset) = commits.iter().rposition(|commit| commit.reset) {
            commits.drain(..reset);
        }
        Ok(commits)
    }

    /// The landing files already ingested into the table as it stands.
    pub fn ingested(&self) -> Result<HashSet<SourceFile>> {
        Ok(self
            .live()?
            .into_iter()
            .flat_map(|commit| commit.sources)
            .collect())
    }

    /// The data files readers see, relative to the table directory.
    pub fn data_files(&self) -> Result<Vec<WrittenFile>> {
        Ok(self
            .live()?
            .into_iter()
            .flat_map(|commit| commit.files)
            .collect())
    }

    /// The files of the rejects table readers see, relative to the table directory.
    pub fn reject_files(&self) -> Result<Vec<WrittenFile>> {
        Ok(self
            .live()?
            .into_iter()
            .flat_map(|commit| commit.rejects)
            .collect())
    }

    /// Records a build, as the next version; fails rather than overwrite a concurrent commit.
    pub fn commit(
        &self,
        run_id: &str,
        reset: bool,
        sources: Vec<SourceFile>,
        files: Vec<WrittenFile>,
        rejects: Vec<WrittenFile>,
    ) -> Result<Commit> {
        std::fs::create_dir_all(&self.dir).map_err(|source| StorageError::io(&self.dir, source))?;
        let version = self.commits()?.last().map_or(0, |last| last.version + 1);
        let commit = Commit {
            version,
            run_id: run_id.to_owned(),
            reset,
            sources,
            files,
            rejects,
        };
        self.claim(&commit)?;
        Ok(commit)
    }

    /// Writes a commit under its version, unless another writer holds that version.
    fn claim(&self, commit: &Commit) -> Result<()> {
        let version = commit.version;
        let text = serde_json::to_string_pretty(commit).map_err(|error| StorageError::Corrupt {
            path: self.dir.clone(),
            reason: error.to_string(),
        })?;
        let staged = self
            .dir
            .join(paths::staged_raw_commit_file(version, &commit.run_id));
        let path = self.dir.join(paths::raw_commit_file(version));
        std::fs::write(&staged, text).map_err(|source| StorageError::io(&staged, source))?;
        // A hard link creates the name only if it is free: two writers cannot both win.
        let linked = std::fs::hard_link(&staged, &path);
        if let Err(error) = std::fs::remove_file(&staged) {
            tracing::warn!("removing the staged commit {}: {error}", staged.display());
        }
        match linked {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StorageError::CommitConflict {
                    table: self.dir.parent().map(PathBuf::from).unwrap_or_default(),
                    version,
                })
            }
            Err(source) => Err(StorageError::io(&path, source)),
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
        }
    }

    fn written(path: &str) -> WrittenFile {
        WrittenFile {
            path: path.into(),
            rows: 2,
            bytes: 100,
        }
    }

    fn temp_table(name: &str) -> TableDir {
        let root =
            std::env::temp_dir().join(format!("strata-commit-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let events = strata_language::TableName {
            layer: strata_language::Layer::Raw,
            name: "events".into(),
        };
        crate::Warehouse::local(root).table(&events)
    }

    #[test]
    fn commits_accumulate_until_a_reset() {
        let table = temp_table("reset");
        let log = CommitLog::new(&table);
        assert!(log.commits().unwrap().is_empty());
        log.commit(
            "run-1",
            false,
            vec![landing("a.csv")],
            vec![written("a.avro")],
            vec![written("_rejects/a.avro")],
        )
        .unwrap();
        log.commit(
            "run-2",
            false,
            vec![landing("b.csv")],
            vec![written("b.avro")],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(log.ingested().unwrap().len(), 2);
        assert_eq!(log.reject_files().unwrap(), [written("_rejects/a.avro")]);
        let reset = log
            .commit(
                "run-3",
                true,
                vec![landing("a.csv")],
                vec![written("c.avro")],
                Vec::new(),
            )
            .unwrap();
        assert_eq!(reset.version, 2);
        assert_eq!(log.ingested().unwrap(), HashSet::from([landing("a.csv")]));
        let files: Vec<String> = log
            .data_files()
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(files, ["c.avro"]);
        assert!(
            log.reject_files().unwrap().is_empty(),
            "a reset drops old rejects too"
        );
        assert!(log.has_data_files().unwrap());
        log.commit(
            "run-4",
            true,
            vec![landing("empty.csv")],
            Vec::new(),
            Vec::new(),
        )
        .unwrap();
        assert!(
            !log.has_data_files().unwrap(),
            "a reset to nothing hides the older files"
        );
        std::fs::remove_dir_all(table.path()).unwrap();
    }

    #[test]
    fn a_taken_version_is_a_conflict_and_a_corrupt_commit_an_error() {
        let table = temp_table("conflict");
        let log = CommitLog::new(&table);
        let first = log
            .commit(
                "run-1",
                false,
                vec![landing("a.csv")],
                Vec::new(),
                Vec::new(),
            )
            .unwrap();
        // A second writer that read the log before the first committed claims the same version.
        let late = Commit {
            run_id: "run-2".into(),
            ..first
        };
        let conflict = log.claim(&late);
        assert!(
            matches!(
                conflict,
                Err(StorageError::CommitConflict { version: 0, .. })
            ),
            "{conflict:?}"
        );
        assert_eq!(log.commits().unwrap().len(), 1, "the loser left no commit");
        assert!(
            std::fs::read_dir(table.raw_log()).unwrap().count() == 1,
            "nor a staged file"
        );
        std::fs::write(table.raw_log().join(paths::raw_commit_file(1)), "{").unwrap();
        assert!(matches!(log.ingested(), Err(StorageError::Corrupt { .. })));
        std::fs::remove_dir_all(table.path()).unwrap();
    }
}
