//! Building an enriched or ranked table: run its query, apply its expectations,
//! publish the rows in one Delta commit, and set failing rows aside.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::StreamExt;

use crate::expectations::{Checker, Split};
use crate::language::{TableDef, TableName, WriteMode};
use crate::plan::SCD2_COLUMNS;
use crate::run::report::{TableReport, TableStatus};
use crate::storage::avro_sink::{storage_schema, to_storage};
use crate::storage::catalog::QUARANTINE_SUFFIX;
use crate::storage::delta_publish;
use crate::warehouse::Warehouse;

/// Builds and publishes one table; on any error nothing is committed to it.
pub async fn build(
    table: &TableDef,
    warehouse: &Warehouse,
    ctx: &SessionContext,
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

    let mut split = Split::default();
    let mut stream =
        execute_stream(physical, ctx.task_ctx()).map_err(|e| fail("running the query", &e))?;
    while let Some(batch) = stream.next().await {
        let batch = batch
            .and_then(|batch| to_storage(&batch, &schema))
            .map_err(|e| fail("running the query", &e))?;
        report.rows_read += batch.num_rows() as u64;
        on_rows(report.rows_read);
        checker
            .split(&batch, &mut split)
            .map_err(|e| e.strip_backtrace())?;
    }
    report.rows_dropped = split.dropped;
    report.rows_quarantined = split.quarantined.iter().map(|b| b.num_rows() as u64).sum();
    report.rows_written = split.kept.iter().map(|b| b.num_rows() as u64).sum();

    let name = table.name.to_string();
    let dir = warehouse.table_path(&table.name);
    let target = delta_publish::open(&dir)
        .await
        .map_err(|e| fail("opening the Delta table", &e))?;
    let kept = std::mem::take(&mut split.kept);
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let published = match &table.mode {
        WriteMode::Replace => {
            delta_publish::write(target, kept, true, &table.partitioned_by, &name).await
        }
        WriteMode::Append => {
            delta_publish::write(target, kept, full_refresh, &table.partitioned_by, &name).await
        }
        WriteMode::Merge { key } if delta_publish::exists(&target) && !full_refresh => {
            let source = ctx
                .read_batches(kept)
                .map_err(|e| fail("preparing the merge", &e))?;
            delta_publish::merge(target, source, key, &columns).await
        }
        WriteMode::Merge { .. } => {
            delta_publish::write(target, kept, true, &table.partitioned_by, &name).await
        }
        WriteMode::Scd2 { key, sequence_by } => {
            let history = scd2_history(ctx, &table.name, kept, &schema, key, sequence_by)
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
    }
    .map_err(|e| fail("publishing the Delta table", &e))?;

    if !split.quarantined.is_empty() {
        let quarantine_dir = dir.with_file_name(format!("{}{QUARANTINE_SUFFIX}", table.name.name));
        let quarantine = delta_publish::open(&quarantine_dir)
            .await
            .map_err(|e| fail("opening the quarantine", &e))?;
        delta_publish::write(
            quarantine,
            std::mem::take(&mut split.quarantined),
            false,
            &[],
            &format!("{name}{QUARANTINE_SUFFIX}"),
        )
        .await
        .map_err(|e| fail("writing the quarantine", &e))?;
    }
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

/// SCD type 2 from every version of every key: a row per change, with the span it was current.
///
/// The raw zone keeps every delivery, so the history is derived from all of them and
/// merged into the table on `(key, valid_from)`: a new version closes the current row
/// and inserts itself, and unchanged re-deliveries change nothing. Each change must have
/// its own sequence value, or which version is current would be a guess.
async fn scd2_history(
    ctx: &SessionContext,
    table: &TableName,
    rows: Vec<RecordBatch>,
    schema: &SchemaRef,
    key: &[String],
    sequence_by: &str,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    // Named after the table: SCD2 tables of one build wave run concurrently on one session.
    let input = format!("__scd2_{}_{}", table.layer, table.name);
    let provider = datafusion::datasource::MemTable::try_new(Arc::clone(schema), vec![rows])?;
    ctx.register_table(input.as_str(), Arc::new(provider))?;
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
