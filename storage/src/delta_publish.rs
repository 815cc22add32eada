//! Publishing enriched and ranked tables as Delta Lake tables: every build is one
//! Delta commit, so readers see the previous version or the new one, never a mix.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Column, TableReference};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, Operator, binary_expr, lit};
use datafusion::prelude::{DataFrame, SessionContext};
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{
    Action, Add, MetadataExt, StructType, new_metadata, normalize_for_delta,
};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::StreamExt;

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
) -> Result<DeltaTable> {
    let dir = table.table_url().to_string();
    let mut builder = table
        .write(batches)
        .with_save_mode(if replace {
            SaveMode::Overwrite
        } else {
            SaveMode::Append
        })
        .with_table_name(name);
    if !partition_columns.is_empty() {
        builder = builder.with_partition_columns(partition_columns.to_vec());
    }
    builder
        .await
        .map_err(|error| StorageError::delta(&dir, error))
}

/// Where a commit records what its build read, in the commit's `commitInfo`.
const INPUTS_KEY: &str = "strataInputs";

/// What the build of the table's current version read, as its commit recorded it.
pub async fn recorded_inputs(table: &DeltaTable) -> Option<serde_json::Value> {
    let last = table.history(Some(1)).next().await?.ok()?;
    last.info.get(INPUTS_KEY).cloned()
}

/// Commits data files written elsewhere (by the parallel writer) as one new version,
/// replacing every current file or adding to them; creates the table on its first commit.
/// `inputs`, what the build read, is recorded with the commit ([`recorded_inputs`]).
pub async fn commit_files(
    table: DeltaTable,
    adds: Vec<Add>,
    replace: bool,
    partition_columns: &[String],
    schema: &SchemaRef,
    name: &str,
    inputs: Option<serde_json::Value>,
) -> Result<DeltaTable> {
    let dir = table.table_url().to_string();
    let properties = CommitProperties::default()
        .with_metadata(inputs.map(|inputs| (INPUTS_KEY.to_owned(), inputs)));
    commit_adds(
        table,
        adds,
        replace,
        partition_columns,
        schema,
        name,
        properties,
    )
    .await
    .map_err(|error| StorageError::delta(&dir, error))
}

async fn commit_adds(
    mut table: DeltaTable,
    adds: Vec<Add>,
    replace: bool,
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
            .with_actions(adds.into_iter().map(Action::Add))
            .with_commit_properties(properties)
            .await;
    }
    let mut actions: Vec<Action> = Vec::new();
    if replace {
        let snapshot = table.snapshot()?;
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
        actions.extend(
            snapshot
                .log_data()
                .iter()
                .map(|file| Action::Remove(file.remove_action(true))),
        );
    }
    actions.extend(adds.into_iter().map(Action::Add));
    let operation = DeltaOperation::Write {
        mode: if replace {
            SaveMode::Overwrite
        } else {
            SaveMode::Append
        },
        partition_by: Some(partition_columns.to_vec()).filter(|columns| !columns.is_empty()),
        predicate: None,
    };
    CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    table.update_state().await?;
    Ok(table)
}

/// Upserts `source` matched on the `on` columns as one commit: changed rows are updated,
/// new ones inserted, and a source that changes nothing commits nothing.
///
/// The conditions are expressions over named columns, never SQL text, so any column
/// name (mixed case, spaces) means exactly that column.
pub async fn merge(
    table: DeltaTable,
    source: DataFrame,
    on: &[String],
    columns: &[String],
) -> Result<DeltaTable> {
    let dir = table.table_url().to_string();
    let delta = |error| StorageError::delta(&dir, error);
    let side = |alias: &str, column: &str| {
        Expr::Column(Column::new(Some(TableReference::bare(alias)), column))
    };
    let (target, incoming) = (|c: &str| side(TARGET, c), |c: &str| side(SOURCE, c));
    let predicate = on
        .iter()
        .map(|column| {
            binary_expr(
                target(column),
                Operator::IsNotDistinctFrom,
                incoming(column),
            )
        })
        .reduce(Expr::and)
        .unwrap_or(lit(true));
    let changed = columns
        .iter()
        .filter(|column| !on.contains(column))
        .map(|column| binary_expr(target(column), Operator::IsDistinctFrom, incoming(column)))
        .reduce(Expr::or)
        .unwrap_or(lit(false));
    let (table, _metrics) = table
        .merge(source, predicate)
        .with_source_alias(SOURCE)
        .with_target_alias(TARGET)
        .when_matched_update(|update| {
            columns
                .iter()
                .fold(update.predicate(changed), |update, column| {
                    update.update(Column::new_unqualified(column), incoming(column))
                })
        })
        .map_err(delta)?
        .when_not_matched_insert(|insert| {
            columns.iter().fold(insert, |insert, column| {
                insert.set(Column::new_unqualified(column), incoming(column))
            })
        })
        .map_err(delta)?
        .await
        .map_err(delta)?;
    Ok(table)
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
    let table = load(dir, version).await?;
    match reader {
        DeltaReader::Native => table_provider(&table, session).await,
        DeltaReader::Portable => Ok(Arc::new(DeltaFiles::try_new(&table)?)),
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
