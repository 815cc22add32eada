//! `strata run --continuous`: micro-batches until stopped. Each batch picks up the
//! landing files that arrived, builds what they affect (tables whose inputs did not
//! change are up to date and skipped), and commits. SIGINT or SIGTERM lets the current
//! batch finish, then exits 0; a failing batch is reported and its files are read again
//! by the next one, since nothing of it was committed.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_engine::compile::compile;
use strata_engine::run::{RunOptions, RunReport, oldest_waiting_ms, run_pipeline};
use strata_engine::{Engine, EngineError};
use strata_language::{Layer, Sources};
use strata_storage::Warehouse;

use crate::error::CliError;
use crate::serve::shutdown_signal;

/// Runs batches every `interval` until a signal; the exit is clean whatever the batches did.
pub async fn run(
    sources: &Sources,
    warehouse: &Warehouse,
    engine: &Engine,
    options: &RunOptions,
    interval: Duration,
    out: &mut impl Write,
) -> Result<(), CliError> {
    writeln!(
        out,
        "running continuously every {}; Ctrl-C or SIGTERM stops after the current batch",
        humantime::format_duration(interval)
    )?;
    out.flush()?;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut stopping = false;
    for batch in 1_u64.. {
        let started = Instant::now();
        let work = one_batch(sources, warehouse, engine, options);
        tokio::pin!(work);
        // A signal during a batch lets it finish: stopping half way would leave nothing
        // wrong (nothing uncommitted is visible), but would waste the batch's work.
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                _ = &mut stop, if !stopping => {
                    stopping = true;
                    writeln!(out, "stopping after batch {batch} …")?;
                    out.flush()?;
                }
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok((report, lag_ms)) => {
                let rows: u64 = report
                    .tables
                    .iter()
                    .filter(|table| table.layer == Layer::Raw.to_string())
                    .map(|table| table.rows_read)
                    .sum();
                let built = report
                    .tables
                    .iter()
                    .filter(|table| table.status == strata_engine::run::TableStatus::Built)
                    .count();
                writeln!(
                    out,
                    "batch {batch}: {rows} landing rows in {seconds:.2}s ({:.0} rows/s), {built} table(s) built, lag {:.1}s, run {}",
                    rows as f64 / seconds.max(1e-3),
                    lag_ms as f64 / 1000.0,
                    report.run_id
                )?;
                for failure in report.failures() {
                    writeln!(out, "  failed {failure}; retried next batch")?;
                }
            }
            Err(error) => {
                writeln!(
                    out,
                    "batch {batch} failed after {seconds:.1}s: {}; retried next batch",
                    CliError::pipeline(error, sources)
                )?;
            }
        }
        out.flush()?;
        if stopping {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut stop => break,
        }
    }
    writeln!(out, "stopped")?;
    Ok(())
}

/// One batch: plans against what has arrived, notes how long the oldest waiting file has
/// waited, and runs.
async fn one_batch(
    sources: &Sources,
    warehouse: &Warehouse,
    engine: &Engine,
    options: &RunOptions,
) -> Result<(RunReport, u64), EngineError> {
    let compiled = compile(sources, warehouse, engine).await?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |age| age.as_millis() as u64);
    let lag_ms = oldest_waiting_ms(&compiled, warehouse)
        .await?
        .map_or(0, |oldest| now_ms.saturating_sub(oldest));
    let report = run_pipeline(&compiled, warehouse, engine, options, &|_| {}).await?;
    Ok((report, lag_ms))
}
