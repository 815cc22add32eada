//! Every path in a warehouse, as a typed value: where a layer's tables live, what a
//! table directory holds, and how the files Strata writes are named. Nothing outside
//! this module joins a warehouse path or formats a file name.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use strata_language::{Layer, TableName};

use crate::error::{Result, StorageError};
use crate::store::{StoreKind, StoreOptions, StoreUrl};

/// Directory of Strata's own records (run history) under the warehouse root.
const STRATA_DIR: &str = "_strata";
/// Run reports, one JSON file per run, under [`STRATA_DIR`].
const RUNS_DIR: &str = "runs";
/// The audit trail of queries, a Delta table, under [`STRATA_DIR`].
const AUDIT_DIR: &str = "audit";
/// Registered schedules, one JSON file per schedule, under [`STRATA_DIR`].
const SCHEDULES_DIR: &str = "schedules";
/// What each schedule has fired and seen, one JSON file per schedule, under [`STRATA_DIR`].
const SCHEDULE_STATE_DIR: &str = "schedule_state";
/// The masks and row filters of each table, one JSON file per table, under [`STRATA_DIR`].
const POLICIES_DIR: &str = "policies";
/// The secret `hash_pii` keys its hashes with, under [`STRATA_DIR`].
const PII_KEY_FILE: &str = "pii.key";
/// Under `_strata`: the leases that let one process at a time do a job.
const LEASES_DIR: &str = "leases";
/// Under `_strata`: one file per erasure, naming the subject ingest keeps out.
const SUPPRESSED_DIR: &str = "suppressed";
/// Under `_strata`: the report of each erasure.
const ERASURES_DIR: &str = "erasures";
/// A raw table's commit log, inside the table's directory.
const RAW_LOG_DIR: &str = "_strata_log";
/// Where a raw table records the files each compaction replaced, until they are removed.
const REPLACED_DIR: &str = "_strata_replaced";
/// Where MERGE KEY and SCD2 builds stage their checked rows, inside the table's directory.
const STAGING_DIR: &str = "_strata_staging";
/// A Delta table's transaction log, inside the table's directory.
const DELTA_LOG_DIR: &str = "_delta_log";
/// The start of every raw data file's name.
const PART: &str = "part";
/// Where a raw table keeps the files of its rejected rows, inside the table's directory.
pub const REJECTS_DIR: &str = "_rejects";

/// A warehouse: a directory on the local disk or a prefix in an object store.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: StoreUrl,
    store: Arc<dyn ObjectStore>,
}

impl Warehouse {
    /// The warehouse at a path or URL, its store configured from the environment.
    pub fn open(location: &str) -> Result<Self> {
        let root = StoreUrl::parse(location)?;
        let store = root.open(&StoreOptions::default())?;
        Ok(Self { root, store })
    }

    /// A warehouse in a local directory (created when a run first writes to it).
    ///
    /// # Panics
    ///
    /// If `root` is empty, the one path that names no directory; [`Warehouse::open`]
    /// returns that as an error.
    pub fn local(root: impl AsRef<Path>) -> Self {
        let path = std::path::absolute(root.as_ref()).unwrap_or_else(|_| root.as_ref().into());
        Self::open(&path.display().to_string())
            .unwrap_or_else(|error| panic!("a local path is always a location: {error}"))
    }

    /// Where the warehouse is.
    pub fn location(&self) -> &StoreUrl {
        &self.root
    }

    /// The warehouse's store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The local directory, when the warehouse is on this machine's disk.
    pub fn local_dir(&self) -> Option<PathBuf> {
        (self.root.kind() == StoreKind::Local).then(|| PathBuf::from(self.root.display()))
    }

    /// Checks that the warehouse can be reached: a store's bucket exists and accepts the
    /// credentials. A local directory is created by the first run that writes to it.
    pub async fn check(&self) -> Result<()> {
        if self.root.kind() == StoreKind::Local {
            return Ok(());
        }
        self.store
            .list_with_delimiter(Some(self.root.path()))
            .await
            .map(|_| ())
            .map_err(|error| StorageError::store(&self.root.display(), &error))
    }

    /// Where a layer's tables live: `<root>/<layer>`.
    pub fn layer_dir(&self, layer: Layer) -> StorePath {
        self.root.child(layer.as_str()).path().clone()
    }

    /// Where a built table's files live: `<root>/<layer>/<name>`.
    pub fn table(&self, table: &TableName) -> TableDir {
        TableDir {
            location: self.root.child(layer_and_name(table).as_str()),
            store: Arc::clone(&self.store),
        }
    }

    /// The audit trail of queries, a Delta table: `<root>/_strata/audit`.
    pub fn audit_table(&self) -> TableDir {
        TableDir {
            location: self.root.child(STRATA_DIR).child(AUDIT_DIR),
            store: Arc::clone(&self.store),
        }
    }

    /// Where the run history is kept: `<root>/_strata/runs`.
    pub fn runs_dir(&self) -> StorePath {
        self.root.child(STRATA_DIR).child(RUNS_DIR).path().clone()
    }

    /// The report of one run: `<root>/_strata/runs/<run_id>.json`.
    pub fn run_report(&self, run_id: &str) -> StorePath {
        self.runs_dir().join(format!("{run_id}.json"))
    }

    /// Where schedules are registered: `<root>/_strata/schedules`.
    pub fn schedules_dir(&self) -> StorePath {
        self.root
            .child(STRATA_DIR)
            .child(SCHEDULES_DIR)
            .path()
            .clone()
    }

    /// One schedule: `<root>/_strata/schedules/<name>.json`.
    pub fn schedule(&self, name: &str) -> StorePath {
        self.schedules_dir().join(format!("{name}.json"))
    }

    /// What one schedule fired and saw: `<root>/_strata/schedule_state/<name>.json`.
    pub fn schedule_state(&self, name: &str) -> StorePath {
        self.root
            .child(STRATA_DIR)
            .child(SCHEDULE_STATE_DIR)
            .path()
            .clone()
            .join(format!("{name}.json"))
    }

    /// The masks and row filters readers of a table see it through:
    /// `<root>/_strata/policies/<layer>.<name>.json`.
    pub fn policy(&self, table: &TableName) -> StorePath {
        self.root
            .child(STRATA_DIR)
            .child(POLICIES_DIR)
            .path()
            .clone()
            .join(format!("{table}.json"))
    }

    /// The warehouse's secret for pseudonyms (`hash_pii`): `<root>/_strata/pii.key`.
    pub fn pii_key(&self) -> StorePath {
        self.root
            .child(STRATA_DIR)
            .path()
            .clone()
            .join(PII_KEY_FILE)
    }

    /// One lease's terms, newest last: `<root>/_strata/leases/<name>/<term>.json`.
    pub fn lease_dir(&self, name: &str) -> StorePath {
        self.root
            .child(STRATA_DIR)
            .child(LEASES_DIR)
            .path()
            .clone()
            .join(name)
    }

    /// The subjects erased from the warehouse: `<root>/_strata/suppressed`.
    pub fn suppressed_dir(&self) -> StorePath {
        self.root
            .child(STRATA_DIR)
            .child(SUPPRESSED_DIR)
            .path()
            .clone()
    }

    /// The subject one erasure keeps out: `<root>/_strata/suppressed/<erasure>.json`.
    pub fn suppressed(&self, erasure: &str) -> StorePath {
        self.suppressed_dir().join(format!("{erasure}.json"))
    }

    /// What one erasure did: `<root>/_strata/erasures/<erasure>.json`.
    pub fn erasure_report(&self, erasure: &str) -> StorePath {
        self.root
            .child(STRATA_DIR)
            .child(ERASURES_DIR)
            .path()
            .clone()
            .join(format!("{erasure}.json"))
    }

    /// A path in the warehouse, as users see it (a path on disk, a URL in a store).
    pub fn display_path(&self, path: &StorePath) -> String {
        self.root.url_of(path)
    }

    /// Resolves a landing `LOCATION`: URLs and absolute paths stay, relative paths are under the root.
    pub fn resolve_location(&self, location: &str) -> String {
        if location.contains("://") || Path::new(location).is_absolute() {
            return location.to_owned();
        }
        let joined = self.root.child(location).display();
        // A trailing slash says the location is a directory.
        if location.ends_with('/') && !joined.ends_with('/') {
            format!("{joined}/")
        } else {
            joined
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

impl fmt::Display for Warehouse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root.display())
    }
}

/// `<layer>/<name>`, a table's place under the warehouse root.
fn layer_and_name(table: &TableName) -> String {
    format!("{}/{}", table.layer.as_str(), table.name)
}

/// One table's directory, and the places inside it that Strata owns.
#[derive(Debug, Clone)]
pub struct TableDir {
    location: StoreUrl,
    store: Arc<dyn ObjectStore>,
}

impl PartialEq for TableDir {
    fn eq(&self, other: &Self) -> bool {
        self.location == other.location
    }
}

impl Eq for TableDir {}

impl TableDir {
    /// The table at a location named by [`TableDir`]'s display (a plan carries it so),
    /// its store configured from the environment.
    pub fn open(location: &str) -> Result<Self> {
        let location = StoreUrl::parse(location)?;
        let store = location.open(&StoreOptions::default())?;
        Ok(Self { location, store })
    }

    /// The table's directory, in its store.
    pub fn path(&self) -> &StorePath {
        self.location.path()
    }

    /// Where the table is.
    pub fn location(&self) -> &StoreUrl {
        &self.location
    }

    /// The table's store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// A file or directory inside the table, from a path relative to it.
    pub fn join(&self, relative: &str) -> StorePath {
        self.location.child(relative).path().clone()
    }

    /// A file inside the table as users and DataFusion name it (a path or a URL).
    pub fn url_of(&self, relative: &str) -> String {
        self.location.child(relative).display()
    }

    /// The table's URL, as deltalake opens it.
    pub fn table_url(&self) -> url::Url {
        self.location.to_url(true)
    }

    /// The directory on this machine's disk, when the table is on it.
    pub fn local_dir(&self) -> Option<PathBuf> {
        (self.location.kind() == StoreKind::Local).then(|| PathBuf::from(self.location.display()))
    }

    /// The raw commit log.
    pub fn raw_log(&self) -> StorePath {
        self.join(RAW_LOG_DIR)
    }

    /// The Delta transaction log.
    pub fn delta_log(&self) -> StorePath {
        self.join(DELTA_LOG_DIR)
    }

    /// Where one run stages the rows it merges, as a table of its own.
    pub fn staging(&self, run_id: &str) -> TableDir {
        TableDir {
            location: self.location.child(&format!("{STAGING_DIR}/{run_id}")),
            store: Arc::clone(&self.store),
        }
    }

    /// Where every run stages what it merges.
    pub fn staging_root(&self) -> StorePath {
        self.join(STAGING_DIR)
    }

    /// Where a raw table records what its compactions replaced.
    pub fn replaced_records(&self) -> StorePath {
        self.join(REPLACED_DIR)
    }

    /// Whether a path relative to the table is in one of its logs.
    pub fn is_log(relative: &str) -> bool {
        relative.split('/').next().is_some_and(|first| {
            first == RAW_LOG_DIR || first == DELTA_LOG_DIR || first == REPLACED_DIR
        })
    }

    /// Whether a directory entry of the table holds data rather than Strata's or Delta's own files.
    pub fn is_data_entry(name: &str) -> bool {
        !name.starts_with('_') && !name.starts_with('.')
    }
}

impl fmt::Display for TableDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.location.display())
    }
}

/// The start of the name of every raw data file one run writes: `part-<run>-`.
pub fn run_file_prefix(run_id: &str) -> String {
    format!("{PART}-{run_id}-")
}

/// A Parquet data file's name as one run writes it: deltalake's `part-<n>-<uuid>…`
/// with the run's prefix instead of `part-`, so the run's files are found by name.
/// `None` for a name that is not a data file's, already the run's, or an empty prefix.
pub fn run_data_file(prefix: &str, name: &str) -> Option<String> {
    let rest = name.strip_prefix(PART)?.strip_prefix('-')?;
    (!prefix.is_empty() && !name.starts_with(prefix) && name.ends_with(".parquet"))
        .then(|| format!("{prefix}{rest}"))
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

/// The file of a compaction's rows, in the partition directory (relative to the table)
/// of the files it replaces: named after the log version that commits it.
pub fn compacted_file(version: u64, index: usize, partition_dir: &str) -> String {
    let name = format!("{PART}-compacted-{version:020}-{index:05}.avro");
    if partition_dir.is_empty() {
        name
    } else {
        format!("{partition_dir}/{name}")
    }
}

/// A file rewritten without an erased subject's rows, beside the file it replaces
/// (`relative` to the table): named after the log version that commits it.
pub fn erased_file(version: u64, index: usize, relative: &str) -> String {
    let name = format!("{PART}-erased-{version:020}-{index:05}.avro");
    match relative.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{name}"),
        None => name,
    }
}

/// The record of the files the compaction committed as `version` replaced.
pub fn replaced_record_file(version: u64) -> String {
    format!("{version:020}.json")
}

/// A lease term's file: the term, zero-padded so names sort.
pub fn lease_term_file(term: u64) -> String {
    format!("{term:020}.json")
}

/// The term a lease file's name holds, if it is a term's name.
pub fn lease_term(name: &str) -> Option<u64> {
    name.strip_suffix(".json")?.parse().ok()
}

/// A raw commit's file in the commit log: the version, zero-padded so names sort.
pub fn raw_commit_file(version: u64) -> String {
    format!("{version:020}.json")
}

/// The version a commit file's name holds, if it is a commit's name.
pub fn raw_commit_version(name: &str) -> Option<u64> {
    name.strip_suffix(".json")?.parse().ok()
}

/// A raw commit log's checkpoint, folding the log up to a version. Its name does not end
/// in `.json`, so it is never taken for a commit.
pub fn raw_checkpoint_file(version: u64) -> String {
    format!("{version:020}.checkpoint")
}

/// The version a checkpoint file's name holds, if it is a checkpoint's name.
pub fn raw_checkpoint_version(name: &str) -> Option<u64> {
    name.strip_suffix(".checkpoint")?.parse().ok()
}

/// Whether a commit log entry is a commit (and not a commit being written).
pub fn is_raw_commit_file(name: &str) -> bool {
    name.ends_with(".json") && !name.starts_with('.')
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
        assert_eq!(table.to_string(), "/wh/enriched/events");
        assert_eq!(table.path().as_ref(), "wh/enriched/events");
        assert_eq!(
            warehouse.table(&events().quarantine()).to_string(),
            "/wh/enriched/events__quarantine"
        );
        assert_eq!(table.raw_log().as_ref(), "wh/enriched/events/_strata_log");
        assert_eq!(table.delta_log().as_ref(), "wh/enriched/events/_delta_log");
        assert_eq!(
            table.staging("run-1").to_string(),
            "/wh/enriched/events/_strata_staging/run-1"
        );
        assert_eq!(table.table_url().as_str(), "file:///wh/enriched/events/");
        assert_eq!(
            warehouse.display_path(&warehouse.run_report("run-1")),
            "/wh/_strata/runs/run-1.json"
        );
    }

    #[test]
    fn a_warehouse_in_a_store_names_its_tables_by_url() {
        let warehouse = Warehouse::open("s3://lake/wh/").unwrap();
        let table = warehouse.table(&events());
        assert_eq!(table.to_string(), "s3://lake/wh/enriched/events");
        assert_eq!(table.table_url().as_str(), "s3://lake/wh/enriched/events/");
        assert_eq!(
            table.url_of("a.avro"),
            "s3://lake/wh/enriched/events/a.avro"
        );
        assert_eq!(
            warehouse.resolve_location("landing/jobs/"),
            "s3://lake/wh/landing/jobs/"
        );
        assert!(warehouse.local_dir().is_none());
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
        assert_eq!(raw_commit_version(&raw_commit_file(12)), Some(12));
        assert_eq!(raw_commit_version("notes.txt"), None);
        assert!(is_raw_commit_file(&raw_commit_file(3)));
        assert!(!is_raw_commit_file(".00000000000000000003.json.tmp"));
    }
}
