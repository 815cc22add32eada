//! `strata schedule`: registering pipelines to run by themselves, on a cron schedule or
//! when landing files arrive, in the warehouse the scheduler (or `strata run
//! --schedule`) runs them from.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use strata_language::Sources;
use strata_orchestrate::declared;
use strata_orchestrate::schedule::Outcome;
use strata_orchestrate::{PipelineFile, Retry, Schedule, Schedules, Triggers};

use crate::error::CliError;

/// Arguments of `strata schedule`.
#[derive(Args)]
pub(crate) struct ScheduleArgs {
    #[command(subcommand)]
    command: ScheduleCommand,
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Register a pipeline to run on a cron schedule, when its landing files change, or both.
    Add(AddArgs),
    /// List the schedules, their last run and their next cron time.
    List(WarehouseArgs),
    /// Stop a schedule from starting runs (a run under way ends as it would).
    Pause(NameArgs),
    /// Let a paused schedule start runs again.
    Resume(NameArgs),
    /// Remove a schedule and what it fired (its runs' reports stay in the history).
    Remove(NameArgs),
    /// Register the schedules a TOML file declares, and remove those it no longer does.
    Apply(ApplyArgs),
}

#[derive(Args)]
struct WarehouseArgs {
    /// The warehouse the schedules live in, a directory or a store URL.
    #[arg(long, env = "STRATA_WAREHOUSE", value_name = "PATH_OR_URL")]
    warehouse: String,
}

#[derive(Args)]
struct NameArgs {
    name: String,
    #[command(flatten)]
    warehouse: WarehouseArgs,
}

#[derive(Args)]
struct AddArgs {
    /// The schedule's name: letters, digits, '-' and '_'.
    name: String,
    /// Pipeline files, or directories of `.sql` files; their text is kept with the schedule.
    #[arg(required = true, value_name = "PIPELINE")]
    pipeline: Vec<PathBuf>,
    #[command(flatten)]
    warehouse: WarehouseArgs,
    /// A cron expression in UTC: 5 fields (`*/15 * * * *`), or 6 with seconds first.
    #[arg(
        long,
        value_name = "EXPRESSION",
        required_unless_present = "on_new_files"
    )]
    cron: Option<String>,
    /// Start a run when the pipeline's landing locations get files.
    #[arg(long)]
    on_new_files: bool,
    /// Runs tried again after a failed one before the schedule counts as failing.
    #[arg(long, default_value_t = Retry::default().attempts)]
    retries: u32,
    /// The wait before the first retry; each next one waits twice as long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    retry_backoff: Duration,
    /// A URL told, with a JSON POST, when the schedule fails and when it recovers.
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
}

#[derive(Args)]
struct ApplyArgs {
    /// The TOML file of `[[schedule]]` tables (see docs/schedules.md).
    file: PathBuf,
    #[command(flatten)]
    warehouse: WarehouseArgs,
}

pub(crate) async fn run(args: ScheduleArgs, out: &mut impl Write) -> Result<(), CliError> {
    match args.command {
        ScheduleCommand::Add(args) => add(args, out).await,
        ScheduleCommand::List(args) => list(args, out).await,
        ScheduleCommand::Pause(args) => {
            let schedules = open(&args.warehouse).await?;
            schedules.set_paused(&args.name, true).await?;
            writeln!(out, "paused {}", args.name)?;
            Ok(())
        }
        ScheduleCommand::Resume(args) => {
            let schedules = open(&args.warehouse).await?;
            schedules.set_paused(&args.name, false).await?;
            writeln!(out, "resumed {}", args.name)?;
            Ok(())
        }
        ScheduleCommand::Remove(args) => {
            let schedules = open(&args.warehouse).await?;
            schedules.remove(&args.name).await?;
            writeln!(out, "removed {}", args.name)?;
            Ok(())
        }
        ScheduleCommand::Apply(args) => {
            let schedules = open(&args.warehouse).await?;
            let applied = declared::apply(&args.file, &schedules).await?;
            writeln!(
                out,
                "registered {}; removed {}",
                names(&applied.registered),
                names(&applied.removed)
            )?;
            Ok(())
        }
    }
}

fn names(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

async fn open(args: &WarehouseArgs) -> Result<Schedules, CliError> {
    let warehouse = crate::warehouse::open(&args.warehouse).await?;
    crate::warehouse::refuse_unshared(&warehouse)?;
    Ok(Schedules::new(warehouse))
}

async fn add(args: AddArgs, out: &mut impl Write) -> Result<(), CliError> {
    let sources = Sources::load(&args.pipeline)?;
    let schedules = open(&args.warehouse).await?;
    let schedule = Schedule {
        name: args.name,
        files: PipelineFile::all_of(&sources),
        triggers: Triggers {
            cron: args.cron,
            on_new_files: args.on_new_files,
        },
        retry: Retry {
            attempts: args.retries,
            backoff_seconds: args.retry_backoff.as_secs(),
        },
        webhook: args.webhook,
        paused: false,
        declared_in: None,
    };
    // A pipeline that does not compile would fail at every firing: say so now.
    let warehouse = schedules.warehouse();
    strata_engine::compile(&sources, warehouse, &strata_engine::Engine::Embedded)
        .await
        .map_err(|error| CliError::pipeline(error, &sources))?;
    schedules.put(&schedule).await?;
    writeln!(
        out,
        "registered {} ({}) in {warehouse}",
        schedule.name,
        schedule.describe_triggers()
    )?;
    if let Some(next) = next_fire(&schedule) {
        writeln!(out, "next cron run: {next}")?;
    }
    writeln!(
        out,
        "a scheduler started with --warehouse {warehouse}, or `strata run --schedule`, runs it"
    )?;
    Ok(())
}

fn next_fire(schedule: &Schedule) -> Option<String> {
    let cron = schedule.cron().ok()??;
    let at: DateTime<Utc> = cron.next_after(Utc::now())?;
    Some(at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

async fn list(args: WarehouseArgs, out: &mut impl Write) -> Result<(), CliError> {
    let schedules = open(&args).await?;
    let all = schedules.list().await?;
    if all.is_empty() {
        writeln!(out, "no schedules in {}", schedules.warehouse())?;
        return Ok(());
    }
    let mut rows = vec![[
        "NAME".to_owned(),
        "TRIGGERS".to_owned(),
        "STATE".to_owned(),
        "LAST RUN".to_owned(),
        "NEXT CRON RUN".to_owned(),
    ]];
    for schedule in &all {
        let state = schedules.state(&schedule.name).await?;
        let status = if schedule.paused {
            "paused"
        } else if state.failing {
            "failing"
        } else {
            "active"
        };
        let last = match state.last() {
            Some(firing) => {
                let outcome = match firing.outcome {
                    Outcome::Running => "running",
                    Outcome::Succeeded => "succeeded",
                    Outcome::Failed => "failed",
                };
                format!("{} {outcome} (attempt {})", firing.run_id, firing.attempt)
            }
            None => "-".to_owned(),
        };
        let next = if schedule.paused {
            "-".to_owned()
        } else {
            next_fire(schedule).unwrap_or_else(|| "-".to_owned())
        };
        rows.push([
            schedule.name.clone(),
            schedule.describe_triggers(),
            status.to_owned(),
            last,
            next,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// `strata run --schedule`: applies `file`, then runs the warehouse's schedules on
/// `engine` until a signal, letting the runs under way end.
pub(crate) async fn orchestrate(
    warehouse: strata_storage::Warehouse,
    engine: strata_engine::Engine,
    file: Option<&std::path::Path>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    crate::warehouse::refuse_unshared(&warehouse)?;
    let schedules = Schedules::new(warehouse.clone());
    if let Some(file) = file {
        let applied = declared::apply(file, &schedules).await?;
        writeln!(
            out,
            "{}: registered {}; removed {}",
            file.display(),
            names(&applied.registered),
            names(&applied.removed)
        )?;
    }
    let count = schedules.list().await?.len();
    writeln!(
        out,
        "running the schedules of {warehouse} ({count} now; added ones are picked up); \
         Ctrl-C stops"
    )?;
    out.flush()?;
    strata_orchestrate::Orchestrator::new(warehouse, engine)
        .run(crate::serve::shutdown_signal())
        .await;
    writeln!(out, "stopped")?;
    Ok(())
}
