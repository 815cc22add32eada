//! Running a pipeline: tables in build order, independent ones concurrently, every
//! outcome in a run report that is also kept in the warehouse's run history.

mod deletes;
mod publish;
mod raw;
mod raw_topic;
mod refresh;
mod report;
mod tidy;

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use datafusion::arrow::datatypes::DataType;
use futures::future::join_all;
use strata_access::TablePolicy;
use strata_language::{
    Diagnostic, Format, Graph, LanguageError, Pipeline, Statement, TableDef, TableName, WriteMode,
    did_you_mean,
};
use strata_storage::{Suppressions, Warehouse, delta_publish, raw_table};

use crate::compile::Compiled;
use crate::engine::Engine;
use crate::error::{EngineError, Result};

pub use report::{
    KafkaLag, LandingFileReport, PartitionLag, RejectedFile, ReportState, RunReport, StreamRead,
    TableReport, TableStatus, TopicRead,
};
pub use tidy::tidy;

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only these tables and what they read (`--select`); all tables when empty.
    pub select: Vec<String>,
    /// Rebuild from all landing files instead of only new ones.
    pub full_refresh: bool,
    /// The run's id, when the caller named it (a scheduler does, at submission).
    pub run_id: Option<String>,
    /// Rebuild only a date range of the tables partitioned by a date (`--backfill`).
    pub backfill: Option<Backfill>,
    /// Ingest nothing: every raw table is read as it stands, and the Delta tables are
    /// brought up to date with it (after an erasure rewrote the raw zone, say).
    pub skip_ingest: bool,
}

/// A date range to rebuild: the partitions from `from` to `to` (ISO dates, inclusive) of
/// every replace-mode Delta table partitioned by one date column, one commit each. Every
/// other table is read as it stands: nothing is ingested, nothing else rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    pub from: String,
    pub to: String,
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

/// What every table build of one run shares.
struct Build<'a> {
    compiled: &'a Compiled,
    warehouse: &'a Warehouse,
    engine: &'a Engine,
    run_id: &'a str,
    full_refresh: bool,
    backfill: Option<&'a Backfill>,
    skip_ingest: bool,
    /// The subjects erased from the warehouse, whose rows ingest drops.
    suppressions: Suppressions,
    on_event: &'a (dyn Fn(RunEvent<'_>) + Sync),
}

/// Builds the selected tables of a compiled pipeline and saves the run report.
pub async fn run_pipeline(
    compiled: &Compiled,
    warehouse: &Warehouse,
    engine: &Engine,
    options: &RunOptions,
    on_event: &(dyn Fn(RunEvent<'_>) + Sync),
) -> Result<RunReport> {
    let (pipeline, graph) = (&compiled.pipeline, &compiled.graph);
    let selected = select(pipeline, graph, &options.select)?;
    let started_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |age| age.as_millis() as u64);
    let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
    let clock = Instant::now();
    let build = Build {
        compiled,
        warehouse,
        engine,
        run_id: &run_id,
        full_refresh: options.full_refresh,
        backfill: options.backfill.as_ref(),
        skip_ingest: options.skip_ingest,
        suppressions: Suppressions::load(warehouse).await?,
        on_event,
    };

    // Saved now, so a run stopped part way is in the history as interrupted.
    RunReport {
        run_id: run_id.clone(),
        started_at_ms,
        duration_ms: 0,
        tables: Vec::new(),
        state: ReportState::Started,
    }
    .save(warehouse)
    .await?;
    // Before any data: a table is never published without the policies it declares.
    for (table, policy) in TablePolicy::of_pipeline(pipeline) {
        policy.publish(warehouse, &table).await?;
    }

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
            build.table(node, upstream_failure)
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
        state: ReportState::Finished,
    };
    report.save(warehouse).await?;
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
        Err(EngineError::Language(LanguageError::Invalid(problems)))
    }
}

impl Build<'_> {
    /// Builds one table, or says why it was not built; never fails the whole run.
    async fn table(&self, node: usize, upstream_failure: Option<String>) -> TableReport {
        let statement = &self.compiled.pipeline.statements[node];
        let name = statement.name();
        let layer = name.layer.to_string();
        let Statement::Table(table) = statement else {
            return TableReport::new(name.to_string(), layer, TableStatus::Source);
        };
        if let Some(failed) = upstream_failure {
            let mut report = TableReport::new(name.to_string(), layer, TableStatus::Skipped);
            report.error = Some(format!("not built because {failed} failed"));
            (self.on_event)(RunEvent::Finished(&report));
            return report;
        }
        let as_it_stands = if self.backfill.is_some() {
            self.backfilled_column(node, table).is_none()
        } else {
            self.skip_ingest && name.layer.format() == Some(Format::Avro)
        };
        if as_it_stands {
            let report = self
                .as_it_stands(node, table)
                .await
                .unwrap_or_else(|error| {
                    let mut report =
                        TableReport::new(name.to_string(), layer.clone(), TableStatus::Failed);
                    report.error = Some(error.to_string());
                    report
                });
            (self.on_event)(RunEvent::Finished(&report));
            return report;
        }
        (self.on_event)(RunEvent::Started(name));
        let clock = Instant::now();
        let on_rows = |rows_read| {
            (self.on_event)(RunEvent::Progress {
                table: name,
                rows_read,
            })
        };
        let outcome = match name.layer.format() {
            Some(Format::Avro) => self.raw_table(node, table, &on_rows).await,
            _ => publish::build(self, node, table, &on_rows).await,
        };
        let mut report = outcome.unwrap_or_else(|error| {
            let mut report = TableReport::new(name.to_string(), layer, TableStatus::Failed);
            report.error = Some(error.to_string());
            report
        });
        report.duration_ms = clock.elapsed().as_millis() as u64;
        (self.on_event)(RunEvent::Finished(&report));
        report
    }

    /// The date column a backfill rebuilds a range of in this table: its one partition
    /// column, of type DATE, in a replace-mode Delta table that reads no stream.
    fn backfilled_column<'t>(&self, node: usize, table: &'t TableDef) -> Option<&'t str> {
        let [column] = table.partitioned_by.as_slice() else {
            return None;
        };
        let delta = table.name.layer.format() == Some(Format::Delta);
        let replaces = table.mode == WriteMode::Replace && table.stream().is_none();
        let schema = &self.compiled.planned(node)?.schema;
        let dated = schema
            .field_with_name(column)
            .is_ok_and(|field| field.data_type() == &DataType::Date32);
        (delta && replaces && dated).then_some(column.as_str())
    }

    /// Registers a table a backfill does not rebuild (or a raw table a run that ingests
    /// nothing), as its last commit left it.
    async fn as_it_stands(&self, node: usize, table: &TableDef) -> Result<TableReport> {
        let name = table.name.to_string();
        let dir = self.warehouse.table(&table.name);
        let not_built = || EngineError::NotBuiltYet {
            table: name.clone(),
        };
        let registering = |error| EngineError::at(crate::error::BuildStep::Registering, error);
        match table.name.layer.format() {
            Some(Format::Avro) => {
                let planned = self.compiled.planned(node).ok_or_else(not_built)?;
                if !raw_table::has_commits(&dir).await.unwrap_or(false) {
                    return Err(not_built());
                }
                raw_table::register(&self.compiled.ctx, &name, &dir, &planned.schema)
                    .await
                    .map_err(registering)?;
            }
            _ => {
                let target = delta_publish::open(&dir).await?;
                if !delta_publish::exists(&target) {
                    return Err(not_built());
                }
                delta_publish::register(&self.compiled.ctx, &name, &target)
                    .await
                    .map_err(registering)?;
            }
        }
        Ok(TableReport::new(
            name,
            table.name.layer.to_string(),
            TableStatus::UpToDate,
        ))
    }

    /// Builds a raw table from its landing source, then registers what it committed.
    async fn raw_table(
        &self,
        node: usize,
        table: &TableDef,
        on_rows: &(dyn Fn(u64) + Sync),
    ) -> Result<TableReport> {
        let (pipeline, graph) = (&self.compiled.pipeline, &self.compiled.graph);
        let source = graph
            .upstream(node)
            .iter()
            .find_map(|&up| match &pipeline.statements[up] {
                Statement::Source(source) => Some((source, self.compiled.planned(up)?)),
                Statement::Table(_) => None,
            });
        let (Some((source, landing)), Some(planned)) = (source, self.compiled.planned(node)) else {
            return Err(EngineError::Language(LanguageError::Invalid(vec![
                Diagnostic::error(
                    format!("raw table {} must read a landing table", table.name),
                    Some(table.name_span),
                ),
            ])));
        };
        let built = raw::build(self, table, source, landing, on_rows).await;
        // Downstream tables read exactly the committed files.
        let registered = raw_table::register(
            &self.compiled.ctx,
            &table.name.to_string(),
            &self.warehouse.table(&table.name),
            &planned.schema,
        )
        .await
        .map_err(|error| EngineError::at(crate::error::BuildStep::Registering, error));
        let report = built?;
        registered?;
        Ok(report)
    }
}
