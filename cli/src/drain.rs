//! `strata drain`: stop an executor's new tasks and wait until no running job needs
//! it, so it can stop without forcing stages to run again (a Kubernetes preStop hook).

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;
use strata_proto::pipeline::DrainExecutorRequest;

use crate::credentials::CredentialsArgs;
use crate::error::CliError;

/// Arguments of `strata drain`.
#[derive(Args)]
pub(crate) struct DrainArgs {
    /// The scheduler, `host:port`.
    #[arg(long, env = "STRATA_SCHEDULER")]
    pub scheduler: String,
    /// The executor: its advertised host, or host:port.
    #[arg(long, env = "STRATA_EXECUTOR_HOST")]
    pub executor: String,
    /// Give up waiting after this many seconds (keep it under the pod's grace period).
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub timeout: u64,
    #[command(flatten)]
    pub credentials: CredentialsArgs,
}

/// Asks the scheduler to drain the executor and polls until it is drained.
pub(crate) async fn drain(args: DrainArgs, out: &mut impl Write) -> Result<(), CliError> {
    let mut client = args
        .credentials
        .connect(&args.scheduler, "strata drain")
        .await?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut said = String::new();
    loop {
        let reply = client
            .drain_executor(DrainExecutorRequest {
                executor: args.executor.clone(),
            })
            .await
            .map_err(|status| CliError::Cluster(status.message().to_owned()))?
            .into_inner();
        if !reply.found {
            writeln!(
                out,
                "no executor {} is registered; nothing to drain",
                args.executor
            )?;
            return Ok(());
        }
        if reply.drained {
            writeln!(out, "executor {} is drained; it can stop", args.executor)?;
            return Ok(());
        }
        let status = format!(
            "draining executor {}: {} task(s) running{}",
            args.executor,
            reply.running_tasks,
            if reply.holds_shuffle {
                ", shuffle output a running job needs"
            } else {
                ""
            }
        );
        if status != said {
            writeln!(out, "{status}")?;
            out.flush()?;
            said = status;
        }
        if Instant::now() >= deadline {
            return Err(CliError::Cluster(format!(
                "executor {} still busy after {} s; stopping it now may make running jobs \
                 recompute its stages",
                args.executor, args.timeout
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
