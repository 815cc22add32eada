//! Building a raw table: each new landing file once, into Avro files, committed together.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::Result as DFResult;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::StreamExt;

use crate::language::{SourceTable, TableDef};
use crate::run::report::{RejectedFile, TableReport, TableStatus};
use crate::storage::avro_sink::to_storage;
use crate::storage::{
    AvroFileSink, CommitLog, FileSink, SourceFile, WrittenFile, list_files, storage_schema,
};
use crate::warehouse::Warehouse;

/// Ingests the landing files that no commit of the table names yet, then commits once.
pub async fn build(
    table: &TableDef,
    source: &SourceTable,
    warehouse: &Warehouse,
    ctx: &SessionContext,
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
    for (index, file) in new_files.into_iter().enumerate() {
        let prefix = format!("part-{run_id}-{index:05}");
        match ingest_file(table, source, &file, &table_dir, &prefix, ctx).await {
            Ok((rows_read, files)) => {
                report.rows_read += rows_read;
                on_rows(report.rows_read);
                report.rows_written += files.iter().map(|f| f.rows).sum::<u64>();
                written.extend(files);
                committed_sources.push(file);
            }
            Err(reason) => report.rejected_files.push(RejectedFile {
                path: file.path.clone(),
                reason: reason.strip_backtrace(),
            }),
        }
    }
    if committed_sources.is_empty() {
        return Ok(report);
    }
    report.files = written.len() as u64;
    report.bytes = written.iter().map(|f| f.bytes).sum();
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

/// Runs the table's query over one landing file; on any error its partial files are removed.
async fn ingest_file(
    table: &TableDef,
    source: &SourceTable,
    file: &SourceFile,
    table_dir: &Path,
    prefix: &str,
    ctx: &SessionContext,
) -> DFResult<(u64, Vec<WrittenFile>)> {
    let mut sinks: BTreeMap<String, Box<dyn FileSink>> = BTreeMap::new();
    let outcome = write_file(table, source, file, table_dir, prefix, ctx, &mut sinks).await;
    match outcome {
        Ok(rows_read) => {
            let mut written = Vec::new();
            for (_, sink) in std::mem::take(&mut sinks) {
                written.push(sink.finish()?);
            }
            Ok((rows_read, written))
        }
        Err(error) => {
            for (partition, _) in std::mem::take(&mut sinks) {
                let _ = std::fs::remove_file(table_dir.join(file_name(&partition, prefix)));
            }
            Err(error)
        }
    }
}

fn file_name(partition: &str, prefix: &str) -> String {
    if partition.is_empty() {
        format!("{prefix}.avro")
    } else {
        format!("{partition}/{prefix}.avro")
    }
}

async fn write_file(
    table: &TableDef,
    source: &SourceTable,
    file: &SourceFile,
    table_dir: &Path,
    prefix: &str,
    ctx: &SessionContext,
    sinks: &mut BTreeMap<String, Box<dyn FileSink>>,
) -> DFResult<u64> {
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
    let partition_columns: Vec<usize> = table
        .partitioned_by
        .iter()
        .map(|column| schema.index_of(column))
        .collect::<std::result::Result<_, _>>()?;

    let mut stream = execute_stream(Arc::clone(&physical), ctx.task_ctx())?;
    while let Some(batch) = stream.next().await {
        let batch = to_storage(&batch?, &schema)?;
        for (partition, rows) in split_by_partition(&batch, &partition_columns)? {
            let sink = match sinks.get_mut(&partition) {
                Some(sink) => sink,
                None => {
                    let sink =
                        AvroFileSink::create(table_dir, file_name(&partition, prefix), &schema)?;
                    sinks.entry(partition).or_insert(Box::new(sink))
                }
            };
            sink.write(&rows)?;
        }
    }
    Ok(leaf_output_rows(physical.as_ref()))
}

/// Splits a batch by its Hive partition path (`col=value/...`); unpartitioned tables get one part.
fn split_by_partition(
    batch: &RecordBatch,
    columns: &[usize],
) -> DFResult<Vec<(String, RecordBatch)>> {
    if columns.is_empty() || batch.num_rows() == 0 {
        return Ok(vec![(String::new(), batch.clone())]);
    }
    let options = FormatOptions::default().with_null("__HIVE_DEFAULT_PARTITION__");
    let formatters = columns
        .iter()
        .map(|&index| ArrayFormatter::try_new(batch.column(index).as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let names: Vec<&String> = columns
        .iter()
        .map(|&index| batch.schema_ref().field(index).name())
        .collect();
    let mut rows_by_partition: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let path = names
            .iter()
            .zip(&formatters)
            .map(|(name, formatter)| format!("{name}={}", formatter.value(row)))
            .collect::<Vec<_>>()
            .join("/");
        rows_by_partition.entry(path).or_default().push(row as u32);
    }
    if rows_by_partition.len() == 1 {
        let (path, _) = rows_by_partition.into_iter().next().unwrap_or_default();
        return Ok(vec![(path, batch.clone())]);
    }
    rows_by_partition
        .into_iter()
        .map(|(path, rows)| Ok((path, take_record_batch(batch, &UInt32Array::from(rows))?)))
        .collect()
}

/// Rows the plan's scans produced: what was read from the landing file.
fn leaf_output_rows(plan: &dyn ExecutionPlan) -> u64 {
    if plan.children().is_empty() {
        return plan
            .metrics()
            .and_then(|metrics| metrics.output_rows())
            .unwrap_or(0) as u64;
    }
    plan.children()
        .into_iter()
        .map(|child| leaf_output_rows(child.as_ref()))
        .sum()
}
