//! The pipelines a console draws: each table's layer, write mode, expectations,
//! upstream tables and last build; and their column lineage.

use serde_json::{Value, json};
use strata_engine::run::RunReport;
use strata_engine::{Compiled, Engine, compile};
use strata_language::{OnViolation, Statement, WriteMode};
use strata_storage::Warehouse;

use crate::Pipeline;
use crate::error::{Error, Result};

async fn compiled(warehouse: &Warehouse, pipeline: &Pipeline) -> Result<Compiled, String> {
    compile(&pipeline.sources, warehouse, &Engine::Embedded)
        .await
        .map_err(|error| error.to_string())
}

fn mode(mode: &WriteMode) -> String {
    match mode {
        WriteMode::Replace => "replace".to_owned(),
        WriteMode::Append => "append".to_owned(),
        WriteMode::Merge {
            key,
            sequence_by,
            delete_when,
        } => {
            let mut mode = format!("merge key ({})", key.join(", "));
            if let Some(sequence) = sequence_by {
                mode.push_str(&format!(" sequence by {sequence}"));
            }
            if let Some(condition) = delete_when {
                mode.push_str(&format!(" delete when {condition}"));
            }
            mode
        }
        WriteMode::Scd2 { key, sequence_by } => {
            format!("scd2 key ({}) sequence by {sequence_by}", key.join(", "))
        }
    }
}

fn violation(on_violation: OnViolation) -> &'static str {
    match on_violation {
        OnViolation::Quarantine => "quarantine",
        OnViolation::DropRow => "drop row",
        OnViolation::Fail => "fail",
    }
}

/// Every pipeline's tables, in build order, with what the newest run did to each.
pub(crate) async fn list(warehouse: &Warehouse, pipelines: &[Pipeline]) -> Result<Value> {
    let history = RunReport::history(warehouse).await?;
    let mut all = Vec::new();
    for pipeline in pipelines {
        let compiled = match compiled(warehouse, pipeline).await {
            Ok(compiled) => compiled,
            Err(error) => {
                all.push(json!({ "name": pipeline.name, "error": error, "tables": [] }));
                continue;
            }
        };
        let statements = &compiled.pipeline.statements;
        let tables: Vec<Value> = compiled
            .graph
            .order()
            .into_iter()
            .map(|node| {
                let statement = &statements[node];
                let name = statement.name().to_string();
                let upstream: Vec<String> = compiled
                    .graph
                    .upstream(node)
                    .iter()
                    .map(|up| statements[*up].name().to_string())
                    .collect();
                let last_build = history.iter().find_map(|report| {
                    report
                        .tables
                        .iter()
                        .find(|table| table.table == name)
                        .map(|table| {
                            json!({
                                "run_id": report.run_id,
                                "at_ms": report.started_at_ms,
                                "status": table.status,
                                "rows_written": table.rows_written,
                                "duration_ms": table.duration_ms,
                            })
                        })
                });
                match statement {
                    Statement::Source(source) => json!({
                        "table": name,
                        "layer": source.name.layer.as_str(),
                        "kind": "source",
                        "locations": source.definition.locations,
                        "upstream": upstream,
                        "last_build": last_build,
                    }),
                    Statement::Table(table) => json!({
                        "table": name,
                        "layer": table.name.layer.as_str(),
                        "kind": "table",
                        "mode": mode(&table.mode),
                        "partitioned_by": table.partitioned_by,
                        "expectations": table.expectations.iter().map(|expectation| json!({
                            "name": expectation.name,
                            "predicate": expectation.predicate.to_string(),
                            "on_violation": violation(expectation.on_violation),
                        })).collect::<Vec<_>>(),
                        "upstream": upstream,
                        "last_build": last_build,
                    }),
                }
            })
            .collect();
        all.push(json!({ "name": pipeline.name, "tables": tables }));
    }
    Ok(json!({ "pipelines": all }))
}

/// A table's column lineage, from the first pipeline that builds it.
pub(crate) async fn lineage(
    warehouse: &Warehouse,
    pipelines: &[Pipeline],
    table: &str,
) -> Result<Value> {
    for pipeline in pipelines {
        let Ok(compiled) = compiled(warehouse, pipeline).await else {
            continue;
        };
        if let Some(found) = strata_lineage::pipeline(&compiled)?
            .into_iter()
            .find(|lineage| lineage.table == table)
        {
            let mut value = found.to_json();
            value["table"] = json!(table);
            value["pipeline"] = json!(pipeline.name);
            return Ok(value);
        }
    }
    Err(Error::NoLineage(table.to_owned()))
}
