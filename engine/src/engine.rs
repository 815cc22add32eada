//! Where a table build's work runs: in this process, or as a job on a Ballista
//! cluster. The orchestration (planning, commits, reports) is the same for both.

use std::sync::Arc;
use std::time::Duration;

use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::arrow::array::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::{ExecutionPlan, collect, execute_stream};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::TryStreamExt;

use strata_language::TableName;
use strata_storage::StoreRegistry;

use crate::codec::StrataPhysicalCodec;
use crate::scheduler_client::{self, Credentials, scheduler_url};
use crate::task_error;
use crate::write::{WriteFilesExec, WriteSummary};

/// How often an embedded build reports the rows its writers have read.
const PROGRESS_TICK: Duration = Duration::from_secs(1);

/// Runs of one writer job whose executor or answer was lost.
const RESULT_ATTEMPTS: u32 = 3;

/// Prefix of the Ballista job name of every job Strata submits.
const JOB_NAME_PREFIX: &str = "strata:";

/// The Ballista job name of a table build of a run, `strata:<run>:<table>`, with the
/// landing file's number for a raw build's file.
pub fn job_name(run_id: &str, table: &TableName, landing_file: Option<usize>) -> String {
    match landing_file {
        Some(index) => format!("{}{table}:{index}", run_jobs_prefix(run_id)),
        None => format!("{}{table}", run_jobs_prefix(run_id)),
    }
}

/// Whether a Ballista job is one Strata submitted (a table build), not a query.
pub fn is_strata_job(job_name: &str) -> bool {
    job_name.starts_with(JOB_NAME_PREFIX)
}

/// The start of the Ballista job name of every job of one run.
pub fn run_jobs_prefix(run_id: &str) -> String {
    format!("{JOB_NAME_PREFIX}{run_id}:")
}

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
        /// Stops a streamed job whose reader went away; only the scheduler's own
        /// process can (Ballista's client leaves its job running when dropped).
        jobs: Option<Arc<dyn CancelJobs>>,
    },
}

/// Stops a cluster's running jobs of a name.
#[async_trait::async_trait]
pub trait CancelJobs: Send + Sync + std::fmt::Debug {
    /// Cancels every running or queued job named `job_name`; how many it cancelled.
    async fn cancel_named(&self, job_name: &str) -> usize;
}

impl Engine {
    /// An engine that submits to the scheduler at `url` (`host:port` or `http://host:port`)
    /// with `credentials`: its token on every call, and TLS when they have a CA.
    pub fn cluster(url: &str, credentials: &Credentials) -> Self {
        let scheduler_url = scheduler_url(url);
        let mut config = SessionConfig::new_with_ballista()
            .with_ballista_physical_extension_codec(StrataPhysicalCodec::shared())
            .with_ballista_grpc_metadata(scheduler_client::ballista_metadata(
                credentials.token.as_deref(),
            ));
        if let Some(tls) = scheduler_client::endpoint_override(url, credentials, false) {
            scheduler_client::install_crypto();
            config = config.with_ballista_override_create_grpc_client_endpoint(tls);
        }
        Engine::Cluster {
            scheduler_url,
            config,
            jobs: None,
        }
    }

    /// The same engine, cancelling the jobs of the streams it gives when they are
    /// dropped before their end (see [`Engine::stream`]).
    pub fn with_job_canceller(self, canceller: Arc<dyn CancelJobs>) -> Self {
        match self {
            Engine::Cluster {
                scheduler_url,
                config,
                ..
            } => Engine::Cluster {
                scheduler_url,
                config,
                jobs: Some(canceller),
            },
            embedded => embedded,
        }
    }

    /// The session settings plans must be made with to run on this engine.
    pub fn config(&self) -> SessionConfig {
        match self {
            Engine::Embedded => SessionConfig::new(),
            Engine::Cluster { config, .. } => config.clone(),
        }
    }

    /// A session for planning on this side, set up as the engine runs plans, reaching
    /// every store Strata knows.
    pub fn session(&self) -> SessionContext {
        let state = SessionStateBuilder::new()
            .with_config(self.config().with_information_schema(false))
            .with_runtime_env(StoreRegistry::runtime())
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

    /// Runs a writer plan to the end; `job` names it in the scheduler (see [`job_name`]).
    /// Embedded, `on_rows` hears the rows read so far every second; a cluster's tasks
    /// report theirs when the job ends.
    pub async fn write(
        &self,
        plan: Arc<WriteFilesExec>,
        ctx: &SessionContext,
        job: &str,
        on_rows: &(dyn Fn(u64) + Sync),
    ) -> Result<WriteSummary> {
        let format = plan.spec().format;
        let batches: Vec<RecordBatch> = match self {
            Engine::Embedded => {
                let work = collect(Arc::clone(&plan) as _, ctx.task_ctx());
                tokio::pin!(work);
                let mut tick = tokio::time::interval(PROGRESS_TICK);
                tick.tick().await;
                loop {
                    tokio::select! {
                        batches = &mut work => break batches?,
                        _ = tick.tick() => on_rows(plan.rows_read()),
                    }
                }
            }
            Engine::Cluster { .. } => {
                let mut attempt = 1;
                loop {
                    let batches = async {
                        self.stream(Arc::clone(&plan) as _, ctx, job)
                            .await?
                            .try_collect::<Vec<_>>()
                            .await
                    }
                    .await;
                    match batches {
                        // Nothing was committed: the writers' files are only listed in
                        // the lost answer, so a second run writes the table once.
                        Err(error)
                            if attempt < RESULT_ATTEMPTS && task_error::is_lost_result(&error) =>
                        {
                            tracing::warn!(
                                "job {job} finished but its answer was lost with an executor; \
                                 running it again ({attempt} of {RESULT_ATTEMPTS})"
                            );
                            attempt += 1;
                        }
                        // The scheduler cancels a table build that loses an executor
                        // rather than patch it up (see the scheduler's cluster state).
                        Err(error)
                            if attempt < RESULT_ATTEMPTS
                                && task_error::is_cancelled_job(&error) =>
                        {
                            tracing::warn!(
                                "job {job} was cancelled by the scheduler after it lost an \
                                 executor; running it again ({attempt} of {RESULT_ATTEMPTS})"
                            );
                            attempt += 1;
                        }
                        batches => break batches?,
                    }
                }
            }
        };
        WriteSummary::decode(&batches, format)
    }

    /// Runs any plan and streams its output; on a cluster, as the Ballista job `job`
    /// (prefixed as every job Strata submits).
    pub async fn stream(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        ctx: &SessionContext,
        job: &str,
    ) -> Result<SendableRecordBatchStream> {
        match self {
            Engine::Embedded => execute_stream(plan, ctx.task_ctx()),
            Engine::Cluster {
                scheduler_url,
                config,
                jobs,
            } => {
                // Each stream's job has a name of its own, so it alone is cancelled.
                let number = STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let name = format!("{JOB_NAME_PREFIX}{job}:{}:{number}", std::process::id());
                let config = config.clone().with_ballista_job_name(&name);
                // Armed from the start: Ballista's client waits for the job before it
                // gives a stream, and a caller that goes away drops it while it waits.
                let guard = JobGuard(jobs.as_ref().map(|jobs| (Arc::clone(jobs), name)));
                let stream = execute_physical_plan::<PhysicalPlanNode>(
                    scheduler_url.clone(),
                    &config.ballista_config(),
                    plan,
                    &StrataPhysicalCodec::default(),
                    ctx.session_id(),
                    config,
                )
                .await
                .map_err(|error| {
                    DataFusionError::Context(
                        format!("on the Strata scheduler at {scheduler_url}"),
                        Box::new(error),
                    )
                })?;
                Ok(match guard.0 {
                    Some(_) => Box::pin(CancelOnDrop {
                        inner: stream,
                        guard,
                    }),
                    None => stream,
                })
            }
        }
    }
}

/// Streams given so far, numbering their jobs.
static STREAMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Cancels its job when dropped, unless disarmed (the job ended).
struct JobGuard(Option<(Arc<dyn CancelJobs>, String)>);

impl Drop for JobGuard {
    fn drop(&mut self) {
        if let Some((jobs, name)) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let cancelled = jobs.cancel_named(&name).await;
                tracing::info!("{name}: its reader went away; cancelled {cancelled} job(s)");
            });
        }
    }
}

/// A cluster job's stream that cancels the job when dropped before its end.
struct CancelOnDrop {
    inner: SendableRecordBatchStream,
    guard: JobGuard,
}

impl futures::Stream for CancelOnDrop {
    type Item = Result<RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if matches!(polled, std::task::Poll::Ready(None)) {
            self.guard.0 = None;
        }
        polled
    }
}

impl datafusion::execution::RecordBatchStream for CancelOnDrop {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }
}
