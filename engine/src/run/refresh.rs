//! How a table that reads no `STREAM` is refreshed. When exactly one of its inputs
//! changed since its last build, only by added rows, and its query is row by row in
//! that input (projections, filters, inner joins and left joins that keep its rows,
//! deterministic functions), the table is built from those rows alone: appended to a
//! replace table, merged into a MERGE KEY table. That gives the rows a rebuild would.
//! An aggregate over such an input (`GROUP BY` columns it outputs as they are, no
//! `HAVING`, no expectations) recomputes only the groups the added rows fall in, from
//! every row of its input, and merges them into the table on its group columns; window
//! functions partitioned alike recompute only the partitions the added rows fall in,
//! which replace theirs in the table. An input that changed otherwise (merged into,
//! rows updated or deleted) says how through its change data feed: an aggregate or
//! windows over it recompute the groups or partitions of every changed row, before and
//! after the change, which replace theirs (a group that lost its last row goes); a
//! row-by-row query over it recomputes the rows the changed rows gave, before and after,
//! by an input column it passes through.
//! Otherwise it is rebuilt whole, and the run report says why.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::execution::SessionState;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::ExprFunctionExt;
use datafusion::logical_expr::{
    Aggregate, Distinct, Expr, LogicalPlan, LogicalPlanBuilder, Window, lit,
};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use serde_json::Value;
use strata_language::{Format, TableDef, TableName, WriteMode};
use strata_storage::delta_publish::{self, DeltaReader};
use strata_storage::paths::TableDir;
use strata_storage::{increment, key_set};

use super::Build;
use super::publish::StreamRows;
use crate::error::{BuildStep, EngineError, Result};
use crate::stream::{self, Keyed, added_rows_problem, is_repeatable, keyed_node, recompute_key};

/// How the table is built this time.
pub(super) enum Refresh {
    /// From the rows added to one input.
    Added(StreamRows),
    /// From the rows added to two inputs of a row-by-row query: those added to the
    /// first with the second as it is now, and those added to the second with the first
    /// as it was.
    BothAdded(Box<BothAdded>),
    /// The groups the rows added to one input fall in, recomputed.
    Regroup(Box<Regroup>),
    /// Whole, and why.
    Whole(String),
}

/// A build from the rows two inputs added.
pub(super) struct BothAdded {
    pub(super) first: StreamRows,
    pub(super) second: StreamRows,
    /// The query over both sets of added rows, as one.
    pub(super) plan: LogicalPlan,
}

/// The groups or partitions that rows added to the input fall in.
pub(super) struct Regroup {
    /// What was added, for the position the build records.
    pub(super) added: StreamRows,
    keyed: Keyed,
    /// The key columns, as the table names them.
    pub(super) key: Vec<String>,
    /// The query, over those groups' or partitions' rows only.
    pub(super) plan: LogicalPlan,
    /// The table's rows the recomputed ones replace, for partitions; groups are merged
    /// on the key instead (a group only gains rows, so none goes).
    pub(super) replaces: Option<Expr>,
    /// How many key values the added rows hold.
    values: usize,
    /// The rows come from the input's change feed: changed, not only added.
    changed: bool,
}

impl Refresh {
    /// The strategy as the run report and `strata check` say it.
    pub(super) fn describe(&self) -> String {
        match self {
            Refresh::Added(rows) => {
                format!("incremental: the rows added to {}, row by row", rows.table)
            }
            Refresh::Regroup(regroup) => format!(
                "incremental: the {} ({}) the rows {} {} fall in ({} key value(s)), recomputed",
                match regroup.keyed {
                    Keyed::Groups => "groups of",
                    Keyed::Partitions => "partitions by",
                    Keyed::Rows => "rows of",
                },
                regroup.key.join(", "),
                if regroup.changed {
                    "changed in"
                } else {
                    "added to"
                },
                regroup.added.table,
                regroup.values
            ),
            Refresh::BothAdded(both) => format!(
                "incremental: the rows added to {} with {} as it is, and those added to {} with {} as it was",
                both.first.table, both.second.table, both.second.table, both.first.table
            ),
            Refresh::Whole(why) => format!("full: {why}"),
        }
    }
}

/// Key values beyond which recomputing the groups they select costs about what a
/// rebuild does.
const MOST_KEY_VALUES: usize = 10_000;

/// Chooses how to build `table` (node `node`), which reads no `STREAM`, from what its
/// last commit `recorded` (its definition and each input's version) and its inputs'
/// `versions` now.
pub(super) async fn choose(
    build: &Build<'_>,
    node: usize,
    table: &TableDef,
    recorded: Option<&Value>,
    definition: &str,
    versions: Option<&Value>,
) -> Result<Refresh> {
    let whole = |why: &str| Ok(Refresh::Whole(why.to_owned()));
    if build.full_refresh {
        return whole("a full refresh");
    }
    if build.backfill.is_some() {
        return whole("a backfill");
    }
    if let WriteMode::Merge {
        sequence_by: None, ..
    } = table.mode
    {
        // A rebuild refuses a key with different rows; merging build by build would not.
        return whole("MERGE KEY without SEQUENCE BY cannot order a key's rows across builds");
    }
    let Some(recorded) = recorded else {
        return whole("no earlier build to add to");
    };
    if recorded["definition"].as_str() != Some(definition) {
        return whole("its definition changed");
    }
    let (Some(then), Some(now)) = (
        recorded["reads"].as_object(),
        versions.and_then(Value::as_object),
    ) else {
        return whole("it reads a landing source or a table with no version");
    };
    let changed: Vec<&String> = now
        .iter()
        .filter(|(name, version)| then.get(name.as_str()) != Some(version))
        .map(|(name, _)| name)
        .collect();
    let input = match changed[..] {
        [input] => input,
        [first, second] => {
            return Box::pin(both_added(build, node, table, [first, second], then)).await;
        }
        _ => return whole(&format!("{} of its inputs changed", changed.len())),
    };
    let Some(input) = TableName::parse(input) else {
        return whole(&format!("{input} is not a pipeline table"));
    };
    let planning = |error| EngineError::at(BuildStep::Planning, error);
    let query = DFStatement::Statement(Box::new(SqlStatement::Query(table.query.clone())));
    let plan = build
        .compiled
        .ctx
        .state()
        .statement_to_plan(query)
        .await
        .map_err(planning)?;
    if !is_repeatable(&plan) {
        return whole("it calls a function whose result may change between runs");
    }
    let problem = added_rows_problem(&plan, &input);
    // Recomputed groups, partitions or rows replace theirs: no quarantine to match.
    let regroupable = table.mode == WriteMode::Replace && table.expectations.is_empty();
    let group_key = match &problem {
        Some(_) if regroupable => recompute_key(&plan, &input),
        _ => None,
    };
    if let (Some(problem), None) = (&problem, &group_key) {
        return whole(problem);
    }
    let (Some(format), Some(version)) = (
        input.layer.format(),
        then.get(&input.to_string()).and_then(Value::as_u64),
    ) else {
        return whole(&format!("{input} was not read before"));
    };
    let since = position_after(format, version);
    let compiled = build.compiled;
    let Some(planned) = compiled.planned_input(node, &input) else {
        return whole(&format!("{input} is not planned in this run"));
    };
    let dir = build.warehouse.table(&input);
    let rows = increment::read(
        &dir,
        format,
        Some(since),
        &planned.schema,
        &compiled.ctx.state(),
    )
    .await
    .map_err(planning)?;
    let (rows, changed, group_key) = if rows.whole {
        // A row-by-row query over rows that changed recomputes the rows they gave, by
        // the output columns its input passes through.
        let group_key = group_key.or_else(|| {
            let columns: Vec<&str> = planned
                .schema
                .fields()
                .iter()
                .map(|field| field.name().as_str())
                .collect();
            let key = stream::passed_through(&plan, &columns);
            (problem.is_none() && regroupable && !key.is_empty()).then_some((Keyed::Rows, key))
        });
        let feed = match (&group_key, format) {
            (Some(_), Format::Delta) => increment::delta_changes(&dir, since)
                .await
                .map_err(planning)?,
            _ => None,
        };
        match feed {
            Some(changes) => (changes, true, group_key),
            None => {
                return whole(&format!(
                    "{input} changed other than by added rows (rewritten, merged into, or compacted since)"
                ));
            }
        }
    } else {
        (rows, false, group_key)
    };
    let added = StreamRows {
        table: input,
        since: Some(since),
        rows,
    };
    let Some((keyed, key)) = group_key else {
        return Ok(Refresh::Added(added));
    };
    regroup(build, table, &plan, added, (keyed, key), changed).await
}

/// A row-by-row query over two inputs that both only gained rows (inner joins, no
/// union): what a rebuild adds is the query over the first's added rows with the second
/// as it is now, and over the second's added rows with the first as it was before.
async fn both_added(
    build: &Build<'_>,
    node: usize,
    table: &TableDef,
    changed: [&String; 2],
    then: &serde_json::Map<String, Value>,
) -> Result<Refresh> {
    let whole = |why: String| Ok(Refresh::Whole(why));
    let two = || format!("{} and {} changed", changed[0], changed[1]);
    let planning = |error| EngineError::at(BuildStep::Planning, error);
    let query = || DFStatement::Statement(Box::new(SqlStatement::Query(table.query.clone())));
    let compiled = build.compiled;
    let plan = compiled
        .ctx
        .state()
        .statement_to_plan(query())
        .await
        .map_err(planning)?;
    if !is_repeatable(&plan) {
        return whole("it calls a function whose result may change between runs".into());
    }
    let mut union = false;
    let _ = plan.apply(|node| {
        union |= matches!(node, LogicalPlan::Union(_));
        Ok(TreeNodeRecursion::Continue)
    });
    if union || table.mode != WriteMode::Replace && !matches!(table.mode, WriteMode::Merge { .. }) {
        return whole(format!("{}, and its query is not one join of both", two()));
    }
    let mut reads = Vec::new();
    for input in changed {
        let Some(name) = TableName::parse(input) else {
            return whole(format!("{input} is not a pipeline table"));
        };
        if let Some(problem) = added_rows_problem(&plan, &name) {
            return whole(format!("{}: {problem}", two()));
        }
        let (Some(format), Some(version)) = (
            name.layer.format(),
            then.get(input.as_str()).and_then(Value::as_u64),
        ) else {
            return whole(format!("{input} was not read before"));
        };
        let Some(planned) = compiled.planned_input(node, &name) else {
            return whole(format!("{input} is not planned in this run"));
        };
        let since = position_after(format, version);
        let dir = build.warehouse.table(&name);
        let state = compiled.ctx.state();
        let rows = increment::read(&dir, format, Some(since), &planned.schema, &state)
            .await
            .map_err(planning)?;
        let before = increment::read_before(&dir, format, since, &planned.schema, &state)
            .await
            .map_err(planning)?;
        let Some(before) = before.filter(|_| !rows.whole) else {
            return whole(format!("{}, and {input} other than by added rows", two()));
        };
        reads.push((
            StreamRows {
                table: name,
                since: Some(since),
                rows,
            },
            before,
        ));
    }
    let (Some((second, _)), Some((first, first_before))) = (reads.pop(), reads.pop()) else {
        return whole(two());
    };
    let state = compiled.ctx.state();
    let over_first =
        crate::stream::session_reading(&state, &first.table, Arc::clone(&first.rows.rows))
            .await
            .map_err(planning)?
            .statement_to_plan(query())
            .await
            .map_err(planning)?;
    let first_as_it_was = crate::stream::session_reading(&state, &first.table, first_before)
        .await
        .map_err(planning)?;
    let over_second = crate::stream::session_reading(
        &first_as_it_was,
        &second.table,
        Arc::clone(&second.rows.rows),
    )
    .await
    .map_err(planning)?
    .statement_to_plan(query())
    .await
    .map_err(planning)?;
    let plan = LogicalPlanBuilder::from(over_first)
        .union(over_second)
        .and_then(LogicalPlanBuilder::build)
        .map_err(planning)?;
    Ok(Refresh::BothAdded(Box::new(BothAdded {
        first,
        second,
        plan,
    })))
}

/// The versions a build from added rows records: its inputs' as read before it chose,
/// and the changed one's as far as the added rows went, since it may have gained rows
/// after they were read, which the next build must read.
pub(super) fn recorded_reads(mut versions: Value, added: &StreamRows) -> Value {
    if let (Some(format), Some(versions)) = (added.table.layer.format(), versions.as_object_mut()) {
        let read_to = version_before(format, added.rows.position);
        versions.insert(added.table.to_string(), Value::from(read_to));
    }
    versions
}

/// Where to read an input from after its recorded version: a raw table records its
/// next version (a position), a Delta table its last.
fn position_after(format: Format, version: u64) -> u64 {
    match format {
        Format::Avro => version,
        _ => version + 1,
    }
}

/// The version an input records when read up to `position` ([`position_after`] back).
fn version_before(format: Format, position: u64) -> u64 {
    match format {
        Format::Avro => position,
        _ => position.saturating_sub(1),
    }
}

/// The query over the groups the added (or `changed`) rows fall in: each group column
/// restricted to the values those rows hold (a superset of their groups, each group
/// whole).
async fn regroup(
    build: &Build<'_>,
    table: &TableDef,
    plan: &LogicalPlan,
    added: StreamRows,
    (keyed, key): (Keyed, Vec<String>),
    changed: bool,
) -> Result<Refresh> {
    let planning = |error| EngineError::at(BuildStep::Planning, error);
    let state = crate::stream::session_reading(
        &build.compiled.ctx.state(),
        &added.table,
        Arc::clone(&added.rows.rows),
    )
    .await
    .map_err(planning)?;
    let query = DFStatement::Statement(Box::new(SqlStatement::Query(table.query.clone())));
    let over_added = state.statement_to_plan(query).await.map_err(planning)?;
    let over_added =
        crate::stream::only_the_branches_reading(over_added, &added.table).map_err(planning)?;
    // What the added or changed rows' key values are read from, and the key over them
    // and over the whole query.
    let (source, on_added, on_all) = if keyed == Keyed::Rows {
        let columns = |plan: &LogicalPlan| -> datafusion::common::Result<Vec<Expr>> {
            key.iter()
                .map(|name| {
                    let field = plan.schema().qualified_field_with_unqualified_name(name)?;
                    Ok(Expr::Column(Column::from(field)))
                })
                .collect()
        };
        let on_added = columns(&over_added).map_err(planning)?;
        (over_added, on_added, columns(plan).map_err(planning)?)
    } else {
        let (Some(on_added), Some(on_all)) = (keyed_node(&over_added), keyed_node(plan)) else {
            return Ok(Refresh::Whole(
                "the query is not one aggregate or window".into(),
            ));
        };
        (on_added.input.clone(), on_added.key, on_all.key)
    };
    let keys = LogicalPlanBuilder::from(source)
        .aggregate(on_added, Vec::<Expr>::new())
        .and_then(LogicalPlanBuilder::build)
        .map_err(planning)?;
    let found = match DataFrame::new(state, keys).collect().await {
        Ok(found) => found,
        // A feed vacuumed away, or not recorded that far back: what changed is unknown.
        Err(error) if changed => {
            return Ok(Refresh::Whole(format!(
                "the change feed of {} could not be read: {error}",
                added.table
            )));
        }
        Err(error) => return Err(EngineError::at(BuildStep::RunningTheQuery, error)),
    };
    let mut values: Vec<HashSet<ScalarValue>> = vec![HashSet::new(); key.len()];
    for batch in &found {
        for (column, seen) in values.iter_mut().enumerate() {
            for row in 0..batch.num_rows() {
                let value =
                    ScalarValue::try_from_array(batch.column(column), row).map_err(planning)?;
                seen.insert(value);
            }
        }
    }
    if values.iter().all(HashSet::is_empty) {
        // No row was added (a compaction, a delivery rejected whole): no group changes,
        // and the query over no rows records how far the input was read.
        return Ok(Refresh::Added(added));
    }
    // The table's rows each key's values select: for rows, one passed-through column's
    // values at a time; for groups and partitions, all of them together.
    let in_table = values
        .iter()
        .zip(&key)
        .map(|(seen, name)| key_set::among(Expr::Column(Column::new_unqualified(name)), seen))
        .collect::<datafusion::common::Result<Vec<Expr>>>()
        .map_err(planning)?;
    let in_table = match keyed {
        Keyed::Rows => in_table,
        _ => vec![in_table.into_iter().reduce(Expr::and).unwrap_or(lit(true))],
    };
    let dir = build.warehouse.table(&table.name);
    let (replaced, rows) = replaced_counts(&dir, &in_table, &build.compiled.ctx.state())
        .await
        .map_err(planning)?;
    // Rows are recomputed by the passed-through column whose values select fewest.
    let best = (0..in_table.len())
        .min_by_key(|&at| (replaced[at], at))
        .unwrap_or_default();
    let (key, values, on_all, in_table, replaced) = if keyed == Keyed::Rows {
        (
            vec![key[best].clone()],
            vec![values.swap_remove(best)],
            vec![on_all[best].clone()],
            in_table[best].clone(),
            replaced[best],
        )
    } else {
        (key, values, on_all, in_table[0].clone(), replaced[0])
    };
    let count: usize = values.iter().map(HashSet::len).sum();
    if count > MOST_KEY_VALUES {
        return Ok(Refresh::Whole(format!(
            "the rows {} {} hold {count} group key values: recomputing their groups would cost about a rebuild",
            if changed { "changed in" } else { "added to" },
            added.table
        )));
    }
    if rebuild_costs_less(replaced, rows) {
        return Ok(Refresh::Whole(format!(
            "the rows {} {} fall in {} holding {replaced} of its {rows} rows: a rebuild costs less",
            if changed { "changed in" } else { "added to" },
            added.table,
            match keyed {
                Keyed::Groups => "groups",
                Keyed::Partitions => "partitions",
                Keyed::Rows => "keys",
            },
        )));
    }
    // The recomputed rows are read by the engine (on a cluster too); the table's rows
    // they replace are found by deltalake here.
    let selected = on_all
        .into_iter()
        .zip(&values)
        .map(|(column, seen)| key_set::listed(column, seen))
        .reduce(Expr::and)
        .unwrap_or(lit(true));
    // Groups only gain rows from added rows, and are merged; partitions, and groups
    // whose rows changed (one may have lost its last row), replace theirs.
    let replaces = (keyed == Keyed::Partitions || changed).then_some(in_table);
    let restricted = if keyed == Keyed::Rows {
        LogicalPlanBuilder::from(plan.clone())
            .filter(selected)
            .and_then(LogicalPlanBuilder::build)
            .map_err(planning)?
    } else {
        restrict_below(plan, &selected).map_err(planning)?
    };
    Ok(Refresh::Regroup(Box::new(Regroup {
        added,
        keyed,
        key,
        plan: restricted,
        replaces,
        values: count,
        changed,
    })))
}

/// Whether recomputing the groups, partitions or rows holding `replaced` of a table's
/// `rows` costs more than a rebuild: recomputed rows are read, filtered, rewritten with
/// their files' other rows and their changes recorded, where a rebuild only writes.
fn rebuild_costs_less(replaced: u64, rows: u64) -> bool {
    rows >= SMALL_TABLE_ROWS && replaced * 2 > rows
}

/// Rows below which a table is built in milliseconds either way, as chosen.
const SMALL_TABLE_ROWS: u64 = 10_000;

/// How many of the table's rows each of `predicates` selects, and how many it has, in
/// one scan: what a recompute would replace.
async fn replaced_counts(
    dir: &TableDir,
    predicates: &[Expr],
    state: &SessionState,
) -> datafusion::common::Result<(Vec<u64>, u64)> {
    let table = delta_publish::provider(dir, None, state, DeltaReader::Portable).await?;
    let ctx = SessionContext::new_with_state(state.clone());
    let counts = predicates
        .iter()
        .map(|predicate| count(lit(1)).filter(predicate.clone()).build())
        .chain([Ok(count(lit(1)))])
        .enumerate()
        .map(|(at, counted)| counted.map(|counted| counted.alias(format!("counted_{at}"))))
        .collect::<datafusion::common::Result<Vec<Expr>>>()?;
    let batches = ctx
        .read_table(table)?
        .aggregate(vec![], counts)?
        .collect()
        .await?;
    let mut counted = vec![0; predicates.len() + 1];
    for batch in &batches {
        for (at, total) in counted.iter_mut().enumerate() {
            if let ScalarValue::Int64(Some(rows)) =
                ScalarValue::try_from_array(batch.column(at), 0)?
            {
                *total = rows as u64;
            }
        }
    }
    let all = counted.pop().unwrap_or_default();
    Ok((counted, all))
}

/// The query with only the `selected` rows read by its aggregate, window functions or
/// `DISTINCT`: the groups or partitions they select, each whole.
fn restrict_below(plan: &LogicalPlan, selected: &Expr) -> datafusion::common::Result<LogicalPlan> {
    plan.clone()
        .transform_down(|node| {
            let only_selected = |input: &Arc<LogicalPlan>| {
                LogicalPlanBuilder::from(input.as_ref().clone())
                    .filter(selected.clone())?
                    .build()
                    .map(Arc::new)
            };
            let restricted = match node {
                LogicalPlan::Aggregate(aggregate) => LogicalPlan::Aggregate(Aggregate::try_new(
                    only_selected(&aggregate.input)?,
                    aggregate.group_expr,
                    aggregate.aggr_expr,
                )?),
                LogicalPlan::Window(window) => LogicalPlan::Window(Window::try_new(
                    window.window_expr,
                    only_selected(&window.input)?,
                )?),
                LogicalPlan::Distinct(Distinct::All(input)) => {
                    LogicalPlan::Distinct(Distinct::All(only_selected(&input)?))
                }
                other => return Ok(Transformed::no(other)),
            };
            Ok(Transformed::new(restricted, true, TreeNodeRecursion::Jump))
        })
        .map(|transformed| transformed.data)
}
