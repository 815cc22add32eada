//! Building a raw table: each new landing file once, into Avro files, committed together
//! with the rows set aside as rejects.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, lit};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use strata_language::{OnViolation, SourceTable, TableDef};
use strata_storage::landing::{
    OnBadRow, Reject, Verdict, after_ingest, rejects_batch, rejects_schema,
};
use strata_storage::{
    AvroFileSink, Commit, CommitLog, FileSink, SourceFile, StorageError, Suppressions, TableDir,
    WrittenFile, cleanup, paths, raw_compaction, storage_schema,
};

use super::Build;
use super::raw_topic::{self, TopicIngest};
use super::report::{LandingFileReport, RejectedFile, TableReport, TableStatus};
use crate::compile::PlannedTable;
use crate::engine::{Engine, job_name};
use crate::error::{BuildStep, EngineError, Result};
use crate::expectations::{Checker, Rule};
use crate::landing::{LandingSource, RejectsTarget};
use crate::task_error::TaskError;
use crate::write::{FileFormat, WriteFilesExec, WriteSpec, WriteSummary};

/// Ingests the landing files that no commit of the table names yet, then commits once.
///
/// A bad row is set aside in the rejects table and its file goes on. A file that cannot
/// be read at all, or whose bad rows pass its limit, is rejected whole: named in the
/// report and in the rejects table, and committed as seen so that it is not read again
/// until it is delivered anew. A file the engine cannot reach fails the table, since
/// that is not bad data.
pub(super) async fn build(
    build: &Build<'_>,
    table: &TableDef,
    source: &SourceTable,
    planned_source: &PlannedTable,
    on_rows: &(dyn Fn(u64) + Sync),
) -> Result<TableReport> {
    let mut report = TableReport::new(
        table.name.to_string(),
        table.name.layer.to_string(),
        TableStatus::UpToDate,
    );
    let landing = planned_source.landing.as_ref().ok_or_else(|| {
        EngineError::DataFusion(DataFusionError::Internal(format!(
            "{} is planned without its landing source",
            source.name
        )))
    })?;
    if let Some(kafka) = &landing.kafka {
        let topic = TopicIngest {
            table,
            source,
            planned_source,
            landing,
            kafka,
        };
        return raw_topic::build(build, &topic, on_rows).await;
    }
    let dir = build.warehouse.table(&table.name);
    let log = CommitLog::new(&dir);
    let mut state = log.state().await?;
    // Files deleted or moved after ingest are in the table only: it keeps them.
    let full_refresh = build.full_refresh && !landing.after_ingest.removes();
    if build.full_refresh && !full_refresh {
        report.strategy = Some(format!(
            "kept: {} removes its files after ingest ('{}'), so they are in this table only",
            source.name,
            after_ingest::AFTER_INGEST
        ));
    }
    if full_refresh {
        state.ingested.clear();
    }
    let ingested = &state.ingested;
    let listed = landing.list().await?.files;
    let forgotten = if landing.after_ingest.removes() {
        forgotten(ingested, &listed, &landing.locations)
    } else {
        Vec::new()
    };
    let new_files: Vec<SourceFile> = listed
        .into_iter()
        .filter(|file| !ingested.contains(file))
        .collect();
    if new_files.is_empty() {
        return Ok(report);
    }
    report.oldest_new_file_ms = new_files.iter().map(|file| file.modified_ms).min();

    let mut sources = Vec::new();
    let mut with_rejects = HashSet::new();
    let mut written = WriteSummary::default();
    let mut rejected_whole = Vec::new();
    for (index, file) in new_files.into_iter().enumerate() {
        let prefix = paths::landing_file_prefix(build.run_id, index);
        let before = report.rows_read;
        let on_file_rows = |rows: u64| on_rows(before + rows);
        let ingest = Ingest {
            build,
            table,
            source,
            planned_source,
            landing,
            prefix: &prefix,
            index,
        };
        let outcome = match ingest.run(&file, &on_file_rows).await {
            Ok(summary) => {
                // The job read this one file: its scans' counts are the file's.
                let (rows_read, rows_rejected) = if summary.scanned.is_empty() {
                    (summary.rows_read, 0)
                } else {
                    summary
                        .scanned
                        .iter()
                        .fold((0, 0), |(read, rejected), scanned| {
                            (read + scanned.rows_read, rejected + scanned.rows_rejected)
                        })
                };
                // A share limit is for the whole file, so it is decided here.
                match landing.policy.verdict(rows_rejected, rows_read) {
                    Verdict::Ingest => Ok((summary, rows_read, rows_rejected)),
                    Verdict::RejectFile(why) => Err((whole_file_reason(why), false)),
                }
            }
            Err(error) => match TaskError::find(&error) {
                Some(TaskError::BadRows {
                    policy: OnBadRow::FailFile,
                    why,
                    ..
                }) => Err((why, true)),
                Some(TaskError::BadRows {
                    policy: OnBadRow::Reject,
                    why,
                    ..
                }) => Err((whole_file_reason(why), false)),
                Some(TaskError::CorruptFile { why, .. }) | Some(TaskError::BadInput { why }) => {
                    Err((why, false))
                }
                Some(task) => {
                    cleanup::remove_with_prefix(&dir, &prefix).await;
                    return Err(task.into_engine_error(Some(&file.path)));
                }
                // Not the file's data (its output, say): the table fails and the file
                // is read again next run.
                None => {
                    cleanup::remove_with_prefix(&dir, &prefix).await;
                    return Err(EngineError::at(BuildStep::RunningTheQuery, error));
                }
            },
        };
        match outcome {
            Ok((summary, rows_read, rows_rejected)) => {
                if rows_rejected > 0 {
                    with_rejects.insert(file.path.clone());
                }
                report.add_landing_file(LandingFileReport::read(
                    &file.path,
                    rows_read,
                    rows_rejected,
                ));
                on_rows(report.rows_read);
                written.absorb(summary);
            }
            Err((reason, fails_run)) => {
                cleanup::remove_with_prefix(&dir, &prefix).await;
                report.add_landing_file(LandingFileReport::rejected(&file.path));
                report.rejected_files.push(RejectedFile {
                    path: file.path.clone(),
                    reason: reason.clone(),
                    fails_run,
                });
                with_rejects.insert(file.path.clone());
                rejected_whole.push((file.path.clone(), reason));
            }
        }
        sources.push((file, prefix));
    }
    written.check_distinct()?;
    let mut rejects = written.rejects.clone();
    if !rejected_whole.is_empty() {
        rejects.push(write_rejected_files(build, &dir, &rejected_whole).await?);
    }
    report.rows_written = written.rows_written();
    report.rows_dropped = written.rows_dropped;
    report.files = written.data.len() as u64;
    report.bytes = written.bytes_written();
    report.writers = written.writers.clone();
    let committed = commit(
        build,
        full_refresh,
        &dir,
        &log,
        state.next_version,
        Staged {
            sources,
            files: written.avro_files(),
            rejects,
            forgotten,
        },
    )
    .await?;
    let raced: HashSet<&str> = committed
        .raced
        .iter()
        .map(|(path, _)| path.as_str())
        .collect();
    let clear: Vec<(SourceFile, bool)> = committed
        .sources
        .iter()
        .filter(|file| !raced.contains(file.path.as_str()))
        .map(|file| (file.clone(), with_rejects.contains(&file.path)))
        .collect();
    // The rows are committed: a file that cannot be removed stays, still ingested once.
    match landing
        .after_ingest
        .clear(&landing.locations, &clear, &landing.store)
        .await
    {
        Ok(cleared) => report.landing_files_removed = cleared.removed,
        Err(error) => tracing::warn!(
            "{}: ingested files stay in the landing location: {error}",
            table.name
        ),
    }
    for (path, dropped) in committed.raced {
        report.withdraw_landing_file(&path);
        report.files -= dropped.iter().filter(|file| !is_reject(file)).count() as u64;
        report.bytes -= dropped
            .iter()
            .filter(|file| !is_reject(file))
            .map(|file| file.bytes)
            .sum::<u64>();
    }
    report.status = TableStatus::Built;
    Ok(report)
}

/// What one raw build wrote, by landing file, ready to commit.
struct Staged {
    /// Each landing file with the prefix of every file written from it.
    sources: Vec<(SourceFile, String)>,
    files: Vec<WrittenFile>,
    rejects: Vec<WrittenFile>,
    /// Landing files the table no longer needs to remember (see [`forgotten`]).
    forgotten: Vec<String>,
}

/// The ingested files gone from the landing locations (deleted or moved after ingest):
/// remembering them cannot keep them from being read twice, and the memory would grow
/// with every delivery.
fn forgotten(
    ingested: &HashSet<SourceFile>,
    listed: &[SourceFile],
    locations: &[String],
) -> Vec<String> {
    let present: HashSet<&str> = listed.iter().map(|file| file.path.as_str()).collect();
    let below_a_location = |path: &str| {
        locations
            .iter()
            .any(|location| path.starts_with(location.trim_end_matches('/')))
    };
    let mut gone: Vec<String> = ingested
        .iter()
        .map(|file| file.path.as_str())
        .filter(|path| !present.contains(path) && below_a_location(path))
        .map(str::to_owned)
        .collect();
    gone.sort_unstable();
    gone.dedup();
    gone
}

/// A bad-row limit's verdict on a file, as its rejects row and the run report say it.
fn whole_file_reason(why: String) -> String {
    format!("{why}; the file is rejected whole")
}

/// The landing files of a build that a concurrent run committed first, each with the
/// files this build had written from it and then dropped.
#[derive(Default)]
struct Committed {
    /// The landing files the commit names.
    sources: Vec<SourceFile>,
    raced: Vec<(String, Vec<WrittenFile>)>,
}

/// Whether a written file holds rejected rows rather than the table's.
fn is_reject(file: &WrittenFile) -> bool {
    file.path.starts_with(paths::REJECTS_DIR)
}

/// How many times a build re-reads the log after losing a commit race; after that it
/// fails with the conflict, having committed nothing.
pub(super) const COMMIT_RETRIES: usize = 4;

/// Commits a build as `version`, the one after the last commit it read before it started.
/// When another run claimed it first, the log is read again:
/// landing files that run ingested are dropped from this commit (with the files written
/// from them), and the rest is committed as the next version. A landing file is thus
/// ingested once however many runs race.
async fn commit(
    build: &Build<'_>,
    full_refresh: bool,
    dir: &TableDir,
    log: &CommitLog,
    mut version: u64,
    mut staged: Staged,
) -> Result<Committed> {
    let mut committed = Committed::default();
    if full_refresh {
        // The files the refresh replaces are kept for the retention, as a compaction's are.
        let folded = log.folded().await?;
        let live = folded.files.iter().chain(&folded.rejects);
        let live: Vec<String> = live.map(|added| added.file.path.clone()).collect();
        raw_compaction::record_replaced(dir, version, live).await?;
    }
    let mut retries = 0;
    loop {
        let sources: Vec<SourceFile> = staged
            .sources
            .iter()
            .map(|(file, _)| file.clone())
            .collect();
        let commit = Commit {
            reset: full_refresh,
            sources: sources.clone(),
            files: staged.files.clone(),
            rejects: staged.rejects.clone(),
            forgotten: staged.forgotten.clone(),
            ..Commit::new(version, build.run_id)
        };
        match log.commit(commit).await {
            Ok(_) => {
                committed.sources = sources;
                return Ok(committed);
            }
            Err(StorageError::CommitConflict { .. })
                if !full_refresh && retries < COMMIT_RETRIES =>
            {
                retries += 1;
                let state = log.state().await?;
                version = state.next_version;
                let (taken, kept): (Vec<_>, Vec<_>) = staged
                    .sources
                    .into_iter()
                    .partition(|(file, _)| state.ingested.contains(file));
                for (file, prefix) in &taken {
                    tracing::info!(
                        "{} was ingested by a concurrent run; dropping this run's copy",
                        file.path
                    );
                    let written_from = |written: &WrittenFile| {
                        written
                            .path
                            .rsplit('/')
                            .next()
                            .is_some_and(|name| name.starts_with(prefix.as_str()))
                    };
                    let (dropped, files): (Vec<_>, Vec<_>) =
                        staged.files.drain(..).partition(written_from);
                    let (rejects_dropped, rejects): (Vec<_>, Vec<_>) =
                        staged.rejects.drain(..).partition(written_from);
                    staged.files = files;
                    staged.rejects = rejects;
                    let dropped: Vec<WrittenFile> =
                        dropped.into_iter().chain(rejects_dropped).collect();
                    cleanup::remove_written(dir, &dropped).await;
                    committed.raced.push((file.path.clone(), dropped));
                }
                staged.sources = kept;
                if staged.sources.is_empty() {
                    // The other runs ingested every file this one read: nothing is left
                    // to commit, and nothing this run wrote is named anywhere.
                    cleanup::remove_with_prefix(dir, &paths::run_file_prefix(build.run_id)).await;
                    return Ok(committed);
                }
            }
            Err(error) => {
                cleanup::remove_with_prefix(dir, &paths::run_file_prefix(build.run_id)).await;
                return Err(error.into());
            }
        }
    }
}

/// Records the landing files rejected whole, one row each, in the rejects table.
async fn write_rejected_files(
    build: &Build<'_>,
    dir: &TableDir,
    rejected: &[(String, String)],
) -> Result<WrittenFile> {
    let mut sink = Box::new(
        AvroFileSink::create(
            dir,
            paths::rejected_files_file(build.run_id),
            &rejects_schema(),
        )
        .map_err(EngineError::DataFusion)?,
    );
    for (path, reason) in rejected {
        let batch = rejects_batch(path, build.run_id, &[Reject::file(reason.clone())])
            .map_err(EngineError::DataFusion)?;
        sink.write(&batch).await.map_err(EngineError::DataFusion)?;
    }
    (sink as Box<dyn FileSink>)
        .finish()
        .await
        .map_err(EngineError::DataFusion)
}

/// One landing file's ingestion (or one Kafka build's).
pub(super) struct Ingest<'a> {
    pub(super) build: &'a Build<'a>,
    pub(super) table: &'a TableDef,
    pub(super) source: &'a SourceTable,
    pub(super) planned_source: &'a PlannedTable,
    pub(super) landing: &'a LandingSource,
    /// Start of the names of every file this ingestion writes.
    pub(super) prefix: &'a str,
    pub(super) index: usize,
}

impl Ingest<'_> {
    /// Runs the table's query over the one file, writing it where the engine runs it.
    async fn run(
        &self,
        file: &SourceFile,
        on_rows: &(dyn Fn(u64) + Sync),
    ) -> datafusion::error::Result<WriteSummary> {
        // The landing table is this one file, with the columns the pipeline planned.
        let provider = self.landing.table(
            vec![file.clone()],
            Arc::clone(&self.planned_source.schema),
            Some(self.rejects_target()),
            matches!(self.build.engine, Engine::Embedded),
        )?;
        self.write(provider, on_rows).await
    }

    /// Where the scan writes the rows it sets aside.
    pub(super) fn rejects_target(&self) -> RejectsTarget {
        let erased = self
            .planned_source
            .schema
            .fields()
            .iter()
            .flat_map(|field| self.build.suppressions.values_of(field.name()))
            .map(str::to_owned)
            .collect();
        RejectsTarget {
            table_dir: self.build.warehouse.table(&self.table.name).to_string(),
            prefix: self.prefix.to_owned(),
            run_id: self.build.run_id.to_owned(),
            erased,
        }
    }

    /// Runs the table's query over `provider` as its landing table, writing Avro files
    /// named with the ingestion's prefix.
    pub(super) async fn write(
        &self,
        provider: Arc<dyn datafusion::catalog::TableProvider>,
        on_rows: &(dyn Fn(u64) + Sync),
    ) -> datafusion::error::Result<WriteSummary> {
        let build = self.build;
        let ctx = &build.compiled.ctx;
        let table_dir = build.warehouse.table(&self.table.name).to_string();
        let name = self.source.name.to_string();
        ctx.deregister_table(name.as_str())?;
        ctx.register_table(name.as_str(), provider)?;

        let state = ctx.state();
        let query = DFStatement::Statement(Box::new(SqlStatement::Query(self.table.query.clone())));
        // The query planned at compile time; planning it again can only fail on this
        // file (a Parquet footer that cannot be read, say).
        let physical = async {
            let plan = state.statement_to_plan(query).await?;
            ctx.execute_logical_plan(plan)
                .await?
                .create_physical_plan()
                .await
        }
        .await
        .map_err(|error| {
            TaskError::BadInput {
                why: error.strip_backtrace(),
            }
            .into_datafusion()
        })?;
        let schema = storage_schema(&physical.schema());
        let spec = WriteSpec {
            format: FileFormat::Avro,
            table_dir,
            prefix: self.prefix.to_owned(),
            partition_columns: self.table.partitioned_by.clone(),
            quarantine_dir: None,
        };
        let rules = erased_subjects(&build.suppressions, &schema, &state)?;
        let writer = WriteFilesExec::new(physical, spec, Checker::from_rules(rules, &schema, ""));
        let job = job_name(build.run_id, &self.table.name, Some(self.index));
        build
            .engine
            .write(Arc::new(writer), ctx, &job, on_rows)
            .await
    }
}

/// The name under which ingest drops (and counts) the rows of erased subjects.
const ERASED_SUBJECTS: &str = "erased_subjects";

/// One rule per column of `schema` with erased values: a row holding one of them is
/// dropped (and counted) as it is ingested, so no delivery brings a subject back.
fn erased_subjects(
    suppressions: &Suppressions,
    schema: &SchemaRef,
    state: &SessionState,
) -> datafusion::error::Result<Vec<Rule>> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let mut rules = Vec::new();
    for field in schema.fields() {
        let values: Vec<Expr> = suppressions
            .values_of(field.name())
            .into_iter()
            .filter_map(|value| {
                ScalarValue::try_from_string(value.to_owned(), field.data_type()).ok()
            })
            .filter(|value| !value.is_null())
            .map(lit)
            .collect();
        if values.is_empty() {
            continue;
        }
        let column = Expr::Column(Column::from_name(field.name().as_str()));
        rules.push(Rule {
            name: ERASED_SUBJECTS.to_owned(),
            on_violation: OnViolation::DropRow,
            predicate: state.create_physical_expr(column.in_list(values, true), &df_schema)?,
        });
    }
    Ok(rules)
}
