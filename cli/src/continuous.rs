//! `strata run --continuous` and `strata submit --continuous`: micro-batches until stopped. Each batch picks up the
//! landing files that arrived, builds what they affect (tables whose inputs did not
//! change are up to date and skipped), and commits. SIGINT or SIGTERM lets the current
//! batch finish, then exits 0; a failing batch is reported and its files are read again
//! by the next one, since nothing of it was committed.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

use strata_engine::run::{RunReport, TableStatus};
use strata_language::{Layer, TableName};
use strata_storage::Warehouse;
use strata_storage::maintenance::Tidied;

use crate::error::CliError;
use crate::run::BuildArgs;
use crate::serve::shutdown_signal;

/// Every this many batches, the run history of the warehouse is pruned and the tables
/// the batches built are tidied.
const MAINTAIN_EVERY: u64 = 100;
/// How many of the newest run reports are kept whatever their age.
const REPORTS_KEPT: usize = 1000;

/// Starts `batch` every `args.interval` (at once after one that took longer) until a
/// signal; the exit is clean whatever the batches did. Now and then it prunes
/// `warehouse`'s run history, so a day of batches (8,640 at 10 s) does not leave a
/// report each for ever, and tidies the tables the batches built, so they do not leave
/// a small file each for ever either; both keep what is younger than `args.retention`.
pub(crate) async fn run<Batch, Outcome>(
    args: &BuildArgs,
    warehouse: &Warehouse,
    out: &mut impl Write,
    mut batch: Batch,
) -> Result<(), CliError>
where
    Batch: FnMut() -> Outcome,
    Outcome: Future<Output = Result<RunReport, CliError>>,
{
    writeln!(
        out,
        "running continuously every {}; Ctrl-C or SIGTERM stops after the current batch",
        humantime::format_duration(args.interval)
    )?;
    out.flush()?;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut stopping = false;
    let mut built = BTreeSet::new();
    for number in 1_u64.. {
        let started = Instant::now();
        let work = batch();
        tokio::pin!(work);
        // A signal during a batch lets it finish: stopping half way would leave nothing
        // wrong (nothing uncommitted is visible), but would waste the batch's work.
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                _ = &mut stop, if !stopping => {
                    stopping = true;
                    writeln!(out, "stopping after batch {number} …")?;
                    out.flush()?;
                }
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok(report) => {
                built.extend(
                    report
                        .tables
                        .iter()
                        .filter(|table| table.status == TableStatus::Built)
                        .filter_map(|table| TableName::parse(&table.table)),
                );
                let rows: u64 = report
                    .tables
                    .iter()
                    .filter(|table| table.layer == Layer::Raw.to_string())
                    .map(|table| table.rows_read)
                    .sum();
                let built = report
                    .tables
                    .iter()
                    .filter(|table| table.status == TableStatus::Built)
                    .count();
                let kafka = report
                    .kafka_lag()
                    .map(|lag| match lag.lag_ms {
                        Some(ms) => format!(
                            ", {} Kafka messages ({:.1}s) behind",
                            lag.messages,
                            ms as f64 / 1000.0
                        ),
                        None => format!(", {} Kafka messages behind", lag.messages),
                    })
                    .unwrap_or_default();
                writeln!(
                    out,
                    "batch {number}: {rows} landing rows in {seconds:.2}s ({:.0} rows/s), {built} table(s) built, lag {:.1}s{kafka}, run {}",
                    rows as f64 / seconds.max(1e-3),
                    report.lag_ms() as f64 / 1000.0,
                    report.run_id
                )?;
                for failure in report.failures() {
                    writeln!(out, "  failed {failure}; retried next batch")?;
                }
            }
            Err(error) => {
                writeln!(
                    out,
                    "batch {number} failed after {seconds:.1}s: {error}; retried next batch"
                )?;
            }
        }
        if number.is_multiple_of(MAINTAIN_EVERY) {
            match RunReport::prune(warehouse, args.retention, REPORTS_KEPT).await {
                Ok(0) => {}
                Ok(removed) => writeln!(
                    out,
                    "pruned {removed} run report(s) older than {}",
                    humantime::format_duration(args.retention)
                )?,
                Err(error) => writeln!(out, "could not prune the run history: {error}")?,
            }
            tidy(warehouse, &std::mem::take(&mut built), args.retention, out).await?;
        }
        out.flush()?;
        if stopping {
            break;
        }
        // Batches start every `interval`: what arrives waits half of it on average, not
        // half of it plus half a batch.
        tokio::select! {
            _ = tokio::time::sleep_until((started + args.interval).into()) => {}
            _ = &mut stop => break,
        }
    }
    writeln!(out, "stopped")?;
    Ok(())
}

/// Compacts and vacuums each table; a table that cannot be tidied is said and skipped,
/// as tidiness must not stop the batches.
async fn tidy(
    warehouse: &Warehouse,
    tables: &BTreeSet<TableName>,
    retention: Duration,
    out: &mut impl Write,
) -> Result<(), CliError> {
    for table in tables {
        match strata_engine::run::tidy(warehouse, table, retention).await {
            Ok(Tidied {
                compacted: 0,
                removed: 0,
            }) => {}
            Ok(tidied) => writeln!(
                out,
                "tidied {table}: {} small file(s) compacted, {} unread file(s) removed",
                tidied.compacted, tidied.removed
            )?,
            Err(error) => writeln!(out, "could not tidy {table}: {error}")?,
        }
    }
    Ok(())
}
