//! Every path in a warehouse, as a typed value: where a layer's tables live, what a
//! table directory holds, and how the files Strata writes are named. Nothing outside
//! this module joins a warehouse path or formats a file name.

use std::fmt;
use std::path::{Path, PathBuf};

use strata_language::{Layer, TableName};

/// Directory of Strata's own records (run history) under the warehouse root.
const STRATA_DIR: &str = "_strata";
/// Run reports, one JSON file per run, under [`STRATA_DIR`].
const RUNS_DIR: &str = "runs";
/// A raw table's commit log, inside the table's directory.
const RAW_LOG_DIR: &str = "_strata_log";
/// Where MERGE KEY and SCD2 builds stage their checked rows, inside the table's directory.
const STAGING_DIR: &str = "_strata_staging";
/// A Delta table's transaction log, inside the table's directory.
const DELTA_LOG_DIR: &str = "_delta_log";
/// The start of every raw data file's name.
const PART: &str = "part";
/// Where a raw table keeps the files of its rejected rows, inside the table's directory.
const REJECTS_DIR: &str = "_rejects";

/// A warehouse on the local file system.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: PathBuf,
}

impl Warehouse {
    /// A warehouse rooted at a directory (created when a run first writes to it).
    pub fn local(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a layer's tables live: `<root>/<layer>`.
    pub fn layer_dir(&self, layer: Layer) -> PathBuf {
        self.root.join(layer.as_str())
    }

    /// Where a built table's files live: `<root>/<layer>/<name>`.
    pub fn table(&self, table: &TableName) -> TableDir {
        TableDir {
            path: self.layer_dir(table.layer).join(&table.name),
        }
    }

    /// Where the run history is kept: `<root>/_strata/runs`.
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join(STRATA_DIR).join(RUNS_DIR)
    }

    /// The report of one run: `<root>/_strata/runs/<run_id>.json`.
    pub fn run_report(&self, run_id: &str) -> PathBuf {
        self.runs_dir().join(format!("{run_id}.json"))
    }

    /// Resolves a landing `LOCATION`: URLs and absolute paths stay, relative paths are under the root.
    pub fn resolve_location(&self, location: &str) -> String {
        if location.contains("://") || Path::new(location).is_absolute() {
            location.to_owned()
        } else {
            let joined = self.root.join(location).display().to_string();
            // A trailing slash tells DataFusion the location is a directory.
            if location.ends_with('/') && !joined.ends_with('/') {
                format!("{joined}/")
            } else {
                joined
            }
        }
    }

    /// Whether a resolved location is a local path (or glob-free `file://` URL) that does not exist.
    ///
    /// Object-store URLs are not probed here; their errors come when they are listed.
    pub fn is_missing(location: &str) -> bool {
        let local = match location.strip_prefix("file://") {
            Some(path) => path,
            None if location.contains("://") => return false,
            None => location,
        };
        !local.contains(['*', '?', '[']) && !Path::new(local).exists()
    }
}

/// One table's directory, and the places inside it that Strata owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDir {
    path: PathBuf,
}

impl TableDir {
    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file or directory inside the table, from a path relative to it.
    pub fn join(&self, relative: &str) -> PathBuf {
        self.path.join(relative)
    }

    /// The raw commit log.
    pub fn raw_log(&self) -> PathBuf {
        self.path.join(RAW_LOG_DIR)
    }

    /// The Delta transaction log.
    pub fn delta_log(&self) -> PathBuf {
        self.path.join(DELTA_LOG_DIR)
    }

    /// Where every build stages rows it merges, whatever the run.
    pub fn staging_root(&self) -> PathBuf {
        self.path.join(STAGING_DIR)
    }

    /// Where one run stages the rows it merges.
    pub fn staging(&self, run_id: &str) -> PathBuf {
        self.staging_root().join(run_id)
    }

    /// Whether a directory entry of the table holds data rather than Strata's or Delta's own files.
    pub fn is_data_entry(name: &str) -> bool {
        !name.starts_with('_') && !name.starts_with('.')
    }
}

impl fmt::Display for TableDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

/// The start of the name of every raw data file one run writes: `part-<run>-`.
pub fn run_file_prefix(run_id: &str) -> String {
    format!("{PART}-{run_id}-")
}

/// The start of the names of the raw data files one landing file becomes: `part-<run>-<nnnnn>`.
pub fn landing_file_prefix(run_id: &str, landing_index: usize) -> String {
    format!("{}{landing_index:05}", run_file_prefix(run_id))
}

/// One Avro data file's path, relative to its table: the build's prefix, then the
/// partition, process and writer numbers that keep concurrent tasks apart, under its
/// Hive partition directory (`day=2026-11-21/`) when the table is partitioned.
pub fn avro_file(prefix: &str, partition: usize, writer: u64, hive_partition: &str) -> String {
    let name = format!(
        "{prefix}-{partition:05}-{}-{writer}.avro",
        std::process::id()
    );
    if hive_partition.is_empty() {
        name
    } else {
        format!("{hive_partition}/{name}")
    }
}

/// One file of rejected rows, relative to its raw table: named as [`avro_file`], in
/// the table's rejects directory.
pub fn rejects_file(prefix: &str, partition: usize, writer: u64) -> String {
    avro_file(prefix, partition, writer, REJECTS_DIR)
}

/// The file of one build's landing files that were rejected whole, relative to the table.
pub fn rejected_files_file(run_id: &str) -> String {
    format!("{REJECTS_DIR}/{}files.avro", run_file_prefix(run_id))
}

/// A raw commit's file in the commit log: the version, zero-padded so names sort.
pub fn raw_commit_file(version: u64) -> String {
    format!("{version:020}.json")
}

/// Whether a commit log entry is a commit (and not a commit being written).
pub fn is_raw_commit_file(name: &str) -> bool {
    name.ends_with(".json") && !name.starts_with('.')
}

/// Where a commit is written before it claims its version.
pub fn staged_raw_commit_file(version: u64, run_id: &str) -> String {
    format!(".{version:020}.{run_id}.tmp")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> TableName {
        TableName {
            layer: Layer::Enriched,
            name: "events".into(),
        }
    }

    #[test]
    fn tables_live_under_their_layer() {
        let warehouse = Warehouse::local("/wh");
        let table = warehouse.table(&events());
        assert_eq!(table.path(), Path::new("/wh/enriched/events"));
        assert_eq!(
            warehouse.table(&events().quarantine()).path(),
            Path::new("/wh/enriched/events__quarantine")
        );
        assert_eq!(
            table.raw_log(),
            Path::new("/wh/enriched/events/_strata_log")
        );
        assert_eq!(
            table.delta_log(),
            Path::new("/wh/enriched/events/_delta_log")
        );
        assert_eq!(
            table.staging("run-1"),
            Path::new("/wh/enriched/events/_strata_staging/run-1")
        );
        assert_eq!(
            warehouse.run_report("run-1"),
            Path::new("/wh/_strata/runs/run-1.json")
        );
    }

    #[test]
    fn strata_owned_entries_are_not_data() {
        for name in ["_strata_log", "_delta_log", "_strata_staging", ".hidden"] {
            assert!(!TableDir::is_data_entry(name), "{name}");
        }
        assert!(TableDir::is_data_entry("day=2026-11-21"));
    }

    #[test]
    fn landing_locations_resolve_against_the_root() {
        let warehouse = Warehouse::local("/wh");
        assert_eq!(
            warehouse.resolve_location("landing/jobs/"),
            "/wh/landing/jobs/"
        );
        assert_eq!(
            warehouse.resolve_location("landing/a.csv"),
            "/wh/landing/a.csv"
        );
        assert_eq!(warehouse.resolve_location("/data/a.csv"), "/data/a.csv");
        assert_eq!(warehouse.resolve_location("s3://b/a.csv"), "s3://b/a.csv");
        assert!(Warehouse::is_missing("/no/such/strata/path"));
        assert!(!Warehouse::is_missing("s3://bucket/key"));
        assert!(!Warehouse::is_missing("/no/such/*.csv"));
    }

    #[test]
    fn raw_file_names_start_with_their_run() {
        let prefix = landing_file_prefix("run-7", 3);
        assert_eq!(prefix, "part-run-7-00003");
        assert!(prefix.starts_with(&run_file_prefix("run-7")));
        let pid = std::process::id();
        assert_eq!(
            avro_file(&prefix, 2, 9, ""),
            format!("part-run-7-00003-00002-{pid}-9.avro")
        );
        assert_eq!(
            avro_file(&prefix, 0, 1, "day=2026-11-21"),
            format!("day=2026-11-21/part-run-7-00003-00000-{pid}-1.avro")
        );
    }

    #[test]
    fn commits_sort_by_version_and_staged_ones_are_not_commits() {
        assert_eq!(raw_commit_file(12), "00000000000000000012.json");
        assert!(raw_commit_file(1) < raw_commit_file(10));
        assert!(is_raw_commit_file(&raw_commit_file(3)));
        assert!(!is_raw_commit_file(&staged_raw_commit_file(3, "run-1")));
    }
}
