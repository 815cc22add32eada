//! One input partition's writer: its rows checked by the expectations, the kept ones
//! written to the table's files and the quarantined ones to the quarantine's, wherever
//! the partition runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::object_store::{Error as ObjectStoreError, ObjectStoreExt};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::Count;
use deltalake_core::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake_core::kernel::Add;
use deltalake_core::{DeltaTableBuilder, DeltaTableError};
use futures::StreamExt;
use strata_storage::paths;
use strata_storage::run_named::{RunNamedStore, run_named_relative};
use strata_storage::{AvroFileSink, FileSink, TableDir, to_storage};

use super::summary::{DataFile, PartitionOutput};
use super::{FileFormat, WriteSpec};
use crate::expectations::{Checker, Split};
use crate::landing::LandingScanExec;
use crate::task_error::{TaskError, is_shuffle_fetch_failure, is_unreadable};

/// `host:pid`, so a run can tell which process wrote each file; read once per process.
static WRITER_IDENTITY: LazyLock<String> = LazyLock::new(|| {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
});

/// This process as `host:pid`: how writers and lease holders name themselves.
pub fn process_identity() -> &'static str {
    WRITER_IDENTITY.as_str()
}

/// Writers started in this process. Ballista may run several tasks of one stage in a
/// process, each executing its slice of the stage as partition 0, so the partition
/// number alone does not keep Avro file names apart; this number does.
pub(super) static WRITERS_STARTED: AtomicU64 = AtomicU64::new(0);

/// The files of one partition, open while its rows stream in.
enum Sinks {
    /// The table, and one file per Hive partition seen so far.
    Avro {
        table: TableDir,
        files: BTreeMap<String, Box<dyn FileSink>>,
    },
    Delta(Box<DeltaWriter>),
}

/// Writes one input partition: checks its rows, writes the kept and the quarantined.
pub(super) struct PartitionWriter {
    /// The input's plan and task, to tell an input that cannot be reached from bad data.
    pub(super) plan: Arc<dyn ExecutionPlan>,
    pub(super) context: Arc<TaskContext>,
    /// Unique in this process; part of every Avro file name.
    pub(super) number: u64,
    pub(super) spec: WriteSpec,
    pub(super) checker: Checker,
    pub(super) schema: SchemaRef,
    pub(super) partition: usize,
    pub(super) rows_read: Count,
}

impl PartitionWriter {
    pub(super) async fn run(self, mut input: SendableRecordBatchStream) -> Result<RecordBatch> {
        let identity = process_identity();
        let mut data = match self.spec.format {
            FileFormat::Avro => Sinks::Avro {
                table: TableDir::open(&self.spec.table_dir)?,
                files: BTreeMap::new(),
            },
            FileFormat::Delta => Sinks::Delta(Box::new(
                delta_writer(
                    &self.spec.table_dir,
                    &self.schema,
                    &self.spec.partition_columns,
                    &self.spec.prefix,
                )
                .await?,
            )),
        };
        let mut quarantine: Option<DeltaWriter> = None;
        let mut output = PartitionOutput::default();
        let outcome: Result<()> = async {
            let partition_columns: Vec<usize> = self
                .spec
                .partition_columns
                .iter()
                .map(|column| self.schema.index_of(column))
                .collect::<std::result::Result<_, _>>()?;
            while let Some(batch) = input.next().await {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(error) => {
                        if is_shuffle_fetch_failure(&error) {
                            return Err(error);
                        }
                        if TaskError::find(&error).is_some() {
                            return Err(DataFusionError::Execution(error.strip_backtrace()));
                        }
                        let unreachable =
                            is_unreadable(&error) || missing_input(&self.plan, &self.context).await;
                        return Err(if unreachable {
                            TaskError::UnreadableInput {
                                executor: identity.to_owned(),
                                cause: error.strip_backtrace(),
                            }
                            .into_datafusion()
                        } else {
                            TaskError::BadInput {
                                why: error.strip_backtrace(),
                            }
                            .into_datafusion()
                        });
                    }
                };
                let batch = to_storage(&batch, &self.schema)?;
                output.rows_read += batch.num_rows() as u64;
                self.rows_read.add(batch.num_rows());
                let mut split = Split::default();
                self.checker.split(&batch, &mut split)?;
                output.dropped += split.dropped;
                for kept in split.kept.iter().filter(|b| b.num_rows() > 0) {
                    self.write_data(&mut data, kept, &partition_columns).await?;
                }
                for held in &split.quarantined {
                    let writer = match &mut quarantine {
                        Some(writer) => writer,
                        None => {
                            let dir = self.spec.quarantine_dir.as_deref().ok_or_else(|| {
                                DataFusionError::Internal("no quarantine directory".into())
                            })?;
                            let writer = delta_writer(
                                dir,
                                self.checker.quarantine_schema(),
                                &[],
                                &self.spec.prefix,
                            )
                            .await?;
                            quarantine.insert(writer)
                        }
                    };
                    writer.write(held).await.map_err(delta_error)?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(error) = outcome {
            self.abort(data, quarantine).await;
            return Err(error);
        }

        match data {
            Sinks::Avro { files, .. } => {
                for (_, sink) in files {
                    output.data.push(DataFile::Avro(sink.finish().await?));
                }
            }
            Sinks::Delta(writer) => {
                let adds = writer.close().await.map_err(delta_error)?;
                output.data.extend(
                    adds.into_iter()
                        .map(|add| DataFile::Delta(Box::new(self.run_named(add)))),
                );
            }
        }
        if let Some(writer) = quarantine {
            output.quarantine = writer
                .close()
                .await
                .map_err(delta_error)?
                .into_iter()
                .map(|add| self.run_named(add))
                .collect();
        }
        // The landing files this task's scans read to their end, with their rejects.
        let _ = self.plan.apply(|node| {
            if let Some(scan) = node.downcast_ref::<LandingScanExec>() {
                for outcome in scan.take_outcomes() {
                    output.scanned.push(outcome.file);
                    output.rejects.extend(outcome.rejects);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        output.into_batch(identity)
    }

    async fn write_data(
        &self,
        sinks: &mut Sinks,
        batch: &RecordBatch,
        partition_columns: &[usize],
    ) -> Result<()> {
        match sinks {
            Sinks::Delta(writer) => writer.write(batch).await.map_err(delta_error),
            Sinks::Avro { table, files } => {
                for (path, rows) in split_by_partition(batch, partition_columns)? {
                    let sink = match files.get_mut(&path) {
                        Some(sink) => sink,
                        None => {
                            let sink =
                                AvroFileSink::create(table, self.file_name(&path), &self.schema)?;
                            files.entry(path).or_insert(Box::new(sink))
                        }
                    };
                    sink.write(&rows).await?;
                }
                Ok(())
            }
        }
    }

    /// A written file's action, with the path [`RunNamedStore`] stored it at.
    fn run_named(&self, mut add: Add) -> Add {
        add.path = run_named_relative(&self.spec.prefix, &add.path);
        add
    }

    fn file_name(&self, hive_partition: &str) -> String {
        paths::avro_file(
            &self.spec.prefix,
            self.partition,
            self.number,
            hive_partition,
        )
    }

    /// Removes what a failed partition wrote; nothing names those files, so this is tidiness.
    async fn abort(&self, data: Sinks, quarantine: Option<DeltaWriter>) {
        match data {
            Sinks::Avro { files, .. } => {
                for (_, sink) in files {
                    sink.abort().await;
                }
            }
            Sinks::Delta(writer) => {
                let _ = writer.abort().await;
            }
        }
        if let Some(writer) = quarantine {
            let _ = writer.abort().await;
        }
    }
}

/// A Delta data file writer for the table in `dir`, which need not exist yet, whose
/// files' names start with `prefix`.
async fn delta_writer(
    dir: &str,
    schema: &SchemaRef,
    partition_columns: &[String],
    prefix: &str,
) -> Result<DeltaWriter> {
    let table = TableDir::open(dir)?;
    let store = DeltaTableBuilder::from_url(table.table_url())
        .map_err(delta_error)?
        .build_storage()
        .map_err(delta_error)?
        .object_store(None);
    let store = Arc::new(RunNamedStore::new(store, prefix.to_owned()));
    let config = WriterConfig::new(
        Arc::clone(schema),
        partition_columns.to_vec(),
        None,
        None,
        None,
        Default::default(),
        None,
    );
    Ok(DeltaWriter::new(store, config))
}

/// Whether a file the plan scans is missing or hidden from this process, as its object
/// store says. Readers report such a failure as text (a Parquet reader wraps the store's
/// "not found" in a message), so the files are asked directly.
async fn missing_input(plan: &Arc<dyn ExecutionPlan>, context: &TaskContext) -> bool {
    let mut scans = Vec::new();
    let _ = plan.apply(|node| {
        if let Some(config) = node
            .downcast_ref::<DataSourceExec>()
            .and_then(|source| source.data_source().downcast_ref::<FileScanConfig>())
        {
            scans.push(config.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    for config in scans {
        let Ok(store) = context.runtime_env().object_store(&config.object_store_url) else {
            return true;
        };
        for file in config.file_groups.iter().flat_map(|group| group.iter()) {
            match store.head(&file.object_meta.location).await {
                Ok(_) => {}
                Err(
                    ObjectStoreError::NotFound { .. }
                    | ObjectStoreError::PermissionDenied { .. }
                    | ObjectStoreError::Unauthenticated { .. },
                ) => return true,
                Err(other) => tracing::debug!("probing {}: {other}", file.object_meta.location),
            }
        }
    }
    false
}

/// Splits a batch by its Hive partition path (`col=value/...`); unpartitioned tables get one part.
fn split_by_partition(
    batch: &RecordBatch,
    columns: &[usize],
) -> Result<Vec<(String, RecordBatch)>> {
    if columns.is_empty() || batch.num_rows() == 0 {
        return Ok(vec![(String::new(), batch.clone())]);
    }
    let options = FormatOptions::default().with_null("__HIVE_DEFAULT_PARTITION__");
    let formatters = columns
        .iter()
        .map(|&index| ArrayFormatter::try_new(batch.column(index).as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let names: Vec<&String> = columns
        .iter()
        .map(|&index| batch.schema_ref().field(index).name())
        .collect();
    let mut rows_by_partition: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let path = names
            .iter()
            .zip(&formatters)
            .map(|(name, formatter)| format!("{name}={}", formatter.value(row)))
            .collect::<Vec<_>>()
            .join("/");
        rows_by_partition.entry(path).or_default().push(row as u32);
    }
    if rows_by_partition.len() == 1 {
        let (path, _) = rows_by_partition.into_iter().next().unwrap_or_default();
        return Ok(vec![(path, batch.clone())]);
    }
    rows_by_partition
        .into_iter()
        .map(|(path, rows)| Ok((path, take_record_batch(batch, &UInt32Array::from(rows))?)))
        .collect()
}

fn delta_error(error: DeltaTableError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}
