//! A scan of compressed files (gzip CSV, say), as it crosses to an executor: the plan
//! protobuf of DataFusion 55 drops a scan's compression, so Strata carries it beside.

use std::fmt;
use std::sync::Arc;

use datafusion::common::parsers::CompressionTypeVariant;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// A file scan whose files are compressed, with the compression kept apart for the codec.
#[derive(Debug)]
pub struct CompressedScanExec {
    scan: Arc<dyn ExecutionPlan>,
    compression: CompressionTypeVariant,
}

impl CompressedScanExec {
    /// Rebuilds `scan` (a decoded file scan) with its compression.
    pub fn try_new(
        scan: Arc<dyn ExecutionPlan>,
        compression: CompressionTypeVariant,
    ) -> Result<Self> {
        let config = file_scan_config(&scan).ok_or_else(|| {
            DataFusionError::Internal(format!("{} is not a file scan", scan.name()))
        })?;
        let config = FileScanConfigBuilder::from(config.clone())
            .with_file_compression_type(FileCompressionType::from(compression))
            .build();
        Ok(Self {
            scan: DataSourceExec::from_data_source(config),
            compression,
        })
    }

    /// The scan without its compression, as DataFusion's protobuf encodes it.
    pub fn scan(&self) -> &Arc<dyn ExecutionPlan> {
        &self.scan
    }

    pub fn compression(&self) -> CompressionTypeVariant {
        self.compression
    }

    /// Wraps every compressed file scan in `plan`, so the compression reaches the executors.
    pub fn wrap_all(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let compression = file_scan_config(&node)
                .map(|config| *config.file_compression_type.get_variant())
                .filter(|variant| *variant != CompressionTypeVariant::UNCOMPRESSED);
            Ok(match compression {
                Some(compression) => Transformed::yes(Arc::new(Self {
                    scan: node,
                    compression,
                }) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .map(|transformed| transformed.data)
    }
}

fn file_scan_config(plan: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    plan.downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()
}

impl DisplayAs for CompressedScanExec {
    fn fmt_as(&self, format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CompressedScanExec: compression={}, ", self.compression)?;
        match self.scan.downcast_ref::<DataSourceExec>() {
            Some(scan) => scan.fmt_as(format, f),
            None => Ok(()),
        }
    }
}

impl ExecutionPlan for CompressedScanExec {
    fn name(&self) -> &str {
        "CompressedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.scan.properties()
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
        self.scan.execute(partition, context)
    }
}
