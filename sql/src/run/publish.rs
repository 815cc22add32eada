//! Building an enriched or ranked table: run its query, apply its expectations,
//! publish the rows in one Delta commit, and set failing rows aside.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use deltalake_core::DeltaTable;

use crate::expectations::Checker;
use crate::language::{OnViolation, TableDef, TableName, WriteMode};
use crate::plan::SCD2_COLUMNS;
use crate::run::cleanup::STAGING_DIR;
use crate::run::engine::Engine;
use crate::run::report::{TableReport, TableStatus};
use crate::storage::avro_sink::storage_schema;
use crate::storage::catalog::QUARANTINE_SUFFIX;
use crate::storage::delta_publish;
use crate::storage::write_files::{
    self, FileFormat, WriteFilesExec, WriteSpec, Written, add_action,
};
use crate::warehouse::Warehouse;

/// Builds and publishes one table; on any error nothing is committed to it.
///
/// The query and its expectations run where the engine runs them, every partition
/// writing its own files; this side commits them once. MERGE KEY into an existing
/// table and SCD2 stage the checked rows instead and merge them here.
#[allow(clippy::too_many_arguments)]
pub async fn build(
    table: &TableDef,
    warehouse: &Warehouse,
    ctx: &SessionContext,
    engine: &Engine,
    run_id: &str,
    full_refresh: bool,
    on_rows: &(dyn Fn(u64) + Sync),
) -> Result<TableReport, String> {
    let fail = |stage: &str, error: &dyn std::fmt::Display| format!("{stage}: {error}");
    let mut report = TableReport::new(
        table.name.to_string(),
        table.name.layer.to_string(),
        TableStatus::Built,
    );
    let state = ctx.state();
    let query = DFStatement::Statement(Box::new(SqlStatement::Query(table.query.clone())));
    let plan = state
        .statement_to_plan(query)
        .await
        .map_err(|e| fail("planning", &e))?;
    let frame = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| fail("planning", &e))?;
    let physical = frame
        .create_physical_plan()
        .await
        .map_err(|e| fail("planning", &e))?;
    let schema = storage_schema(&physical.schema());
    let checker = Checker::new(&table.expectations, &schema, &state, run_id)
        .map_err(|e| fail("expectations", &e))?;

    let name = table.name.to_string();
    let dir = warehouse.table_path(&table.name);
    let quarantine_dir = dir.with_file_name(format!("{}{QUARANTINE_SUFFIX}", table.name.name));
    let target = delta_publish::open(&dir)
        .await
        .map_err(|e| fail("opening the Delta table", &e))?;
    let merges = match &table.mode {
        WriteMode::Scd2 { .. } => true,
        WriteMode::Merge { .. } => delta_publish::exists(&target) && !full_refresh,
        WriteMode::Replace | WriteMode::Append => false,
    };
    let staging = dir.join(STAGING_DIR).join(run_id);
    let quarantines = table
        .expectations
        .iter()
        .any(|expectation| expectation.on_violation == OnViolation::Quarantine);
    let spec = WriteSpec {
        format: FileFormat::Delta,
        table_dir: if merges { &staging } else { &dir }.display().to_string(),
        prefix: String::new(),
        partition_columns: if merges {
            Vec::new()
        } else {
            table.partitioned_by.clone()
        },
        quarantine_dir: quarantines.then(|| quarantine_dir.display().to_string()),
    };
    let quarantine_schema = std::sync::Arc::clone(checker.quarantine_schema());
    let writer = WriteFilesExec::new(physical, spec, checker);
    let rows = engine
        .write(Arc::new(writer), ctx, &format!("{run_id}:{name}"), on_rows)
        .await
        .map_err(|e| {
            let message = e.strip_backtrace();
            if message.contains("ON VIOLATION FAIL") {
                message
            } else {
                fail("running the query", &message)
            }
        });
    let outcome: Result<DeltaTable, String> = async {
        let rows = rows?;
        let mut adds = Vec::new();
        let mut held = Vec::new();
        for row in &rows {
            match row.kind {
                Written::Counts => {
                    report.rows_read += row.rows;
                    report.rows_dropped += row.dropped;
                }
                Written::Data => {
                    report.rows_written += row.rows;
                    adds.push(add_action(row).map_err(|e| e.strip_backtrace())?);
                }
                Written::Quarantine => {
                    report.rows_quarantined += row.rows;
                    held.push(add_action(row).map_err(|e| e.strip_backtrace())?);
                }
            }
        }
        on_rows(report.rows_read);
        report.writers = write_files::writers(&rows);

        write_files::check_distinct(adds.iter().chain(&held).map(|add| add.path.as_str()))
            .map_err(|e| e.strip_backtrace())?;
        let published = if merges {
            let staged = staged_rows(ctx, &staging, &adds, &schema)
                .await
                .map_err(|e| fail("reading the staged rows", &e))?;
            merge_staged(
                table,
                ctx,
                target,
                staged,
                &schema,
                full_refresh,
                &mut report,
            )
            .await?
        } else {
            let replace = table.mode != WriteMode::Append || full_refresh;
            delta_publish::commit_files(
                target,
                adds,
                replace,
                &table.partitioned_by,
                &schema,
                &name,
            )
            .await
            .map_err(|e| fail("publishing the Delta table", &e))?
        };
        if !held.is_empty() {
            let quarantine = delta_publish::open(&quarantine_dir)
                .await
                .map_err(|e| fail("opening the quarantine", &e))?;
            delta_publish::commit_files(
                quarantine,
                held,
                false,
                &[],
                &quarantine_schema,
                &format!("{name}{QUARANTINE_SUFFIX}"),
            )
            .await
            .map_err(|e| fail("writing the quarantine", &e))?;
        }
        Ok(published)
    }
    .await;
    let _ = std::fs::remove_dir_all(dir.join(STAGING_DIR));
    let published = outcome?;

    if let Ok(files) = published.get_file_uris() {
        for uri in files {
            report.files += 1;
            let path = uri.strip_prefix("file://").unwrap_or(&uri).to_owned();
            report.bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        }
    }
    delta_publish::register(ctx, &name, &published)
        .await
        .map_err(|e| fail("registering the published table", &e))?;
    Ok(report)
}

/// The staged rows as one frame (empty, with the table's columns, when nothing was kept).
async fn staged_rows(
    ctx: &SessionContext,
    staging: &std::path::Path,
    adds: &[deltalake_core::kernel::Add],
    schema: &SchemaRef,
) -> datafusion::error::Result<DataFrame> {
    if adds.is_empty() {
        return ctx.read_batch(RecordBatch::new_empty(Arc::clone(schema)));
    }
    let paths: Vec<String> = adds
        .iter()
        .map(|add| staging.join(&add.path).display().to_string())
        .collect();
    let options = ParquetReadOptions::default().schema(schema);
    ctx.read_parquet(paths, options).await
}

/// Merges staged rows into the table (MERGE KEY), or derives and publishes SCD2 history.
async fn merge_staged(
    table: &TableDef,
    ctx: &SessionContext,
    target: DeltaTable,
    staged: DataFrame,
    schema: &SchemaRef,
    full_refresh: bool,
    report: &mut TableReport,
) -> Result<DeltaTable, String> {
    let fail = |stage: &str, error: &dyn std::fmt::Display| format!("{stage}: {error}");
    let name = table.name.to_string();
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    match &table.mode {
        WriteMode::Scd2 { key, sequence_by } => {
            let history = scd2_history(ctx, &table.name, staged, schema, key, sequence_by)
                .await
                .map_err(|e| fail("deriving SCD2 history", &e))?;
            report.rows_written = history.iter().map(|b| b.num_rows() as u64).sum();
            if delta_publish::exists(&target) && !full_refresh {
                let columns: Vec<String> = columns
                    .into_iter()
                    .chain(SCD2_COLUMNS.map(str::to_owned))
                    .collect();
                let on: Vec<String> = key
                    .iter()
                    .cloned()
                    .chain([SCD2_COLUMNS[0].to_owned()])
                    .collect();
                let source = ctx
                    .read_batches(history)
                    .map_err(|e| fail("preparing the merge", &e))?;
                delta_publish::merge(target, source, &on, &columns).await
            } else {
                delta_publish::write(target, history, true, &table.partitioned_by, &name).await
            }
        }
        WriteMode::Merge { key } => delta_publish::merge(target, staged, key, &columns).await,
        WriteMode::Replace | WriteMode::Append => {
            return Err(format!(
                "{name}: only MERGE KEY and SCD2 builds stage their rows"
            ));
        }
    }
    .map_err(|e| fail("publishing the Delta table", &e))
}

/// SCD type 2 from every version of every key: a row per change, with the span it was current.
///
/// The raw zone keeps every delivery, so the history is derived from all of them and
/// merged into the table on `(key, valid_from)`: a new version closes the current row
/// and inserts itself, and unchanged re-deliveries change nothing. Each change must have
/// its own sequence value, or which version is current would be a guess.
async fn scd2_history(
    ctx: &SessionContext,
    table: &TableName,
    rows: DataFrame,
    schema: &SchemaRef,
    key: &[String],
    sequence_by: &str,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    // Named after the table: SCD2 tables of one build wave run concurrently on one session.
    let input = format!("__scd2_{}_{}", table.layer, table.name);
    ctx.register_table(input.as_str(), rows.into_view())?;
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let values: Vec<String> = schema
        .fields()
        .iter()
        .filter(|field| !key.contains(field.name()) && field.name() != sequence_by)
        .map(|field| {
            let column = quote(field.name());
            let text = match field.data_type() {
                DataType::List(_) | DataType::LargeList(_) => {
                    format!("array_to_string({column}, '\u{1f}')")
                }
                _ => format!("CAST({column} AS VARCHAR)"),
            };
            format!("coalesce({text}, '\u{0}')")
        })
        .collect();
    let fingerprint = if values.is_empty() {
        "''".to_owned()
    } else {
        format!("concat_ws('\u{1e}', {})", values.join(", "))
    };
    let partition = key.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ");
    let sequence = quote(sequence_by);
    let columns = schema
        .fields()
        .iter()
        .map(|f| quote(f.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let window = format!("OVER (PARTITION BY {partition} ORDER BY {sequence})");
    let sql = format!(
        "SELECT {columns}, {sequence} AS valid_from, lead({sequence}) {window} AS valid_to, \
                lead({sequence}) {window} IS NULL AS is_current, \
                {sequence} IS NULL OR lead({sequence}) {window} = {sequence} AS __ambiguous \
         FROM (SELECT *, lag(__fingerprint) {window} AS __previous \
               FROM (SELECT *, {fingerprint} AS __fingerprint FROM {input})) \
         WHERE __previous IS NULL OR __previous <> __fingerprint"
    );
    let result = ctx.sql(&sql).await?.collect().await;
    ctx.deregister_table(input.as_str())?;
    let history = result?;
    let ambiguous: usize = history
        .iter()
        .map(|batch| {
            let flags = batch.column(batch.num_columns() - 1);
            flags.as_boolean().true_count()
        })
        .sum();
    if ambiguous > 0 {
        return Err(DataFusionError::Execution(format!(
            "{ambiguous} changes have a NULL {sequence_by} or share it with another change of \
             the same key ({}); each change needs its own sequence value",
            key.join(", ")
        )));
    }
    history
        .iter()
        .map(|batch| Ok(batch.project(&(0..batch.num_columns() - 1).collect::<Vec<_>>())?))
        .collect()
}
