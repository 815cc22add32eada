//! Writing record batches to files. The raw zone's Avro sink sits behind `FileSink`
//! so it can give way to DataFusion's own Avro writer once DataFusion has one.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
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

/// Types that both stored formats hold and every reader of them understands: Avro
/// and Delta have no unsigned integers (an unsigned value too large for the signed type
/// is an error when the batch is cast, never a wrong number), plain strings and lists,
/// microsecond timestamps, and dictionaries as their values.
pub fn storage_schema(schema: &Schema) -> SchemaRef {
    fn storable(data_type: &DataType) -> DataType {
        match data_type {
            DataType::UInt8 => DataType::Int16,
            DataType::UInt16 => DataType::Int32,
            DataType::UInt32 | DataType::UInt64 => DataType::Int64,
            DataType::Float16 => DataType::Float32,
            DataType::Date64 => DataType::Date32,
            DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
            DataType::BinaryView | DataType::LargeBinary | DataType::FixedSizeBinary(_) => {
                DataType::Binary
            }
            DataType::Timestamp(
                TimeUnit::Second | TimeUnit::Millisecond | TimeUnit::Nanosecond,
                zone,
            ) => DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
            DataType::Dictionary(_, values) => storable(values),
            DataType::List(field)
            | DataType::LargeList(field)
            | DataType::ListView(field)
            | DataType::LargeListView(field)
            | DataType::FixedSizeList(field, _) => DataType::List(Arc::new(
                field
                    .as_ref()
                    .clone()
                    .with_data_type(storable(field.data_type())),
            )),
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

/// Casts a batch to the storage schema, column by column; a value the stored type
/// cannot hold is an error naming the column.
pub fn to_storage(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let strict = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                cast_with_options(column, field.data_type(), &strict).map_err(|error| {
                    DataFusionError::Execution(format!(
                        "column {} cannot be stored as {}: {error}",
                        field.name(),
                        field.data_type()
                    ))
                })
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

impl AvroFileSink {
    /// The file's path relative to its table directory.
    pub fn relative(&self) -> &str {
        &self.relative
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, Int64Array, UInt8Array, UInt64Array};

    use super::*;

    #[test]
    fn unsigned_columns_are_stored_signed_and_overflow_is_an_error() {
        let schema = Schema::new(vec![
            Field::new("pos", DataType::UInt64, false),
            Field::new("small", DataType::UInt8, true),
        ]);
        let stored = storage_schema(&schema);
        assert_eq!(stored.field(0).data_type(), &DataType::Int64);
        assert_eq!(stored.field(1).data_type(), &DataType::Int16);

        let fits = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![
                Arc::new(UInt64Array::from(vec![1, 2])),
                Arc::new(UInt8Array::from(vec![Some(255), None])),
            ],
        )
        .unwrap();
        let cast = to_storage(&fits, &stored).unwrap();
        let pos = cast
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(pos.values(), &[1, 2]);
        assert_eq!(cast.column(1).null_count(), 1);

        let too_big = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(UInt64Array::from(vec![u64::MAX])),
                Arc::new(UInt8Array::from(vec![Some(1)])),
            ],
        )
        .unwrap();
        let error = to_storage(&too_big, &stored).unwrap_err().to_string();
        assert!(
            error.contains("column pos cannot be stored as Int64"),
            "{error}"
        );
    }
}
