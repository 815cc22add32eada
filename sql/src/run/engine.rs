//! Where a table build's work runs: in this process, or as a job on a Ballista
//! cluster. The orchestration (planning, commits, reports) is the same for both.

use std::sync::Arc;

use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::collect;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::TryStreamExt;

use crate::codec::StrataPhysicalCodec;
use crate::storage::compressed_scan::CompressedScanExec;
use crate::storage::write_files::{WriteFilesExec, WrittenRow};

/// Prefix of the Ballista job name of every job a run submits: `strata:<run id>:<table>`.
pub const JOB_NAME_PREFIX: &str = "strata:";

/// Runs writer plans, here or on a cluster.
#[derive(Debug, Clone)]
pub enum Engine {
    /// Every partition on this process's threads.
    Embedded,
    /// Every partition as a task on the executors of a Ballista scheduler.
    Cluster {
        /// `http://host:port` of the scheduler.
        scheduler_url: String,
        config: SessionConfig,
    },
}

impl Engine {
    /// An engine that submits to the scheduler at `url` (`host:port` or `http://host:port`).
    pub fn cluster(url: &str) -> Self {
        let scheduler_url = strata_proto::scheduler_url(url);
        Engine::Cluster {
            scheduler_url,
            config: SessionConfig::new_with_ballista()
                .with_ballista_physical_extension_codec(StrataPhysicalCodec::shared()),
        }
    }

    /// A session for planning on this side, set up as the engine runs plans.
    pub fn session(&self) -> SessionContext {
        let config = match self {
            Engine::Embedded => SessionConfig::new(),
            Engine::Cluster { config, .. } => config.clone(),
        };
        let state = SessionStateBuilder::new()
            .with_config(config.with_information_schema(false))
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        strata_udfs::register_all(&ctx);
        ctx
    }

    /// Whether the work leaves this process.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Engine::Cluster { .. })
    }

    /// Runs a writer plan to the end; `job` names it in the scheduler (run id and table).
    pub async fn write(
        &self,
        plan: Arc<WriteFilesExec>,
        ctx: &SessionContext,
        job: &str,
    ) -> Result<Vec<WrittenRow>> {
        let batches = match self {
            Engine::Embedded => collect(plan, ctx.task_ctx()).await?,
            Engine::Cluster {
                scheduler_url,
                config,
            } => {
                let config = config
                    .clone()
                    .with_ballista_job_name(&format!("{JOB_NAME_PREFIX}{job}"));
                let plan = CompressedScanExec::wrap_all(plan)?;
                let stream = execute_physical_plan::<PhysicalPlanNode>(
                    scheduler_url.clone(),
                    &config.ballista_config(),
                    plan,
                    &StrataPhysicalCodec::default(),
                    ctx.session_id(),
                    config,
                )
                .await
                .map_err(|error| reachable(scheduler_url, error))?;
                stream.try_collect().await?
            }
        };
        WriteFilesExec::decode(&batches)
    }
}

/// Says which scheduler could not be reached, instead of a bare transport error.
fn reachable(url: &str, error: DataFusionError) -> DataFusionError {
    let text = error.to_string();
    if text.contains("transport error") || text.contains("Connection refused") {
        DataFusionError::Execution(format!(
            "cannot reach the Strata scheduler at {url}: {text}"
        ))
    } else {
        error
    }
}
