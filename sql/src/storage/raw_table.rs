//! Reading a raw table back: exactly the Avro files its commits name, nothing half-written.

use std::path::Path;
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

use crate::storage::avro_sink::storage_schema;
use crate::storage::commit_log::CommitLog;

/// Registers `name` as the committed files of the raw table in `table_dir`.
pub async fn register(
    ctx: &SessionContext,
    name: &str,
    table_dir: &Path,
    planned: &SchemaRef,
) -> Result<()> {
    let provider = match provider(table_dir, &ctx.state()).await? {
        Some(provider) => provider,
        None => Arc::new(EmptyTable::new(storage_schema(planned))),
    };
    ctx.deregister_table(name)?;
    ctx.register_table(name, provider)?;
    Ok(())
}

/// Whether the raw table in `table_dir` has committed data files.
pub fn has_commits(table_dir: &Path) -> bool {
    CommitLog::new(table_dir)
        .data_files()
        .is_ok_and(|files| !files.is_empty())
}

/// The committed files of the raw table in `table_dir` as one table, or `None` if it has none.
pub async fn provider(
    table_dir: &Path,
    session: &dyn Session,
) -> Result<Option<Arc<dyn TableProvider>>> {
    let files = CommitLog::new(table_dir)
        .data_files()
        .map_err(|error| DataFusionError::External(Box::new(error)))?;
    if files.is_empty() {
        return Ok(None);
    }
    let urls = files
        .iter()
        .map(|file| ListingTableUrl::parse(table_dir.join(&file.path).display().to_string()))
        .collect::<Result<Vec<_>>>()?;
    let options = ListingOptions::new(Arc::new(AvroFormat)).with_file_extension(".avro");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .infer_schema(session)
        .await?;
    Ok(Some(Arc::new(ListingTable::try_new(config)?)))
}
