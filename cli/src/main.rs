//! `strata`: the command line for Strata pipelines and ad-hoc queries.

mod autoscale;
mod check;
mod cluster;
mod console;
mod continuous;
mod credentials;
mod demo;
mod drain;
mod error;
mod forget;
mod generate;
mod hash_password;
mod lineage;
mod query;
mod rejects;
mod run;
mod schedule;
mod serve;
mod submit;
mod tidy;
mod warehouse;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::check::CheckArgs;
use crate::cluster::{ClusterArgs, ExecutorArgs, SchedulerArgs};
use crate::console::ConsoleArgs;
use crate::demo::DemoArgs;
use crate::drain::DrainArgs;
use crate::error::CliError;
use crate::forget::ForgetArgs;
use crate::generate::GenArgs;
use crate::lineage::LineageArgs;
use crate::query::QueryArgs;
use crate::rejects::RejectsArgs;
use crate::run::RunArgs;
use crate::schedule::ScheduleArgs;
use crate::serve::ServeArgs;
use crate::submit::{CancelArgs, RunsArgs, SubmitArgs};
use crate::tidy::TidyArgs;

/// Warnings and errors only; delta-kernel logs "No files in log segment" at ERROR
/// whenever a Delta table's first version is written, which is a normal event here.
const DEFAULT_LOG_FILTER: &str = "warn,strata_scheduler=info,strata_autoscale=info,strata_orchestrate=info,buoyant_kernel::snapshot::builder=off";

/// Strata: layered SQL pipelines on DataFusion and Ballista.
#[derive(Parser)]
#[command(name = "strata", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one SQL statement on an embedded engine with every Strata function registered.
    Query(QueryArgs),
    /// Parse, resolve and plan a pipeline without running anything.
    Check(CheckArgs),
    /// Write deterministic synthetic recruitment landing data.
    Gen(GenArgs),
    /// Build a pipeline's tables on this machine.
    Run(RunArgs),
    /// Print the landing rows a raw table rejected, with where they were and why.
    Rejects(RejectsArgs),
    /// Compact small Delta files and remove files no version within retention reads.
    Tidy(TidyArgs),
    /// Generate data, run the recruitment example and show the best candidates.
    Demo(DemoArgs),
    /// Serve a warehouse's published tables over Arrow Flight SQL (read-only).
    Serve(ServeArgs),
    /// Run a Strata scheduler (Ballista's, with Strata's functions and the pipeline service).
    Scheduler(Box<SchedulerArgs>),
    /// Run a Strata executor that joins a scheduler.
    Executor(ExecutorArgs),
    /// Stop giving an executor tasks and wait until no running job needs it.
    Drain(DrainArgs),
    /// Start a scheduler and executors as local processes, for development.
    Cluster(ClusterArgs),
    /// Run a pipeline on a scheduler and follow it; the run goes on if this client stops.
    Submit(SubmitArgs),
    /// List the runs a scheduler knows.
    Runs(RunsArgs),
    /// Stop a run on a scheduler; nothing it had not committed is committed.
    Cancel(CancelArgs),
    /// Register pipelines to run by themselves: on a cron schedule, on new landing files.
    Schedule(ScheduleArgs),
    /// Show which upstream columns each column is computed from, filtered, joined or grouped by.
    Lineage(LineageArgs),
    /// Erase one person from a warehouse: every table computed from their rows, by lineage.
    Forget(ForgetArgs),
    /// Serve the web console of a warehouse: runs, the DAG, tables, lineage.
    Console(ConsoleArgs),
    /// Print the argon2 hash of the password on standard input, for a Flight SQL config file.
    HashPassword,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .init();

    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Query(args) => query::run(args, &mut std::io::stdout().lock()).await,
            Command::Check(args) => check::run(args, &mut std::io::stdout().lock()).await,
            Command::Gen(args) => generate::run(args, &mut std::io::stdout().lock()).await,
            Command::Run(args) => run::run(args, &mut std::io::stdout().lock()).await,
            Command::Rejects(args) => rejects::run(args, &mut std::io::stdout().lock()).await,
            Command::Tidy(args) => tidy::run(args, &mut std::io::stdout().lock()).await,
            Command::Demo(args) => demo::run(args, &mut std::io::stdout().lock()).await,
            Command::Serve(args) => serve::run(args, &mut std::io::stdout()).await,
            Command::Scheduler(args) => cluster::scheduler(*args, &mut std::io::stdout()).await,
            Command::Executor(args) => cluster::executor(args).await,
            Command::Drain(args) => drain::drain(args, &mut std::io::stdout().lock()).await,
            Command::Cluster(args) => cluster::cluster(args, &mut std::io::stdout()).await,
            Command::Submit(args) => submit::submit(args, &mut std::io::stdout().lock()).await,
            Command::Runs(args) => submit::runs(args, &mut std::io::stdout().lock()).await,
            Command::Cancel(args) => submit::cancel(args, &mut std::io::stdout().lock()).await,
            Command::Schedule(args) => schedule::run(args, &mut std::io::stdout().lock()).await,
            Command::Lineage(args) => lineage::run(args, &mut std::io::stdout().lock()).await,
            Command::Forget(args) => forget::run(args, &mut std::io::stdout().lock()).await,
            Command::Console(args) => console::run(args, &mut std::io::stdout()).await,
            Command::HashPassword => {
                hash_password::run(&mut std::io::stdin().lock(), &mut std::io::stdout().lock())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ CliError::Invalid { .. }) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::FAILURE
        }
    }
}
