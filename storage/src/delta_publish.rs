//! Publishing enriched and ranked tables as Delta Lake tables: every build is one
//! Delta commit, so readers see the previous version or the new one, never a mix.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::expr_fn::{count, max, min};
use datafusion::logical_expr::{Expr, Operator, binary_expr, lit};
use datafusion::prelude::{DataFrame, SessionContext};
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{
    Action, Add, MetadataExt, StructType, Transaction, new_metadata, normalize_for_delta,
};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::StreamExt;
use percent_encoding::percent_decode_str;

use crate::delta_files::DeltaFiles;
use crate::error::{Result, StorageError};
use crate::paths::TableDir;

/// Opens the Delta table at a directory, or an empty handle if none exists yet.
pub async fn open(dir: &TableDir) -> Result<DeltaTable> {
    if let Some(local) = dir.local_dir() {
        // deltalake opens a local table only in a directory that exists.
        std::fs::create_dir_all(&local).map_err(|error| StorageError::Store {
            location: dir.to_string(),
            reason: error.to_string(),
        })?;
    }
    DeltaTable::try_from_url(dir.table_url())
        .await
        .map_err(|error| StorageError::delta(dir, error))
}

/// Loads the Delta table at a directory as it is now (or at `version`); an error if it has none.
pub async fn load(dir: &TableDir, version: Option<u64>) -> Result<DeltaTable> {
    let delta = |error| StorageError::delta(dir, error);
    let mut builder = DeltaTableBuilder::from_url(dir.table_url()).map_err(delta)?;
    if let Some(version) = version {
        builder = builder.with_version(version);
    }
    builder.load().await.map_err(delta)
}

/// Whether a Delta table has been created in `dir`, without opening it (one listing request).
pub async fn has_table(dir: &TableDir) -> bool {
    let log = dir.delta_log();
    let mut entries = dir.store().list(Some(&log));
    matches!(entries.next().await, Some(Ok(_)))
}

/// Whether the handle points at an existing table (with at least one commit).
pub fn exists(table: &DeltaTable) -> bool {
    table.version().is_some()
}

/// Writes batches as one commit, replacing or appending; returns the new version.
pub async fn write(
    table: DeltaTable,
    batches: Vec<RecordBatch>,
    replace: bool,
    partition_columns: &[String],
    name: &str,
    provenance: Provenance,
) -> Result<DeltaTable> {
    let mode = if replace {
        SaveMode::Overwrite
    } else {
        SaveMode::Append
    };
    write_as(
        table,
        batches,
        (mode, None),
        partition_columns,
        name,
        provenance,
    )
    .await
}

/// Replaces the rows matching `predicate` with `batches` (each of which must match it)
/// as one commit: files with matching rows are rewritten without them.
pub async fn replace_where(
    table: DeltaTable,
    batches: Vec<RecordBatch>,
    predicate: Expr,
    partition_columns: &[String],
    name: &str,
    provenance: Provenance,
) -> Result<DeltaTable> {
    let how = (SaveMode::Overwrite, Some(predicate));
    write_as(table, batches, how, partition_columns, name, provenance).await
}

/// The settings of every Delta table Strata creates: each records its changes (Delta's
/// Change Data Feed), for the tables built from it and for other engines
/// (`load_cdf`, `table_changes`).
const CREATED_WITH: [(&str, &str); 1] = [("delta.enableChangeDataFeed", "true")];

fn created_with() -> impl Iterator<Item = (&'static str, Option<&'static str>)> {
    CREATED_WITH.iter().map(|(key, value)| (*key, Some(*value)))
}

async fn write_as(
    table: DeltaTable,
    batches: Vec<RecordBatch>,
    (mode, replace_where): (SaveMode, Option<Expr>),
    partition_columns: &[String],
    name: &str,
    provenance: Provenance,
) -> Result<DeltaTable> {
    let dir = table.table_url().to_string();
    let mut builder = table
        .write(batches)
        .with_commit_properties(provenance.properties())
        .with_save_mode(mode)
        .with_table_name(name)
        .with_configuration(created_with());
    if let Some(predicate) = replace_where {
        builder = builder.with_replace_where(predicate);
    }
    if !partition_columns.is_empty() {
        builder = builder.with_partition_columns(partition_columns.to_vec());
    }
    builder
        .await
        .map_err(|error| StorageError::delta(&dir, error))
}

/// Where a commit records what its build read, in the commit's `commitInfo`.
const INPUTS_KEY: &str = "strataInputs";

/// The application id of the Delta transaction every incremental build commits.
const STREAM_APP_ID: &str = "strata";

/// What a build records in its commit: what it read and, for a build that read the new
/// rows of a table, the Delta transaction (`txn`) that makes two builds from the same
/// position conflict, so only one of them commits those rows.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub inputs: Option<serde_json::Value>,
    /// The position the build read its stream up to.
    pub stream_position: Option<u64>,
}

/// Where a commit of files written elsewhere records its rows and files, under the key
/// Delta's own writers use, so `DESCRIBE HISTORY`-style readers show them.
const METRICS_KEY: &str = "operationMetrics";

/// The rows and files a set of adds brings, as Delta's `operationMetrics`.
fn add_metrics(adds: &[Add]) -> serde_json::Value {
    let rows: u64 = adds
        .iter()
        .filter_map(|add| add.stats.as_deref())
        .filter_map(|stats| serde_json::from_str::<serde_json::Value>(stats).ok())
        .filter_map(|stats| stats.get("numRecords").and_then(serde_json::Value::as_u64))
        .sum();
    serde_json::json!({ "numOutputRows": rows.to_string(), "numFiles": adds.len().to_string() })
}

impl Provenance {
    pub(crate) fn properties(self) -> CommitProperties {
        self.properties_with(None)
    }

    /// The commit's properties, with `metrics` recorded when given.
    fn properties_with(self, metrics: Option<serde_json::Value>) -> CommitProperties {
        let inputs = self.inputs.map(|inputs| (INPUTS_KEY.to_owned(), inputs));
        let metrics = metrics.map(|metrics| (METRICS_KEY.to_owned(), metrics));
        let mut properties =
            CommitProperties::default().with_metadata(inputs.into_iter().chain(metrics));
        if let Some(position) = self.stream_position {
            properties = properties
                .with_application_transaction(Transaction::new(STREAM_APP_ID, position as i64));
        }
        properties
    }
}

/// What the build of the table's current rows read, as its commit recorded it: the
/// newest commit that changed rows. A write by another tool records nothing, so the
/// table is built again.
pub async fn recorded_inputs(table: &DeltaTable) -> Option<serde_json::Value> {
    let mut history = table.history(Some(16));
    while let Some(commit) = history.next().await {
        let commit = commit.ok()?;
        if !keeps_rows(commit.operation.as_deref()) {
            return commit.info.get(INPUTS_KEY).cloned();
        }
    }
    None
}

/// Whether a commit's operation leaves every row as it was: it rearranges files
/// (compaction), removes unread ones (vacuum), or changes only the table's settings.
fn keeps_rows(operation: Option<&str>) -> bool {
    matches!(
        operation,
        Some(
            "OPTIMIZE"
                | "VACUUM START"
                | "VACUUM END"
                | "SET TBLPROPERTIES"
                | "ADD CONSTRAINT"
                | "DROP CONSTRAINT"
                | "ADD FEATURE"
                | "UPDATE FIELD METADATA"
                | "UPDATE TABLE METADATA"
        )
    )
}

/// Versions a reader may be behind by and still read only what they added; further
/// behind, it reads the table whole.
const MOST_VERSIONS_READ: u64 = 1000;

/// The data files holding the rows that versions `from..to` of `table` added, read from
/// their log entries: None when one of them removed rows (a replace, a merge, a
/// delete), when its entry is gone, or when there are more than [`MOST_VERSIONS_READ`].
/// Files added by a compaction hold rows that were there before, so they are not new.
pub async fn files_added(
    table: &DeltaTable,
    from: u64,
    to: u64,
) -> Result<Option<HashSet<String>>> {
    if to.saturating_sub(from) > MOST_VERSIONS_READ {
        return Ok(None);
    }
    let log_store = table.log_store();
    let url = table.table_url().to_string();
    let mut added = HashSet::new();
    for version in from..to {
        let Some(entry) = log_store
            .read_commit_entry(version)
            .await
            .map_err(|error| StorageError::delta(&url, error))?
        else {
            return Ok(None);
        };
        for line in entry
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
        {
            let action: serde_json::Value =
                serde_json::from_slice(line).map_err(|error| StorageError::Corrupt {
                    location: format!("{url} version {version}"),
                    reason: error.to_string(),
                })?;
            let changes_data = |action: &serde_json::Value| {
                action
                    .get("dataChange")
                    .and_then(serde_json::Value::as_bool)
                    != Some(false)
            };
            if let Some(remove) = action.get("remove")
                && changes_data(remove)
            {
                return Ok(None);
            }
            if let Some(add) = action.get("add")
                && changes_data(add)
                && let Some(path) = add.get("path").and_then(serde_json::Value::as_str)
            {
                added.insert(percent_decode_str(path).decode_utf8_lossy().into_owned());
            }
        }
    }
    Ok(Some(added))
}

/// What a commit of new files takes away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replace {
    /// Nothing: the files are added.
    Nothing,
    /// Every current file.
    Everything,
    /// The files of one partition column's values from `from` to `to`, inclusive
    /// (ISO dates compare as text): a backfill of a date range.
    Partitions {
        column: String,
        from: String,
        to: String,
    },
}

impl Replace {
    /// Every current file, or nothing.
    pub fn all_if(replace: bool) -> Replace {
        if replace {
            Replace::Everything
        } else {
            Replace::Nothing
        }
    }

    /// Whether a file with these partition values is taken away.
    fn removes(&self, values: &std::collections::HashMap<String, Option<String>>) -> bool {
        match self {
            Replace::Nothing => false,
            Replace::Everything => true,
            Replace::Partitions { column, from, to } => {
                values.get(column).cloned().flatten().is_some_and(|value| {
                    from.as_str() <= value.as_str() && value.as_str() <= to.as_str()
                })
            }
        }
    }

    /// The predicate Delta's log records for the commit.
    fn predicate(&self) -> Option<String> {
        match self {
            Replace::Partitions { column, from, to } => {
                Some(format!("{column} >= '{from}' AND {column} <= '{to}'"))
            }
            Replace::Nothing | Replace::Everything => None,
        }
    }
}

/// Commits data files written elsewhere (by the parallel writer) as one new version,
/// taking away what `replace` says (every current file, a backfill's range of
/// partitions, or nothing); creates the table on its first commit. What the build read
/// is recorded with the commit ([`recorded_inputs`]).
pub async fn commit_files(
    table: DeltaTable,
    adds: Vec<Add>,
    replace: Replace,
    partition_columns: &[String],
    schema: &SchemaRef,
    name: &str,
    provenance: Provenance,
) -> Result<DeltaTable> {
    let dir = table.table_url().to_string();
    let metrics = add_metrics(&adds);
    commit_adds(
        table,
        adds,
        replace,
        partition_columns,
        schema,
        name,
        provenance.properties_with(Some(metrics)),
    )
    .await
    .map_err(|error| StorageError::delta(&dir, error))
}

async fn commit_adds(
    mut table: DeltaTable,
    adds: Vec<Add>,
    replace: Replace,
    partition_columns: &[String],
    schema: &SchemaRef,
    name: &str,
    properties: CommitProperties,
) -> Result<DeltaTable, DeltaTableError> {
    if !exists(&table) {
        let columns: StructType = normalize_for_delta(schema).try_into_kernel()?;
        return CreateBuilder::new()
            .with_log_store(table.log_store())
            .with_table_name(name)
            .with_columns(columns.fields().cloned())
            .with_partition_columns(partition_columns.to_vec())
            .with_configuration(created_with())
            .with_actions(adds.into_iter().map(Action::Add))
            .with_commit_properties(properties)
            .await;
    }
    let mut actions: Vec<Action> = Vec::new();
    let snapshot = table.snapshot()?;
    if replace == Replace::Everything {
        let current: StructType = normalize_for_delta(schema).try_into_kernel()?;
        let same_columns = snapshot.schema().fields().count() == current.fields().count()
            && snapshot
                .schema()
                .fields()
                .zip(current.fields())
                .all(|(old, new)| old.name() == new.name() && old.data_type() == new.data_type());
        if !same_columns || snapshot.metadata().partition_columns() != partition_columns {
            // The query changed: this version replaces the columns along with the rows.
            let metadata = new_metadata(
                &current,
                partition_columns,
                snapshot.metadata().configuration().clone(),
            )?
            .with_name(name.to_owned())?;
            actions.push(Action::Metadata(metadata));
        }
    }
    if replace != Replace::Nothing {
        actions.extend(
            snapshot
                .log_data()
                .iter()
                .filter(|file| replace.removes(&file.partition_values_map()))
                .map(|file| Action::Remove(file.remove_action(true))),
        );
    }
    actions.extend(adds.into_iter().map(Action::Add));
    let operation = DeltaOperation::Write {
        mode: if replace == Replace::Nothing {
            SaveMode::Append
        } else {
            SaveMode::Overwrite
        },
        partition_by: Some(partition_columns.to_vec()).filter(|columns| !columns.is_empty()),
        predicate: replace.predicate(),
    };
    CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    table.update_state().await?;
    Ok(table)
}

/// How a merge matches and orders rows.
#[derive(Debug, Clone, Copy)]
pub struct MergeOn<'a> {
    /// The columns that match an incoming row with a row of the table.
    pub key: &'a [String],
    /// A column whose greater value wins: an incoming row older than the table's row of
    /// its key changes nothing.
    pub sequence_by: Option<&'a str>,
    /// A boolean column of the incoming rows: a row where it is true deletes its key's
    /// row (when not older than it), and is not inserted itself.
    pub deletes: Option<&'a str>,
}

/// Upserts `source` matched on the key as one commit: changed rows are updated, new
/// ones inserted, and a source that changes nothing commits nothing.
///
/// Only the table's files whose key ranges overlap the incoming keys' are read: each key
/// column is bounded by the incoming rows' least and greatest value (Delta's file
/// statistics skip the rest).
///
/// The conditions are expressions over named columns, never SQL text, so any column
/// name (mixed case, spaces) means exactly that column.
pub async fn merge(
    table: DeltaTable,
    source: DataFrame,
    on: MergeOn<'_>,
    columns: &[String],
    provenance: Provenance,
) -> Result<DeltaTable> {
    let dir = table.table_url().to_string();
    let delta = |error| StorageError::delta(&dir, error);
    let side = |alias: &str, column: &str| {
        Expr::Column(Column::new(Some(TableReference::bare(alias)), column))
    };
    let (target, incoming) = (|c: &str| side(TARGET, c), |c: &str| side(SOURCE, c));
    let bounds = key_bounds(&source, on.key).await?;
    let predicate = on
        .key
        .iter()
        .map(|column| {
            binary_expr(
                target(column),
                Operator::IsNotDistinctFrom,
                incoming(column),
            )
        })
        .chain(bounds)
        .reduce(Expr::and)
        .unwrap_or(lit(true));
    let changed = columns
        .iter()
        .filter(|column| !on.key.contains(column))
        .map(|column| binary_expr(target(column), Operator::IsDistinctFrom, incoming(column)))
        .reduce(Expr::or)
        .unwrap_or(lit(false));
    let newer = on.sequence_by.map(|sequence| {
        target(sequence)
            .is_null()
            .or(incoming(sequence).gt_eq(target(sequence)))
    });
    let update_when = match newer.clone() {
        Some(newer) => changed.and(newer),
        None => changed,
    };
    let mut merge = table
        .merge(source, predicate)
        .with_source_alias(SOURCE)
        .with_target_alias(TARGET)
        .with_commit_properties(provenance.properties());
    let kept = |expr: Expr| match on.deletes {
        Some(marker) => std::ops::Not::not(incoming(marker)).and(expr),
        None => expr,
    };
    if let Some(marker) = on.deletes {
        let delete_when = match newer {
            Some(newer) => incoming(marker).and(newer),
            None => incoming(marker),
        };
        merge = merge
            .when_matched_delete(|delete| delete.predicate(delete_when))
            .map_err(delta)?;
    }
    let (table, _metrics) = merge
        .when_matched_update(|update| {
            columns
                .iter()
                .fold(update.predicate(kept(update_when)), |update, column| {
                    update.update(Column::new_unqualified(column), incoming(column))
                })
        })
        .map_err(delta)?
        .when_not_matched_insert(|insert| {
            let insert = match on.deletes {
                Some(_) => insert.predicate(kept(lit(true))),
                None => insert,
            };
            columns.iter().fold(insert, |insert, column| {
                insert.set(Column::new_unqualified(column), incoming(column))
            })
        })
        .map_err(delta)?
        .await
        .map_err(delta)?;
    Ok(table)
}

/// For each key column, `target.k BETWEEN <least> AND <greatest incoming value>`, or
/// `target.k IS NULL` when an incoming key is NULL: a condition with no reference to the
/// incoming rows, which the merge uses to skip the table's files.
async fn key_bounds(source: &DataFrame, key: &[String]) -> datafusion::error::Result<Vec<Expr>> {
    let column = |name: &str| Expr::Column(Column::new_unqualified(name));
    let target = |name: &str| Expr::Column(Column::new(Some(TableReference::bare(TARGET)), name));
    let aggregates: Vec<Expr> = key
        .iter()
        .flat_map(|name| {
            [
                min(column(name)),
                max(column(name)),
                count(lit(1)) - count(column(name)),
            ]
        })
        .collect();
    let batches = source
        .clone()
        .aggregate(vec![], aggregates)?
        .collect()
        .await?;
    let Some(row) = batches.iter().find(|batch| batch.num_rows() == 1) else {
        return Ok(Vec::new());
    };
    let mut bounds = Vec::new();
    for (index, name) in key.iter().enumerate() {
        let value = |offset: usize| ScalarValue::try_from_array(row.column(index * 3 + offset), 0);
        let (least, greatest, nulls) = (value(0)?, value(1)?, value(2)?);
        let has_nulls = !matches!(nulls, ScalarValue::Int64(Some(0)));
        let bound = match (least.is_null(), has_nulls) {
            (true, _) => target(name).is_null(),
            (false, false) => target(name).between(lit(least), lit(greatest)),
            (false, true) => target(name)
                .between(lit(least), lit(greatest))
                .or(target(name).is_null()),
        };
        bounds.push(bound);
    }
    Ok(bounds)
}

/// The aliases a merge gives the table and the incoming rows.
const TARGET: &str = "target";
const SOURCE: &str = "source";

/// Registers the table's current version on a session for downstream queries.
pub async fn register(
    ctx: &SessionContext,
    name: &str,
    table: &DeltaTable,
) -> datafusion::error::Result<()> {
    let provider: Arc<dyn TableProvider> = Arc::new(DeltaFiles::try_new(table)?);
    // Planning registered an empty stand-in with the same schema; the real table replaces it.
    ctx.deregister_table(name)?;
    ctx.register_table(name, provider)?;
    Ok(())
}

/// How a Delta table version is scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaReader {
    /// deltalake's own scan, which skips files by their statistics, in this process.
    Native,
    /// A Parquet scan of the version's files, which travels to executors in a Ballista plan.
    Portable,
}

/// Opens the Delta table in `dir` at its current version, or at `version`, for reading.
pub async fn provider(
    dir: &TableDir,
    version: Option<u64>,
    session: &dyn Session,
    reader: DeltaReader,
) -> datafusion::error::Result<Arc<dyn TableProvider>> {
    reader_of(&load(dir, version).await?, session, reader).await
}

/// A loaded version of a Delta table as a table to read, scanned as `reader` says.
pub async fn reader_of(
    table: &DeltaTable,
    session: &dyn Session,
    reader: DeltaReader,
) -> datafusion::error::Result<Arc<dyn TableProvider>> {
    match reader {
        DeltaReader::Native => table_provider(table, session).await,
        DeltaReader::Portable => Ok(Arc::new(DeltaFiles::try_new(table)?)),
    }
}

/// The newest version of the Delta table in `dir`.
pub async fn latest_version(dir: &TableDir) -> datafusion::error::Result<u64> {
    load(dir, None)
        .await?
        .version()
        .ok_or_else(|| DataFusionError::Plan(format!("{dir} has no commits")))
}

async fn table_provider(
    table: &DeltaTable,
    session: &dyn Session,
) -> datafusion::error::Result<Arc<dyn TableProvider>> {
    let external = |error: DeltaTableError| DataFusionError::External(Box::new(error));
    table.update_datafusion_session(session).map_err(external)?;
    let provider = table.table_provider().await?;
    Ok(provider)
}
