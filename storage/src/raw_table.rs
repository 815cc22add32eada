//! Reading a raw table back: exactly the Avro files its commits name, nothing half-written.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::file_format::avro::AvroFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

use crate::avro_sink::{WrittenFile, storage_schema};
use crate::commit_log::CommitLog;
use crate::paths::TableDir;

/// Registers `name` as the committed files of the raw table in `table`.
pub async fn register(
    ctx: &SessionContext,
    name: &str,
    table: &TableDir,
    planned: &SchemaRef,
) -> Result<()> {
    let provider = match provider(table, &ctx.state()).await? {
        Some(provider) => provider,
        None => Arc::new(EmptyTable::new(storage_schema(planned))),
    };
    ctx.deregister_table(name)?;
    ctx.register_table(name, provider)?;
    Ok(())
}

/// Whether the raw table in `table` has committed data files.
pub async fn has_commits(table: &TableDir) -> crate::Result<bool> {
    CommitLog::new(table).has_data_files().await
}

/// The committed files of the raw table in `table` as one table, or `None` if it has none.
pub async fn provider(
    table: &TableDir,
    session: &dyn Session,
) -> Result<Option<Arc<dyn TableProvider>>> {
    let files = CommitLog::new(table)
        .data_files()
        .await
        .map_err(DataFusionError::from)?;
    avro_files(table, &files, session).await
}

/// The committed rejected rows of the raw table in `table` (its `__rejects` table), or
/// `None` if it has none.
pub async fn rejects_provider(
    table: &TableDir,
    session: &dyn Session,
) -> Result<Option<Arc<dyn TableProvider>>> {
    let files = CommitLog::new(table)
        .reject_files()
        .await
        .map_err(DataFusionError::from)?;
    avro_files(table, &files, session).await
}

/// The listed Avro files of the raw table in `table` as one table, or `None` if there are none.
pub(crate) async fn avro_files(
    table: &TableDir,
    files: &[WrittenFile],
    session: &dyn Session,
) -> Result<Option<Arc<dyn TableProvider>>> {
    if files.is_empty() {
        return Ok(None);
    }
    let urls = files
        .iter()
        .map(|file| ListingTableUrl::parse(table.url_of(&file.path)))
        .collect::<Result<Vec<_>>>()?;
    let options = ListingOptions::new(Arc::new(AvroFormat)).with_file_extension(".avro");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .infer_schema(session)
        .await?;
    Ok(Some(Arc::new(ListingTable::try_new(config)?)))
}
