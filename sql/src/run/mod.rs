//! Running a pipeline: tables in build order, independent ones concurrently, every
//! outcome in a run report that is also kept in the warehouse's run history.

pub mod cleanup;
pub mod engine;
pub mod publish;
pub mod raw;
pub mod report;

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use datafusion::prelude::SessionContext;
use futures::future::join_all;

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::language::{Diagnostic, Layer, Pipeline, Statement, TableName, did_you_mean};
use crate::plan::PlannedTable;
use crate::storage::raw_table;
use crate::warehouse::Warehouse;

pub use engine::Engine;
pub use report::{RejectedFile, RunReport, TableReport, TableStatus};

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only these tables and what they read (`--select`); all tables when empty.
    pub select: Vec<String>,
    /// Rebuild from all landing files instead of only new ones.
    pub full_refresh: bool,
    /// The run's id, when the caller named it (a scheduler does, at submission).
    pub run_id: Option<String>,
}

/// A fresh run id: the start time and the process, sortable by time.
pub fn new_run_id() -> String {
    let started_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |age| age.as_millis() as u64);
    format!("run-{started_at_ms}-{}", std::process::id())
}

/// Progress, as tables start and finish.
pub enum RunEvent<'a> {
    Started(&'a TableName),
    /// Rows read so far by a table still building; sent after every batch or file.
    Progress {
        table: &'a TableName,
        rows_read: u64,
    },
    Finished(&'a TableReport),
}

/// Builds the selected tables of a planned pipeline and saves the run report.
#[allow(clippy::too_many_arguments)]
pub async fn run_pipeline(
    pipeline: &Pipeline,
    graph: &Graph,
    planned: &[PlannedTable],
    warehouse: &Warehouse,
    ctx: &SessionContext,
    engine: &Engine,
    options: &RunOptions,
    on_event: &(dyn Fn(RunEvent<'_>) + Sync),
) -> Result<RunReport> {
    let selected = select(pipeline, graph, &options.select)?;
    let started_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |age| age.as_millis() as u64);
    let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
    let clock = Instant::now();

    let mut reports: Vec<Option<TableReport>> = vec![None; pipeline.statements.len()];
    loop {
        let ready: Vec<usize> = selected
            .iter()
            .copied()
            .filter(|&node| reports[node].is_none())
            .filter(|&node| graph.upstream(node).iter().all(|up| reports[*up].is_some()))
            .collect();
        if ready.is_empty() {
            break;
        }
        let builds = ready.iter().map(|&node| {
            let upstream_failure = graph.upstream(node).iter().find_map(|&up| {
                reports[up]
                    .as_ref()
                    .filter(|report| {
                        matches!(report.status, TableStatus::Failed | TableStatus::Skipped)
                    })
                    .map(|report| report.table.clone())
            });
            let schema = planned
                .iter()
                .find(|table| table.node == node)
                .map(|table| &table.schema);
            build_table(
                pipeline,
                graph,
                node,
                schema,
                warehouse,
                ctx,
                engine,
                &run_id,
                options,
                upstream_failure,
                on_event,
            )
        });
        for (node, report) in ready.iter().zip(join_all(builds).await) {
            reports[*node] = Some(report);
        }
    }

    let report = RunReport {
        run_id,
        started_at_ms,
        duration_ms: clock.elapsed().as_millis() as u64,
        tables: graph
            .order()
            .into_iter()
            .filter_map(|node| reports[node].take())
            .collect(),
    };
    report.save(warehouse)?;
    Ok(report)
}

/// The selected nodes and their upstreams; unknown names are errors with suggestions.
fn select(pipeline: &Pipeline, graph: &Graph, names: &[String]) -> Result<BTreeSet<usize>> {
    if names.is_empty() {
        return Ok((0..pipeline.statements.len()).collect());
    }
    let all: Vec<String> = pipeline
        .statements
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    let mut nodes = Vec::new();
    let mut problems = Vec::new();
    for name in names {
        match all
            .iter()
            .position(|known| known.eq_ignore_ascii_case(name.trim()))
        {
            Some(node) => nodes.push(node),
            None => {
                let hint = did_you_mean(name, all.iter().map(String::as_str))
                    .map(|candidate| format!(" — did you mean {candidate}?"))
                    .unwrap_or_default();
                problems.push(Diagnostic::error(
                    format!("--select: unknown table {name}{hint}"),
                    None,
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(graph.with_upstreams(&nodes))
    } else {
        Err(Error::Invalid(problems))
    }
}

#[allow(clippy::too_many_arguments)]
async fn build_table(
    pipeline: &Pipeline,
    graph: &Graph,
    node: usize,
    planned_schema: Option<&datafusion::arrow::datatypes::SchemaRef>,
    warehouse: &Warehouse,
    ctx: &SessionContext,
    engine: &Engine,
    run_id: &str,
    options: &RunOptions,
    upstream_failure: Option<String>,
    on_event: &(dyn Fn(RunEvent<'_>) + Sync),
) -> TableReport {
    let statement = &pipeline.statements[node];
    let name = statement.name();
    let layer = name.layer.to_string();
    if let Statement::Source(_) = statement {
        return TableReport::new(name.to_string(), layer, TableStatus::Source);
    }
    if let Some(failed) = upstream_failure {
        let mut report = TableReport::new(name.to_string(), layer, TableStatus::Skipped);
        report.error = Some(format!("not built because {failed} failed"));
        on_event(RunEvent::Finished(&report));
        return report;
    }
    on_event(RunEvent::Started(name));
    let clock = Instant::now();
    let on_rows = |rows_read| {
        on_event(RunEvent::Progress {
            table: name,
            rows_read,
        })
    };
    let outcome = match statement {
        Statement::Table(table) if name.layer == Layer::Raw => {
            let source =
                graph
                    .upstream(node)
                    .iter()
                    .find_map(|&up| match &pipeline.statements[up] {
                        Statement::Source(source) => Some(source),
                        Statement::Table(_) => None,
                    });
            match (source, planned_schema) {
                (Some(source), Some(schema)) => {
                    let built = raw::build(
                        table,
                        source,
                        warehouse,
                        ctx,
                        engine,
                        run_id,
                        options.full_refresh,
                        &on_rows,
                    )
                    .await;
                    // Downstream tables read exactly the committed files.
                    let registered = raw_table::register(
                        ctx,
                        &name.to_string(),
                        &warehouse.table_path(name),
                        schema,
                    )
                    .await
                    .map_err(|error| format!("registering {name}: {error}"));
                    built.and_then(|report| registered.map(|()| report))
                }
                _ => Err(format!("raw table {name} must read a landing table")),
            }
        }
        Statement::Table(table) => {
            publish::build(
                table,
                warehouse,
                ctx,
                engine,
                run_id,
                options.full_refresh,
                &on_rows,
            )
            .await
        }
        Statement::Source(_) => Err(format!("{name} is a landing source")),
    };
    let mut report = outcome.unwrap_or_else(|error| {
        let mut report = TableReport::new(name.to_string(), layer, TableStatus::Failed);
        report.error = Some(error);
        report
    });
    report.duration_ms = clock.elapsed().as_millis() as u64;
    on_event(RunEvent::Finished(&report));
    report
}
