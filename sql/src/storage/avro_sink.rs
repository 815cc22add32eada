//! Writing record batches to files. The raw zone's Avro sink sits behind `FileSink`
//! so it can give way to DataFusion's own Avro writer once DataFusion has one.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result};

use arrow_avro::compression::CompressionCodec;
use arrow_avro::writer::{AvroWriter, WriterBuilder};

/// A file being written, one batch at a time.
pub trait FileSink: Send {
    /// Appends a batch (already in the sink's schema).
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Finishes the file and says what was written.
    fn finish(self: Box<Self>) -> Result<WrittenFile>;
}

/// A finished data file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenFile {
    /// Path relative to the table's directory.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// Types every Avro reader understands: plain strings and lists, microsecond timestamps.
pub fn storage_schema(schema: &Schema) -> SchemaRef {
    fn storable(data_type: &DataType) -> DataType {
        match data_type {
            DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
            DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
            DataType::Timestamp(TimeUnit::Nanosecond, zone) => {
                DataType::Timestamp(TimeUnit::Microsecond, zone.clone())
            }
            DataType::List(field) | DataType::LargeList(field) | DataType::ListView(field) => {
                DataType::List(Arc::new(
                    field
                        .as_ref()
                        .clone()
                        .with_data_type(storable(field.data_type())),
                ))
            }
            DataType::Struct(fields) => DataType::Struct(
                fields
                    .iter()
                    .map(|field| {
                        field
                            .as_ref()
                            .clone()
                            .with_data_type(storable(field.data_type()))
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|field| {
                Field::new(
                    field.name(),
                    storable(field.data_type()),
                    field.is_nullable(),
                )
            })
            .collect::<Vec<_>>(),
    ))
}

/// Casts a batch to the storage schema, column by column.
pub fn to_storage(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// An Avro object container file with snappy blocks (fast, and read by every Avro library).
pub struct AvroFileSink {
    relative: String,
    path: PathBuf,
    writer: AvroWriter<BufWriter<File>>,
    rows: u64,
}

impl AvroFileSink {
    /// Creates `table_dir/relative`, with its directories.
    pub fn create(table_dir: &Path, relative: String, schema: &Schema) -> Result<Self> {
        let path = table_dir.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| io(&path, error))?;
        }
        let file = File::create(&path).map_err(|error| io(&path, error))?;
        let writer = WriterBuilder::new(schema.clone())
            .with_compression(Some(CompressionCodec::Snappy))
            .build(BufWriter::new(file))
            .map_err(|error| avro(&path, error))?;
        Ok(Self {
            relative,
            path,
            writer,
            rows: 0,
        })
    }
}

impl FileSink for AvroFileSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(batch)
            .map_err(|error| avro(&self.path, error))
    }

    fn finish(mut self: Box<Self>) -> Result<WrittenFile> {
        self.writer
            .finish()
            .map_err(|error| avro(&self.path, error))?;
        let mut inner = self.writer.into_inner();
        std::io::Write::flush(&mut inner).map_err(|error| io(&self.path, error))?;
        let file = inner
            .into_inner()
            .map_err(|error| io(&self.path, error.into_error()))?;
        file.sync_all().map_err(|error| io(&self.path, error))?;
        let bytes = file
            .metadata()
            .map_err(|error| io(&self.path, error))?
            .len();
        Ok(WrittenFile {
            path: self.relative,
            rows: self.rows,
            bytes,
        })
    }
}

fn io(path: &Path, error: std::io::Error) -> DataFusionError {
    DataFusionError::External(format!("{}: {error}", path.display()).into())
}

fn avro(path: &Path, error: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::External(format!("writing Avro to {}: {error}", path.display()).into())
}
