//! Incremental reads: which queries can read only the new rows of a table
//! (`STREAM(<table>)`), and the session on which that table's name means those rows.

use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{JoinType, LogicalPlan};
use strata_language::TableName;

/// Why the query cannot be built from the new rows of `stream` alone, if it cannot: an
/// operator above the stream's scan needs the rows of earlier builds too.
pub fn incremental_problem(plan: &LogicalPlan, stream: &TableName) -> Option<String> {
    let stream_name = stream.to_string();
    if !reads(plan, &stream_name) {
        return None;
    }
    let whole = |what: &str| {
        Some(format!(
            "{what} over STREAM({stream}) would see only the rows added since the last build"
        ))
    };
    match plan {
        LogicalPlan::Aggregate(_) => whole("an aggregate (GROUP BY, count, sum…)"),
        LogicalPlan::Window(_) => whole("a window function"),
        LogicalPlan::Distinct(_) => whole("DISTINCT"),
        LogicalPlan::Sort(_) => whole("ORDER BY"),
        LogicalPlan::Limit(_) => whole("LIMIT"),
        LogicalPlan::Union(union)
            if !union.inputs.iter().all(|input| reads(input, &stream_name)) =>
        {
            Some(format!(
                "a UNION of STREAM({stream}) with another table would add that table's rows again at every build"
            ))
        }
        LogicalPlan::Join(join) => {
            let (left, right) = (
                reads(&join.left, &stream_name),
                reads(&join.right, &stream_name),
            );
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
                incremental_problem(if left { &join.left } else { &join.right }, stream)
            } else {
                Some(format!(
                    "a {} join keeps the other side's rows whether or not STREAM({stream}) matches them, so every build would add them again",
                    join.join_type
                ))
            }
        }
        other => other
            .inputs()
            .into_iter()
            .find_map(|input| incremental_problem(input, stream)),
    }
}

/// Whether the plan (or a subquery in it) scans the table named `name`.
fn reads(plan: &LogicalPlan, name: &str) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.to_string() == name
        {
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
