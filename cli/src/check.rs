//! `strata check`: parse, resolve and plan a pipeline without running it.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use strata_engine::{Compiled, Engine, compile, stream};
use strata_language::{Pipeline, PolicyKind, Sources, Statement, TableDef, TableName, WriteMode};

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

/// What readers see of a table through its policies, as `check` lists it.
fn policies(pipeline: &Pipeline, table: &TableName) -> String {
    let mut masked = Vec::new();
    let mut filters = Vec::new();
    for policy in pipeline.policies.iter().filter(|p| &p.table == table) {
        match &policy.kind {
            PolicyKind::Mask { column } => masked.push(column.as_str()),
            PolicyKind::RowFilter => filters.push(policy.name.as_str()),
        }
    }
    let mut said = String::new();
    if !masked.is_empty() {
        said.push_str(&format!("; masks {}", masked.join(", ")));
    }
    if !filters.is_empty() {
        said.push_str(&format!("; row filters {}", filters.join(", ")));
    }
    said
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
                        sequence_by,
                        delete_when,
                    } => {
                        let by = sequence_by
                            .as_ref()
                            .map(|sequence_by| format!(" by {sequence_by}"))
                            .unwrap_or_default();
                        let deleting = delete_when
                            .as_ref()
                            .map(|condition| format!(", deleting keys when {condition}"))
                            .unwrap_or_default();
                        format!("merge on ({}){by}{deleting}", key.join(", "))
                    }
                    WriteMode::Scd2 { key, sequence_by } => {
                        format!("scd2 on ({}) by {sequence_by}", key.join(", "))
                    }
                };
                let stream = table.stream().and_then(|read| read.table_name());
                let what = match table.stream() {
                    Some(read) if read.changes => "the changes of",
                    _ => "the new rows of",
                };
                let reads: Vec<String> = graph
                    .upstream(node)
                    .iter()
                    .map(|&up| {
                        let name = pipeline.statements[up].name();
                        if stream.as_ref() == Some(name) {
                            format!("{what} {name}")
                        } else {
                            name.to_string()
                        }
                    })
                    .collect();
                let refresh = match (&stream, &table.mode) {
                    (Some(_), _) => " (incremental: each build reads only the rows its stream added since the last one, the other tables whole)".to_owned(),
                    (
                        None,
                        WriteMode::Merge {
                            sequence_by: None, ..
                        },
                    ) => " (rebuilt whole: MERGE KEY without SEQUENCE BY cannot order a key's rows across builds)".to_owned(),
                    (None, WriteMode::Replace | WriteMode::Merge { .. }) => {
                        format!(" ({})", refresh_strategy(&compiled, node, table).await?)
                    }
                    (None, _) => String::new(),
                };
                format!(
                    "{}, {mode}, {} expectation(s), reads {}{refresh}{}",
                    table.format.to_string().to_lowercase(),
                    table.expectations.len(),
                    reads.join(", "),
                    policies(pipeline, &table.name)
                )
            }
        };
        writeln!(out, "  {:<32} {detail}", statement.name().to_string())?;
    }
    Ok(())
}

/// How a table that reads no STREAM is refreshed, from its plan and its pipeline inputs.
async fn refresh_strategy(
    compiled: &Compiled,
    node: usize,
    table: &TableDef,
) -> Result<String, CliError> {
    let query = DFStatement::Statement(Box::new(SqlStatement::Query(table.query.clone())));
    let plan = compiled
        .ctx
        .state()
        .statement_to_plan(query)
        .await
        .map_err(|error| CliError::Engine(error.into()))?;
    let mut inputs = Vec::new();
    for &up in compiled.graph.upstream(node) {
        match &compiled.pipeline.statements[up] {
            Statement::Table(read) => inputs.push(read.name.clone()),
            Statement::Source(source) => {
                return Ok(format!(
                    "rebuilt whole: it reads the landing source {}",
                    source.name
                ));
            }
        }
    }
    let regroupable = table.mode == WriteMode::Replace && table.expectations.is_empty();
    Ok(stream::refresh_strategy(&plan, &inputs, regroupable))
}
