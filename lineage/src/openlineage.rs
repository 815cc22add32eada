//! OpenLineage run events for table builds (spec 2-0-2; facets `schema` 1-2-0,
//! `columnLineage` 1-2-0 and `errorMessage` 1-0-1, the versions openlineage-python
//! 1.54 writes), written as lines of JSON to a file or POSTed to an HTTP endpoint (the
//! OpenLineage HTTP transport: Marquez takes them at `/api/v1/lineage`).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde_json::{Value, json};
use strata_engine::run::{RunReport, TableStatus};
use strata_storage::Warehouse;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::plan::{ColumnLineage, Source};
use crate::table::TableLineage;

/// Who wrote the events.
pub const PRODUCER: &str = concat!(
    env!("CARGO_PKG_REPOSITORY"),
    "/tree/v",
    env!("CARGO_PKG_VERSION")
);
const RUN_EVENT: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const SCHEMA_FACET: &str =
    "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const COLUMN_LINEAGE_FACET: &str = "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet";
const ERROR_FACET: &str = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
/// The namespace of every job: Strata's table builds.
const JOB_NAMESPACE: &str = "strata";

/// One build of a table, as OpenLineage sees it.
pub struct Build<'a> {
    /// The run the build was part of; with the table, it names the OpenLineage run.
    pub run_id: &'a str,
    pub lineage: &'a TableLineage,
    /// The stored columns with their Arrow types, for the schema facet.
    pub schema: Vec<(String, String)>,
    /// The failure, for a build that failed.
    pub error: Option<String>,
    /// RFC 3339.
    pub ended_at: String,
}

/// The event that a build ended: COMPLETE or FAIL, with its inputs, its output, the
/// output's schema and column lineage, and the error of a failed build.
pub fn run_event(build: &Build<'_>, warehouse: &Warehouse) -> Value {
    let namespace = dataset_namespace(warehouse);
    let table = &build.lineage.table;
    let inputs: Vec<Value> = build
        .lineage
        .inputs()
        .into_iter()
        .map(|name| json!({ "namespace": namespace, "name": name }))
        .collect();
    let fields: serde_json::Map<String, Value> = build
        .lineage
        .columns
        .iter()
        .map(|(name, column)| {
            (
                name.clone(),
                json!({ "inputFields": input_fields(column, &namespace) }),
            )
        })
        .collect();
    let dataset: Vec<Value> = build
        .lineage
        .dataset
        .iter()
        .map(|(source, kinds)| {
            let transformations: Vec<Value> = kinds
                .iter()
                .map(|kind| json!({ "type": "INDIRECT", "subtype": kind.name() }))
                .collect();
            input_field(source, &namespace, transformations)
        })
        .collect();
    let schema: Vec<Value> = build
        .schema
        .iter()
        .map(|(name, kind)| json!({ "name": name, "type": kind }))
        .collect();
    let mut run_facets = serde_json::Map::new();
    if let Some(error) = &build.error {
        run_facets.insert(
            "errorMessage".to_owned(),
            json!({
                "_producer": PRODUCER,
                "_schemaURL": ERROR_FACET,
                "message": error,
                "programmingLanguage": "SQL",
            }),
        );
    }
    json!({
        "eventType": if build.error.is_some() { "FAIL" } else { "COMPLETE" },
        "eventTime": build.ended_at,
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT,
        "run": { "runId": run_uuid(build.run_id, table), "facets": run_facets },
        "job": { "namespace": JOB_NAMESPACE, "name": table },
        "inputs": inputs,
        "outputs": [{
            "namespace": namespace,
            "name": table,
            "facets": {
                "schema": { "_producer": PRODUCER, "_schemaURL": SCHEMA_FACET, "fields": schema },
                "columnLineage": {
                    "_producer": PRODUCER,
                    "_schemaURL": COLUMN_LINEAGE_FACET,
                    "fields": fields,
                    "dataset": dataset,
                },
            },
        }],
    })
}

/// The events of a run's builds: one for each table it built or failed to build.
pub fn run_events(
    report: &RunReport,
    lineage: &[TableLineage],
    schemas: &BTreeMap<String, Vec<(String, String)>>,
    warehouse: &Warehouse,
) -> Vec<Value> {
    report
        .tables
        .iter()
        .filter(|table| matches!(table.status, TableStatus::Built | TableStatus::Failed))
        .filter_map(|table| {
            let lineage = lineage.iter().find(|known| known.table == table.table)?;
            let ended = report.started_at_ms + report.duration_ms;
            let build = Build {
                run_id: &report.run_id,
                lineage,
                schema: schemas.get(&table.table).cloned().unwrap_or_default(),
                error: match table.status {
                    TableStatus::Failed => {
                        Some(table.error.clone().unwrap_or_else(|| "failed".to_owned()))
                    }
                    _ => None,
                },
                ended_at: rfc3339(ended),
            };
            Some(run_event(&build, warehouse))
        })
        .collect()
}

fn input_field(source: &Source, namespace: &str, transformations: Vec<Value>) -> Value {
    json!({
        "namespace": namespace,
        "name": source.table,
        "field": source.column,
        "transformations": transformations,
    })
}

fn input_fields(column: &ColumnLineage, namespace: &str) -> Vec<Value> {
    let mut by_source: BTreeMap<&Source, Vec<Value>> = BTreeMap::new();
    for (source, kind) in &column.direct {
        by_source
            .entry(source)
            .or_default()
            .push(json!({ "type": "DIRECT", "subtype": kind.name() }));
    }
    for (source, kinds) in &column.indirect {
        for kind in kinds {
            by_source
                .entry(source)
                .or_default()
                .push(json!({ "type": "INDIRECT", "subtype": kind.name() }));
        }
    }
    by_source
        .into_iter()
        .map(|(source, transformations)| input_field(source, namespace, transformations))
        .collect()
}

/// Where the datasets are: the warehouse's URL (`file:///…`, `s3://bucket/prefix`).
fn dataset_namespace(warehouse: &Warehouse) -> String {
    warehouse.location().to_url(true).to_string()
}

/// A UUID for a build: the same run and table always give the same one.
fn run_uuid(run_id: &str, table: &str) -> String {
    let half = |seed: u64| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (seed, run_id, table).hash(&mut hasher);
        hasher.finish()
    };
    let (high, low) = (half(1), half(2));
    // Version 8 (made by the application), RFC 9562 variant.
    let high = (high & !0xF000) | 0x8000;
    let low = (low & !(0b11 << 62)) | (0b10 << 62);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xFFFF,
        high & 0xFFFF,
        low >> 48,
        low & 0xFFFF_FFFF_FFFF
    )
}

/// Milliseconds since the epoch as RFC 3339, UTC.
pub fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Writes events to `target`: POSTed one by one to an `http(s)://` URL, otherwise
/// appended to a file as lines of JSON.
pub async fn export(events: &[Value], target: &str) -> Result<()> {
    if target.starts_with("http://") || target.starts_with("https://") {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|error| Error::Endpoint {
                target: target.to_owned(),
                why: error.to_string(),
            })?;
        for event in events {
            let refused = |why: String| Error::Endpoint {
                target: target.to_owned(),
                why,
            };
            let response = client
                .post(target)
                .header("content-type", "application/json")
                .body(event.to_string())
                .send()
                .await
                .map_err(|error| refused(error.to_string()))?;
            if !response.status().is_success() {
                return Err(refused(format!("answered {}", response.status())));
            }
        }
        return Ok(());
    }
    let failed = |error: std::io::Error| Error::Write {
        target: target.to_owned(),
        why: error.to_string(),
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target)
        .await
        .map_err(failed)?;
    let mut text = String::new();
    for event in events {
        text.push_str(&event.to_string());
        text.push('\n');
    }
    file.write_all(text.as_bytes()).await.map_err(failed)?;
    file.flush().await.map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_uuids_are_stable_and_well_formed() {
        let a = run_uuid("run-1", "ranked.x");
        assert_eq!(a, run_uuid("run-1", "ranked.x"));
        assert_ne!(a, run_uuid("run-1", "ranked.y"));
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'), "{a}");
        assert!("89ab".contains(&parts[3][..1]), "{a}");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_204_540_699), "2026-12-02T09:42:20.699Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
