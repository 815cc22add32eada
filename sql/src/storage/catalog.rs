//! The published tables of a warehouse, found from its files alone, so a server can
//! start from the warehouse without the pipeline that built it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::catalog::{Session, TableProvider};
use datafusion::error::{DataFusionError, Result};

use crate::language::Layer;
use crate::storage::delta_publish::{self, DeltaReader};
use crate::storage::raw_table;
use crate::warehouse::Warehouse;

/// The suffix of the tables that hold rows set aside by `QUARANTINE` expectations.
pub const QUARANTINE_SUFFIX: &str = "__quarantine";

/// One published table: a raw table with at least one commit, or a Delta table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublishedTable {
    pub layer: Layer,
    pub name: String,
    pub dir: PathBuf,
}

impl PublishedTable {
    /// Whether the table holds quarantined rows rather than published ones.
    pub fn is_quarantine(&self) -> bool {
        self.name.ends_with(QUARANTINE_SUFFIX)
    }

    /// The storage a reader sees: Avro for raw tables, Delta Lake otherwise.
    pub fn format(&self) -> &'static str {
        match self.layer {
            Layer::Raw => "AVRO",
            _ => "DELTA",
        }
    }
}

/// Lists the published tables of the raw, enriched and ranked layers, sorted.
pub fn published_tables(warehouse: &Warehouse) -> std::io::Result<Vec<PublishedTable>> {
    let mut tables = Vec::new();
    for layer in [Layer::Raw, Layer::Enriched, Layer::Ranked] {
        let layer_dir = warehouse.root().join(layer.as_str());
        let entries = match std::fs::read_dir(&layer_dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let dir = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if is_published(layer, &dir) {
                tables.push(PublishedTable { layer, name, dir });
            }
        }
    }
    tables.sort();
    Ok(tables)
}

fn is_published(layer: Layer, dir: &Path) -> bool {
    match layer {
        Layer::Raw => raw_table::has_commits(dir),
        _ => dir.join("_delta_log").is_dir(),
    }
}

/// Opens a table for reading: its current version, or a Delta table's `version`.
///
/// The provider reads the version current when it was opened, so a query planned on
/// it sees one whole version even while a pipeline commits the next.
pub async fn open(
    table: &PublishedTable,
    version: Option<u64>,
    session: &dyn Session,
    reader: DeltaReader,
) -> Result<Arc<dyn TableProvider>> {
    match (table.layer, version) {
        (Layer::Raw, Some(_)) => Err(DataFusionError::Plan(format!(
            "{}.{} is a raw table; versions can be read from enriched and ranked (Delta) tables",
            table.layer, table.name
        ))),
        (Layer::Raw, None) => raw_table::provider(&table.dir, session)
            .await?
            .ok_or_else(|| {
                DataFusionError::Plan(format!("{}.{} has no data files", table.layer, table.name))
            }),
        (_, Some(version)) => {
            let opened = delta_publish::provider(&table.dir, Some(version), session, reader).await;
            match opened {
                Err(error) => match delta_publish::latest_version(&table.dir).await {
                    // Only look up the range when the version could not be read.
                    Ok(latest) if version > latest => Err(DataFusionError::Plan(format!(
                        "{}.{} has no version {version}; its versions are 0 to {latest}",
                        table.layer, table.name
                    ))),
                    _ => Err(error),
                },
                opened => opened,
            }
        }
        (_, None) => delta_publish::provider(&table.dir, None, session, reader).await,
    }
}
