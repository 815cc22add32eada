//! What a table added since a reader last read it, for incremental builds: the commits
//! of a raw table from a version on, or the files a Delta table added after a version.
//!
//! A position is "the next version": a reader that recorded position `p` reads the
//! versions `p` and later. Both kinds of table count their versions from 0, so a first
//! read (no position) and a read from 0 are the same: the whole table.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::{DataFusionError, Result};
use deltalake_core::DeltaTable;
use deltalake_core::delta_datafusion::DeltaCdfTableProvider;
use deltalake_core::table::config::TablePropertiesExt;
use strata_language::Format;

use crate::avro_sink::storage_schema;
use crate::commit_log::CommitLog;
use crate::delta_files::DeltaFiles;
use crate::delta_publish;
use crate::paths::TableDir;
use crate::raw_table;

/// The rows a reader at some position has not read yet.
#[derive(Debug)]
pub struct Increment {
    /// Where the table stands now: what the reader records, to read from next time.
    pub position: u64,
    /// The rows to read: only the new ones or, when `whole`, the whole table.
    pub rows: Arc<dyn TableProvider>,
    /// The whole table is read: there was no position, or the table was rewritten
    /// (a full refresh, a replace) since it, so "what was added" has no meaning.
    pub whole: bool,
}

impl Increment {
    /// Whether the table did not change since `since`.
    pub fn is_empty(&self, since: Option<u64>) -> bool {
        !self.whole && Some(self.position) == since
    }
}

/// The rows of the table in `dir`, stored as `format`, added at or after version `since`
/// (all of them without one). `planned` is the table's schema, for a table with no rows.
pub async fn read(
    dir: &TableDir,
    format: Format,
    since: Option<u64>,
    planned: &SchemaRef,
    session: &dyn Session,
) -> Result<Increment> {
    let found = match format {
        Format::Avro => raw_since(dir, since, session).await?,
        _ => delta_since(dir, since).await?,
    };
    Ok(Increment {
        position: found.position,
        rows: found
            .rows
            .unwrap_or_else(|| Arc::new(EmptyTable::new(storage_schema(planned)))),
        whole: found.whole,
    })
}

/// The rows of the table in `dir` that a reader at position `since` had read: a raw
/// table's commits before it, or a Delta table as its version `since - 1` was. `None`
/// when they cannot be told apart any more (the table rewritten since, a compaction
/// across the position, the version's log removed).
pub async fn read_before(
    dir: &TableDir,
    format: Format,
    since: u64,
    planned: &SchemaRef,
    session: &dyn Session,
) -> Result<Option<Arc<dyn TableProvider>>> {
    let empty = || Arc::new(EmptyTable::new(storage_schema(planned))) as Arc<dyn TableProvider>;
    match format {
        Format::Avro => {
            let folded = CommitLog::new(dir)
                .folded()
                .await
                .map_err(DataFusionError::from)?;
            let Some(files) = folded.files_before(since) else {
                return Ok(None);
            };
            Ok(Some(
                raw_table::avro_files(dir, &files, session)
                    .await?
                    .unwrap_or_else(empty),
            ))
        }
        _ => {
            let Some(version) = since.checked_sub(1) else {
                return Ok(Some(empty()));
            };
            let Ok(table) = delta_publish::load(dir, Some(version)).await else {
                return Ok(None);
            };
            Ok(Some(Arc::new(DeltaFiles::try_new(&table)?)))
        }
    }
}

/// The rows the Delta table in `dir` changed at or after version `since`, up to its
/// version now, from its change data feed: each inserted and deleted row, and each
/// updated one before and after, with `_change_type`. `None` when the table does not
/// record its changes (made before Strata enabled the feed). A feed that does not reach
/// back to `since` (its files vacuumed) fails when it is read; from past the table's
/// version there are no changes.
pub async fn delta_changes(dir: &TableDir, since: u64) -> Result<Option<Increment>> {
    let table = delta_publish::load(dir, None).await?;
    let snapshot = table
        .snapshot()
        .map_err(|error| DataFusionError::External(Box::new(error)))?;
    if !snapshot.table_config().enable_change_data_feed() {
        return Ok(None);
    }
    let Some(version) = table.version() else {
        return Ok(None);
    };
    if since > version {
        let none = DeltaFiles::with_files(&table, |_| false)?;
        return Ok(Some(Increment {
            position: version + 1,
            rows: Arc::new(EmptyTable::new(with_change_columns(&none.schema()))),
            whole: false,
        }));
    }
    let changes = table
        .scan_cdf()
        .with_starting_version(since)
        .with_ending_version(version);
    let rows = DeltaCdfTableProvider::try_new(changes)
        .map_err(|error| DataFusionError::External(Box::new(error)))?;
    Ok(Some(Increment {
        position: version + 1,
        rows: Arc::new(rows),
        whole: false,
    }))
}

/// A table's columns as its change rows have them: with `_change_type` (`insert`,
/// `delete`, `update_preimage`, `update_postimage`), `_commit_version` and
/// `_commit_timestamp`, as Delta's change data feed names them.
pub fn with_change_columns(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend([
        Field::new("_change_type", DataType::Utf8, true),
        Field::new("_commit_version", DataType::UInt64, true),
        Field::new(
            "_commit_timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
    ]);
    Arc::new(Schema::new(fields))
}

/// What a read found: as [`Increment`], with no provider when there is no file to read.
struct Found {
    position: u64,
    rows: Option<Arc<dyn TableProvider>>,
    whole: bool,
}

async fn raw_since(dir: &TableDir, since: Option<u64>, session: &dyn Session) -> Result<Found> {
    let folded = CommitLog::new(dir)
        .folded()
        .await
        .map_err(DataFusionError::from)?;
    let added = since.and_then(|since| folded.files_since(since));
    let whole = added.is_none();
    let files = added.unwrap_or_else(|| folded.data_files());
    Ok(Found {
        position: folded.next_version,
        rows: raw_table::avro_files(dir, &files, session).await?,
        whole,
    })
}

async fn delta_since(dir: &TableDir, since: Option<u64>) -> Result<Found> {
    let table = delta_publish::load(dir, None).await?;
    let position = table.version().map_or(0, |version| version + 1);
    let read = |keep: &dyn Fn(&str) -> bool, whole| {
        let files = DeltaFiles::with_files(&table, keep)?;
        let rows = (!files.is_empty()).then(|| Arc::new(files) as Arc<dyn TableProvider>);
        Ok(Found {
            position,
            rows,
            whole,
        })
    };
    if since == Some(position) {
        return read(&|_| false, false);
    }
    let added = match since {
        Some(since) if since > 0 && since < position => {
            delta_publish::files_added(&table, since, position)
                .await
                .map_err(DataFusionError::from)?
        }
        _ => None,
    };
    match added {
        // A file added since and compacted away since holds new rows among old ones.
        Some(added) if added.is_subset(&file_paths(&table)?) => {
            read(&|path| added.contains(path), false)
        }
        _ => read(&|_| true, true),
    }
}

/// The paths of the files of a Delta table's loaded version.
fn file_paths(table: &DeltaTable) -> Result<HashSet<String>> {
    let snapshot = table
        .snapshot()
        .map_err(|error| DataFusionError::External(Box::new(error)))?;
    Ok(snapshot
        .log_data()
        .iter()
        .map(|file| file.path().into_owned())
        .collect())
}
