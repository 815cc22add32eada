//! Publishing enriched and ranked tables as Delta Lake tables: every build is one
//! Delta commit, so readers see the previous version or the new one, never a mix.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::prelude::{DataFrame, SessionContext};
use deltalake_core::protocol::SaveMode;
use deltalake_core::{DeltaTable, DeltaTableError, ensure_table_uri};

/// Opens the Delta table at a directory, or an empty handle if none exists yet.
pub async fn open(dir: &Path) -> Result<DeltaTable, DeltaTableError> {
    std::fs::create_dir_all(dir)
        .map_err(|error| DeltaTableError::Generic(format!("{}: {error}", dir.display())))?;
    let url = ensure_table_uri(dir.display().to_string())?;
    DeltaTable::try_from_url(url).await
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
) -> Result<DeltaTable, DeltaTableError> {
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
    builder.await
}

/// Upserts `source` on the key columns as one commit: matched rows are replaced, others inserted.
pub async fn merge(
    table: DeltaTable,
    source: DataFrame,
    key: &[String],
    columns: &[String],
) -> Result<DeltaTable, DeltaTableError> {
    let predicate = key
        .iter()
        .map(|column| format!("target.{column} = source.{column}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let (table, _metrics) = table
        .merge(source, predicate)
        .with_source_alias("source")
        .with_target_alias("target")
        .when_matched_update(|update| {
            columns.iter().fold(update, |update, column| {
                update.update(column.as_str(), format!("source.{column}"))
            })
        })?
        .when_not_matched_insert(|insert| {
            columns.iter().fold(insert, |insert, column| {
                insert.set(column.as_str(), format!("source.{column}"))
            })
        })?
        .await?;
    Ok(table)
}

/// Registers the table's current version on a session for downstream queries.
pub async fn register(
    ctx: &SessionContext,
    name: &str,
    table: &DeltaTable,
) -> datafusion::error::Result<()> {
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|error| datafusion::error::DataFusionError::External(Box::new(error)))?;
    let provider: Arc<dyn TableProvider> = table
        .table_provider()
        .await
        .map_err(|error| datafusion::error::DataFusionError::External(Box::new(error)))?;
    // Planning registered an empty stand-in with the same schema; the real table replaces it.
    ctx.deregister_table(name)?;
    ctx.register_table(name, provider)?;
    Ok(())
}
