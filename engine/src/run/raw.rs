//! Building a raw table: each new landing file once, into Avro files, committed together.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use strata_language::{SourceTable, TableDef};
use strata_storage::cleanup;
use strata_storage::landing::list_files;
use strata_storage::paths;
use strata_storage::{CommitLog, SourceFile, storage_schema};

use super::Build;
use super::report::{RejectedFile, TableReport, TableStatus};
use crate::engine::job_name;
use crate::error::Result;
use crate::expectations::Checker;
use crate::task_error::TaskError;
use crate::write::{FileFormat, WriteFilesExec, WriteSpec, WriteSummary};

/// Ingests the landing files that no commit of the table names yet, then commits once.
///
/// A file the engine cannot parse is rejected (named in the report, with why) and the
/// others go on; a file it cannot reach at all fails the table, since that is not bad data.
pub(super) async fn build(
    build: &Build<'_>,
    table: &TableDef,
    source: &SourceTable,
    on_rows: &(dyn Fn(u64) + Sync),
) -> Result<TableReport> {
    let mut report = TableReport::new(
        table.name.to_string(),
        table.name.layer.to_string(),
        TableStatus::UpToDate,
    );
    let dir = build.warehouse.table(&table.name);
    let log = CommitLog::new(&dir);
    let ingested = if build.full_refresh {
        HashSet::new()
    } else {
        log.ingested()?
    };
    let extension = file_extension(source);
    let mut new_files = Vec::new();
    for location in &source.definition.locations {
        let files = list_files(location, &extension)?;
        new_files.extend(files.into_iter().filter(|file| !ingested.contains(file)));
    }
    if new_files.is_empty() {
        return Ok(report);
    }

    let mut committed_sources = Vec::new();
    let mut written = WriteSummary::default();
    for (index, file) in new_files.into_iter().enumerate() {
        let prefix = paths::landing_file_prefix(build.run_id, index);
        let before = report.rows_read;
        let on_file_rows = |rows: u64| on_rows(before + rows);
        match ingest_file(build, table, source, &file, index, &on_file_rows).await {
            Ok(summary) => {
                written.absorb(summary);
                report.rows_read = written.rows_read;
                on_rows(report.rows_read);
                committed_sources.push(file);
            }
            Err(error) => {
                cleanup::remove_with_prefix(dir.path(), &prefix);
                if let Some(task) = TaskError::find(&error) {
                    return Err(task.into_engine_error(Some(&file.path)));
                }
                report.rejected_files.push(RejectedFile {
                    path: file.path.clone(),
                    reason: error.strip_backtrace(),
                });
            }
        }
    }
    if committed_sources.is_empty() {
        return Ok(report);
    }
    written.check_distinct()?;
    report.rows_written = written.rows_written();
    report.files = written.data.len() as u64;
    report.bytes = written.bytes_written();
    report.writers = written.writers.clone();
    log.commit(
        build.run_id,
        build.full_refresh,
        committed_sources,
        written.avro_files(),
    )?;
    report.status = TableStatus::Built;
    Ok(report)
}

/// The extension DataFusion expects for a source's files, with its compression suffix.
fn file_extension(source: &SourceTable) -> String {
    let base = match source.definition.file_type.to_ascii_uppercase().as_str() {
        "CSV" => ".csv",
        "JSON" => ".json",
        "PARQUET" => ".parquet",
        "AVRO" => ".avro",
        "ARROW" => ".arrow",
        _ => "",
    };
    let compression = source
        .definition
        .options
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("format.compression"))
        .map(|(_, value)| value.to_string().trim_matches('\'').to_ascii_lowercase());
    let suffix = match compression.as_deref() {
        Some("gzip") => ".gz",
        Some("zstd") => ".zst",
        Some("bzip2") => ".bz2",
        Some("xz") => ".xz",
        _ => "",
    };
    format!("{base}{suffix}")
}

/// Runs the table's query over the `index`th new landing file, writing it where the
/// engine runs it.
async fn ingest_file(
    build: &Build<'_>,
    table: &TableDef,
    source: &SourceTable,
    file: &SourceFile,
    index: usize,
    on_rows: &(dyn Fn(u64) + Sync),
) -> datafusion::error::Result<WriteSummary> {
    let ctx = &build.compiled.ctx;
    // Point the landing table at this one file, with the options the pipeline declared.
    let mut definition = source.definition.clone();
    definition.locations = vec![file.path.clone()];
    definition.or_replace = true;
    let state = ctx.state();
    let plan = state
        .statement_to_plan(DFStatement::CreateExternalTable(definition))
        .await?;
    ctx.execute_logical_plan(plan).await?;

    let query = DFStatement::Statement(Box::new(SqlStatement::Query(table.query.clone())));
    let plan = state.statement_to_plan(query).await?;
    let physical = ctx
        .execute_logical_plan(plan)
        .await?
        .create_physical_plan()
        .await?;
    let schema = storage_schema(&physical.schema());
    let spec = WriteSpec {
        format: FileFormat::Avro,
        table_dir: build.warehouse.table(&table.name).to_string(),
        prefix: paths::landing_file_prefix(build.run_id, index),
        partition_columns: table.partitioned_by.clone(),
        quarantine_dir: None,
    };
    let writer = WriteFilesExec::new(physical, spec, Checker::from_rules(Vec::new(), &schema, ""));
    let job = job_name(build.run_id, &table.name, Some(index));
    build
        .engine
        .write(Arc::new(writer), ctx, &job, on_rows)
        .await
}
