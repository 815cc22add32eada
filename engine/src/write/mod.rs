//! The parallel writer: a plan node that writes every input partition to its own
//! files, wherever the partition runs, and answers with one row per file written
//! ([`WriteSummary`] reads them back).
//!
//! Nothing it writes is visible until the orchestrator commits the rows it returns,
//! once per table build (a raw commit or one Delta commit), so a failed or cancelled
//! build leaves only files no reader looks at.

mod partition;
mod summary;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use strata_storage::storage_schema;

use crate::expectations::Checker;
use partition::{PartitionWriter, WRITERS_STARTED};

pub use partition::process_identity;
use summary::output_schema;
pub use summary::{DataFile, ScannedFile, WriteSummary};

/// The node's metric of rows read from its input, live while partitions run.
pub const ROWS_READ: &str = "rows_read";

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
    /// Start of every data file name: the run's ([`strata_storage::paths::run_file_prefix`]),
    /// so a sweep after a cancelled run finds its files by name.
    pub prefix: String,
    pub partition_columns: Vec<String>,
    /// The quarantine table's directory, when an expectation quarantines rows.
    pub quarantine_dir: Option<String>,
}

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
            EquivalenceProperties::new(output_schema()),
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
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let writer = PartitionWriter {
            plan: Arc::clone(&self.input),
            context,
            number: WRITERS_STARTED.fetch_add(1, Ordering::Relaxed),
            spec: self.spec.clone(),
            checker: self.checker.clone(),
            schema: storage_schema(&self.input.schema()),
            partition,
            rows_read: MetricBuilder::new(&self.metrics).counter(ROWS_READ, partition),
        };
        let output = futures::stream::once(writer.run(input));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            output_schema(),
            output,
        )))
    }
}
