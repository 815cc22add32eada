//! `strata run`: build a pipeline's tables on an embedded engine.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use strata_engine::run::{
    Backfill, RunEvent, RunOptions, RunReport, TableReport, TableStatus, run_pipeline,
};
use strata_engine::{Engine, compile, scheduler_client};
use strata_language::Sources;

use crate::credentials::CredentialsArgs;
use crate::error::CliError;

/// What to build, for `strata run` and `strata submit` alike.
#[derive(Args)]
pub(crate) struct BuildArgs {
    /// Warehouse root, a directory or a store URL (`s3://bucket/prefix`, `gs://…`,
    /// `az://…`, `abfss://…`, `memory://`): landing data is read from it and tables are
    /// written under it. Stores take their endpoint and credentials from the standard
    /// AWS_*, AZURE_* and GOOGLE_* environment variables.
    #[arg(long, env = "STRATA_WAREHOUSE", value_name = "PATH_OR_URL")]
    pub warehouse: String,
    /// Build only these tables (comma-separated) and the tables they read.
    #[arg(long, value_delimiter = ',', value_name = "TABLES")]
    pub select: Vec<String>,
    /// Rebuild from every landing file instead of only new ones.
    #[arg(long)]
    pub full_refresh: bool,
    /// Fail (exit non-zero) if any landing row or file is rejected, for CI of pipelines.
    #[arg(long)]
    pub strict: bool,
    /// Run micro-batches until stopped (Ctrl-C or SIGTERM finishes the current batch):
    /// each ingests the landing files that arrived and rebuilds what they change.
    #[arg(long, conflicts_with = "full_refresh")]
    pub continuous: bool,
    /// Time between the starts of two batches (`10s`, `1m`); a batch that takes longer
    /// is followed at once, as Spark's processing-time trigger does.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, requires = "continuous")]
    pub interval: Duration,
    /// How long raw tables keep the files a compaction replaced (for reads begun
    /// before it) and the warehouse keeps run reports beyond the newest 1,000; Delta
    /// tables keep theirs for their `delta.deletedFileRetentionDuration`.
    #[arg(long, default_value = "7days", value_parser = humantime::parse_duration, requires = "continuous")]
    pub retention: Duration,
}

/// Arguments of `strata run`.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// Pipeline files, or directories of `.sql` files.
    #[arg(required_unless_present = "schedule", value_name = "PIPELINE")]
    pub pipeline: Vec<PathBuf>,
    #[command(flatten)]
    pub build: BuildArgs,
    /// Run the warehouse's schedules (see `strata schedule`) until stopped, instead of
    /// one run: Ctrl-C or SIGTERM lets the runs under way end.
    #[arg(long, conflicts_with_all = ["pipeline", "continuous", "full_refresh", "select", "strict"])]
    pub schedule: bool,
    /// A TOML file of schedules to register first (see docs/schedules.md).
    #[arg(
        long,
        env = "STRATA_SCHEDULES",
        requires = "schedule",
        value_name = "FILE"
    )]
    pub schedules: Option<PathBuf>,
    /// Run the work on this Strata scheduler's executors (`host:port`); orchestration stays here.
    #[arg(long, env = "STRATA_SCHEDULER", value_name = "URL")]
    pub scheduler: Option<String>,
    #[command(flatten)]
    pub credentials: CredentialsArgs,
    /// Rebuild only the partitions of --from..--to (inclusive) of the tables partitioned
    /// by a date column (replace-mode Delta tables), one commit each; every other table
    /// is read as it stands: nothing is ingested and nothing else rebuilt.
    #[arg(
        long,
        requires_all = ["from", "to"],
        conflicts_with_all = ["continuous", "full_refresh", "schedule"]
    )]
    pub backfill: bool,
    /// The first day a backfill rebuilds (`2026-11-01`).
    #[arg(long, requires = "backfill", value_name = "DATE", value_parser = iso_date)]
    pub from: Option<String>,
    /// The last day a backfill rebuilds, included.
    #[arg(long, requires = "backfill", value_name = "DATE", value_parser = iso_date)]
    pub to: Option<String>,
    /// Send an OpenLineage run event for each table built or failed, with its column
    /// lineage: a file (lines of JSON, appended) or an http(s) URL each event is POSTed to.
    #[arg(
        long,
        env = "STRATA_OPENLINEAGE",
        conflicts_with_all = ["continuous", "schedule"],
        value_name = "FILE_OR_URL"
    )]
    pub openlineage: Option<String>,
}

/// A day as `YYYY-MM-DD`, checked to be one.
fn iso_date(text: &str) -> Result<String, String> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|day| day.format("%Y-%m-%d").to_string())
        .map_err(|error| format!("{text:?} is not a date as YYYY-MM-DD: {error}"))
}

/// Checks, plans and runs the pipeline, then prints the summary; fails if any table failed.
pub(crate) async fn run(args: RunArgs, out: &mut impl Write) -> Result<(), CliError> {
    let warehouse = crate::warehouse::open(&args.build.warehouse).await?;
    let backfill = match (&args.from, &args.to) {
        (Some(from), Some(to)) if args.backfill => {
            if from > to {
                return Err(CliError::Arguments(format!(
                    "--from {from} is after --to {to}: a backfill's range runs forwards"
                )));
            }
            Some(Backfill {
                from: from.clone(),
                to: to.clone(),
            })
        }
        _ => None,
    };
    let options = RunOptions {
        select: args.build.select.clone(),
        full_refresh: args.build.full_refresh,
        run_id: None,
        backfill,
        skip_ingest: false,
    };
    let engine = match &args.scheduler {
        Some(url) => {
            crate::warehouse::refuse_unshared(&warehouse)?;
            let credentials = args.credentials.credentials()?;
            scheduler_client::connect(url, "client", "strata run", &credentials).await?;
            Engine::cluster(url, &credentials)
        }
        None => Engine::Embedded,
    };
    if args.schedule {
        return crate::schedule::orchestrate(warehouse, engine, args.schedules.as_deref(), out)
            .await;
    }
    let sources = Sources::load(&args.pipeline)?;
    if args.build.continuous {
        let batch = || async {
            let report = async {
                let compiled = compile(&sources, &warehouse, &engine).await?;
                run_pipeline(&compiled, &warehouse, &engine, &options, &|_| {}).await
            };
            report
                .await
                .map_err(|error| CliError::pipeline(error, &sources))
        };
        return crate::continuous::run(&args.build, &warehouse, out, batch).await;
    }
    let progress = Progress::default();
    let compiled = compile(&sources, &warehouse, &engine)
        .await
        .map_err(|error| CliError::pipeline(error, &sources))?;
    let report = run_pipeline(&compiled, &warehouse, &engine, &options, &|event| {
        progress.event(event)
    })
    .await
    .map_err(|error| CliError::pipeline(error, &sources))?;

    print_summary(&report, out)?;
    writeln!(out, "report: {}", report.history_path(&warehouse))?;
    if let Some(target) = &args.openlineage {
        crate::lineage::send_run_events(&compiled, &report, &warehouse, target).await;
    }
    outcome(&report, args.build.strict)
}

/// Success, or the failed and skipped tables with why (and, when `strict`, every
/// table that rejected landing data).
pub(crate) fn outcome(report: &RunReport, strict: bool) -> Result<(), CliError> {
    let mut failures = report.failures();
    if strict {
        failures.extend(report.rejections());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::RunFailed(failures.join("\n  ")))
    }
}

/// Prints table starts and ends, and every few seconds how far a long build has read.
#[derive(Default)]
pub(crate) struct Progress {
    last_said: Mutex<HashMap<String, Instant>>,
}

/// How often a building table reports its rows read.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    fn event(&self, event: RunEvent<'_>) {
        match event {
            RunEvent::Started(table) => self.started(&table.to_string()),
            RunEvent::Progress { table, rows_read } => self.progress(&table.to_string(), rows_read),
            RunEvent::Finished(report) => self.finished(report),
        }
    }

    pub(crate) fn started(&self, table: &str) {
        let mut last_said = self.last_said.lock().unwrap_or_else(|e| e.into_inner());
        last_said.insert(table.to_owned(), Instant::now());
        eprintln!("  building {table} …");
    }

    pub(crate) fn progress(&self, table: &str, rows_read: u64) {
        let mut last_said = self.last_said.lock().unwrap_or_else(|e| e.into_inner());
        let due = last_said
            .get(table)
            .is_none_or(|said| said.elapsed() >= PROGRESS_EVERY);
        if due {
            last_said.insert(table.to_owned(), Instant::now());
            eprintln!("  … {table}: {rows_read} rows read");
        }
    }

    pub(crate) fn finished(&self, report: &TableReport) {
        eprintln!(
            "  {} {} ({}, {} rows written in {:.1}s)",
            match report.status {
                TableStatus::Built | TableStatus::UpToDate | TableStatus::Source => "done",
                TableStatus::Failed => "FAILED",
                TableStatus::Skipped => "skipped",
            },
            report.table,
            format!("{:?}", report.status).to_lowercase(),
            report.rows_written,
            report.duration_ms as f64 / 1000.0
        );
    }
}

pub(crate) fn print_summary(report: &RunReport, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<28} {:<9} {:<10} {:>10} {:>10} {:>8} {:>11} {:>8} {:>6} {:>12} {:>8}",
        "table",
        "layer",
        "status",
        "read",
        "written",
        "dropped",
        "quarantined",
        "rejected",
        "files",
        "bytes",
        "seconds"
    )?;
    for table in &report.tables {
        writeln!(
            out,
            "{:<28} {:<9} {:<10} {:>10} {:>10} {:>8} {:>11} {:>8} {:>6} {:>12} {:>8.2}",
            table.table,
            table.layer,
            format!("{:?}", table.status).to_lowercase(),
            table.rows_read,
            table.rows_written,
            table.rows_dropped,
            table.rows_quarantined,
            table.rows_rejected,
            table.files,
            table.bytes,
            table.duration_ms as f64 / 1000.0
        )?;
        if !table.landing_files.is_empty() {
            writeln!(
                out,
                "    landing files: {} ingested, {} partly rejected, {} rejected whole",
                table.files_ingested, table.files_partly_rejected, table.files_rejected
            )?;
        }
        if table.rows_rejected > 0 {
            writeln!(
                out,
                "    {} bad row(s) set aside in {} (strata rejects {} shows them)",
                table.rows_rejected,
                format_args!("{}__rejects", table.table),
                table.table
            )?;
        }
        for rejected in &table.rejected_files {
            writeln!(out, "    rejected {}: {}", rejected.path, rejected.reason)?;
        }
        if let Some(strategy) = &table.strategy {
            writeln!(out, "    {strategy}")?;
        } else if let Some(stream) = &table.stream {
            match stream.from {
                Some(from) => writeln!(
                    out,
                    "    incremental: read what {} added from position {from} to {}",
                    stream.table, stream.to
                )?,
                None => writeln!(
                    out,
                    "    read all of {} (to position {}): a first build, a full refresh, a new definition, or a stream rewritten since",
                    stream.table, stream.to
                )?,
            }
        }
        if table.files_raced > 0 {
            writeln!(
                out,
                "    {} landing file(s) were ingested by a concurrent run first; this run dropped its copy",
                table.files_raced
            )?;
        }
        if let Some(error) = &table.error {
            writeln!(out, "    error: {error}")?;
        }
    }
    writeln!(
        out,
        "run {} took {:.1}s",
        report.run_id,
        report.duration_ms as f64 / 1000.0
    )
}
