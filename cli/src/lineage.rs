//! `strata lineage`: for every column of a pipeline's tables, the upstream columns it is
//! computed from and those that only filter, join, group, sort or window its rows.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use strata_engine::{Engine, compile};
use strata_language::Sources;
use strata_lineage::{ColumnLineage, Dataset};

use crate::error::CliError;

/// Arguments of `strata lineage`.
#[derive(Args)]
pub(crate) struct LineageArgs {
    /// Pipeline files, or directories of `.sql` files.
    #[arg(required = true, value_name = "PIPELINE")]
    pipeline: Vec<PathBuf>,
    /// The warehouse the pipeline runs on (its landing files give the sources' columns).
    #[arg(long, env = "STRATA_WAREHOUSE", value_name = "PATH_OR_URL")]
    warehouse: String,
    /// Only this table (`ranked.candidates_per_job`) or column (`…candidates_per_job.score`).
    #[arg(long, value_name = "TABLE_OR_COLUMN")]
    of: Option<String>,
    /// Print JSON: `{table: {"columns": {column: {"direct": {source: subtype},
    /// "indirect": {source: [subtype]}}}, "dataset": {source: [subtype]}}}`.
    #[arg(long)]
    json: bool,
    /// Also send the tables' lineage as OpenLineage run events: a file (lines of JSON,
    /// appended) or an http(s) URL each event is POSTed to.
    #[arg(long, value_name = "FILE_OR_URL")]
    openlineage: Option<String>,
}

pub(crate) async fn run(args: LineageArgs, out: &mut impl Write) -> Result<(), CliError> {
    let sources = Sources::load(&args.pipeline)?;
    let warehouse = crate::warehouse::open(&args.warehouse).await?;
    let compiled = compile(&sources, &warehouse, &Engine::Embedded)
        .await
        .map_err(|error| CliError::pipeline(error, &sources))?;
    let mut tables = strata_lineage::pipeline(&compiled)?;
    let mut column = None;
    if let Some(of) = &args.of {
        let (table, wanted) = match tables.iter().find(|table| &table.table == of) {
            Some(_) => (of.clone(), None),
            None => match of.rsplit_once('.') {
                Some((table, name)) => (table.to_owned(), Some(name.to_owned())),
                None => (of.clone(), None),
            },
        };
        tables.retain(|known| known.table == table);
        let Some(found) = tables.first() else {
            return Err(CliError::UnknownTable(format!(
                "{of} is not a table or column the pipeline builds"
            )));
        };
        if let Some(name) = &wanted
            && found.column(name).is_none()
        {
            return Err(CliError::UnknownTable(format!(
                "{table} has no column {name}; it has {}",
                found
                    .columns
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        column = wanted;
    }
    if let Some(target) = &args.openlineage {
        let schemas = strata_lineage::schemas(&compiled);
        let run_id = strata_engine::run::new_run_id();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |age| age.as_millis() as u64);
        let events: Vec<_> = tables
            .iter()
            .map(|table| {
                strata_lineage::openlineage::run_event(
                    &strata_lineage::openlineage::Build {
                        run_id: &run_id,
                        lineage: table,
                        schema: schemas.get(&table.table).cloned().unwrap_or_default(),
                        error: None,
                        ended_at: strata_lineage::openlineage::rfc3339(now),
                    },
                    &warehouse,
                )
            })
            .collect();
        strata_lineage::openlineage::export(&events, target).await?;
        eprintln!("openlineage: {} event(s) sent to {target}", events.len());
    }
    if args.json {
        let all: serde_json::Map<String, serde_json::Value> = tables
            .iter()
            .map(|table| (table.table.clone(), table.to_json()))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&all).unwrap_or_default()
        )?;
        return Ok(());
    }
    for table in &tables {
        writeln!(out, "{}", table.table)?;
        for (name, lineage) in &table.columns {
            if column.as_ref().is_none_or(|wanted| wanted == name) {
                writeln!(out, "  {name}{}", describe_column(lineage))?;
            }
        }
        if !table.dataset.is_empty() {
            writeln!(out, "  (every row){}", describe_dataset(&table.dataset))?;
        }
    }
    Ok(())
}

/// Sends the OpenLineage events of a run's builds; a failure to send is said, and does
/// not fail the run.
pub(crate) async fn send_run_events(
    compiled: &strata_engine::Compiled,
    report: &strata_engine::run::RunReport,
    warehouse: &strata_storage::Warehouse,
    target: &str,
) {
    let sent = async {
        let lineage = strata_lineage::pipeline(compiled)?;
        let schemas = strata_lineage::schemas(compiled);
        let events = strata_lineage::openlineage::run_events(report, &lineage, &schemas, warehouse);
        strata_lineage::openlineage::export(&events, target).await?;
        Ok::<_, strata_lineage::Error>(events.len())
    };
    match sent.await {
        Ok(count) => eprintln!("openlineage: {count} event(s) sent to {target}"),
        Err(error) => eprintln!("openlineage: no events sent: {error}"),
    }
}

fn describe_column(lineage: &ColumnLineage) -> String {
    let mut said = String::new();
    let mut direct: Vec<String> = lineage
        .direct
        .iter()
        .map(|(source, kind)| format!("{source} ({})", kind.name().to_lowercase()))
        .collect();
    if direct.is_empty() {
        direct.push("none".to_owned());
    }
    said.push_str(&format!("\n      from: {}", direct.join(", ")));
    if !lineage.indirect.is_empty() {
        said.push_str(&format!(
            "\n      via:  {}",
            describe_dataset(&lineage.indirect).trim()
        ));
    }
    said
}

fn describe_dataset(dataset: &Dataset) -> String {
    let sources: Vec<String> = dataset
        .iter()
        .map(|(source, kinds)| {
            let kinds: Vec<String> = kinds
                .iter()
                .map(|kind| kind.name().to_lowercase())
                .collect();
            format!("{source} ({})", kinds.join(", "))
        })
        .collect();
    format!(" {}", sources.join(", "))
}
