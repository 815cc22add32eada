//! The pipeline service: runs submitted pipelines on this scheduler's executors,
//! with the orchestration in this process so a run outlives its client.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballista_core::error::BallistaError;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use futures::Stream;
use strata_engine::engine::run_jobs_prefix;
use strata_engine::run::{
    ReportState, RunEvent as TableEvent, RunOptions, RunReport, new_run_id, run_pipeline,
};
use strata_engine::scheduler_client::Credentials;
use strata_engine::{Compiled, Engine, EngineError, compile};
use strata_language::{LanguageError, Pipeline, Sources, Statement, TableName};
use strata_proto::pipeline::pipeline_service_server::PipelineService as PipelineRpc;
use strata_proto::pipeline::{
    CancelRequest, CancelResponse, DrainExecutorRequest, DrainExecutorResponse, HelloRequest,
    HelloResponse, ListRunsRequest, ListRunsResponse, RunEvent, RunState, RunSummary,
    SubmitRequest, SubmitResponse, TableFinished, TableProgress, TableStarted, WatchRequest,
    run_event,
};
use strata_storage::Warehouse;
use strata_storage::cleanup::remove_uncommitted;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use crate::access::{Access, require};
use crate::cluster_view::{ClusterView, ExecutorState};
use crate::draining::Draining;
use crate::jobs::cancel_jobs;
use crate::metrics::Metrics;
use crate::runs::{Run, Runs};

pub use strata_engine::scheduler_client::VERSION;

/// At most this many sweeps for a cancelled run's uncommitted files, a second apart.
const CLEANUP_SWEEPS: usize = 15;

type Scheduler = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// Serves the pipeline service of one scheduler.
pub(crate) struct PipelineService {
    scheduler: Scheduler,
    /// This scheduler's own address, where submitted runs send their jobs.
    url: String,
    /// What those jobs present.
    own: Credentials,
    runs: Arc<Runs>,
    submitted: AtomicU64,
    draining: Draining,
    metrics: Arc<Metrics>,
}

impl PipelineService {
    pub(crate) fn new(
        scheduler: Scheduler,
        url: String,
        own: Credentials,
        draining: Draining,
        metrics: Arc<Metrics>,
        runs: Arc<Runs>,
    ) -> Self {
        Self {
            scheduler,
            url,
            own,
            runs,
            submitted: AtomicU64::new(0),
            draining,
            metrics,
        }
    }

    fn run(&self, run_id: &str) -> Result<Arc<Run>, Status> {
        self.runs
            .get(run_id)
            .ok_or_else(|| Status::not_found(format!("no run {run_id} on this scheduler")))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |age| age.as_millis() as u64)
}

/// A run of the warehouse's history that this scheduler does not know: one whose
/// report says it started but never ended was interrupted.
fn from_history(report: RunReport, warehouse: &Warehouse) -> RunSummary {
    let (state, error) = match report.state {
        ReportState::Started => (
            RunState::Interrupted,
            "its orchestrator stopped before it ended; what it committed is whole, and a \
             re-run builds the rest"
                .to_owned(),
        ),
        ReportState::Finished if report.succeeded() => (RunState::Succeeded, String::new()),
        ReportState::Finished => (RunState::Failed, report.failures().join("; ")),
    };
    RunSummary {
        run_id: report.run_id,
        state: state as i32,
        warehouse: warehouse.to_string(),
        submitted_at_ms: report.started_at_ms,
        duration_ms: report.duration_ms,
        error,
        pipeline: Vec::new(),
    }
}

/// Refuses a peer of another Strata version, naming both.
pub(crate) fn check_version(peer: &str, role: &str) -> Result<(), Status> {
    if peer == VERSION {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "this scheduler runs Strata {VERSION} but the {role} runs Strata {}; run one \
             version on every process of a cluster",
            if peer.is_empty() { "(unknown)" } else { peer }
        )))
    }
}

/// Compiles a submitted pipeline on this side; a pipeline with problems is refused
/// with each rendered against its files.
async fn prepare(
    sources: &Sources,
    warehouse: &Warehouse,
    engine: &Engine,
) -> Result<Compiled, Status> {
    let refuse = |error: EngineError| match error {
        EngineError::Language(LanguageError::Invalid(problems)) => {
            Status::invalid_argument(format!(
                "{}{} problem(s) found; nothing was run",
                problems
                    .iter()
                    .map(|problem| format!("{}\n", problem.render(sources)))
                    .collect::<String>(),
                problems.len()
            ))
        }
        other => Status::invalid_argument(other.to_string()),
    };
    compile(sources, warehouse, engine).await.map_err(refuse)
}

fn table_event(event: TableEvent<'_>) -> RunEvent {
    let event = match event {
        TableEvent::Started(table) => run_event::Event::Started(TableStarted {
            table: table.to_string(),
        }),
        TableEvent::Progress { table, rows_read } => run_event::Event::Progress(TableProgress {
            table: table.to_string(),
            rows_read,
        }),
        TableEvent::Finished(report) => run_event::Event::Finished(TableFinished {
            report_json: serde_json::to_string(report).unwrap_or_default(),
        }),
    };
    RunEvent { event: Some(event) }
}

/// The built (non-source) tables of a pipeline.
fn built_tables(pipeline: &Pipeline) -> Vec<TableName> {
    pipeline
        .statements
        .iter()
        .filter(|statement| matches!(statement, Statement::Table(_)))
        .map(|statement| statement.name().clone())
        .collect()
}

type EventStream = Pin<Box<dyn Stream<Item = Result<RunEvent, Status>> + Send>>;

#[tonic::async_trait]
impl PipelineRpc for PipelineService {
    async fn hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloResponse>, Status> {
        let hello = request.into_inner();
        let checked = check_version(&hello.version, &hello.role);
        match &checked {
            Ok(()) => tracing::info!("{} {} said hello", hello.role, hello.name),
            Err(refusal) => tracing::warn!(
                "refused {} {}: {}",
                hello.role,
                hello.name,
                refusal.message()
            ),
        }
        checked?;
        Ok(Response::new(HelloResponse {
            version: VERSION.to_owned(),
        }))
    }

    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        require(&request, Access::Full, "submit a pipeline")?;
        let submitted = request.into_inner();
        check_version(&submitted.client_version, "client")?;
        if submitted.files.is_empty() {
            return Err(Status::invalid_argument(
                "the submission has no pipeline files",
            ));
        }
        let warehouse = Warehouse::open(&submitted.warehouse)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        match warehouse.local_dir() {
            Some(root) if !root.is_dir() => {
                return Err(Status::invalid_argument(format!(
                    "the warehouse {} is not a directory the scheduler can see; executors and \
                     the scheduler need the same shared path, or a warehouse in an object store",
                    root.display()
                )));
            }
            Some(_) => {}
            None => warehouse
                .check()
                .await
                .map_err(|error| Status::failed_precondition(error.to_string()))?,
        }
        let mut sources = Sources::default();
        for file in &submitted.files {
            sources.add(&file.path, file.text.clone());
        }
        let engine = Engine::cluster(&self.url, &self.own);
        let compiled = prepare(&sources, &warehouse, &engine).await?;

        let run_id = format!(
            "{}-{}",
            new_run_id(),
            self.submitted.fetch_add(1, Ordering::Relaxed)
        );
        let submitted_at_ms = now_ms();
        let tables = built_tables(&compiled.pipeline);
        let run = self.runs.add(
            tables,
            RunSummary {
                run_id: run_id.clone(),
                state: RunState::Running as i32,
                warehouse: submitted.warehouse.clone(),
                submitted_at_ms,
                duration_ms: 0,
                error: String::new(),
                pipeline: submitted
                    .files
                    .iter()
                    .map(|file| file.path.clone())
                    .collect(),
            },
        );
        let options = RunOptions {
            select: submitted.select,
            full_refresh: submitted.full_refresh,
            run_id: Some(run_id.clone()),
            backfill: None,
            skip_ingest: false,
        };
        let task = {
            let run = Arc::clone(&run);
            let metrics = Arc::clone(&self.metrics);
            tokio::spawn(async move {
                let on_event = |event: TableEvent<'_>| {
                    if let TableEvent::Finished(report) = &event {
                        metrics.table_finished(report);
                    }
                    run.record(table_event(event))
                };
                let outcome =
                    run_pipeline(&compiled, &warehouse, &engine, &options, &on_event).await;
                let (state, report, error) = match outcome {
                    Ok(report) if report.succeeded() => {
                        (RunState::Succeeded, Some(report), String::new())
                    }
                    Ok(report) => (
                        RunState::Failed,
                        Some(report),
                        "some tables failed".to_owned(),
                    ),
                    Err(error) => (RunState::Failed, None, error.to_string()),
                };
                let report_json = report
                    .map(|report| serde_json::to_string(&report).unwrap_or_default())
                    .unwrap_or_default();
                if run.finish(state, report_json, error, now_ms()) {
                    metrics.run_finished(
                        state_label(state),
                        run.summary().duration_ms as f64 / 1000.0,
                    );
                }
            })
        };
        run.set_task(task.abort_handle());
        tracing::info!("run {run_id} submitted");
        Ok(Response::new(SubmitResponse { run_id }))
    }

    type WatchStream = EventStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let run = self.run(&request.into_inner().run_id)?;
        let (history, live) = run.subscribe();
        let ended =
            |event: &RunEvent| matches!(event.event, Some(run_event::Event::RunFinished(_)));
        let finished = history.iter().any(ended);
        let stream = futures::stream::unfold(
            (history.into_iter(), live, finished),
            move |(mut history, mut live, finished)| async move {
                if let Some(event) = history.next() {
                    return Some((Ok(event), (history, live, finished)));
                }
                if finished {
                    return None;
                }
                loop {
                    match live.recv().await {
                        Ok(event) => {
                            let last = ended(&event);
                            return Some((Ok(event), (history, live, last)));
                        }
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_runs(
        &self,
        request: Request<ListRunsRequest>,
    ) -> Result<Response<ListRunsResponse>, Status> {
        let mut runs = self.runs.summaries();
        let warehouse = request.into_inner().warehouse;
        if !warehouse.is_empty() {
            let warehouse = Warehouse::open(&warehouse)
                .map_err(|error| Status::invalid_argument(error.to_string()))?;
            let history = RunReport::history(&warehouse)
                .await
                .map_err(|error| Status::failed_precondition(error.to_string()))?;
            runs.extend(
                history
                    .into_iter()
                    .filter(|report| self.runs.get(&report.run_id).is_none())
                    .map(|report| from_history(report, &warehouse)),
            );
            runs.sort_by_key(|run| std::cmp::Reverse(run.submitted_at_ms));
        }
        Ok(Response::new(ListRunsResponse { runs }))
    }

    async fn cancel(
        &self,
        request: Request<CancelRequest>,
    ) -> Result<Response<CancelResponse>, Status> {
        require(&request, Access::Full, "cancel a run")?;
        let run_id = request.into_inner().run_id;
        let run = self.run(&run_id)?;
        if run.state() != RunState::Running {
            return Ok(Response::new(CancelResponse {
                state: run.state() as i32,
            }));
        }
        run.abort();
        let prefix = run_jobs_prefix(&run_id);
        let stopped = cancel_jobs(&self.scheduler, |name| name.starts_with(&prefix)).await;
        let summary = run.summary();
        let warehouse = Warehouse::open(&summary.warehouse)
            .map_err(|error| Status::internal(error.to_string()))?;
        let tidied = tidy(stopped, &warehouse, run.tables(), &run_id).await;
        let said = match tidied {
            Ok((stopped, removed)) => {
                tracing::info!(
                    "run {run_id} cancelled: {stopped} job(s) stopped, {removed} file(s) removed"
                );
                "cancelled; nothing it had not committed was committed".to_owned()
            }
            Err(error) => {
                tracing::warn!("run {run_id} cancelled, but its files were not swept: {error}");
                format!(
                    "cancelled; nothing it had not committed was committed, but its \
                     uncommitted files were left in place: {error}"
                )
            }
        };
        if run.finish(RunState::Cancelled, String::new(), said, now_ms()) {
            self.metrics.run_finished(
                state_label(RunState::Cancelled),
                run.summary().duration_ms as f64 / 1000.0,
            );
        }
        Ok(Response::new(CancelResponse {
            state: RunState::Cancelled as i32,
        }))
    }

    async fn drain_executor(
        &self,
        request: Request<DrainExecutorRequest>,
    ) -> Result<Response<DrainExecutorResponse>, Status> {
        require(&request, Access::Full, "drain an executor")?;
        let wanted = request.into_inner().executor;
        if wanted.is_empty() {
            return Err(Status::invalid_argument(
                "name the executor to drain by its host or host:port",
            ));
        }
        let view = ClusterView::observe(&self.scheduler, &self.draining)
            .await
            .map_err(|error| {
                Status::unavailable(format!("cannot read the cluster's executors: {error}"))
            })?;
        let matching: Vec<_> = view
            .executors
            .iter()
            .filter(|e| e.state != ExecutorState::Stopping)
            .filter(|e| e.address.host == wanted || e.address.to_string() == wanted)
            .collect();
        let [executor] = matching[..] else {
            if matching.is_empty() {
                return Ok(Response::new(DrainExecutorResponse::default()));
            }
            return Err(Status::invalid_argument(format!(
                "{} executors match {wanted}; name one by host:port",
                matching.len()
            )));
        };
        if self.draining.insert(&executor.address.id) {
            tracing::info!("draining executor {} on request", executor.address);
        }
        Ok(Response::new(DrainExecutorResponse {
            found: true,
            drained: executor.running_tasks == 0 && !executor.holds_shuffle,
            running_tasks: executor.running_tasks as u32,
            holds_shuffle: executor.holds_shuffle,
        }))
    }
}

/// The `state` label of the runs metric.
fn state_label(state: RunState) -> &'static str {
    match state {
        RunState::Succeeded => "succeeded",
        RunState::Failed => "failed",
        RunState::Cancelled => "cancelled",
        RunState::Interrupted => "interrupted",
        RunState::Running | RunState::Unspecified => "running",
    }
}

/// After a cancel asked the run's jobs to stop, removes the files the run wrote but did
/// not commit; returns the jobs stopped and the files removed.
///
/// When the jobs could not be listed, a task may still be writing, so nothing is swept:
/// the files are left for a later sweep rather than pulled from under a writer.
async fn tidy(
    stopped: Result<usize, BallistaError>,
    warehouse: &Warehouse,
    tables: &[TableName],
    run_id: &str,
) -> Result<(usize, usize), BallistaError> {
    let stopped = stopped?;
    // A cancelled task may still be closing a file as its job ends: sweep until two
    // sweeps a second apart find nothing.
    let mut removed = 0;
    let mut quiet = 0;
    for _ in 0..CLEANUP_SWEEPS {
        let sweep = remove_uncommitted(warehouse, tables, run_id).await;
        removed += sweep.removed;
        quiet = if sweep.removed == 0 { quiet + 1 } else { 0 };
        if quiet == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok((stopped, removed))
}

#[cfg(test)]
mod tests {
    use strata_language::Layer;

    use super::*;

    #[tokio::test]
    async fn a_cancel_that_cannot_list_its_jobs_sweeps_nothing() {
        let root = std::env::temp_dir().join(format!("strata-cancel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let warehouse = Warehouse::local(&root);
        let jobs = TableName {
            layer: Layer::Raw,
            name: "jobs".into(),
        };
        let file = warehouse
            .local_dir()
            .unwrap()
            .join("raw/jobs")
            .join(format!(
                "{}00000-0-1.avro",
                strata_storage::paths::run_file_prefix("run-1")
            ));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"Obj").unwrap();
        let tables = [jobs];

        // Injected failure: Ballista cannot list the running jobs.
        let failed = Err(BallistaError::General(
            "injected: job listing failed".into(),
        ));
        let tidied = tidy(failed, &warehouse, &tables, "run-1").await;
        assert!(tidied.is_err());
        assert!(file.exists(), "a task may still be writing it");

        let tidied = tidy(Ok(1), &warehouse, &tables, "run-1").await.unwrap();
        assert_eq!(tidied, (1, 1));
        assert!(!file.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
