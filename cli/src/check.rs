//! `strata check`: parse, resolve and plan a pipeline without running it.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use strata_engine::{Engine, compile};
use strata_language::{Sources, Statement, WriteMode};

use crate::error::CliError;

/// Arguments of `strata check`.
#[derive(Args)]
pub(crate) struct CheckArgs {
    /// Pipeline files, or directories of `.sql` files.
    #[arg(required = true, value_name = "PIPELINE")]
    pub pipeline: Vec<PathBuf>,
    /// Warehouse root that relative landing locations are resolved against.
    #[arg(long, env = "STRATA_WAREHOUSE", default_value = ".")]
    pub warehouse: String,
}

/// Checks the pipeline and prints its tables in build order.
pub(crate) async fn run(args: CheckArgs, out: &mut impl Write) -> Result<(), CliError> {
    let sources = Sources::load(&args.pipeline)?;
    let warehouse = crate::warehouse::open(&args.warehouse).await?;
    let compiled = compile(&sources, &warehouse, &Engine::Embedded)
        .await
        .map_err(|error| CliError::pipeline(error, &sources))?;
    let (pipeline, graph) = (&compiled.pipeline, &compiled.graph);

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
                    WriteMode::Merge {
                        key,
                        sequence_by: None,
                    } => format!("merge on ({})", key.join(", ")),
                    WriteMode::Merge {
                        key,
                        sequence_by: Some(sequence_by),
                    } => format!("merge on ({}) by {sequence_by}", key.join(", ")),
                    WriteMode::Scd2 { key, sequence_by } => {
                        format!("scd2 on ({}) by {sequence_by}", key.join(", "))
                    }
                };
                let stream = table.stream().and_then(|read| read.table_name());
                let reads: Vec<String> = graph
                    .upstream(node)
                    .iter()
                    .map(|&up| {
                        let name = pipeline.statements[up].name();
                        if stream.as_ref() == Some(name) {
                            format!("the new rows of {name}")
                        } else {
                            name.to_string()
                        }
                    })
                    .collect();
                let incremental = if stream.is_some() {
                    " (incremental: each build reads only the rows its stream added since the last one, the other tables whole)"
                } else {
                    ""
                };
                format!(
                    "{}, {mode}, {} expectation(s), reads {}{incremental}",
                    table.format.to_string().to_lowercase(),
                    table.expectations.len(),
                    reads.join(", ")
                )
            }
        };
        writeln!(out, "  {:<32} {detail}", statement.name().to_string())?;
    }
    Ok(())
}
