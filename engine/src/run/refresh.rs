//! How a table that reads no `STREAM` is refreshed. When exactly one of its inputs
//! changed since its last build, only by added rows, and its query is row by row in
//! that input (projections, filters, inner joins and left joins that keep its rows,
//! deterministic functions), the table is built from those rows alone: appended to a
//! replace table, merged into a MERGE KEY table. That gives the rows a rebuild would.
//! Otherwise it is rebuilt whole, and the run report says why.

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use serde_json::Value;
use strata_language::{Format, TableDef, TableName, WriteMode};
use strata_storage::increment;

use super::Build;
use super::publish::{StreamRows, read_versions};
use crate::error::{BuildStep, EngineError, Result};
use crate::stream::{added_rows_problem, is_repeatable};

/// How the table is built this time.
pub(super) enum Refresh {
    /// From the rows added to one input.
    Added(StreamRows),
    /// Whole, and why.
    Whole(String),
}

impl Refresh {
    /// The strategy as the run report and `strata check` say it.
    pub(super) fn describe(&self) -> String {
        match self {
            Refresh::Added(rows) => {
                format!("incremental: the rows added to {}, row by row", rows.table)
            }
            Refresh::Whole(why) => format!("full: {why}"),
        }
    }
}

/// Chooses how to build `table` (node `node`), which reads no `STREAM`, from what its
/// last commit `recorded` (its definition and each input's version).
pub(super) async fn choose(
    build: &Build<'_>,
    node: usize,
    table: &TableDef,
    recorded: Option<&Value>,
    definition: &str,
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
        read_versions(build, node).await?,
    ) else {
        return whole("it reads a landing source or a table with no version");
    };
    let now = now.as_object().cloned().unwrap_or_default();
    let changed: Vec<&String> = now
        .iter()
        .filter(|(name, version)| then.get(name.as_str()) != Some(version))
        .map(|(name, _)| name)
        .collect();
    let [input] = changed[..] else {
        return whole(&format!("{} of its inputs changed", changed.len()));
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
    if let Some(problem) = added_rows_problem(&plan, &input) {
        return whole(&problem);
    }
    let (Some(format), Some(version)) = (
        input.layer.format(),
        then.get(&input.to_string()).and_then(Value::as_u64),
    ) else {
        return whole(&format!("{input} was not read before"));
    };
    // A raw table's recorded version is its next one; a Delta table's is its last.
    let since = match format {
        Format::Avro => version,
        _ => version + 1,
    };
    let compiled = build.compiled;
    let Some(planned) = compiled
        .graph
        .upstream(node)
        .iter()
        .find(|&&up| compiled.pipeline.statements[up].name() == &input)
        .and_then(|&up| compiled.planned(up))
    else {
        return whole(&format!("{input} is not planned in this run"));
    };
    let rows = increment::read(
        &build.warehouse.table(&input),
        format,
        Some(since),
        &planned.schema,
        &compiled.ctx.state(),
    )
    .await
    .map_err(planning)?;
    if rows.whole {
        return whole(&format!(
            "{input} changed other than by added rows (rewritten, merged into, or compacted since)"
        ));
    }
    Ok(Refresh::Added(StreamRows {
        table: input,
        since: Some(since),
        rows,
    }))
}
