//! The parallel writer: a plan node that writes every input partition to its own
//! files, wherever the partition runs, and answers with one row per file written.
//!
//! Nothing it writes is visible until the orchestrator commits the rows it returns,
//! once per table build (a raw commit or one Delta commit), so a failed or cancelled
//! build leaves only files no reader looks at.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, AsArray, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use deltalake_core::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake_core::kernel::Add;
use deltalake_core::{DeltaTableBuilder, DeltaTableError, ensure_table_uri};
use futures::StreamExt;

use crate::expectations::{Checker, Split};
use crate::storage::avro_sink::{AvroFileSink, FileSink, WrittenFile, storage_schema, to_storage};

/// The node's metric of rows read from its input, live while partitions run.
pub const ROWS_READ: &str = "rows_read";

/// Marks an error reading the node's input (a missing landing file, say), as opposed
/// to bad data in it: the orchestrator fails the table instead of rejecting the file.
pub const UNREADABLE_INPUT: &str = "cannot read its input";

/// How the files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Avro object container files, Hive-partitioned, for the raw zone.
    Avro,
    /// Parquet data files of a Delta table, reported as add actions.
    Delta,
}

/// Where and how one build writes.
#[derive(Debug, Clone)]
pub struct WriteSpec {
    pub format: FileFormat,
    /// The table's directory.
    pub table_dir: String,
    /// Start of every Avro file name, unique per build.
    pub prefix: String,
    pub partition_columns: Vec<String>,
    /// The quarantine table's directory, when an expectation quarantines rows.
    pub quarantine_dir: Option<String>,
}

/// What a file row says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// A data file of the table: a [`WrittenFile`] (Avro) or an [`Add`] (Delta), as JSON.
    Data,
    /// A data file of the quarantine table (an [`Add`], as JSON).
    Quarantine,
    /// No file: the partition's counts of rows read and dropped.
    Counts,
}

impl Written {
    fn as_str(self) -> &'static str {
        match self {
            Written::Data => "data",
            Written::Quarantine => "quarantine",
            Written::Counts => "counts",
        }
    }
}

/// One row of the node's output, decoded.
#[derive(Debug, Clone)]
pub struct WrittenRow {
    pub kind: Written,
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    /// Rows dropped by expectations (on `Counts` rows).
    pub dropped: u64,
    /// `host:pid` of the process that wrote.
    pub writer: String,
}

static OUTPUT_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("dropped", DataType::UInt64, false),
        Field::new("writer", DataType::Utf8, false),
    ]))
});

/// Writes its input's partitions in parallel, each to its own files.
#[derive(Debug)]
pub struct WriteFilesExec {
    input: Arc<dyn ExecutionPlan>,
    spec: WriteSpec,
    checker: Checker,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl WriteFilesExec {
    /// A writer of `input`'s rows, checked by `checker` (built against the storage schema).
    pub fn new(input: Arc<dyn ExecutionPlan>, spec: WriteSpec, checker: Checker) -> Self {
        let partitions = input.output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&OUTPUT_SCHEMA)),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            spec,
            checker,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// Rows read so far by every partition that has started, here.
    pub fn rows_read(&self) -> u64 {
        self.metrics
            .clone_inner()
            .sum_by_name(ROWS_READ)
            .map_or(0, |rows| rows.as_usize() as u64)
    }

    pub fn spec(&self) -> &WriteSpec {
        &self.spec
    }

    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// Decodes the node's output batches.
    pub fn decode(batches: &[RecordBatch]) -> Result<Vec<WrittenRow>> {
        let mut rows = Vec::new();
        for batch in batches {
            let text = |index: usize| batch.column(index).as_string::<i32>();
            let number = |index: usize| batch.column(index).as_primitive::<UInt64Type>();
            let (kind, file, writer) = (text(0), text(1), text(5));
            for row in 0..batch.num_rows() {
                let kind = match kind.value(row) {
                    "data" => Written::Data,
                    "quarantine" => Written::Quarantine,
                    "counts" => Written::Counts,
                    other => {
                        return Err(DataFusionError::Internal(format!(
                            "unknown written row kind {other}"
                        )));
                    }
                };
                rows.push(WrittenRow {
                    kind,
                    file: file.value(row).to_owned(),
                    rows: number(2).value(row),
                    bytes: number(3).value(row),
                    dropped: number(4).value(row),
                    writer: writer.value(row).to_owned(),
                });
            }
        }
        Ok(rows)
    }
}

impl DisplayAs for WriteFilesExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "WriteFilesExec: format={:?}, table={}, partitioned_by=[{}], expectations={}",
            self.spec.format,
            self.spec.table_dir,
            self.spec.partition_columns.join(", "),
            self.checker.rules().len()
        )
    }
}

impl ExecutionPlan for WriteFilesExec {
    fn name(&self) -> &str {
        "WriteFilesExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for rule in self.checker.rules() {
            if f(&rule.predicate)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(Self::new(
                input,
                self.spec.clone(),
                self.checker.clone(),
            ))),
            _ => Err(DataFusionError::Internal(
                "WriteFilesExec takes exactly one input".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let writer = PartitionWriter {
            number: WRITERS_STARTED.fetch_add(1, Ordering::Relaxed),
            spec: self.spec.clone(),
            checker: self.checker.clone(),
            schema: storage_schema(&self.input.schema()),
            partition,
            rows_read: MetricBuilder::new(&self.metrics).counter(ROWS_READ, partition),
        };
        let output = futures::stream::once(writer.run(input));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&OUTPUT_SCHEMA),
            output,
        )))
    }
}

/// `host:pid`, so a run can tell which process wrote each file; read once per process.
static WRITER_IDENTITY: LazyLock<String> = LazyLock::new(|| {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
});

/// Writers started in this process. Ballista may run several tasks of one stage in a
/// process, each executing its slice of the stage as partition 0, so the partition
/// number alone does not keep Avro file names apart; this number does.
static WRITERS_STARTED: AtomicU64 = AtomicU64::new(0);

/// The files of one partition, open while its rows stream in.
enum Sinks {
    Avro(BTreeMap<String, Box<dyn FileSink>>),
    Delta(Box<DeltaWriter>),
}

struct PartitionWriter {
    /// Unique in this process; part of every Avro file name.
    number: u64,
    spec: WriteSpec,
    checker: Checker,
    schema: SchemaRef,
    partition: usize,
    rows_read: Count,
}

impl PartitionWriter {
    async fn run(self, mut input: SendableRecordBatchStream) -> Result<RecordBatch> {
        let identity = WRITER_IDENTITY.as_str();
        let mut data = match self.spec.format {
            FileFormat::Avro => Sinks::Avro(BTreeMap::new()),
            FileFormat::Delta => Sinks::Delta(Box::new(
                delta_writer(
                    &self.spec.table_dir,
                    &self.schema,
                    &self.spec.partition_columns,
                )
                .await?,
            )),
        };
        let mut quarantine: Option<DeltaWriter> = None;
        let mut read = 0u64;
        let mut dropped = 0u64;
        let outcome: Result<()> = async {
            let partition_columns: Vec<usize> = self
                .spec
                .partition_columns
                .iter()
                .map(|column| self.schema.index_of(column))
                .collect::<std::result::Result<_, _>>()?;
            while let Some(batch) = input.next().await {
                let batch = batch.map_err(|error| {
                    let error = error.strip_backtrace();
                    if is_unreadable(&error) {
                        DataFusionError::Execution(format!(
                            "executor {identity} {UNREADABLE_INPUT}: {error}"
                        ))
                    } else {
                        DataFusionError::Execution(error)
                    }
                })?;
                let batch = to_storage(&batch, &self.schema)?;
                read += batch.num_rows() as u64;
                self.rows_read.add(batch.num_rows());
                let mut split = Split::default();
                self.checker.split(&batch, &mut split)?;
                dropped += split.dropped;
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
                            let writer =
                                delta_writer(dir, self.checker.quarantine_schema(), &[]).await?;
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

        let mut rows = vec![(Written::Counts, String::new(), read, 0, dropped)];
        match data {
            Sinks::Avro(sinks) => {
                for (_, sink) in sinks {
                    let file = sink.finish()?;
                    let json = serde_json::to_string(&file).map_err(json_error)?;
                    rows.push((Written::Data, json, file.rows, file.bytes, 0));
                }
            }
            Sinks::Delta(writer) => {
                for add in writer.close().await.map_err(delta_error)? {
                    rows.push(add_row(Written::Data, &add)?);
                }
            }
        }
        if let Some(writer) = quarantine {
            for add in writer.close().await.map_err(delta_error)? {
                rows.push(add_row(Written::Quarantine, &add)?);
            }
        }
        output_batch(&rows, identity)
    }

    async fn write_data(
        &self,
        sinks: &mut Sinks,
        batch: &RecordBatch,
        partition_columns: &[usize],
    ) -> Result<()> {
        match sinks {
            Sinks::Delta(writer) => writer.write(batch).await.map_err(delta_error),
            Sinks::Avro(sinks) => {
                for (path, rows) in split_by_partition(batch, partition_columns)? {
                    let sink = match sinks.get_mut(&path) {
                        Some(sink) => sink,
                        None => {
                            let sink = AvroFileSink::create(
                                std::path::Path::new(&self.spec.table_dir),
                                self.file_name(&path),
                                &self.schema,
                            )?;
                            sinks.entry(path).or_insert(Box::new(sink))
                        }
                    };
                    sink.write(&rows)?;
                }
                Ok(())
            }
        }
    }

    fn file_name(&self, partition_path: &str) -> String {
        let name = format!(
            "{}-{:05}-{}-{}.avro",
            self.spec.prefix,
            self.partition,
            std::process::id(),
            self.number
        );
        if partition_path.is_empty() {
            name
        } else {
            format!("{partition_path}/{name}")
        }
    }

    /// Removes what a failed partition wrote; nothing names those files, so this is tidiness.
    async fn abort(&self, data: Sinks, quarantine: Option<DeltaWriter>) {
        match data {
            Sinks::Avro(sinks) => {
                for (path, _) in sinks {
                    let file =
                        std::path::Path::new(&self.spec.table_dir).join(self.file_name(&path));
                    let _ = std::fs::remove_file(file);
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

/// A Delta data file writer for the table in `dir`, which need not exist yet.
async fn delta_writer(
    dir: &str,
    schema: &SchemaRef,
    partition_columns: &[String],
) -> Result<DeltaWriter> {
    std::fs::create_dir_all(dir)
        .map_err(|error| DataFusionError::Execution(format!("{dir}: {error}")))?;
    let url = ensure_table_uri(dir).map_err(delta_error)?;
    let store = DeltaTableBuilder::from_url(url)
        .map_err(delta_error)?
        .build_storage()
        .map_err(delta_error)?
        .object_store(None);
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

/// Whether an input error means the data could not be reached rather than parsed.
fn is_unreadable(error: &str) -> bool {
    [
        "No such file or directory",
        "not found",
        "Permission denied",
    ]
    .iter()
    .any(|needle| error.contains(needle))
}

fn add_row(kind: Written, add: &Add) -> Result<(Written, String, u64, u64, u64)> {
    let rows = add
        .stats
        .as_deref()
        .and_then(|stats| serde_json::from_str::<serde_json::Value>(stats).ok())
        .and_then(|stats| stats.get("numRecords")?.as_u64())
        .unwrap_or(0);
    let json = serde_json::to_string(add).map_err(json_error)?;
    Ok((kind, json, rows, add.size.max(0) as u64, 0))
}

fn output_batch(rows: &[(Written, String, u64, u64, u64)], writer: &str) -> Result<RecordBatch> {
    let column = |values: Vec<u64>| Arc::new(UInt64Array::from(values)) as ArrayRef;
    Ok(RecordBatch::try_new(
        Arc::clone(&OUTPUT_SCHEMA),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|row| row.0.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|row| row.1.as_str()),
            )),
            column(rows.iter().map(|row| row.2).collect()),
            column(rows.iter().map(|row| row.3).collect()),
            column(rows.iter().map(|row| row.4).collect()),
            Arc::new(StringArray::from(vec![writer; rows.len()])),
        ],
    )?)
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

fn json_error(error: serde_json::Error) -> DataFusionError {
    DataFusionError::Internal(format!("encoding a written file: {error}"))
}

/// Reads a raw data file row back.
pub fn written_file(row: &WrittenRow) -> Result<WrittenFile> {
    serde_json::from_str(&row.file)
        .map_err(|error| DataFusionError::Internal(format!("decoding a written file: {error}")))
}

/// Reads a Delta add action row back.
pub fn add_action(row: &WrittenRow) -> Result<Add> {
    serde_json::from_str(&row.file)
        .map_err(|error| DataFusionError::Internal(format!("decoding a Delta add action: {error}")))
}

/// Fails if two written files have one path: one would have overwritten the other, so
/// committing them would lose rows.
pub fn check_distinct<'a>(paths: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        if !seen.insert(path) {
            return Err(DataFusionError::Internal(format!(
                "two tasks reported writing {path}; nothing was committed"
            )));
        }
    }
    Ok(())
}

/// Every writer seen in the rows, sorted.
pub fn writers(rows: &[WrittenRow]) -> Vec<String> {
    let mut writers: Vec<String> = rows
        .iter()
        .filter(|row| row.kind != Written::Counts)
        .map(|row| row.writer.clone())
        .collect();
    writers.sort();
    writers.dedup();
    writers
}
