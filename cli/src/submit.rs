//! `strata submit`, `strata runs` and `strata cancel`: pipelines run by a scheduler.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use futures::StreamExt;
use strata_engine::run::{RunReport, TableReport};
use strata_engine::scheduler_client::{SchedulerClient, VERSION};
use strata_language::Sources;
use strata_proto::pipeline::{
    CancelRequest, ListRunsRequest, PipelineFile, RunState, SubmitRequest, WatchRequest, run_event,
};
use strata_storage::Warehouse;

use crate::credentials::CredentialsArgs;
use crate::error::CliError;
use crate::run::{BuildArgs, Progress, outcome, print_summary};

/// Arguments of `strata submit`.
#[derive(Args)]
pub(crate) struct SubmitArgs {
    /// Pipeline files, or directories of `.sql` files.
    #[arg(required = true, value_name = "PIPELINE")]
    pub pipeline: Vec<PathBuf>,
    // The warehouse must be a store URL, or a path the scheduler and executors all see.
    #[command(flatten)]
    pub build: BuildArgs,
    /// The scheduler, `host:port`.
    #[arg(long, env = "STRATA_SCHEDULER")]
    pub scheduler: String,
    /// Print the run id and return; the run goes on without this client.
    #[arg(long, conflicts_with = "continuous")]
    pub detach: bool,
    #[command(flatten)]
    pub credentials: CredentialsArgs,
}

/// Arguments of `strata runs`.
#[derive(Args)]
pub(crate) struct RunsArgs {
    /// The scheduler, `host:port`.
    #[arg(long, env = "STRATA_SCHEDULER")]
    pub scheduler: String,
    /// Also list this warehouse's run history (it outlives the scheduler's memory, so
    /// a run a restart interrupted shows as interrupted).
    #[arg(long)]
    pub warehouse: Option<String>,
    #[command(flatten)]
    pub credentials: CredentialsArgs,
}

/// Arguments of `strata cancel`.
#[derive(Args)]
pub(crate) struct CancelArgs {
    /// The run to stop.
    pub run: String,
    /// The scheduler, `host:port`.
    #[arg(long, env = "STRATA_SCHEDULER")]
    pub scheduler: String,
    #[command(flatten)]
    pub credentials: CredentialsArgs,
}

fn refused(status: tonic::Status) -> CliError {
    CliError::Cluster(status.message().to_owned())
}

/// Submits the pipeline, follows it like `strata run`, and fails if the run did; with
/// `--continuous`, submits a run every interval until stopped.
pub(crate) async fn submit(args: SubmitArgs, out: &mut impl Write) -> Result<(), CliError> {
    let sources = Sources::load(&args.pipeline)?;
    // The scheduler sees the warehouse as a store URL, or a path made absolute here.
    let warehouse = Warehouse::open(&args.build.warehouse)?;
    crate::warehouse::refuse_unshared(&warehouse)?;
    let mut client = args
        .credentials
        .connect(&args.scheduler, "strata submit")
        .await?;
    let files: Vec<PipelineFile> = sources
        .iter()
        .map(|(_, file)| PipelineFile {
            path: file.path.display().to_string(),
            text: file.text.clone(),
        })
        .collect();
    let request = SubmitRequest {
        files,
        warehouse: warehouse.to_string(),
        select: args.build.select.clone(),
        full_refresh: args.build.full_refresh,
        client_version: VERSION.to_owned(),
    };
    if args.build.continuous {
        let batch = || {
            let (mut client, request) = (client.clone(), request.clone());
            async move {
                let run_id = start_run(&mut client, request).await?;
                match watch(&mut client, &run_id, None).await? {
                    Finished::Report(report) => Ok(report),
                    Finished::Ended { state, error } => Err(ended(&run_id, state, error)),
                }
            }
        };
        return crate::continuous::run(&args.build, &warehouse, out, batch).await;
    }
    let run_id = start_run(&mut client, request).await?;
    writeln!(out, "submitted run {run_id}")?;
    out.flush()?;
    if args.detach {
        return Ok(());
    }
    let progress = Progress::default();
    match watch(&mut client, &run_id, Some(&progress)).await {
        Ok(Finished::Report(report)) => {
            print_summary(&report, out)?;
            writeln!(out, "report: {}", report.history_path(&warehouse))?;
            outcome(&report, args.build.strict)
        }
        Ok(Finished::Ended {
            state: RunState::Succeeded,
            ..
        }) => Ok(()),
        Ok(Finished::Ended { state, error }) => Err(ended(&run_id, state, error)),
        Err(CliError::Cluster(lost)) => Err(CliError::Cluster(format!(
            "{lost}; it may still be running (see `strata runs --scheduler {}`)",
            args.scheduler
        ))),
        Err(error) => Err(error),
    }
}

/// Submits one run and returns its id.
async fn start_run(
    client: &mut SchedulerClient,
    request: SubmitRequest,
) -> Result<String, CliError> {
    Ok(client
        .submit(request)
        .await
        .map_err(refused)?
        .into_inner()
        .run_id)
}

/// How a watched run ended: with its report, or only its state when the report could not
/// be read.
enum Finished {
    Report(RunReport),
    Ended { state: RunState, error: String },
}

/// Follows a run to its end, showing its tables' progress on `progress`.
async fn watch(
    client: &mut SchedulerClient,
    run_id: &str,
    progress: Option<&Progress>,
) -> Result<Finished, CliError> {
    let mut events = client
        .watch(WatchRequest {
            run_id: run_id.to_owned(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    while let Some(event) = events.next().await {
        match (event.map_err(refused)?.event, progress) {
            (Some(run_event::Event::Started(started)), Some(progress)) => {
                progress.started(&started.table)
            }
            (Some(run_event::Event::Progress(table)), Some(progress)) => {
                progress.progress(&table.table, table.rows_read)
            }
            (Some(run_event::Event::Finished(finished)), Some(progress)) => {
                if let Ok(report) = serde_json::from_str::<TableReport>(&finished.report_json) {
                    progress.finished(&report);
                }
            }
            (Some(run_event::Event::RunFinished(end)), _) => {
                return Ok(match serde_json::from_str::<RunReport>(&end.report_json) {
                    Ok(report) => Finished::Report(report),
                    Err(_) => Finished::Ended {
                        state: end.state(),
                        error: end.error,
                    },
                });
            }
            _ => {}
        }
    }
    Err(CliError::Cluster(format!(
        "lost the scheduler while watching run {run_id}"
    )))
}

/// The error of a run that ended without a report.
fn ended(run_id: &str, state: RunState, error: String) -> CliError {
    match state {
        RunState::Cancelled => CliError::Cluster(format!("run {run_id} was {error}")),
        _ => CliError::RunFailed(error),
    }
}

/// Lists the scheduler's runs, newest first.
pub(crate) async fn runs(args: RunsArgs, out: &mut impl Write) -> Result<(), CliError> {
    let mut client = args
        .credentials
        .connect(&args.scheduler, "strata runs")
        .await?;
    let runs = client
        .list_runs(ListRunsRequest {
            warehouse: match &args.warehouse {
                Some(warehouse) => Warehouse::open(warehouse)?.to_string(),
                None => String::new(),
            },
        })
        .await
        .map_err(refused)?
        .into_inner()
        .runs;
    writeln!(out, "{:<36} {:<11} {:>9}  error", "run", "state", "seconds")?;
    for run in runs {
        writeln!(
            out,
            "{:<36} {:<11} {:>9.1}  {}",
            run.run_id,
            state_name(run.state()),
            run.duration_ms as f64 / 1000.0,
            run.error
        )?;
    }
    Ok(())
}

/// Cancels a run; what it had not committed is never committed.
pub(crate) async fn cancel(args: CancelArgs, out: &mut impl Write) -> Result<(), CliError> {
    let mut client = args
        .credentials
        .connect(&args.scheduler, "strata cancel")
        .await?;
    let state = client
        .cancel(CancelRequest {
            run_id: args.run.clone(),
        })
        .await
        .map_err(refused)?
        .into_inner()
        .state();
    writeln!(out, "run {}: {}", args.run, state_name(state))?;
    Ok(())
}

fn state_name(state: RunState) -> &'static str {
    match state {
        RunState::Running => "running",
        RunState::Succeeded => "succeeded",
        RunState::Failed => "failed",
        RunState::Cancelled => "cancelled",
        RunState::Interrupted => "interrupted",
        RunState::Unspecified => "unknown",
    }
}
