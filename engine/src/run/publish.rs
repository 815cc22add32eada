use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::Column;
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::functions_window::expr_fn::{lag, lead, rank, row_number};
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, JoinType, LogicalPlanBuilder, Operator, binary_expr, cast, lit,
};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use deltalake_core::DeltaTable;
use serde_json::Value;
use strata_language::rules::SCD2_COLUMNS;
use strata_language::{Format, OnViolation, Statement, TableDef, TableName, TableRef, WriteMode};
use strata_storage::delta_files::DeltaFiles;
use strata_storage::delta_publish::{MergeOn, Provenance, Replace};
use strata_storage::increment::{self, Increment};
use strata_storage::{CommitLog, TableDir, cleanup, delta_publish, paths, storage_schema};

use super::Build;
use super::deletes::Deleting;
use super::refresh::{self, BothAdded, Refresh, Regroup};
use super::report::{StreamRead, TableReport, TableStatus};
use crate::engine::job_name;
use crate::error::{BuildStep, EngineError, Result};
use crate::expectations::Checker;
use crate::stream::{self, is_repeatable};
use crate::write::{FileFormat, WriteFilesExec, WriteSpec};

/// Builds and publishes one table; on any error nothing is committed to it.
///
/// The query and its expectations run where the engine runs them, every partition
/// writing its own files; this side commits them once. MERGE KEY into an existing
/// table and SCD2 stage the checked rows instead and merge them here. A replace build
/// whose definition and inputs are those its table's current version was built from
/// is up to date, and does nothing. A table that reads a `STREAM` reads only the rows
/// its stream added since the position its last commit recorded, and records the new
/// position in the commit that adds what it built from them.
pub(super) async fn build(
    build: &Build<'_>,
    node: usize,
    table: &TableDef,
    on_rows: &(dyn Fn(u64) + Sync),
) -> Result<TableReport> {
    let ctx = &build.compiled.ctx;
    let mut report = TableReport::new(
        table.name.to_string(),
        table.name.layer.to_string(),
        TableStatus::Built,
    );
    let planning = |error| EngineError::at(BuildStep::Planning, error);
    let name = table.name.to_string();
    let dir = build.warehouse.table(&table.name);
    let quarantine_name = table.name.quarantine();
    let quarantine_dir = build.warehouse.table(&quarantine_name);
    let target = delta_publish::open(&dir).await?;
    let recorded = if delta_publish::exists(&target) {
        delta_publish::recorded_inputs(&target).await
    } else {
        None
    };
    let definition = definition(table);
    // Read once, before anything is read of the inputs themselves.
    let versions = match table.mode {
        WriteMode::Replace | WriteMode::Merge { .. } | WriteMode::Scd2 { .. } => {
            read_versions(build, node).await?
        }
        WriteMode::Append => None,
    };
    let refresh = match (table.stream(), &table.mode) {
        (None, WriteMode::Replace | WriteMode::Merge { .. }) => Some(
            refresh::choose(
                build,
                node,
                table,
                recorded.as_ref(),
                &definition,
                versions.as_ref(),
            )
            .await?,
        ),
        _ => None,
    };
    let strategy = refresh.as_ref().map(Refresh::describe);
    // A build from two inputs' added rows: the second input's, and the query over both.
    let mut also_added = None;
    let (stream, regroup) = match (table.stream(), refresh) {
        (Some(read), _) => (
            Some(stream_rows(build, node, table, read, recorded.as_ref(), &definition).await?),
            None,
        ),
        (None, Some(Refresh::Added(rows))) => (Some(rows), None),
        (None, Some(Refresh::BothAdded(both))) => {
            let BothAdded {
                first,
                second,
                plan,
            } = *both;
            also_added = Some((second, plan));
            (Some(first), None)
        }
        (None, Some(Refresh::Regroup(regroup))) => {
            let Regroup {
                added,
                key,
                plan,
                replaces,
                ..
            } = *regroup;
            (Some(added), Some((key, plan, replaces)))
        }
        (None, _) => (None, None),
    };
    // Built from the rows added to an input it reads whole, as a rebuild would.
    let implicit = table.stream().is_none() && stream.is_some();
    let state = match stream
        .as_ref()
        .filter(|_| regroup.is_none() && also_added.is_none())
    {
        Some(stream) => {
            stream::session_reading(&ctx.state(), &stream.table, Arc::clone(&stream.rows.rows))
                .await
                .map_err(planning)?
        }
        None => ctx.state(),
    };
    if let Some(stream) = &stream {
        report.stream = Some(StreamRead {
            table: stream.table.to_string(),
            from: stream.since.filter(|_| !stream.rows.whole),
            to: stream.rows.position,
        });
        if stream.rows.is_empty(stream.since) {
            return up_to_date(ctx, &name, &target, report).await;
        }
    }
    // A build that reads its stream's new rows adds to the table; any other rebuilds,
    // a MERGE KEY table too: merging every row again would cost more and give the same.
    let rebuild = build.full_refresh
        || stream.as_ref().is_some_and(|stream| stream.rows.whole)
        || stream.is_none() && matches!(table.mode, WriteMode::Merge { .. });
    let incremental = stream.is_some() && !rebuild;
    let query = DFStatement::Statement(Box::new(SqlStatement::Query(table.query.clone())));
    let (regroup_key, regroup_plan) = regroup
        .map(|(key, plan, replaces)| ((key, replaces), plan))
        .unzip();
    let (second_added, both_plan) = also_added.unzip();
    let preplanned = regroup_plan.is_some() || both_plan.is_some();
    let plan = match regroup_plan.or(both_plan) {
        Some(plan) => plan,
        None => state.statement_to_plan(query).await.map_err(planning)?,
    };
    // From a whole input's added rows, a UNION ALL's other branches add nothing new.
    let plan = match stream
        .as_ref()
        .filter(|stream| implicit && !preplanned && !stream.rows.whole)
    {
        Some(stream) => stream::only_the_branches_reading(plan, &stream.table).map_err(planning)?,
        None => plan,
    };
    let repeatable = is_repeatable(&plan);
    // A backfill builds only its range's rows, and replaces only its range's partitions.
    let range = build
        .backfill
        .zip(build.backfilled_column(node, table))
        .map(|(backfill, column)| Replace::Partitions {
            column: column.to_owned(),
            from: backfill.from.clone(),
            to: backfill.to.clone(),
        });
    let plan = match &range {
        Some(Replace::Partitions { column, from, to }) => {
            let day = |date: &str| cast(lit(date.to_owned()), DataType::Date32);
            let within =
                Expr::Column(Column::from_name(column.as_str())).between(day(from), day(to));
            LogicalPlanBuilder::from(plan)
                .filter(within)
                .and_then(LogicalPlanBuilder::build)
                .map_err(planning)?
        }
        _ => plan,
    };
    let frame = DataFrame::new(state.clone(), plan);
    let physical = frame.create_physical_plan().await.map_err(planning)?;
    let schema = storage_schema(&physical.schema());
    let checker = Checker::new(&table.expectations, &schema, &state, build.run_id)
        .map_err(|error| EngineError::at(BuildStep::Expectations, error))?;

    let reads = versions.filter(|_| repeatable).map(|versions| {
        let versions = match stream.as_ref().filter(|_| implicit) {
            Some(added) => refresh::recorded_reads(versions, added),
            None => versions,
        };
        match &second_added {
            Some(added) => refresh::recorded_reads(versions, added),
            None => versions,
        }
    });
    let inputs = match (stream.as_ref().filter(|_| !implicit), reads) {
        (Some(stream), reads) => Some(serde_json::json!({
            "definition": definition,
            "reads": reads,
            "stream": { "table": stream.table.to_string(), "position": stream.rows.position },
        })),
        (None, Some(reads)) => {
            Some(serde_json::json!({ "definition": definition, "reads": reads }))
        }
        (None, None) => None,
    };
    // Merging or deriving history from the same rows again changes nothing either.
    if matches!(
        table.mode,
        WriteMode::Replace | WriteMode::Merge { .. } | WriteMode::Scd2 { .. }
    ) && !build.full_refresh
        && range.is_none()
        && inputs.is_some()
        && recorded == inputs
    {
        return up_to_date(ctx, &name, &target, report).await;
    }
    report.strategy = strategy;
    let provenance = Provenance {
        // The partitions outside a backfill's range were built from other inputs: no
        // record, so the next run rebuilds the whole table.
        inputs: inputs.filter(|_| range.is_none()),
        stream_position: stream.as_ref().map(|stream| stream.rows.position),
    };
    let merges = regroup_key.is_some()
        || match &table.mode {
            WriteMode::Scd2 { .. }
            | WriteMode::Merge {
                sequence_by: Some(_),
                ..
            } => true,
            WriteMode::Merge { .. } => delta_publish::exists(&target) && !rebuild,
            WriteMode::Replace | WriteMode::Append => false,
        };
    let staging = dir.staging(build.run_id);
    let quarantines = table
        .expectations
        .iter()
        .any(|expectation| expectation.on_violation == OnViolation::Quarantine);
    let spec = WriteSpec {
        format: FileFormat::Delta,
        table_dir: if merges {
            staging.to_string()
        } else {
            dir.to_string()
        },
        prefix: paths::run_file_prefix(build.run_id),
        partition_columns: if merges {
            Vec::new()
        } else {
            table.partitioned_by.clone()
        },
        quarantine_dir: quarantines.then(|| quarantine_dir.to_string()),
    };
    let quarantine_schema = Arc::clone(checker.quarantine_schema());
    let writer = WriteFilesExec::new(physical, spec, checker);
    let written = build
        .engine
        .write(
            Arc::new(writer),
            ctx,
            &job_name(build.run_id, &table.name, None),
            on_rows,
        )
        .await
        .map_err(|error| EngineError::at(BuildStep::RunningTheQuery, error));
    let outcome: Result<DeltaTable> = async {
        let written = written?;
        report.rows_read = written.rows_read;
        report.rows_dropped = written.rows_dropped;
        report.rows_written = written.rows_written();
        report.rows_quarantined = written.rows_quarantined();
        report.writers = written.writers.clone();
        on_rows(report.rows_read);
        written.check_distinct()?;
        let adds = written.delta_adds();
        #[cfg(feature = "faults")]
        crate::faults::before_commit(&table.name).await;
        let published = if let Some((key, replaces)) = &regroup_key {
            let staged = staged_rows(ctx, &staging, &adds, &schema)
                .await
                .map_err(|error| EngineError::at(BuildStep::ReadingStagedRows, error))?;
            match replaces {
                // Recomputed partitions replace theirs, rows they lost included.
                Some(replaces) => {
                    let batches = staged
                        .collect()
                        .await
                        .map_err(|error| EngineError::at(BuildStep::ReadingStagedRows, error))?;
                    delta_publish::replace_where(
                        target,
                        batches,
                        replaces.clone(),
                        &table.partitioned_by,
                        &name,
                        provenance,
                    )
                    .await?
                }
                // Recomputed groups replace theirs; groups only gain rows, so none goes.
                None => {
                    let columns: Vec<String> =
                        schema.fields().iter().map(|f| f.name().clone()).collect();
                    let on = MergeOn {
                        key,
                        sequence_by: None,
                        deletes: None,
                    };
                    delta_publish::merge(target, staged, on, &columns, provenance).await?
                }
            }
        } else if merges {
            let staged = staged_rows(ctx, &staging, &adds, &schema)
                .await
                .map_err(|error| EngineError::at(BuildStep::ReadingStagedRows, error))?;
            let merge = Merge {
                table,
                target,
                schema: &schema,
                provenance,
                rebuild,
            };
            merge_staged(build, merge, staged, &mut report).await?
        } else {
            let replace = match &range {
                Some(range) => range.clone(),
                None if table.mode != WriteMode::Append && !incremental || rebuild => {
                    Replace::Everything
                }
                None => Replace::Nothing,
            };
            delta_publish::commit_files(
                target,
                adds,
                replace,
                &table.partitioned_by,
                &schema,
                &name,
                provenance,
            )
            .await?
        };
        // A build that reads all its input replaces the quarantine with its bad rows; an
        // append, an incremental build or a backfill adds the bad rows of what it added.
        let appends =
            (table.mode == WriteMode::Append || incremental || range.is_some()) && !rebuild;
        let replaced = !appends && delta_publish::has_table(&quarantine_dir).await;
        if !written.quarantine.is_empty() || replaced {
            let quarantine = delta_publish::open(&quarantine_dir).await?;
            delta_publish::commit_files(
                quarantine,
                written.quarantine,
                Replace::all_if(!appends),
                &[],
                &quarantine_schema,
                &quarantine_name.to_string(),
                Provenance::default(),
            )
            .await?;
        }
        Ok(published)
    }
    .await;
    cleanup::remove_below(&dir, staging.path()).await;
    let published = outcome?;

    if let Ok(snapshot) = published.snapshot() {
        for file in snapshot.log_data().iter() {
            report.files += 1;
            report.bytes += file.size().max(0) as u64;
        }
    }
    delta_publish::register(ctx, &name, &published)
        .await
        .map_err(|error| EngineError::at(BuildStep::Registering, error))?;
    Ok(report)
}

/// Nothing to build: registers the table as it stands for downstream queries.
async fn up_to_date(
    ctx: &SessionContext,
    name: &str,
    target: &DeltaTable,
    mut report: TableReport,
) -> Result<TableReport> {
    delta_publish::register(ctx, name, target)
        .await
        .map_err(|error| EngineError::at(BuildStep::Registering, error))?;
    report.status = TableStatus::UpToDate;
    Ok(report)
}

/// The rows a table reads from its stream in this build.
pub(super) struct StreamRows {
    pub(super) table: TableName,
    /// The position the table's last commit recorded, if it still applies.
    pub(super) since: Option<u64>,
    pub(super) rows: Increment,
}

/// Reads the new rows of the table's stream since the position its last build recorded.
/// There is no position to read from when the table has no version, when its
/// definition or its stream changed since (the table is rebuilt), or on a full refresh.
async fn stream_rows(
    build: &Build<'_>,
    node: usize,
    table: &TableDef,
    read: &TableRef,
    recorded: Option<&Value>,
    definition: &str,
) -> Result<StreamRows> {
    let planning = |error| EngineError::at(BuildStep::Planning, error);
    let stream = read.table_name().ok_or_else(|| {
        planning(DataFusionError::Plan(format!(
            "{}: STREAM({read}) does not name a pipeline table",
            table.name
        )))
    })?;
    let since = recorded
        .filter(|_| !build.full_refresh)
        .filter(|recorded| recorded["definition"].as_str() == Some(definition))
        .filter(|recorded| recorded["stream"]["table"].as_str() == Some(&stream.to_string()))
        .and_then(|recorded| recorded["stream"]["position"].as_u64());
    let compiled = build.compiled;
    let planned = compiled.planned_input(node, &stream);
    let (Some(format), Some(planned)) = (stream.layer.format(), planned) else {
        return Err(planning(DataFusionError::Plan(format!(
            "{}: STREAM({stream}) is not a table this pipeline builds",
            table.name
        ))));
    };
    let dir = build.warehouse.table(&stream);
    let rows = if read.changes {
        let mut changes = increment::delta_changes(&dir, since.unwrap_or(0))
            .await
            .map_err(planning)?
            .ok_or_else(|| {
                planning(DataFusionError::Plan(format!(
                    "{}: {stream} keeps no change feed (it was made before Strata kept them); set delta.enableChangeDataFeed = true on it with a Delta tool, or rebuild it",
                    table.name
                )))
            })?;
        // Without a position the feed is read from the table's first version: a rebuild.
        changes.whole = since.is_none();
        changes
    } else {
        increment::read(
            &dir,
            format,
            since,
            &planned.schema,
            &build.compiled.ctx.state(),
        )
        .await
        .map_err(planning)?
    };
    Ok(StreamRows {
        table: stream,
        since,
        rows,
    })
}

/// The table's definition as its commits record it: a change rebuilds the table.
fn definition(table: &TableDef) -> String {
    let expectations: Vec<String> = table
        .expectations
        .iter()
        .map(|rule| {
            format!(
                "{} CHECK ({}) {:?}",
                rule.name, rule.predicate, rule.on_violation
            )
        })
        .collect();
    let stream = table
        .stream()
        .map(|read| format!(" STREAM {read}"))
        .unwrap_or_default();
    format!(
        "{}{stream} PARTITIONED BY {:?} WRITE {:?} EXPECT [{}]",
        table.query,
        table.partitioned_by,
        table.mode,
        expectations.join("; ")
    )
}

/// The version of every table a build reads, as its commit records them. `None` when
/// that cannot tell whether a rebuild would change anything: a read of a landing source,
/// or of a table with no version yet.
/// The positions of `input` a table's recorded build read up to: its stream's, and the
/// version it read whole (see the `inputs` a build records).
pub(super) fn positions_read(recorded: &Value, input: &str) -> Vec<u64> {
    let stream = recorded
        .get("stream")
        .filter(|stream| stream.get("table").and_then(Value::as_str) == Some(input))
        .and_then(|stream| stream.get("position"));
    let whole = recorded.get("reads").and_then(|reads| reads.get(input));
    stream
        .into_iter()
        .chain(whole)
        .filter_map(Value::as_u64)
        .collect()
}

async fn read_versions(build: &Build<'_>, node: usize) -> Result<Option<Value>> {
    let statements = &build.compiled.pipeline.statements;
    let mut reads = serde_json::Map::new();
    for &upstream in build.compiled.graph.upstream(node) {
        let Statement::Table(read) = &statements[upstream] else {
            return Ok(None);
        };
        let dir = build.warehouse.table(&read.name);
        let version = match read.name.layer.format() {
            Some(Format::Avro) => Some(CommitLog::new(&dir).next_version().await?),
            _ => delta_publish::latest_version(&dir).await.ok(),
        };
        let Some(version) = version else {
            return Ok(None);
        };
        reads.insert(read.name.to_string(), Value::from(version));
    }
    Ok(Some(Value::Object(reads)))
}

/// The staged rows as one frame (empty, with the table's columns, when nothing was kept).
async fn staged_rows(
    ctx: &SessionContext,
    staging: &TableDir,
    adds: &[deltalake_core::kernel::Add],
    schema: &SchemaRef,
) -> datafusion::error::Result<DataFrame> {
    if adds.is_empty() {
        return ctx.read_batch(RecordBatch::new_empty(Arc::clone(schema)));
    }
    let paths: Vec<String> = adds.iter().map(|add| staging.url_of(&add.path)).collect();
    let options = ParquetReadOptions::default().schema(schema);
    ctx.read_parquet(paths, options).await
}

/// What a staged build merges into.
struct Merge<'a> {
    table: &'a TableDef,
    target: DeltaTable,
    schema: &'a SchemaRef,
    provenance: Provenance,
    /// The staged rows are the whole table: they replace it rather than merge into it.
    rebuild: bool,
}

/// Merges staged rows into the table (MERGE KEY), or derives and publishes SCD2 history.
async fn merge_staged(
    build: &Build<'_>,
    merge: Merge<'_>,
    staged: DataFrame,
    report: &mut TableReport,
) -> Result<DeltaTable> {
    let Merge {
        table,
        target,
        schema,
        provenance,
        rebuild,
    } = merge;
    let ctx = &build.compiled.ctx;
    let name = table.name.to_string();
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let into_existing = delta_publish::exists(&target) && !rebuild;
    let replace = |target, batches| {
        delta_publish::write(
            target,
            batches,
            true,
            &table.partitioned_by,
            &name,
            provenance.clone(),
        )
    };
    match &table.mode {
        WriteMode::Scd2 { key, sequence_by } => {
            let deriving = |error| EngineError::at(BuildStep::DerivingHistory, error);
            let rows = if into_existing && table.stream().is_some() {
                // Only the new rows were read: the history of their keys so far joins them.
                with_versions_of_their_keys(ctx, staged, &target, schema, key).map_err(deriving)?
            } else {
                staged
            };
            let history = scd2_history(rows, schema, key, sequence_by)
                .await
                .map_err(deriving)?;
            report.rows_written = history.iter().map(|b| b.num_rows() as u64).sum();
            if into_existing {
                let columns: Vec<String> = columns
                    .into_iter()
                    .chain(SCD2_COLUMNS.map(str::to_owned))
                    .collect();
                let on: Vec<String> = key
                    .iter()
                    .cloned()
                    .chain([SCD2_COLUMNS[0].to_owned()])
                    .collect();
                let source = ctx.read_batches(history).map_err(deriving)?;
                let on = MergeOn {
                    key: &on,
                    sequence_by: None,
                    deletes: None,
                };
                Ok(delta_publish::merge(target, source, on, &columns, provenance).await?)
            } else {
                Ok(replace(target, history).await?)
            }
        }
        WriteMode::Merge {
            key,
            sequence_by,
            delete_when,
        } => {
            let staging = |error| EngineError::at(BuildStep::ReadingStagedRows, error);
            let latest = latest_per_key(ctx, staged, key, sequence_by.as_deref())
                .await
                .map_err(staging)?;
            if let (Some(condition), Some(sequence_by)) = (delete_when, sequence_by) {
                let deleting = Deleting {
                    build,
                    table,
                    key,
                    sequence_by,
                    condition,
                };
                let merged = if into_existing {
                    deleting.merge(target, latest, &columns, provenance).await?
                } else {
                    deleting.rebuild(target, latest, provenance).await?
                };
                report.rows_written = merged.1;
                return Ok(merged.0);
            }
            let on = MergeOn {
                key,
                sequence_by: sequence_by.as_deref(),
                deletes: None,
            };
            if into_existing {
                let source = ctx.read_batches(latest).map_err(staging)?;
                Ok(delta_publish::merge(target, source, on, &columns, provenance).await?)
            } else {
                report.rows_written = latest.iter().map(|b| b.num_rows() as u64).sum();
                Ok(replace(target, latest).await?)
            }
        }
        WriteMode::Replace | WriteMode::Append => Err(EngineError::at(
            BuildStep::Planning,
            DataFusionError::Internal(format!(
                "{name}: only MERGE KEY and SCD2 builds stage their rows"
            )),
        )),
    }
}

/// The staged rows with every version the table holds of their keys, in the staged
/// rows' columns: an incremental SCD2 build derives its keys' history from both.
fn with_versions_of_their_keys(
    ctx: &SessionContext,
    staged: DataFrame,
    target: &DeltaTable,
    schema: &SchemaRef,
    key: &[String],
) -> datafusion::error::Result<DataFrame> {
    let column = |name: &str| Expr::Column(Column::new_unqualified(name));
    let stored = ctx.read_table(Arc::new(DeltaFiles::try_new(target)?))?;
    let columns: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|field| cast(column(field.name()), field.data_type().clone()).alias(field.name()))
        .collect();
    let keys: Vec<&str> = key.iter().map(String::as_str).collect();
    let staged_keys = staged
        .clone()
        .select(key.iter().map(|name| column(name)).collect::<Vec<_>>())?
        .distinct()?;
    stored
        .select(columns)?
        .join(staged_keys, JoinType::LeftSemi, &keys, &keys, None)?
        .union(staged)
}

/// A frame's rows, as one empty batch when there are none: batches read back later
/// (`read_batches`) must still have the frame's columns.
pub(super) async fn collect_keeping_schema(
    frame: DataFrame,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    Ok(if batches.is_empty() {
        vec![RecordBatch::new_empty(schema)]
    } else {
        batches
    })
}

/// One row per key: with a sequence column the row with its greatest value, without
/// one the only row. Identical rows count once; two different rows of a key with no
/// sequence to tell them apart are an error, not a guess. Only the keys delivered more
/// than once are ranked and checked: ranking sorts every row it is given.
async fn latest_per_key(
    ctx: &SessionContext,
    rows: DataFrame,
    key: &[String],
    sequence_by: Option<&str>,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    let column = |name: &str| Expr::Column(Column::new_unqualified(name));
    let Some(sequence_by) = sequence_by else {
        return one_row_per_key(ctx, collect_keeping_schema(rows).await?, key, None).await;
    };
    let names: Vec<Expr> = rows
        .schema()
        .fields()
        .iter()
        .map(|field| column(field.name()))
        .collect();
    let keys: Vec<Expr> = key.iter().map(|name| column(name)).collect();
    let twice = collect_keeping_schema(repeated_keys(rows.clone(), &keys)?).await?;
    if twice.iter().all(|batch| batch.num_rows() == 0) {
        return collect_keeping_schema(rows).await;
    }
    // Joined on the key by column, as named (a name in SQL text would be folded).
    let on_key = |left: DataFrame, right: DataFrame, join_type| {
        let key: Vec<Column> = key.iter().map(Column::new_unqualified).collect();
        let (state, left) = left.into_parts();
        LogicalPlanBuilder::from(left)
            .join(
                right.into_unoptimized_plan(),
                join_type,
                (key.clone(), key),
                None,
            )?
            .build()
            .map(|plan| DataFrame::new(state, plan))
    };
    let twice = ctx.read_batches(twice)?.alias("repeated")?;
    let once = on_key(rows.clone(), twice.clone(), JoinType::LeftAnti)?.select(names.clone())?;
    let rank = rank()
        .partition_by(keys)
        .order_by(vec![column(sequence_by).sort(false, false)])
        .build()?
        .alias(RANK);
    let latest_of_twice = on_key(rows, twice, JoinType::LeftSemi)?
        .window(vec![rank])?
        .filter(column(RANK).eq(lit(1u64)))?
        .select(names)?;
    let latest_of_twice = collect_keeping_schema(latest_of_twice).await?;
    let mut latest = collect_keeping_schema(once).await?;
    latest.extend(one_row_per_key(ctx, latest_of_twice, key, Some(sequence_by)).await?);
    Ok(latest)
}

/// The keys that `rows` hold more than once.
fn repeated_keys(rows: DataFrame, keys: &[Expr]) -> datafusion::error::Result<DataFrame> {
    rows.aggregate(keys.to_vec(), vec![count(lit(1)).alias(ROWS)])?
        .filter(Expr::Column(Column::new_unqualified(ROWS)).gt(lit(1i64)))?
        .select(keys.to_vec())
}

/// `rows` with identical rows counted once, refused if a key still has two.
async fn one_row_per_key(
    ctx: &SessionContext,
    rows: Vec<RecordBatch>,
    key: &[String],
    sequence_by: Option<&str>,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    let keys: Vec<Expr> = key
        .iter()
        .map(|name| Expr::Column(Column::new_unqualified(name)))
        .collect();
    let repeated = |rows: Vec<RecordBatch>| async {
        repeated_keys(ctx.read_batches(rows)?, &keys)?.count().await
    };
    if repeated(rows.clone()).await? == 0 {
        return Ok(rows);
    }
    // Some key kept several rows: the same row delivered twice is one row.
    let rows = collect_keeping_schema(ctx.read_batches(rows)?.distinct()?).await?;
    let repeated = repeated(rows.clone()).await?;
    if repeated > 0 {
        let (what, hint) = match sequence_by {
            Some(sequence_by) => (
                format!("different rows with the same greatest {sequence_by}"),
                format!("give each change of a key its own {sequence_by}"),
            ),
            None => (
                "different rows".to_owned(),
                "add SEQUENCE BY <column> to MERGE KEY to say which row wins".to_owned(),
            ),
        };
        return Err(DataFusionError::Execution(format!(
            "{repeated} keys ({}) have {what}; {hint}",
            key.join(", ")
        )));
    }
    Ok(rows)
}

/// SCD type 2 from every version of every key: a row per change, with the span it was current.
///
/// The raw zone keeps every delivery, so the history is derived from all of them and
/// merged into the table on `(key, valid_from)`: a new version closes the current row
/// and inserts itself, and unchanged re-deliveries change nothing. Each change must have
/// its own sequence value, or which version is current would be a guess.
///
/// The plan is built from named columns, never from SQL text, so any column name works.
async fn scd2_history(
    rows: DataFrame,
    schema: &SchemaRef,
    key: &[String],
    sequence_by: &str,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    let column = |name: &str| Expr::Column(Column::new_unqualified(name));
    let by_key = |function: Expr| {
        function
            .partition_by(key.iter().map(|name| column(name)).collect())
            .order_by(vec![column(sequence_by).sort(true, false)])
            .build()
    };
    // A delivery is a new version when it is a key's first, or when any of its values
    // apart from its key and sequence is distinct from the previous delivery's, compared
    // as typed values (NULL equal to NULL).
    let values: Vec<&str> = schema
        .fields()
        .iter()
        .map(|field| field.name().as_str())
        .filter(|name| !key.iter().any(|k| k == name) && *name != sequence_by)
        .collect();
    let previous = |index: usize| format!("{PREVIOUS}_{index}");
    let mut windows = vec![by_key(row_number())?.alias(ORDINAL)];
    for (index, name) in values.iter().enumerate() {
        windows.push(by_key(lag(column(name), Some(1), None))?.alias(previous(index)));
    }
    let changed = values
        .iter()
        .enumerate()
        .map(|(index, name)| {
            binary_expr(
                column(&previous(index)),
                Operator::IsDistinctFrom,
                column(name),
            )
        })
        .fold(column(ORDINAL).eq(lit(1u64)), Expr::or);
    let next = by_key(lead(column(sequence_by), Some(1), None))?;
    let mut output: Vec<Expr> = schema.fields().iter().map(|f| column(f.name())).collect();
    output.extend([
        column(sequence_by).alias(SCD2_COLUMNS[0]),
        next.clone().alias(SCD2_COLUMNS[1]),
        next.clone().is_null().alias(SCD2_COLUMNS[2]),
        column(sequence_by)
            .is_null()
            .or(next.eq(column(sequence_by)))
            .alias(AMBIGUOUS),
    ]);
    let history =
        collect_keeping_schema(rows.window(windows)?.filter(changed)?.select(output)?).await?;
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

/// Working columns of the SCD2 derivation, dropped before anything is stored: a
/// delivery's place among its key's, and the previous delivery's values.
const ORDINAL: &str = "__strata_ordinal";
const PREVIOUS: &str = "__strata_previous";
const AMBIGUOUS: &str = "__strata_ambiguous";
/// Working columns of picking the latest row of each key.
const RANK: &str = "__strata_rank";
const ROWS: &str = "__strata_rows";

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
    use datafusion::arrow::util::pretty::pretty_format_batches;

    use super::*;

    #[tokio::test]
    async fn history_has_a_row_per_change_with_its_span() {
        let batch = RecordBatch::try_from_iter([
            (
                "Id",
                Arc::new(Int64Array::from(vec![1, 1, 1, 2])) as ArrayRef,
            ),
            (
                "City",
                Arc::new(StringArray::from(vec!["Lyon", "Turin", "Turin", "Porto"])) as ArrayRef,
            ),
            (
                "at",
                Arc::new(Int64Array::from(vec![1, 2, 3, 1])) as ArrayRef,
            ),
        ])
        .unwrap();
        let schema = batch.schema();
        let rows = SessionContext::new().read_batch(batch).unwrap();
        let history = scd2_history(rows, &schema, &["Id".to_owned()], "at")
            .await
            .unwrap();
        let shown = pretty_format_batches(&history).unwrap().to_string();
        let mut lines: Vec<&str> = shown
            .lines()
            .filter(|line| line.starts_with("| "))
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "| 1  | Lyon  | 1  | 1          | 2        | false      |",
                "| 1  | Turin | 2  | 2          |          | true       |",
                "| 2  | Porto | 1  | 1          |          | true       |",
                "| Id | City  | at | valid_from | valid_to | is_current |",
            ],
            "{shown}"
        );
    }

    #[tokio::test]
    async fn values_with_control_characters_or_nulls_are_compared_as_values() {
        use datafusion::arrow::array::{ListBuilder, StringBuilder};
        let mut tags = ListBuilder::new(StringBuilder::new());
        for delivery in [
            vec![Some("a"), Some("b")],
            vec![Some("a\u{1f}b")],
            vec![Some("a\u{1f}b")],
            vec![Some("a\u{1f}b")],
            vec![Some("a\u{1f}b")],
        ] {
            tags.append_value(delivery);
        }
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![1; 5])) as ArrayRef),
            (
                "first",
                Arc::new(StringArray::from(vec![
                    Some("x\u{1e}y"),
                    Some("x\u{1e}y"),
                    Some("x"),
                    None,
                    Some("\u{0}"),
                ])) as ArrayRef,
            ),
            (
                "second",
                Arc::new(StringArray::from(vec![
                    "z", "z", "y\u{1e}z", "y\u{1e}z", "y\u{1e}z",
                ])) as ArrayRef,
            ),
            ("tags", Arc::new(tags.finish()) as ArrayRef),
            (
                "at",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])) as ArrayRef,
            ),
        ])
        .unwrap();
        let schema = batch.schema();
        let rows = SessionContext::new().read_batch(batch).unwrap();
        let history = scd2_history(rows, &schema, &["id".to_owned()], "at")
            .await
            .unwrap();
        let versions: usize = history.iter().map(RecordBatch::num_rows).sum();
        // Each delivery changes a value, though joined as text some would look alike.
        assert_eq!(
            versions,
            5,
            "{}",
            datafusion::arrow::util::pretty::pretty_format_batches(&history).unwrap()
        );
    }
}
