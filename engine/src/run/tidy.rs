//! Tidying a table as far as its readers allow: a raw table's small files are compacted
//! only where every table of the warehouse that reads it has read them, so no reader
//! falls back to reading it whole.

use std::time::Duration;

use strata_language::{Format, TableName};
use strata_storage::maintenance::{self, Tidied};
use strata_storage::{CommitLog, Warehouse, catalog, delta_publish, raw_compaction};

use super::new_run_id;
use super::publish::positions_read;
use crate::error::Result;

/// Compacts and vacuums one table and its quarantine or rejects (see
/// [`maintenance::tidy`], which keeps a raw table's replaced files for `retention`); a
/// raw table's small files are merged first.
pub async fn tidy(warehouse: &Warehouse, table: &TableName, retention: Duration) -> Result<Tidied> {
    let mut tidied = Tidied::default();
    if table.layer.format() == Some(Format::Avro) {
        let read_through = read_by_all(warehouse, table).await?;
        let dir = warehouse.table(table);
        tidied.compacted += raw_compaction::compact(&dir, read_through, &new_run_id()).await?;
    }
    tidied += maintenance::tidy(warehouse, table, retention).await?;
    Ok(tidied)
}

/// The position of `table` that every table built from it has read up to: the oldest
/// its readers recorded, or the table's own when none did (a table that never read
/// it reads it whole).
async fn read_by_all(warehouse: &Warehouse, table: &TableName) -> Result<u64> {
    let name = table.to_string();
    let mut oldest = CommitLog::new(&warehouse.table(table))
        .next_version()
        .await?;
    for reader in catalog::published_tables(warehouse).await? {
        if reader.name.layer.format() == Some(Format::Avro) || reader.name.is_set_aside() {
            continue;
        }
        let Ok(delta) = delta_publish::load(&reader.dir, None).await else {
            continue;
        };
        if let Some(recorded) = delta_publish::recorded_inputs(&delta).await {
            for position in positions_read(&recorded, &name) {
                oldest = oldest.min(position);
            }
        }
    }
    Ok(oldest)
}
