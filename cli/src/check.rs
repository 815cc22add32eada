//! `strata check`: parse, resolve and plan a pipeline without running it.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use datafusion::prelude::SessionContext;
use strata_sql::graph::Graph;
use strata_sql::language::{Sources, Statement, WriteMode, parse};
use strata_sql::plan::plan_pipeline;
use strata_sql::warehouse::Warehouse;

use crate::error::CliError;

/// Arguments of `strata check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Pipeline files, or directories of `.sql` files.
    #[arg(required = true, value_name = "PIPELINE")]
    pub pipeline: Vec<PathBuf>,
    /// Warehouse root that relative landing locations are resolved against.
    #[arg(long, env = "STRATA_WAREHOUSE", default_value = ".")]
    pub warehouse: PathBuf,
}

/// Checks the pipeline and prints its tables in build order.
pub async fn run(args: CheckArgs, out: &mut impl Write) -> Result<(), CliError> {
    let sources = Sources::load(&args.pipeline)?;
    let checked = async {
        let pipeline = parse(&sources)?;
        let graph = Graph::resolve(&pipeline, &sources)?;
        let ctx = SessionContext::new();
        strata_udfs::register_all(&ctx);
        let warehouse = Warehouse::local(&args.warehouse);
        plan_pipeline(&pipeline, &graph, &warehouse, &ctx).await?;
        Ok::<_, strata_sql::Error>((pipeline, graph))
    }
    .await;
    let (pipeline, graph) = checked.map_err(|error| CliError::pipeline(error, &sources))?;

    let files = sources.iter().count();
    writeln!(
        out,
        "ok: {} tables in {files} file(s), in build order:",
        pipeline.statements.len()
    )?;
    for node in graph.order() {
        let statement = &pipeline.statements[node];
        let detail = match statement {
            Statement::Source(source) => format!(
                "{} at {}",
                source.definition.file_type.to_lowercase(),
                source.definition.locations.join(", ")
            ),
            Statement::Table(table) => {
                let mode = match &table.mode {
                    WriteMode::Replace => "replace".to_owned(),
                    WriteMode::Append => "append".to_owned(),
                    WriteMode::Merge { key } => format!("merge on ({})", key.join(", ")),
                    WriteMode::Scd2 { key, sequence_by } => {
                        format!("scd2 on ({}) by {sequence_by}", key.join(", "))
                    }
                };
                let reads: Vec<String> = graph
                    .upstream(node)
                    .iter()
                    .map(|&up| pipeline.statements[up].name().to_string())
                    .collect();
                format!(
                    "{:?}, {mode}, {} expectation(s), reads {}",
                    table.format,
                    table.expectations.len(),
                    reads.join(", ")
                )
                .to_lowercase()
            }
        };
        writeln!(out, "  {:<32} {detail}", statement.name().to_string())?;
    }
    Ok(())
}
