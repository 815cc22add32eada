//! Incremental reads: which queries can read only the new rows of a table
//! (`STREAM(<table>)`), and the session on which that table's name means those rows.

use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{
    Distinct, EmptyRelation, Expr, JoinType, LogicalPlan, Projection, Union, Volatility,
};
use strata_language::{Format, TableName};

/// Why the query cannot be built from the new rows of `stream` alone, if it cannot: an
/// operator above the stream's scan needs the rows of earlier builds too.
pub fn incremental_problem(plan: &LogicalPlan, stream: &TableName) -> Option<String> {
    blocker(plan, stream, Unions::Refused).map(|blocker| match blocker {
        Blocker::Operator(what) => {
            format!("{what} over STREAM({stream}) would see only the rows added since the last build")
        }
        Blocker::Union => format!(
            "a UNION of STREAM({stream}) with another table would add that table's rows again at every build"
        ),
        Blocker::Join(join_type) => format!(
            "a {join_type} join keeps the other side's rows whether or not STREAM({stream}) matches them, so every build would add them again"
        ),
    })
}

/// Why the query's rows from the rows added to `table` are not the rows a rebuild would
/// add, if they are not: besides an operator that needs every row, `table` read twice
/// (a self-join) or in a subquery would meet only its new rows there too.
pub fn added_rows_problem(plan: &LogicalPlan, table: &TableName) -> Option<String> {
    let name = table.to_string();
    let scans = scans(plan, table);
    let mut in_plan = 0;
    let _ = plan.apply(|node| {
        in_plan += usize::from(is_scan_of(node, &name));
        Ok(TreeNodeRecursion::Continue)
    });
    if scans != 1 || in_plan != 1 {
        return Some(format!(
            "{table} is read more than once (a self-join or a subquery)"
        ));
    }
    blocker(plan, table, Unions::OfWhatIsAdded).map(|blocker| match blocker {
        Blocker::Operator(what) => format!("{what} needs every row of {table}"),
        Blocker::Union => format!("a UNION of {table} with another table"),
        Blocker::Join(join_type) => {
            format!("a {join_type} join keeps rows that rows added to {table} may change")
        }
    })
}

/// How a table that reads no STREAM is refreshed, as `strata check` says it: from the
/// rows added to which of its `inputs`, or whole and why.
/// `regroupable`: the table may recompute its groups (a replace table with no
/// expectations).
pub fn refresh_strategy(plan: &LogicalPlan, inputs: &[TableName], regroupable: bool) -> String {
    if !is_repeatable(plan) {
        return "rebuilt whole: it calls a function whose result may change between runs".into();
    }
    let mut problems = Vec::new();
    let mut addable = Vec::new();
    let mut grouped = Vec::new();
    for input in inputs {
        match added_rows_problem(plan, input) {
            None => addable.push(input.to_string()),
            Some(problem) => match recompute_key(plan, input).filter(|_| regroupable) {
                Some((keyed, key)) => grouped.push((input.to_string(), keyed, key.join(", "))),
                None => problems.push(problem),
            },
        }
    }
    let when = "when only that input changed by added rows, whole otherwise";
    if !addable.is_empty() {
        // A Delta input's change feed says what changed otherwise; a raw table only grows.
        let fed = match &addable[..] {
            [input] if regroupable => inputs.iter().find(|name| {
                name.to_string() == *input && name.layer.format() == Some(Format::Delta)
            }),
            _ => None,
        };
        let when = match fed {
            Some(input) => format!(
                "when only that input changed by added rows, its rows of the rows changed in {input} recomputed when it changed otherwise, whole otherwise"
            ),
            None => when.to_owned(),
        };
        return format!(
            "built from the rows added to {} {when}",
            addable.join(" or ")
        );
    }
    if let Some((_, keyed, key)) = grouped.first() {
        let inputs: Vec<&str> = grouped.iter().map(|(input, ..)| input.as_str()).collect();
        let sets = match keyed {
            Keyed::Groups => "groups of",
            Keyed::Partitions => "partitions by",
            Keyed::Rows => "rows of",
        };
        return format!(
            "its {sets} ({key}) that rows added to {} fall in recomputed {when}",
            inputs.join(" or ")
        );
    }
    format!("rebuilt whole: {}", problems.join("; "))
}

/// How a query's rows fall into sets by a key that can be recomputed set by set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    /// The groups of one aggregate.
    Groups,
    /// The partitions of window functions all partitioned alike.
    Partitions,
    /// The rows of a row-by-row query, by columns of its output: those a changed input
    /// row gave before and gives after the change.
    Rows,
}

/// The aggregate or window functions a query's rows come from, under the projections
/// and filters above them.
pub struct KeyedNode<'a> {
    pub keyed: Keyed,
    /// The group or partition expressions.
    pub key: Vec<Expr>,
    /// What the aggregate or the window functions read.
    pub input: &'a LogicalPlan,
    projections: Vec<&'a Projection>,
}

/// The aggregate (no `HAVING` above it) or window functions partitioned alike (filters
/// above allowed, `QUALIFY` say) under a query's projections and filters; None for any
/// other query.
pub fn keyed_node(plan: &LogicalPlan) -> Option<KeyedNode<'_>> {
    let Top {
        projections,
        filtered,
        node,
    } = top(plan);
    match node {
        LogicalPlan::Aggregate(aggregate) if !filtered => Some(KeyedNode {
            keyed: Keyed::Groups,
            key: aggregate.group_expr.clone(),
            input: &aggregate.input,
            projections,
        }),
        // `SELECT DISTINCT`: each distinct row is a group of all its columns.
        LogicalPlan::Distinct(Distinct::All(input)) if !filtered => Some(KeyedNode {
            keyed: Keyed::Groups,
            key: input
                .schema()
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect(),
            input,
            projections,
        }),
        LogicalPlan::Window(window) => Some(KeyedNode {
            keyed: Keyed::Partitions,
            key: partitioned_alike(&window.window_expr)?,
            input: &window.input,
            projections,
        }),
        _ => None,
    }
}

/// The first node of a query below its projections, filters and aliases.
struct Top<'a> {
    projections: Vec<&'a Projection>,
    /// Whether a filter is among them.
    filtered: bool,
    node: &'a LogicalPlan,
}

fn top(plan: &LogicalPlan) -> Top<'_> {
    let mut projections = Vec::new();
    let mut filtered = false;
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Projection(projection) => {
                projections.push(projection);
                node = &projection.input;
            }
            LogicalPlan::Filter(filter) => {
                filtered = true;
                node = &filter.input;
            }
            LogicalPlan::SubqueryAlias(alias) => node = &alias.input,
            _ => {
                return Top {
                    projections,
                    filtered,
                    node,
                };
            }
        }
    }
}

/// Whether every one of the projections passes the column `name` through as it is.
fn passes(projections: &[&Projection], name: &str) -> bool {
    projections.iter().all(|projection| {
        projection
            .expr
            .iter()
            .any(|expr| matches!(expr, Expr::Column(column) if column.name == name))
    })
}

/// The key of a query whose rows fall into such sets ([`keyed_node`]), of plain columns
/// that the projections above pass through under their names, row by row in `input`
/// below it (read once). None for any other query.
pub fn recompute_key(plan: &LogicalPlan, input: &TableName) -> Option<(Keyed, Vec<String>)> {
    let node = keyed_node(plan)?;
    let key: Vec<String> = node
        .key
        .iter()
        .map(|expr| match expr {
            Expr::Column(column) => Some(column.name.clone()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (!key.is_empty()
        && key.iter().all(|name| passes(&node.projections, name))
        && scans(plan, input) == 1
        && added_rows_problem(node.input, input).is_none())
    .then_some((node.keyed, key))
}

/// The output columns of a query that pass a column of its input through under the
/// same name, from `columns` (the input's): keys by which a row-by-row query's rows can
/// be recomputed, with a filter on them that reaches the input's scan.
pub fn passed_through(plan: &LogicalPlan, columns: &[&str]) -> Vec<String> {
    let projections = top(plan).projections;
    plan.schema()
        .fields()
        .iter()
        .map(|field| field.name())
        .filter(|name| columns.contains(&name.as_str()) && passes(&projections, name))
        .cloned()
        .collect()
}

/// The `PARTITION BY` every window function shares, if they share one.
fn partitioned_alike(functions: &[Expr]) -> Option<Vec<Expr>> {
    let mut shared: Option<Vec<Expr>> = None;
    for function in functions {
        let Expr::WindowFunction(window) = function.clone().unalias() else {
            return None;
        };
        let partition_by = window.params.partition_by;
        match &shared {
            Some(shared) if *shared != partition_by => return None,
            Some(_) => {}
            None => shared = Some(partition_by),
        }
    }
    shared
}

/// How many times the plan (its subqueries too) scans `table`.
pub fn scans(plan: &LogicalPlan, table: &TableName) -> usize {
    let name = table.to_string();
    let mut scans = 0;
    let _ = plan.apply_with_subqueries(|node| {
        scans += usize::from(is_scan_of(node, &name));
        Ok(TreeNodeRecursion::Continue)
    });
    scans
}

/// What above a table's scan needs more than its new rows.
enum Blocker {
    Operator(&'static str),
    Union,
    Join(JoinType),
}

/// What a `UNION ALL` of the table with other tables gives from the table's added rows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unions {
    /// Nothing sound: a `STREAM` build would add the other tables' rows again each time.
    Refused,
    /// The added rows' branch alone, the others dropped ([`only_the_branches_reading`]):
    /// a rebuild gives the other branches' rows as the last build did.
    OfWhatIsAdded,
}

fn blocker(plan: &LogicalPlan, table: &TableName, unions: Unions) -> Option<Blocker> {
    let name = table.to_string();
    if !reads(plan, &name) {
        return None;
    }
    match plan {
        LogicalPlan::Aggregate(_) => {
            Some(Blocker::Operator("an aggregate (GROUP BY, count, sum…)"))
        }
        LogicalPlan::Window(_) => Some(Blocker::Operator("a window function")),
        LogicalPlan::Distinct(_) => Some(Blocker::Operator("DISTINCT")),
        LogicalPlan::Sort(_) => Some(Blocker::Operator("ORDER BY")),
        LogicalPlan::Limit(_) => Some(Blocker::Operator("LIMIT")),
        LogicalPlan::Union(union)
            if unions == Unions::Refused
                && !union.inputs.iter().all(|input| reads(input, &name)) =>
        {
            Some(Blocker::Union)
        }
        LogicalPlan::Join(join) => {
            let (left, right) = (reads(&join.left, &name), reads(&join.right, &name));
            let preserved = match join.join_type {
                JoinType::Inner => true,
                JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
                    left
                }
                JoinType::Right
                | JoinType::RightSemi
                | JoinType::RightAnti
                | JoinType::RightMark => right,
                JoinType::Full => false,
            };
            if preserved {
                blocker(if left { &join.left } else { &join.right }, table, unions)
            } else {
                Some(Blocker::Join(join.join_type))
            }
        }
        other => other
            .inputs()
            .into_iter()
            .find_map(|input| blocker(input, table, unions)),
    }
}

/// The plan with every `UNION ALL` branch that does not read `table` dropped, where
/// another branch does: what the plan gives from `table`'s added rows alone.
pub fn only_the_branches_reading(plan: LogicalPlan, table: &TableName) -> Result<LogicalPlan> {
    let name = table.to_string();
    plan.transform_up(|node| match node {
        LogicalPlan::Union(union) if union.inputs.iter().any(|input| reads(input, &name)) => {
            let inputs = union
                .inputs
                .into_iter()
                .map(|input| {
                    if reads(&input, &name) {
                        input
                    } else {
                        Arc::new(LogicalPlan::EmptyRelation(EmptyRelation {
                            produce_one_row: false,
                            schema: Arc::clone(input.schema()),
                        }))
                    }
                })
                .collect();
            Ok(Transformed::yes(LogicalPlan::Union(Union {
                inputs,
                schema: union.schema,
            })))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|transformed| transformed.data)
}

fn is_scan_of(node: &LogicalPlan, name: &str) -> bool {
    matches!(node, LogicalPlan::TableScan(scan) if scan.table_name.to_string() == name)
}

/// Whether the query gives the same rows from the same inputs: it calls no function whose
/// result may change between runs (`now()`, `random()`).
pub fn is_repeatable(plan: &LogicalPlan) -> bool {
    let mut repeatable = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|inner| {
                if let Expr::ScalarFunction(call) = inner
                    && call.func.signature().volatility != Volatility::Immutable
                {
                    repeatable = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    repeatable
}

/// Whether the plan (or a subquery in it) scans the table named `name`.
fn reads(plan: &LogicalPlan, name: &str) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if is_scan_of(node, name) {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// A session like `state` on which `table` is `rows`, and every other name what it is on
/// `state`: a build plans its query on it, and other builds are not affected.
pub async fn session_reading(
    state: &SessionState,
    table: &TableName,
    rows: Arc<dyn TableProvider>,
) -> Result<SessionState> {
    let catalogs = MemoryCatalogProviderList::new();
    let default_catalog = &state.config().options().catalog.default_catalog;
    let existing = state.catalog_list();
    for catalog_name in existing.catalog_names() {
        let Some(catalog) = existing.catalog(&catalog_name) else {
            continue;
        };
        let copy = MemoryCatalogProvider::new();
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let copied = MemorySchemaProvider::new();
            for name in schema.table_names() {
                if let Some(provider) = schema.table(&name).await? {
                    copied.register_table(name, provider)?;
                }
            }
            if catalog_name == *default_catalog && schema_name == table.layer.as_str() {
                copied.deregister_table(&table.name)?;
                copied.register_table(table.name.clone(), Arc::clone(&rows))?;
            }
            copy.register_schema(&schema_name, Arc::new(copied))?;
        }
        catalogs.register_catalog(catalog_name, Arc::new(copy));
    }
    if catalogs.catalog(default_catalog).is_none() {
        return Err(DataFusionError::Plan(format!(
            "the session has no catalog {default_catalog} to read {table} from"
        )));
    }
    Ok(SessionStateBuilder::new_from_existing(state.clone())
        .with_catalog_list(Arc::new(catalogs))
        .build())
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;
    use strata_language::Layer;

    use super::*;
    use crate::compile::register_layers;

    async fn plan(sql: &str) -> LogicalPlan {
        let ctx = SessionContext::new();
        register_layers(&ctx).unwrap();
        ctx.sql("CREATE TABLE raw.readings (id BIGINT, sensor VARCHAR, value DOUBLE) AS VALUES (1, 'a', 1.0)")
            .await
            .unwrap();
        ctx.sql("CREATE TABLE raw.sensors (sensor VARCHAR, site VARCHAR) AS VALUES ('a', 'north')")
            .await
            .unwrap();
        ctx.state().create_logical_plan(sql).await.unwrap()
    }

    fn readings() -> TableName {
        TableName {
            layer: Layer::Raw,
            name: "readings".into(),
        }
    }

    #[tokio::test]
    async fn row_by_row_queries_and_joins_against_whole_tables_are_incremental() {
        for sql in [
            "SELECT id, value * 2 AS double FROM raw.readings WHERE value > 0",
            "SELECT r.id, s.site FROM raw.readings r JOIN raw.sensors s USING (sensor)",
            "SELECT r.id, s.site FROM raw.readings r LEFT JOIN raw.sensors s USING (sensor)",
            "SELECT count(*) AS n, site FROM raw.sensors GROUP BY site",
        ] {
            assert_eq!(
                incremental_problem(&plan(sql).await, &readings()),
                None,
                "{sql}"
            );
        }
    }

    #[tokio::test]
    async fn what_needs_the_whole_history_is_refused() {
        for (sql, expected) in [
            (
                "SELECT sensor, count(*) AS n FROM raw.readings GROUP BY sensor",
                "an aggregate",
            ),
            (
                "SELECT id, row_number() OVER (PARTITION BY sensor ORDER BY id) AS n FROM raw.readings",
                "a window function",
            ),
            ("SELECT DISTINCT sensor FROM raw.readings", "DISTINCT"),
            (
                "SELECT s.site FROM raw.sensors s LEFT JOIN raw.readings r USING (sensor)",
                "a Left join",
            ),
            (
                "SELECT sensor FROM raw.readings UNION ALL SELECT sensor FROM raw.sensors",
                "a UNION",
            ),
        ] {
            let problem = incremental_problem(&plan(sql).await, &readings());
            assert!(
                problem
                    .as_deref()
                    .is_some_and(|text| text.starts_with(expected)),
                "{sql}: {problem:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_table_read_twice_is_not_built_from_its_added_rows() {
        for sql in [
            "SELECT a.id FROM raw.readings a JOIN raw.readings b USING (sensor)",
            "SELECT id FROM raw.readings WHERE value > (SELECT avg(value) FROM raw.readings)",
        ] {
            let problem = added_rows_problem(&plan(sql).await, &readings());
            assert!(
                problem
                    .as_deref()
                    .is_some_and(|text| text.contains("read more than once")),
                "{sql}: {problem:?}"
            );
        }
        let joined = "SELECT r.id, s.site FROM raw.readings r JOIN raw.sensors s USING (sensor)";
        assert_eq!(added_rows_problem(&plan(joined).await, &readings()), None);
        let counted = "SELECT sensor, count(*) AS n FROM raw.readings GROUP BY sensor";
        assert_eq!(
            added_rows_problem(&plan(counted).await, &readings()).as_deref(),
            Some("an aggregate (GROUP BY, count, sum…) needs every row of raw.readings")
        );
    }

    #[tokio::test]
    async fn a_union_all_gains_only_its_added_rows_branch() {
        let sql = "SELECT sensor FROM raw.readings WHERE value > 0 UNION ALL SELECT sensor FROM raw.sensors";
        let united = plan(sql).await;
        assert_eq!(added_rows_problem(&united, &readings()), None);
        let kept = only_the_branches_reading(united, &readings()).unwrap();
        let sensors = TableName {
            layer: Layer::Raw,
            name: "sensors".into(),
        };
        assert_eq!(scans(&kept, &readings()), 1);
        assert_eq!(scans(&kept, &sensors), 0, "{kept}");
        // Through a STREAM it stays refused: the other table's rows would come again.
        let streamed = plan(sql).await;
        assert!(incremental_problem(&streamed, &readings()).is_some());
    }

    #[tokio::test]
    async fn groups_and_partitions_are_recomputed_only_by_keys_passed_through() {
        let key = |sql: &'static str| async move { recompute_key(&plan(sql).await, &readings()) };
        let sensor = Some(vec!["sensor".to_owned()]);
        assert_eq!(
            key("SELECT sensor, count(*) AS n FROM raw.readings WHERE value > 0 GROUP BY sensor")
                .await,
            sensor.clone().map(|key| (Keyed::Groups, key))
        );
        assert_eq!(
            key("SELECT sensor, id, row_number() OVER (PARTITION BY sensor ORDER BY id) AS n FROM raw.readings QUALIFY n <= 3").await,
            sensor.clone().map(|key| (Keyed::Partitions, key))
        );
        assert_eq!(
            key("SELECT DISTINCT sensor FROM raw.readings WHERE value > 0").await,
            sensor.map(|key| (Keyed::Groups, key)),
            "each distinct row is a group of its columns"
        );
        for refused in [
            "SELECT sensor, count(*) AS n FROM raw.readings GROUP BY sensor HAVING count(*) > 1",
            "SELECT sensor AS s, count(*) AS n FROM raw.readings GROUP BY sensor",
            "SELECT count(*) AS n FROM raw.readings",
            "SELECT id, row_number() OVER (PARTITION BY sensor ORDER BY id) AS a, lag(id) OVER (PARTITION BY id ORDER BY id) AS b FROM raw.readings",
            "SELECT sensor, count(DISTINCT id) AS n FROM (SELECT DISTINCT sensor, id FROM raw.readings) GROUP BY sensor",
        ] {
            assert_eq!(key(refused).await, None, "{refused}");
        }
    }

    #[tokio::test]
    async fn rows_are_keyed_by_the_input_columns_the_query_passes_through() {
        let columns = ["id", "sensor", "value"];
        let key = |sql: &'static str| async move { passed_through(&plan(sql).await, &columns) };
        assert_eq!(
            key("SELECT r.id, r.sensor, s.site, r.value * 2 AS double FROM raw.readings r JOIN raw.sensors s USING (sensor) WHERE r.value > 0").await,
            ["id", "sensor"],
            "computed columns and the other table's are not keys"
        );
        assert_eq!(key("SELECT * FROM raw.readings").await, columns);
        assert!(
            key("SELECT id AS reading, upper(sensor) AS sensor FROM raw.readings")
                .await
                .is_empty(),
            "a renamed or computed column does not pass its input's through"
        );
    }

    #[tokio::test]
    async fn the_session_reads_the_given_rows_under_the_tables_name() {
        let ctx = SessionContext::new();
        register_layers(&ctx).unwrap();
        ctx.sql("CREATE TABLE raw.readings (id BIGINT) AS VALUES (1), (2), (3)")
            .await
            .unwrap();
        let new_rows = SessionContext::new();
        new_rows
            .sql("CREATE TABLE t (id BIGINT) AS VALUES (3)")
            .await
            .unwrap();
        let rows = new_rows.table_provider("t").await.unwrap();
        let state = session_reading(&ctx.state(), &readings(), rows)
            .await
            .unwrap();
        let count = |state: SessionState| async move {
            let plan = state
                .create_logical_plan("SELECT id FROM raw.readings")
                .await
                .unwrap();
            SessionContext::new_with_state(state)
                .execute_logical_plan(plan)
                .await
                .unwrap()
                .count()
                .await
                .unwrap()
        };
        assert_eq!(count(state).await, 1);
        assert_eq!(
            count(ctx.state()).await,
            3,
            "the run's own session is untouched"
        );
    }
}
