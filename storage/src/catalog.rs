//! The published tables of a warehouse, found from its files alone, so a server can
//! start from the warehouse without the pipeline that built it.

use std::sync::Arc;

use datafusion::catalog::{Session, TableProvider};
use datafusion::error::{DataFusionError, Result};
use strata_language::{Format, Layer, TableName};

use crate::commit_log::CommitLog;
use crate::delta_publish::{self, DeltaReader};
use crate::error::StorageError;
use crate::paths::{TableDir, Warehouse};
use crate::raw_table;
use crate::snapshots::DeltaSnapshots;

/// One published table: a raw table with at least one commit, or a Delta table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTable {
    pub name: TableName,
    pub dir: TableDir,
}

impl PublishedTable {
    /// Whether the table holds rows set aside (quarantined or rejected) rather than
    /// published ones.
    pub fn is_set_aside(&self) -> bool {
        self.name.is_set_aside()
    }

    /// The storage a reader sees, as its layer stores it.
    pub fn format(&self) -> Format {
        self.name.layer.format().unwrap_or(Format::Delta)
    }
}

/// Lists the published tables of the raw, enriched and ranked layers, sorted.
pub async fn published_tables(warehouse: &Warehouse) -> crate::Result<Vec<PublishedTable>> {
    let mut tables = Vec::new();
    for layer in [Layer::Raw, Layer::Enriched, Layer::Ranked] {
        let layer_dir = warehouse.layer_dir(layer);
        let listing = warehouse
            .store()
            .list_with_delimiter(Some(&layer_dir))
            .await
            .map_err(|error| StorageError::store(&warehouse.display_path(&layer_dir), &error))?;
        for prefix in listing.common_prefixes {
            let Some(name) = prefix.filename().map(str::to_owned) else {
                continue;
            };
            let name = TableName { layer, name };
            let dir = warehouse.table(&name);
            if layer == Layer::Raw && has_rejects(&name, &dir).await {
                tables.push(PublishedTable {
                    name: name.rejects(),
                    dir: dir.clone(),
                });
            }
            if is_published(&name, &dir).await {
                tables.push(PublishedTable { name, dir });
            }
        }
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tables)
}

/// The published table of that name, looking at its own directory only (no listing of
/// the layer), or not at all when `snapshots` saw it within their interval.
pub async fn find(
    warehouse: &Warehouse,
    name: &TableName,
    snapshots: Option<&DeltaSnapshots>,
) -> Option<PublishedTable> {
    // A name from a client's query must not reach outside its layer's directory.
    if name.name.is_empty() || name.name.starts_with('.') || name.name.contains(['/', '\\']) {
        return None;
    }
    if let Some(table) = name.rejects_of() {
        let dir = warehouse.table(&table);
        return has_rejects(&table, &dir).await.then(|| PublishedTable {
            name: name.clone(),
            dir,
        });
    }
    let dir = warehouse.table(name);
    let seen = snapshots.is_some_and(|snapshots| snapshots.seen_recently(&dir));
    (seen || is_published(name, &dir).await).then(|| PublishedTable {
        name: name.clone(),
        dir,
    })
}

/// Whether the raw table in `dir` has committed rejected rows.
async fn has_rejects(name: &TableName, dir: &TableDir) -> bool {
    CommitLog::new(dir)
        .has_reject_files()
        .await
        .unwrap_or_else(|error| {
            tracing::warn!("{name}: {error}");
            false
        })
}

async fn is_published(name: &TableName, dir: &TableDir) -> bool {
    match name.layer.format() {
        Some(Format::Avro) => raw_table::has_commits(dir).await.unwrap_or_else(|error| {
            // Listed, so that reading it reports the problem instead of "unknown table".
            tracing::warn!("{name}: {error}");
            true
        }),
        _ => delta_publish::has_table(dir).await,
    }
}

/// Opens a table for reading: its current version (a Delta table's from `snapshots`
/// when given), or a Delta table's `version`.
///
/// The provider reads the version current when it was opened, so a query planned on
/// it sees one whole version even while a pipeline commits the next.
pub async fn open(
    table: &PublishedTable,
    version: Option<u64>,
    session: &dyn Session,
    reader: DeltaReader,
    snapshots: Option<&DeltaSnapshots>,
) -> Result<Arc<dyn TableProvider>> {
    match (table.format(), version) {
        (Format::Avro, Some(_)) => Err(DataFusionError::Plan(format!(
            "{} is a raw table; versions can be read from enriched and ranked (Delta) tables",
            table.name
        ))),
        (Format::Avro, None) => {
            let provider = if table.name.rejects_of().is_some() {
                raw_table::rejects_provider(&table.dir, session).await?
            } else {
                raw_table::provider(&table.dir, session).await?
            };
            provider
                .ok_or_else(|| DataFusionError::Plan(format!("{} has no data files", table.name)))
        }
        (_, Some(version)) => {
            let opened = delta_publish::provider(&table.dir, Some(version), session, reader).await;
            match opened {
                Err(error) => match delta_publish::latest_version(&table.dir).await {
                    // Only look up the range when the version could not be read.
                    Ok(latest) if version > latest => Err(DataFusionError::Plan(format!(
                        "{} has no version {version}; its versions are 0 to {latest}",
                        table.name
                    ))),
                    _ => Err(error),
                },
                opened => opened,
            }
        }
        (_, None) => match snapshots {
            Some(snapshots) => match snapshots.latest(&table.dir).await? {
                Some(latest) => delta_publish::reader_of(&latest, session, reader).await,
                None => Err(DataFusionError::Plan(format!("{} is gone", table.name))),
            },
            None => delta_publish::provider(&table.dir, None, session, reader).await,
        },
    }
}
