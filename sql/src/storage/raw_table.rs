//! Reading a raw table back: exactly the Avro files its commits name, nothing half-written.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::file_format::avro::AvroFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::Result;
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
    let files = CommitLog::new(table_dir)
        .data_files()
        .map_err(|error| datafusion::error::DataFusionError::External(Box::new(error)))?;
    let provider: Arc<dyn datafusion::catalog::TableProvider> = if files.is_empty() {
        Arc::new(EmptyTable::new(storage_schema(planned)))
    } else {
        let urls = files
            .iter()
            .map(|file| ListingTableUrl::parse(table_dir.join(&file.path).display().to_string()))
            .collect::<Result<Vec<_>>>()?;
        let options = ListingOptions::new(Arc::new(AvroFormat)).with_file_extension(".avro");
        let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options);
        let config = config.infer_schema(&ctx.state()).await?;
        Arc::new(ListingTable::try_new(config)?)
    };
    ctx.deregister_table(name)?;
    ctx.register_table(name, provider)?;
    Ok(())
}
