//! `strata`: the command line for Strata pipelines and ad-hoc queries.

mod check;
mod demo;
mod error;
mod generate;
mod query;
mod run;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::check::CheckArgs;
use crate::demo::DemoArgs;
use crate::error::CliError;
use crate::generate::GenArgs;
use crate::query::QueryArgs;
use crate::run::RunArgs;
use crate::serve::ServeArgs;

/// Warnings and errors only; delta-kernel logs "No files in log segment" at ERROR
/// whenever a Delta table's first version is written, which is a normal event here.
const DEFAULT_LOG_FILTER: &str = "warn,buoyant_kernel::snapshot::builder=off";

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
    /// Generate data, run the recruitment example and show the best candidates.
    Demo(DemoArgs),
    /// Serve a warehouse's published tables over Arrow Flight SQL (read-only).
    Serve(ServeArgs),
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
            Command::Gen(args) => generate::run(args, &mut std::io::stdout().lock()),
            Command::Run(args) => run::run(args, &mut std::io::stdout().lock()).await,
            Command::Demo(args) => demo::run(args, &mut std::io::stdout().lock()).await,
            Command::Serve(args) => serve::run(args, &mut std::io::stdout()).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ CliError::Invalid { .. }) => {
            eprint!("{error}\n");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::FAILURE
        }
    }
}
