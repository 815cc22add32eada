//! Building a raw table: each new landing file once, into Avro files, committed together.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use datafusion::error::Result as DFResult;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use crate::expectations::Checker;
use crate::language::{SourceTable, TableDef};
use crate::run::cleanup;
use crate::run::engine::Engine;
use crate::run::report::{RejectedFile, TableReport, TableStatus};
use crate::storage::write_files::{
    self, FileFormat, UNREADABLE_INPUT, WriteFilesExec, WriteSpec, Written, WrittenRow,
    written_file,
};
use crate::storage::{CommitLog, SourceFile, list_files, storage_schema};
use crate::warehouse::Warehouse;

/// Ingests the landing files that no commit of the table names yet, then commits once.
#[allow(clippy::too_many_arguments)]
pub async fn build(
    table: &TableDef,
    source: &SourceTable,
    warehouse: &Warehouse,
    ctx: &SessionContext,
    engine: &Engine,
    run_id: &str,
    full_refresh: bool,
    on_rows: &(dyn Fn(u64) + Sync),
) -> Result<TableReport, String> {
    let mut report = TableReport::new(
        table.name.to_string(),
        table.name.layer.to_string(),
        TableStatus::UpToDate,
    );
    let table_dir = warehouse.table_path(&table.name);
    let log = CommitLog::new(&table_dir);
    let ingested = if full_refresh {
        HashSet::new()
    } else {
        log.ingested().map_err(|error| error.to_string())?
    };
    let extension = file_extension(source);
    let mut new_files = Vec::new();
    for location in &source.definition.locations {
        let location = warehouse.resolve_location(location);
        let files = list_files(&location, &extension).map_err(|error| error.to_string())?;
        new_files.extend(files.into_iter().filter(|file| !ingested.contains(file)));
    }
    if new_files.is_empty() {
        return Ok(report);
    }

    let mut committed_sources = Vec::new();
    let mut written = Vec::new();
    let mut answers = Vec::new();
    for (index, file) in new_files.into_iter().enumerate() {
        let prefix = format!("part-{run_id}-{index:05}");
        let job = format!("{run_id}:{}:{index}", table.name);
        let before = report.rows_read;
        let on_file_rows = |rows: u64| on_rows(before + rows);
        match ingest_file(
            table,
            source,
            &file,
            &table_dir,
            &prefix,
            ctx,
            engine,
            &job,
            &on_file_rows,
        )
        .await
        {
            Ok(rows) => {
                for row in &rows {
                    match row.kind {
                        Written::Counts => report.rows_read += row.rows,
                        Written::Data => {
                            written.push(written_file(row).map_err(|e| e.to_string())?)
                        }
                        Written::Quarantine => {}
                    }
                }
                on_rows(report.rows_read);
                answers.extend(rows);
                committed_sources.push(file);
            }
            Err(error) => {
                cleanup::remove_with_prefix(&table_dir, &prefix);
                let reason = error.strip_backtrace();
                if reason.contains(UNREADABLE_INPUT) {
                    return Err(format!("ingesting {}: {reason}", file.path));
                }
                report.rejected_files.push(RejectedFile {
                    path: file.path.clone(),
                    reason,
                });
            }
        }
    }
    if committed_sources.is_empty() {
        return Ok(report);
    }
    write_files::check_distinct(written.iter().map(|file| file.path.as_str()))
        .map_err(|error| error.strip_backtrace())?;
    report.rows_written = written.iter().map(|f| f.rows).sum();
    report.files = written.len() as u64;
    report.bytes = written.iter().map(|f| f.bytes).sum();
    report.writers = write_files::writers(&answers);
    log.commit(run_id, full_refresh, committed_sources, written)
        .map_err(|error| error.to_string())?;
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

/// Runs the table's query over one landing file, writing it where the engine runs it.
#[allow(clippy::too_many_arguments)]
async fn ingest_file(
    table: &TableDef,
    source: &SourceTable,
    file: &SourceFile,
    table_dir: &Path,
    prefix: &str,
    ctx: &SessionContext,
    engine: &Engine,
    job: &str,
    on_rows: &(dyn Fn(u64) + Sync),
) -> DFResult<Vec<WrittenRow>> {
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
        table_dir: table_dir.display().to_string(),
        prefix: prefix.to_owned(),
        partition_columns: table.partitioned_by.clone(),
        quarantine_dir: None,
    };
    let writer = WriteFilesExec::new(physical, spec, Checker::from_rules(Vec::new(), &schema, ""));
    engine.write(Arc::new(writer), ctx, job, on_rows).await
}
