//! Reading one version of a Delta table Strata wrote as a plain Parquet scan of the
//! files that version names, so the scan travels to executors in a Ballista plan
//! (deltalake's own scan node has no plan codec).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use deltalake_core::DeltaTable;

use crate::store::StoreUrl;

/// The files of one Delta table version, with their partition values.
#[derive(Debug)]
pub struct DeltaFiles {
    /// Data columns as the files store them.
    file_schema: SchemaRef,
    /// Partition columns, appended after the data columns.
    partition_fields: Vec<FieldRef>,
    schema: SchemaRef,
    files: Vec<PartitionedFile>,
    /// The store the files are in.
    store_url: ObjectStoreUrl,
}

impl DeltaFiles {
    /// The files of the table's loaded version.
    pub fn try_new(table: &DeltaTable) -> Result<Self> {
        Self::with_files(table, |_| true)
    }

    /// The files of the table's loaded version whose paths (relative to the table) `keep` accepts.
    pub fn with_files(table: &DeltaTable, keep: impl Fn(&str) -> bool) -> Result<Self> {
        let external =
            |error: deltalake_core::DeltaTableError| DataFusionError::External(Box::new(error));
        let snapshot = table.snapshot().map_err(external)?;
        let table_schema = snapshot.snapshot().arrow_schema();
        let partition_columns = snapshot.metadata().partition_columns().to_vec();
        let (partition_fields, data_fields): (Vec<FieldRef>, Vec<FieldRef>) = table_schema
            .fields()
            .iter()
            .cloned()
            .partition(|field| partition_columns.contains(field.name()));
        let file_schema = Arc::new(Schema::new(data_fields));
        let location = StoreUrl::parse(table.table_url().as_str())?;
        let store_url = ObjectStoreUrl::parse(location.root().as_str())?;
        let mut files = Vec::new();
        for file in snapshot.log_data().iter().filter(|file| keep(&file.path())) {
            let values = file.partition_values_map();
            let partition_values = partition_fields
                .iter()
                .map(|field| match values.get(field.name()).cloned().flatten() {
                    Some(text) => ScalarValue::try_from_string(text, field.data_type()),
                    None => ScalarValue::try_from(field.data_type()),
                })
                .collect::<Result<Vec<_>>>()?;
            let path = format!("{}/{}", location.path(), file.path());
            files.push(
                PartitionedFile::new(path.trim_start_matches('/'), file.size().max(0) as u64)
                    .with_partition_values(partition_values),
            );
        }
        let schema = Arc::new(Schema::new(
            file_schema
                .fields()
                .iter()
                .cloned()
                .chain(partition_fields.iter().cloned())
                .collect::<Vec<_>>(),
        ));
        Ok(Self {
            file_schema,
            partition_fields,
            schema,
            files,
            store_url,
        })
    }
}

impl DeltaFiles {
    /// Whether it names no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[async_trait]
impl TableProvider for DeltaFiles {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.files.is_empty() {
            let schema = match projection {
                Some(indices) => Arc::new(self.schema.project(indices)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(datafusion::physical_plan::empty::EmptyExec::new(
                schema,
            )));
        }
        let table_schema = TableSchema::builder(Arc::clone(&self.file_schema))
            .with_table_partition_cols(self.partition_fields.clone())
            .build();
        let source = Arc::new(ParquetSource::new(table_schema));
        let partitions = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> =
            vec![Vec::new(); partitions.min(self.files.len())];
        for (index, file) in self.files.iter().enumerate() {
            let group = index % groups.len();
            groups[group].push(file.clone());
        }
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
