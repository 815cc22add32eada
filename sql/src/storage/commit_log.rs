//! A raw table's commit log: one JSON file per successful build, naming the landing
//! files it ingested and the data files it wrote.
//!
//! Readers see only files named in a commit, so a build that fails or is killed part
//! way leaves nothing visible, and a landing file named in a commit is never ingested
//! again (idempotent re-runs).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::avro_sink::WrittenFile;

/// Directory of the log inside the table's directory.
pub const LOG_DIR: &str = "_strata_log";

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
}

/// The log of one table.
#[derive(Debug, Clone)]
pub struct CommitLog {
    dir: PathBuf,
}

impl CommitLog {
    /// The log of the table stored in `table_dir`.
    pub fn new(table_dir: &Path) -> Self {
        Self {
            dir: table_dir.join(LOG_DIR),
        }
    }

    /// Every commit, oldest first.
    pub fn commits(&self) -> Result<Vec<Commit>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|source| Error::io(&self.dir, source))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|path| {
                let text =
                    std::fs::read_to_string(path).map_err(|source| Error::io(path, source))?;
                serde_json::from_str(&text).map_err(|error| Error::Corrupt {
                    path: path.clone(),
                    reason: error.to_string(),
                })
            })
            .collect()
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

    /// Records a build, as the next version; fails rather than overwrite a concurrent commit.
    pub fn commit(
        &self,
        run_id: &str,
        reset: bool,
        sources: Vec<SourceFile>,
        files: Vec<WrittenFile>,
    ) -> Result<Commit> {
        std::fs::create_dir_all(&self.dir).map_err(|source| Error::io(&self.dir, source))?;
        let version = self.commits()?.last().map_or(0, |last| last.version + 1);
        let commit = Commit {
            version,
            run_id: run_id.to_owned(),
            reset,
            sources,
            files,
        };
        let text = serde_json::to_string_pretty(&commit).map_err(|error| Error::Corrupt {
            path: self.dir.clone(),
            reason: error.to_string(),
        })?;
        let staged = self.dir.join(format!(".{version:020}.{run_id}.tmp"));
        let path = self.dir.join(format!("{version:020}.json"));
        std::fs::write(&staged, text).map_err(|source| Error::io(&staged, source))?;
        // A hard link creates the name only if it is free: two writers cannot both win.
        let linked = std::fs::hard_link(&staged, &path);
        let _ = std::fs::remove_file(&staged);
        linked.map_err(|source| Error::io(&path, source))?;
        Ok(commit)
    }
}
