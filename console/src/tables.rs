//! What a table page shows: columns, versions (Delta history or the raw commit log)
//! with their rows, partitions, the rows set aside, and a sample of rows, each as the
//! viewer may see it through the table's masks and row filters.

use std::collections::BTreeSet;

use datafusion::arrow::json::ArrayWriter;
use datafusion::common::TableReference;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use serde_json::{Value, json};
use strata_access::catalog::reader_session;
use strata_access::{CATALOG, Reader, TablePolicy, Viewer, Visibility};
use strata_language::{Format, TableName};
use strata_storage::catalog::{PublishedTable, find};
use strata_storage::delta_publish::{self, DeltaReader};
use strata_storage::{CommitLog, Warehouse};

use crate::error::{Error, Result};

/// Rows in a table page's sample.
const SAMPLE_ROWS: usize = 20;
/// Versions a table page lists, newest first.
const HISTORY: usize = 50;

/// The query of a table's sample rows, as the audit trail records it.
pub(crate) fn sample_sql(table: &str) -> String {
    format!("SELECT * FROM {table} LIMIT {SAMPLE_ROWS}")
}

/// Everything a table page shows `viewer`, as JSON. Under a policy the sample and the
/// counts are the viewer's; partitions (directory names hold stored values) are not
/// listed, and with a row filter neither are the rows of each version.
pub(crate) async fn page(warehouse: &Warehouse, name: &str, viewer: &Viewer) -> Result<Value> {
    let table = published(warehouse, name).await?;
    let ctx = viewer_context(warehouse, viewer);
    let reference = reference(&table.name);
    let provider = ctx.table_provider(reference.clone()).await?;
    let schema: Vec<Value> = provider
        .schema()
        .fields()
        .iter()
        .map(|field| {
            json!({
                "name": field.name(),
                "type": field.data_type().to_string(),
                "nullable": field.is_nullable(),
            })
        })
        .collect();
    let rows = count(&ctx, &reference).await?;
    let sample = ctx
        .sql(&sample_sql(&reference.to_quoted_string()))
        .await?
        .collect()
        .await?;
    let mut writer = ArrayWriter::new(Vec::new());
    for batch in &sample {
        writer.write(batch)?;
    }
    writer.finish()?;
    let sample: Value = serde_json::from_slice(&writer.into_inner()).unwrap_or(json!([]));
    let (mut history, mut partitions) = match table.format() {
        Format::Avro => raw_history(&table).await?,
        _ => delta_history(&table).await?,
    };
    let policy = TablePolicy::load(warehouse, &table.name)
        .await
        .map_err(|error| Error::Policy(error.to_string()))?
        .filter(|policy| !policy.is_empty());
    if let Some(policy) = &policy {
        partitions.clear();
        if !policy.row_filters.is_empty() {
            for version in &mut history {
                version["rows"] = Value::Null;
                version["rejected"] = Value::Null;
            }
        }
    }
    Ok(json!({
        "table": table.name.to_string(),
        "format": match table.format() { Format::Avro => "avro", _ => "delta" },
        "location": table.dir.location().display(),
        "rows": rows,
        "schema": schema,
        "history": history,
        "partitions": partitions,
        "policy": policy.map(|policy| json!({
            "masked": policy.masked_columns().collect::<Vec<_>>(),
            "row_filters": policy.row_filters.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        })),
        "set_aside": set_aside(warehouse, &ctx, &table.name).await?,
        "sample": sample,
    }))
}

/// A session whose catalog is the warehouse as `viewer` sees it.
fn viewer_context(warehouse: &Warehouse, viewer: &Viewer) -> SessionContext {
    let visibility = Visibility::new(warehouse.clone(), true, DeltaReader::Native);
    reader_session(visibility, Reader::Viewer(viewer.clone()), "enriched")
}

fn reference(name: &TableName) -> TableReference {
    TableReference::full(CATALOG, name.layer.as_str(), name.name.as_str())
}

async fn published(warehouse: &Warehouse, name: &str) -> Result<PublishedTable> {
    let unknown = || Error::UnknownTable(name.to_owned());
    let (layer, table) = name.split_once('.').ok_or_else(unknown)?;
    let layer = strata_language::Layer::parse(layer).ok_or_else(unknown)?;
    let name = TableName {
        layer,
        name: table.to_owned(),
    };
    find(warehouse, &name, None).await.ok_or_else(unknown)
}

async fn count(ctx: &SessionContext, table: &TableReference) -> Result<u64> {
    let batches = ctx
        .sql(&format!(
            "SELECT count(*) AS n FROM {}",
            table.to_quoted_string()
        ))
        .await?
        .collect()
        .await?;
    let value = batches
        .first()
        .and_then(|batch| {
            batch
                .column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .map(|counts| counts.value(0))
        })
        .unwrap_or(0);
    Ok(value as u64)
}

/// The rows of the table's quarantine and rejects tables the viewer may count.
async fn set_aside(warehouse: &Warehouse, ctx: &SessionContext, name: &TableName) -> Result<Value> {
    let mut found = serde_json::Map::new();
    for (what, aside) in [
        ("quarantined", name.quarantine()),
        ("rejected", name.rejects()),
    ] {
        if find(warehouse, &aside, None).await.is_none() {
            continue;
        }
        // Refused under the table's policy (rejected lines cannot be masked).
        if let Ok(rows) = count(ctx, &reference(&aside)).await {
            found.insert(
                what.to_owned(),
                json!({ "table": aside.to_string(), "rows": rows }),
            );
        }
    }
    Ok(Value::Object(found))
}

/// A Delta table's versions (newest first) and its partitions.
async fn delta_history(table: &PublishedTable) -> Result<(Vec<Value>, Vec<String>)> {
    let delta = delta_publish::load(&table.dir, None).await?;
    let latest = delta.version().unwrap_or(0);
    let commits: Vec<_> = delta.history(Some(HISTORY)).collect().await;
    let mut history = Vec::new();
    for (index, commit) in commits.into_iter().enumerate() {
        let Ok(commit) = commit else { continue };
        let metrics = commit.info.get("operationMetrics");
        let metric = |key: &str| {
            metrics
                .and_then(|metrics| metrics.get(key))
                .and_then(|value| match value {
                    Value::String(text) => text.parse::<u64>().ok(),
                    other => other.as_u64(),
                })
        };
        let rows = metric("numOutputRows").or_else(|| {
            let changed = ["numTargetRowsInserted", "numTargetRowsUpdated"]
                .iter()
                .filter_map(|key| metric(key))
                .sum::<u64>();
            metrics.map(|_| changed)
        });
        history.push(json!({
            "version": latest.saturating_sub(index as u64),
            "at_ms": commit.timestamp,
            "operation": commit.operation,
            "mode": commit
                .operation_parameters
                .as_ref()
                .and_then(|parameters| parameters.get("mode").cloned()),
            "rows": rows,
        }));
    }
    let mut partitions = BTreeSet::new();
    let snapshot = delta.snapshot()?;
    for file in snapshot.log_data().iter() {
        let path = file.path().to_string();
        if let Some((directory, _)) = path.rsplit_once('/') {
            partitions.insert(directory.to_owned());
        }
    }
    Ok((history, partitions.into_iter().collect()))
}

/// A raw table's commits (newest first) and its partitions.
async fn raw_history(table: &PublishedTable) -> Result<(Vec<Value>, Vec<String>)> {
    let log = CommitLog::new(&table.dir);
    let mut history: Vec<Value> = log
        .commits()
        .await?
        .iter()
        .map(|commit| {
            json!({
                "version": commit.version,
                "run_id": commit.run_id,
                "operation": if commit.reset { "REPLACE" } else { "APPEND" },
                "files": commit.files.len(),
                "rows": commit.files.iter().map(|file| file.rows).sum::<u64>(),
                "rejected": commit.rejects.iter().map(|file| file.rows).sum::<u64>(),
            })
        })
        .collect();
    history.reverse();
    history.truncate(HISTORY);
    let mut partitions = BTreeSet::new();
    for file in log.data_files().await? {
        if let Some((directory, _)) = file.path.rsplit_once('/') {
            partitions.insert(directory.to_owned());
        }
    }
    Ok((history, partitions.into_iter().collect()))
}
