//! `strata forget`: erase one person from a warehouse, following the pipeline's column
//! lineage from the subject's landing column to every table computed from its rows.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use strata_engine::{Engine, compile};
use strata_erasure::forget::{Action, ErasureReport};
use strata_erasure::{ErasurePlan, Options, Subject};
use strata_language::Sources;

use crate::error::CliError;

/// Arguments of `strata forget`.
#[derive(Args)]
pub(crate) struct ForgetArgs {
    /// Pipeline files, or directories of `.sql` files: the pipeline that built the warehouse.
    #[arg(required = true, value_name = "PIPELINE")]
    pipeline: Vec<PathBuf>,
    /// The warehouse to erase the subject from.
    #[arg(long, env = "STRATA_WAREHOUSE", value_name = "PATH_OR_URL")]
    warehouse: String,
    /// Whose rows: a landing column and its value (`candidate_id=C000123`).
    #[arg(long, value_name = "COLUMN=VALUE")]
    subject: String,
    /// Also remove at once the files older table versions read (time travel to before
    /// the erasure ends), instead of leaving them for the tables' retention.
    #[arg(long)]
    vacuum: bool,
    /// Print what would be erased and recomputed, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the erasure's report as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: ForgetArgs, out: &mut impl Write) -> Result<(), CliError> {
    let subject: Subject = args
        .subject
        .parse()
        .map_err(|error: strata_erasure::ErasureError| CliError::Arguments(error.to_string()))?;
    let sources = Sources::load(&args.pipeline)?;
    let warehouse = crate::warehouse::open(&args.warehouse).await?;
    let engine = Engine::Embedded;
    let compiled = compile(&sources, &warehouse, &engine)
        .await
        .map_err(|error| CliError::pipeline(error, &sources))?;
    let lineage = strata_lineage::pipeline(&compiled)?;
    let plan = ErasurePlan::new(&compiled, &lineage, subject)?;
    if args.dry_run {
        describe_plan(&plan, out)?;
        return Ok(());
    }
    let options = Options {
        vacuum: args.vacuum,
    };
    let report = strata_erasure::forget(&compiled, &warehouse, &engine, &plan, options).await?;
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        )?;
    } else {
        describe_report(&report, &warehouse, out)?;
    }
    if report.complete {
        Ok(())
    } else {
        Err(CliError::Erasure(
            "some tables still hold what they computed from the subject's rows (see the report)"
                .to_owned(),
        ))
    }
}

fn describe_plan(plan: &ErasurePlan, out: &mut impl Write) -> std::io::Result<()> {
    let subject = &plan.subject;
    writeln!(out, "would erase {}={}:", subject.column, subject.value)?;
    for holding in &plan.holding {
        writeln!(
            out,
            "  {}: rows whose {} holds it",
            holding.table,
            holding.columns.join(" or ")
        )?;
    }
    for table in &plan.recomputed {
        writeln!(out, "  {table}: recomputed without them")?;
    }
    for (table, why) in &plan.kept {
        writeln!(out, "  {table}: NOT recomputed ({why})")?;
    }
    let landing: Vec<String> = plan.landing.iter().map(ToString::to_string).collect();
    writeln!(
        out,
        "  landing files of {} are left as delivered; later ingests drop the subject",
        landing.join(", ")
    )
}

fn describe_report(
    report: &ErasureReport,
    warehouse: &strata_storage::Warehouse,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let subject = &report.subject;
    writeln!(
        out,
        "erased {}={} ({}): {} row(s) removed in {} ms",
        subject.column,
        subject.value,
        report.erasure,
        report.rows_removed(),
        report.duration_ms
    )?;
    for table in &report.tables {
        let what = match table.action {
            Action::Rewritten => format!(
                "{} row(s) and {} rejected row(s) removed, {} file(s) rewritten",
                table.rows_removed, table.rejects_removed, table.files_rewritten
            ),
            Action::Deleted => format!("{} row(s) deleted", table.rows_removed),
            Action::Recomputed => "recomputed".to_owned(),
            Action::Kept => "kept".to_owned(),
        };
        let note = table
            .note
            .as_ref()
            .map(|note| format!(" — {note}"))
            .unwrap_or_default();
        writeln!(out, "  {:<40} {what}{note}", table.table)?;
    }
    if report.vacuumed {
        writeln!(
            out,
            "  older versions: {} file(s) removed",
            report.files_removed
        )?;
    } else {
        writeln!(
            out,
            "  older versions keep the subject until each table's retention passes (--vacuum removes them now)"
        )?;
    }
    writeln!(
        out,
        "  landing files of {} are left as delivered; every later ingest drops the subject",
        report.landing.join(", ")
    )?;
    writeln!(
        out,
        "report: {}",
        warehouse.display_path(&warehouse.erasure_report(&report.erasure))
    )
}
