//! Writing record batches to files. The raw zone's Avro sink sits behind `FileSink`
//! so it can give way to DataFusion's own Avro writer once DataFusion has one.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use object_store::buffered::BufWriter;
use tokio::io::AsyncWriteExt;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result};

use arrow_avro::compression::CompressionCodec;
use arrow_avro::writer::{AvroWriter, WriterBuilder};

use crate::error::StorageError;
use crate::paths::TableDir;

/// A file being written, one batch at a time.
#[async_trait]
pub trait FileSink: Send {
    /// Appends a batch (already in the sink's schema).
    async fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Finishes the file and says what was written.
    async fn finish(self: Box<Self>) -> Result<WrittenFile>;
    /// Drops the file: nothing names it, so this only tidies.
    async fn abort(self: Box<Self>);
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
///
/// On the local disk it is written in place; in an object store it is uploaded in
/// parts as it grows, and appears only when it is finished.
pub struct AvroFileSink {
    relative: String,
    location: String,
    writer: AvroWriter<Output>,
    upload: Option<Upload>,
    rows: u64,
}

/// An object being uploaded: the bytes the writer has produced and not yet sent.
struct Upload {
    pending: Arc<Mutex<Vec<u8>>>,
    writer: BufWriter,
    sent: u64,
}

/// Where an Avro writer's bytes go: a local file, or a buffer drained into an upload.
enum Output {
    File(std::io::BufWriter<File>),
    Buffer(Arc<Mutex<Vec<u8>>>),
}

impl Write for Output {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::File(file) => file.write(bytes),
            Output::Buffer(buffer) => {
                buffer
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::File(file) => file.flush(),
            Output::Buffer(_) => Ok(()),
        }
    }
}

/// Bytes an upload gathers before it sends them as one part.
const UPLOAD_PART_BYTES: usize = 16 * 1024 * 1024;

impl AvroFileSink {
    /// Creates `relative` in the table, with its directories.
    pub fn create(table: &TableDir, relative: String, schema: &Schema) -> Result<Self> {
        let location = table.url_of(&relative);
        let (output, upload) = match table.local_dir() {
            Some(dir) => {
                let path = dir.join(&relative);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|error| io(&location, error))?;
                }
                let file = File::create(&path).map_err(|error| io(&location, error))?;
                (Output::File(std::io::BufWriter::new(file)), None)
            }
            None => {
                let pending = Arc::new(Mutex::new(Vec::new()));
                let upload = Upload {
                    pending: Arc::clone(&pending),
                    writer: BufWriter::with_capacity(
                        Arc::clone(table.store()),
                        table.join(&relative),
                        UPLOAD_PART_BYTES,
                    ),
                    sent: 0,
                };
                (Output::Buffer(pending), Some(upload))
            }
        };
        let writer = WriterBuilder::new(schema.clone())
            .with_compression(Some(CompressionCodec::Snappy))
            .build(output)
            .map_err(|error| avro(&location, error))?;
        Ok(Self {
            relative,
            location,
            writer,
            upload,
            rows: 0,
        })
    }

    /// The file's path relative to its table directory.
    pub fn relative(&self) -> &str {
        &self.relative
    }

    /// Sends what the writer has buffered, once there is a part's worth (or at the end).
    async fn drain(&mut self, at_end: bool) -> Result<()> {
        let Some(upload) = &mut self.upload else {
            return Ok(());
        };
        let bytes = {
            let mut pending = upload
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if pending.len() < UPLOAD_PART_BYTES && !at_end {
                return Ok(());
            }
            Bytes::from(std::mem::take(&mut *pending))
        };
        upload.sent += bytes.len() as u64;
        upload
            .writer
            .put(bytes)
            .await
            .map_err(|error| store(&self.location, &error))
    }
}

#[async_trait]
impl FileSink for AvroFileSink {
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(batch)
            .map_err(|error| avro(&self.location, error))?;
        self.drain(false).await
    }

    async fn finish(mut self: Box<Self>) -> Result<WrittenFile> {
        self.writer
            .finish()
            .map_err(|error| avro(&self.location, error))?;
        self.drain(true).await?;
        let bytes = match (self.writer.into_inner(), self.upload) {
            (Output::File(mut file), _) => {
                file.flush().map_err(|error| io(&self.location, error))?;
                let file = file
                    .into_inner()
                    .map_err(|error| io(&self.location, error.into_error()))?;
                file.sync_all().map_err(|error| io(&self.location, error))?;
                file.metadata()
                    .map_err(|error| io(&self.location, error))?
                    .len()
            }
            (Output::Buffer(_), Some(mut upload)) => {
                upload
                    .writer
                    .shutdown()
                    .await
                    .map_err(|error| io(&self.location, error))?;
                upload.sent
            }
            (Output::Buffer(_), None) => 0,
        };
        Ok(WrittenFile {
            path: self.relative,
            rows: self.rows,
            bytes,
        })
    }

    async fn abort(self: Box<Self>) {
        let outcome = match self.upload {
            Some(mut upload) => upload
                .writer
                .abort()
                .await
                .map_err(|error| error.to_string()),
            None => match self.writer.into_inner() {
                Output::File(file) => {
                    drop(file);
                    std::fs::remove_file(&self.location).map_err(|error| error.to_string())
                }
                Output::Buffer(_) => Ok(()),
            },
        };
        if let Err(error) = outcome {
            tracing::debug!("dropping {}: {error}", self.location);
        }
    }
}

fn io(location: &str, error: std::io::Error) -> DataFusionError {
    DataFusionError::External(format!("{location}: {error}").into())
}

fn store(location: &str, error: &object_store::Error) -> DataFusionError {
    DataFusionError::External(Box::new(StorageError::store(location, error)))
}

fn avro(location: &str, error: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::External(format!("writing Avro to {location}: {error}").into())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, Int64Array, UInt8Array, UInt64Array};
    use object_store::ObjectStoreExt;

    use super::*;

    #[tokio::test]
    async fn a_file_in_a_store_appears_only_when_finished_and_reads_back() {
        let warehouse = crate::Warehouse::open("memory://avro-sink/wh").unwrap();
        let table = warehouse.table(&strata_language::TableName {
            layer: strata_language::Layer::Raw,
            name: "events".into(),
        });
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let mut sink =
            Box::new(AvroFileSink::create(&table, "day=1/part-a.avro".into(), &schema).unwrap());
        // Enough rows for several upload parts, so the file is sent in pieces.
        let rows: Vec<i64> = (0..6_000_000).collect();
        for chunk in rows.chunks(500_000) {
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(chunk.to_vec()))],
            )
            .unwrap();
            sink.write(&batch).await.unwrap();
        }
        let path = table.join("day=1/part-a.avro");
        assert!(
            table.store().head(&path).await.is_err(),
            "nothing is visible before the file is finished"
        );
        let written = (sink as Box<dyn FileSink>).finish().await.unwrap();
        assert_eq!(written.rows, 6_000_000);
        let bytes = table
            .store()
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(written.bytes, bytes.len() as u64);
        assert!(bytes.len() > UPLOAD_PART_BYTES, "{} bytes", bytes.len());
        let read: i64 = apache_avro::Reader::new(&bytes[..])
            .unwrap()
            .map(|row| match row.unwrap() {
                apache_avro::types::Value::Record(fields) => match &fields[0].1 {
                    apache_avro::types::Value::Long(id) => *id,
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(read, rows.iter().sum::<i64>());
    }

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
