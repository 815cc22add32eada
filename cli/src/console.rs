//! `strata console`: the web console for a warehouse, on this machine.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use strata_console::{ConsoleOptions, Pipeline};
use strata_language::Sources;
use strata_orchestrate::Schedules;

use crate::error::CliError;
use crate::serve::{LoginArgs, shutdown_signal};

/// Arguments of `strata console`.
#[derive(Args)]
pub(crate) struct ConsoleArgs {
    /// The warehouse to show, a directory or a store URL.
    #[arg(long, env = "STRATA_WAREHOUSE", value_name = "PATH_OR_URL")]
    warehouse: String,
    /// A pipeline (files, or a directory of `.sql` files) to draw and work out lineage
    /// for; may be given again [default: the pipelines of the warehouse's schedules].
    #[arg(long = "pipeline", value_name = "PIPELINE")]
    pipelines: Vec<PathBuf>,
    /// Where to serve the console.
    #[arg(long, default_value = "127.0.0.1:8088", env = "STRATA_CONSOLE_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    login: LoginArgs,
}

/// The pipelines a console shows: those given, or those the warehouse's schedules run.
pub(crate) async fn pipelines(
    given: &[PathBuf],
    schedules: &Schedules,
) -> Result<Vec<Pipeline>, CliError> {
    if given.is_empty() {
        return Ok(schedules
            .list()
            .await?
            .into_iter()
            .map(|schedule| Pipeline {
                sources: schedule.sources(),
                name: schedule.name,
            })
            .collect());
    }
    given
        .iter()
        .map(|path| {
            Ok(Pipeline {
                name: path.file_name().map_or_else(
                    || path.display().to_string(),
                    |name| name.to_string_lossy().into_owned(),
                ),
                sources: Sources::load(std::slice::from_ref(path))?,
            })
        })
        .collect()
}

pub(crate) async fn run(args: ConsoleArgs, out: &mut impl Write) -> Result<(), CliError> {
    let warehouse = crate::warehouse::open(&args.warehouse).await?;
    if let Some(dir) = warehouse.local_dir()
        && !dir.is_dir()
    {
        return Err(strata_storage::StorageError::InvalidLocation {
            location: dir.display().to_string(),
            reason: "no such directory; the console shows a warehouse a run has written".to_owned(),
        }
        .into());
    }
    let config = args.login.config()?;
    let options = ConsoleOptions {
        pipelines: pipelines(&args.pipelines, &Schedules::new(warehouse.clone())).await?,
        warehouse: warehouse.clone(),
        users: config.users,
        insecure: args.login.insecure,
        cluster: None,
        live: None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|error| CliError::Cluster(format!("cannot listen on {}: {error}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|error| CliError::Cluster(error.to_string()))?;
    strata_console::check_open(address, &options)?;
    writeln!(
        out,
        "serving the console of {warehouse} on http://{address}/ ({}; {} pipeline(s))",
        match options.users.len() {
            0 => "no login".to_owned(),
            n => format!("{n} user(s)"),
        },
        options.pipelines.len()
    )?;
    out.flush()?;
    strata_console::serve(listener, options, shutdown_signal()).await?;
    writeln!(out, "stopped")?;
    Ok(())
}
