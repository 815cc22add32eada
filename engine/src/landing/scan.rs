//! The row-by-row scan of CSV and NDJSON landing files: one partition per file (or per
//! byte range of a large uncompressed file, or per Kafka partition's range of offsets),
//! good rows out as batches, bad rows into an Avro file of the table's rejects, written
//! where the scan runs and handed to the writer above it with the rows' counts.

mod messages;

use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::parsers::CompressionTypeVariant;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::TryStreamExt;
use object_store::{GetResultPayload, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use strata_decrypt::{Cipher, Decryption};
use strata_storage::landing::{
    BadRowPolicy, Compression, LandingReader, Limit, OnBadRow, RangeStart, Reject, RowFormat,
    Verdict, rejects_batch, rejects_schema, skip_to,
};
use strata_storage::store::StoreKind;
use strata_storage::{
    AvroFileSink, FileSink, SourceFile, StoreOptions, StoreUrl, TableDir, WrittenFile, paths,
};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::KafkaRead;
use crate::task_error::TaskError;
use crate::write::ScannedFile;

/// How a scan reads its files; it crosses to executors with the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadSpec {
    pub format: RowFormat,
    pub compression: Compression,
    pub policy: BadRowPolicy,
    /// The source's own store settings (`'aws.region'`…); empty when the environment's serve.
    #[serde(default)]
    pub store: StoreOptions,
    /// The topic a Kafka source's parts are partitions of; `None` for files.
    #[serde(default)]
    pub kafka: Option<KafkaRead>,
    /// Where the keys of encrypted files are; `None` when files are read in clear.
    #[serde(default)]
    pub decrypt: Option<Decryption>,
}

/// Where a scan writes the bad rows it finds: the raw table's directory, the build's
/// file prefix, and the run id stamped on every row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectsTarget {
    pub table_dir: String,
    pub prefix: String,
    pub run_id: String,
    /// Values of erased subjects (`strata forget`): a bad row whose text holds one is
    /// counted as rejected but not kept.
    #[serde(default)]
    pub erased: Vec<String>,
}

impl RejectsTarget {
    /// Whether a bad row is an erased subject's, to be left out of the rejects table.
    fn is_erased(&self, reject: &Reject) -> bool {
        reject.raw_text.as_deref().is_some_and(|text| {
            self.erased
                .iter()
                .any(|value| strata_storage::erasure::text_holds(text, value))
        })
    }
}

/// One partition's share of the files: a whole file, or the rows that start in one
/// byte range of it; of a Kafka source, one partition (named by
/// [`strata_kafka::KafkaLocation::partition_name`]) and its range of offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePart {
    pub path: String,
    pub range: Option<(u64, u64)>,
}

/// What a scan did with one file part: its counts and the file of its rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    pub file: ScannedFile,
    pub rejects: Option<WrittenFile>,
}

/// What a landing table reads.
#[derive(Debug)]
pub enum Input {
    /// Files, large ones cut into byte ranges (one partition each) with `split_files`.
    Files {
        files: Vec<SourceFile>,
        split_files: bool,
    },
    /// Parts chosen already: a Kafka source's ranges.
    Parts(Vec<FilePart>),
}

/// CSV or NDJSON landing files, or JSON or CSV messages, as a table read row by row.
#[derive(Debug)]
pub struct LandingTable {
    input: Input,
    schema: SchemaRef,
    read: ReadSpec,
    rejects: Option<RejectsTarget>,
}

impl LandingTable {
    pub fn new(
        input: Input,
        schema: SchemaRef,
        read: ReadSpec,
        rejects: Option<RejectsTarget>,
    ) -> Self {
        Self {
            input,
            schema,
            read,
            rejects,
        }
    }
}

#[async_trait]
impl TableProvider for LandingTable {
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
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let options = state.config().options();
        let parts = match &self.input {
            Input::Files { files, split_files } => split(
                files,
                &self.read,
                if *split_files {
                    options.execution.target_partitions
                } else {
                    1
                },
                options.optimizer.repartition_file_min_size as u64,
            ),
            Input::Parts(parts) => parts.clone(),
        };
        Ok(Arc::new(LandingScanExec::try_new(
            parts,
            Arc::clone(&self.schema),
            projection.cloned(),
            self.read.clone(),
            self.rejects.clone(),
            state.config().batch_size(),
        )?))
    }
}

/// The parts the files are read in: a large uncompressed file whose rows end at line
/// breaks is cut into byte ranges, as DataFusion cuts its own scans.
fn split(
    files: &[SourceFile],
    read: &ReadSpec,
    partitions: usize,
    min_bytes: u64,
) -> Vec<FilePart> {
    let splittable = read.compression == Compression::Uncompressed
        && !matches!(&read.format, RowFormat::Csv(layout) if layout.newlines_in_values);
    // An encrypted file is read from its start: its ciphertext has no line breaks.
    let splittable = |path: &str| splittable && Cipher::of(path).is_none();
    // A range's reader counts the lines before it, so only a local file is read in ranges.
    let local = |path: &str| StoreUrl::parse(path).is_ok_and(|url| url.kind() == StoreKind::Local);
    let mut parts = Vec::new();
    for SourceFile {
        path, size: bytes, ..
    } in files
    {
        let size = *bytes;
        let ranges =
            if splittable(path) && local(path) && partitions > 1 && size >= min_bytes.max(1) {
                partitions as u64
            } else {
                1
            };
        if ranges == 1 {
            parts.push(FilePart {
                path: path.clone(),
                range: None,
            });
            continue;
        }
        let step = size.div_ceil(ranges);
        for start in (0..size).step_by(step as usize) {
            parts.push(FilePart {
                path: path.clone(),
                range: Some((start, (start + step).min(size))),
            });
        }
    }
    parts
}

/// Batches a scan may parse ahead of the plan above it: enough for the good rows of a
/// few chunks, which leave as several slices when a chunk has bad rows, so parsing
/// and writing overlap.
const BATCHES_AHEAD: usize = 32;

/// Rejects files started in this process; part of their names, as for data files.
static REJECT_WRITERS: AtomicU64 = AtomicU64::new(0);

/// Reads each file in its own partition; see the module documentation.
#[derive(Debug)]
pub struct LandingScanExec {
    parts: Vec<FilePart>,
    /// Every declared column: rows are checked whole, then projected.
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    read: ReadSpec,
    rejects: Option<RejectsTarget>,
    batch_size: usize,
    properties: Arc<PlanProperties>,
    /// Files read to their end here, until the writer above takes them.
    outcomes: Arc<Mutex<Vec<ScanOutcome>>>,
}

impl LandingScanExec {
    pub fn try_new(
        parts: Vec<FilePart>,
        schema: SchemaRef,
        projection: Option<Vec<usize>>,
        read: ReadSpec,
        rejects: Option<RejectsTarget>,
        batch_size: usize,
    ) -> Result<Self> {
        let projected = match &projection {
            Some(indices) => Arc::new(schema.project(indices)?),
            None => Arc::clone(&schema),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(projected),
            Partitioning::UnknownPartitioning(parts.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            parts,
            schema,
            projection,
            read,
            rejects,
            batch_size,
            properties: Arc::new(properties),
            outcomes: Arc::default(),
        })
    }

    pub fn parts(&self) -> &[FilePart] {
        &self.parts
    }

    /// Every declared column, before projection.
    pub fn file_schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn projection(&self) -> Option<&Vec<usize>> {
        self.projection.as_ref()
    }

    pub fn read_spec(&self) -> &ReadSpec {
        &self.read
    }

    pub fn rejects(&self) -> Option<&RejectsTarget> {
        self.rejects.as_ref()
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Takes what the files read to their end so far did; each outcome is taken once.
    pub fn take_outcomes(&self) -> Vec<ScanOutcome> {
        std::mem::take(&mut *self.outcomes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl DisplayAs for LandingScanExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "LandingScanExec: parts={}, format={:?}, compression={:?}, bad_rows={:?}",
            self.parts.len(),
            self.read.format,
            self.read.compression,
            self.read.policy.on_bad_row
        )
    }
}

impl ExecutionPlan for LandingScanExec {
    fn name(&self) -> &str {
        "LandingScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut builder = RecordBatchReceiverStreamBuilder::new(
            self.properties.eq_properties.schema().clone(),
            BATCHES_AHEAD,
        );
        if let Some(part) = self.parts.get(partition) {
            let job = FileScan {
                file: part.path.clone(),
                range: part.range,
                schema: Arc::clone(&self.schema),
                projection: self.projection.clone(),
                read: self.read.clone(),
                rejects: self.rejects.clone(),
                batch_size: self.batch_size,
                partition,
                outcomes: Arc::clone(&self.outcomes),
                runtime: context.runtime_env(),
                handle: tokio::runtime::Handle::current(),
            };
            let tx = builder.tx();
            builder.spawn_blocking(move || job.run(&tx));
        }
        Ok(builder.build())
    }
}

/// One file's scan, on a blocking thread.
struct FileScan {
    file: String,
    range: Option<(u64, u64)>,
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    read: ReadSpec,
    rejects: Option<RejectsTarget>,
    batch_size: usize,
    partition: usize,
    outcomes: Arc<Mutex<Vec<ScanOutcome>>>,
    /// Where the file's store is found, and the runtime its requests run on.
    runtime: Arc<RuntimeEnv>,
    handle: tokio::runtime::Handle,
}

type Sender = tokio::sync::mpsc::Sender<Result<datafusion::arrow::array::RecordBatch>>;

impl FileScan {
    fn run(self, tx: &Sender) -> Result<()> {
        let mut sink = None;
        let mut counts = ScannedFile {
            path: self.file.clone(),
            rows_read: 0,
            rows_rejected: 0,
        };
        match self.read_rows(tx, &mut sink, &mut counts) {
            Ok(()) => {
                let rejects = sink
                    .map(|sink: Box<AvroFileSink>| {
                        self.handle.block_on((sink as Box<dyn FileSink>).finish())
                    })
                    .transpose()?;
                self.outcomes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(ScanOutcome {
                        file: counts,
                        rejects,
                    });
                Ok(())
            }
            Err(error) => {
                if let Some(sink) = sink {
                    self.handle.block_on((sink as Box<dyn FileSink>).abort());
                }
                Err(error)
            }
        }
    }

    fn read_rows(
        &self,
        tx: &Sender,
        sink: &mut Option<Box<AvroFileSink>>,
        counts: &mut ScannedFile,
    ) -> Result<()> {
        if let Some(kafka) = &self.read.kafka {
            return self.read_messages(kafka, tx, sink, counts);
        }
        let file = self.open().map_err(|error| {
            DataFusionError::Context(format!("opening {}", self.file), Box::new(error))
        })?;
        let file = self.decrypt(file)?;
        let policy = self.read.policy;
        let reader = match self.range {
            Some((start, end)) => {
                let mut input = std::io::BufReader::new(file);
                let start = skip_to(&mut input, start).map_err(DataFusionError::IoError);
                start.and_then(|start| {
                    LandingReader::new(
                        Box::new(input) as Box<dyn std::io::Read + Send>,
                        &self.read.format,
                        Arc::clone(&self.schema),
                        policy.max_row_bytes,
                        self.batch_size,
                        (start, Some(end)),
                    )
                })
            }
            None => FileCompressionType::from(CompressionTypeVariant::from(self.read.compression))
                .convert_read(file)
                .and_then(|input| {
                    LandingReader::new(
                        input,
                        &self.read.format,
                        Arc::clone(&self.schema),
                        policy.max_row_bytes,
                        self.batch_size,
                        (RangeStart::default(), None),
                    )
                }),
        };
        let mut reader = reader.map_err(|error| self.corrupt(error))?;
        while let Some(parsed) = reader.next_rows().map_err(|error| self.corrupt(error))? {
            counts.rows_read += parsed.rows;
            self.set_aside(&parsed.rejects, sink, counts)?;
            for batch in parsed.batches {
                if !self.send(batch, tx)? {
                    return Ok(());
                }
            }
        }
        // A share limit is decided for the whole file, by the orchestrator.
        Ok(())
    }

    /// Writes bad rows to the rejects file, or stops the scan as the policy says.
    fn set_aside(
        &self,
        rejects: &[Reject],
        sink: &mut Option<Box<AvroFileSink>>,
        counts: &mut ScannedFile,
    ) -> Result<()> {
        let Some(first) = rejects.first() else {
            return Ok(());
        };
        counts.rows_rejected += rejects.len() as u64;
        self.apply_policy(first, counts)?;
        let target = self.rejects.as_ref().ok_or_else(|| {
            DataFusionError::Execution(format!("{}: {}", self.file, describe(first)))
        })?;
        let kept: Vec<Reject> = rejects
            .iter()
            .filter(|reject| !target.is_erased(reject))
            .cloned()
            .collect();
        if kept.is_empty() {
            return Ok(());
        }
        let sink = match sink {
            Some(sink) => sink,
            None => sink.insert(Box::new(AvroFileSink::create(
                &TableDir::open(&target.table_dir).map_err(DataFusionError::from)?,
                paths::rejects_file(
                    &target.prefix,
                    self.partition,
                    REJECT_WRITERS.fetch_add(1, Ordering::Relaxed),
                ),
                &rejects_schema(),
            )?)),
        };
        let batch = rejects_batch(&self.file, &target.run_id, &kept)?;
        self.handle.block_on(sink.write(&batch))
    }

    /// Sends good rows up, projected; `false` when the reader above stopped (cancelled,
    /// or failed elsewhere).
    fn send(&self, batch: datafusion::arrow::array::RecordBatch, tx: &Sender) -> Result<bool> {
        let batch = match &self.projection {
            Some(indices) => batch.project(indices)?,
            None => batch,
        };
        Ok(tx.blocking_send(Ok(batch)).is_ok())
    }

    /// The file's bytes from its start: a local file as it is, a stored object as the
    /// stream of its download.
    fn open(&self) -> Result<Box<dyn Read + Send>> {
        let location = StoreUrl::parse(&self.file)?;
        let store = if self.read.store.is_empty() {
            self.runtime
                .object_store(ObjectStoreUrl::parse(location.root().as_str())?)?
        } else {
            location.open(&self.read.store)?
        };
        let object = self
            .handle
            .block_on(store.get(location.path()))
            .map_err(|error| DataFusionError::ObjectStore(Box::new(error)))?;
        Ok(match object.payload {
            GetResultPayload::File(file, _) => Box::new(file),
            GetResultPayload::Stream(stream) => Box::new(SyncIoBridge::new_with_handle(
                StreamReader::new(stream.map_err(std::io::Error::other)),
                self.handle.clone(),
            )),
        })
    }

    /// The plaintext of an encrypted file, decrypted as it is read; a file in clear as it
    /// is. Keys that cannot be read fail the build (the file is read again next run); a
    /// file they cannot open is rejected whole.
    fn decrypt(&self, file: Box<dyn Read + Send>) -> Result<Box<dyn Read + Send>> {
        let Some(cipher) = Cipher::of(&self.file) else {
            return Ok(file);
        };
        let decryption = self.read.decrypt.as_ref().ok_or_else(|| {
            self.corrupt(DataFusionError::Execution(
                "an encrypted file, and its source names no key ('decrypt.key_file'…)".to_owned(),
            ))
        })?;
        let keys = decryption.keys().map_err(|error| {
            TaskError::Keys {
                file: self.file.clone(),
                why: error.to_string(),
            }
            .into_datafusion()
        })?;
        keys.open(cipher, file)
            .map_err(|error| self.corrupt(DataFusionError::Execution(error.to_string())))
    }

    /// Stops at a bad row when the policy says so, or at a count limit passed part way.
    fn apply_policy(&self, first: &Reject, counts: &ScannedFile) -> Result<()> {
        let policy = self.read.policy;
        match policy.on_bad_row {
            OnBadRow::Reject => {}
            on_bad_row => {
                let option = if on_bad_row == OnBadRow::FailRun {
                    "fail_run"
                } else {
                    "fail_file"
                };
                return Err(self.bad_rows(
                    on_bad_row,
                    format!("{} ('bad_rows' is '{option}')", describe(first)),
                ));
            }
        }
        if let Limit::Rows(_) = policy.limit
            && let Verdict::RejectFile(why) = policy.verdict(counts.rows_rejected, counts.rows_read)
        {
            return Err(self.bad_rows(OnBadRow::Reject, why));
        }
        Ok(())
    }

    /// A reading error as a file that cannot be read, in the same words embedded and
    /// on a cluster (where Ballista wraps errors in its own).
    fn corrupt(&self, error: DataFusionError) -> DataFusionError {
        TaskError::CorruptFile {
            file: self.file.clone(),
            why: error.strip_backtrace(),
        }
        .into_datafusion()
    }

    fn bad_rows(&self, policy: OnBadRow, why: String) -> DataFusionError {
        TaskError::BadRows {
            file: self.file.clone(),
            policy,
            why,
        }
        .into_datafusion()
    }
}

/// A bad row as one line of text: where it is and why it is bad.
fn describe(reject: &Reject) -> String {
    let place = match (&reject.line, &reject.column) {
        (Some(line), Some(column)) => format!("line {line}, column {column}: "),
        (Some(line), None) => format!("line {line}: "),
        _ => String::new(),
    };
    format!("{place}{}", reject.reason)
}

#[cfg(test)]
mod tests {
    use strata_storage::landing::CsvLayout;

    use super::*;

    #[test]
    fn large_uncompressed_files_are_cut_into_ranges_that_cover_them_exactly() {
        let file = |path: &str, size| SourceFile {
            path: path.into(),
            size,
            modified_ms: 0,
            etag: None,
        };
        let files = [
            file("/l/big.csv", 1001),
            file("/l/small.csv", 1),
            file("s3://b/big.csv", 1001),
            file("/l/big.csv.gpg", 1001),
        ];
        let mut read = ReadSpec {
            format: RowFormat::Csv(CsvLayout::default()),
            compression: Compression::Uncompressed,
            policy: BadRowPolicy::default(),
            store: StoreOptions::default(),
            kafka: None,
            decrypt: None,
        };
        let parts = split(&files, &read, 3, 100);
        let ranges: Vec<_> = parts.iter().map(|part| part.range).collect();
        assert_eq!(
            ranges,
            [
                Some((0, 334)),
                Some((334, 668)),
                Some((668, 1001)),
                None,
                None,
                None
            ],
            "a stored file, and an encrypted one, is read whole"
        );
        read.compression = Compression::Gzip;
        assert!(
            split(&files, &read, 3, 100)
                .iter()
                .all(|part| part.range.is_none())
        );
        read.compression = Compression::Uncompressed;
        read.format = RowFormat::Csv(CsvLayout {
            newlines_in_values: true,
            ..CsvLayout::default()
        });
        assert_eq!(
            split(&files, &read, 3, 100).len(),
            4,
            "rows may span ranges"
        );
    }
}
