//! `MERGE KEY … SEQUENCE BY … DELETE WHEN <condition>`: rows that delete their key, as a
//! change feed (Debezium's `op = 'd'`) delivers them. Each deletion is remembered with
//! its sequence in `<table>__deleted`, so a row of its key that arrives later but is
//! older than the deletion stays deleted, as a rebuild from every row has it.

use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, JoinType, lit};
use datafusion::prelude::{DataFrame, coalesce};
use deltalake_core::DeltaTable;
use strata_language::TableDef;
use strata_storage::delta_files::DeltaFiles;
use strata_storage::delta_publish::{self, MergeOn, Provenance};

use super::Build;
use super::publish::collect_keeping_schema;
use crate::error::{BuildStep, EngineError, Result};

/// The column that marks, in a build's rows, those that delete their key.
const MARKER: &str = "__strata_deletes";
/// A remembered deletion's sequence, beside the rows it is compared with.
const DELETED_AT: &str = "__strata_deleted_at";

/// A build of a table whose rows may delete their keys.
pub(super) struct Deleting<'a> {
    pub(super) build: &'a Build<'a>,
    pub(super) table: &'a TableDef,
    pub(super) key: &'a [String],
    pub(super) sequence_by: &'a str,
    /// The `DELETE WHEN` condition, as SQL over the table's columns.
    pub(super) condition: &'a str,
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

fn deleting_failed(error: datafusion::error::DataFusionError) -> EngineError {
    EngineError::at(BuildStep::ReadingStagedRows, error)
}

impl Deleting<'_> {
    /// Merges the latest row of each key into the existing table: a deletion removes its
    /// key's row, unless that row is newer, and is remembered first (a build that stops
    /// between the two commits remembers it again, the same way, when its rows are read
    /// again); a row older than its key's remembered deletion changes nothing.
    pub(super) async fn merge(
        &self,
        target: DeltaTable,
        latest: Vec<RecordBatch>,
        columns: &[String],
        provenance: Provenance,
    ) -> Result<(DeltaTable, u64)> {
        let deleted = delta_publish::open(&self.deleted_dir()).await?;
        let mut marked = self.marked(latest)?;
        if delta_publish::exists(&deleted) {
            marked = self.newer_than_deletions(marked, &deleted)?;
        }
        let rows = collect_keeping_schema(marked)
            .await
            .map_err(deleting_failed)?;
        let ctx = &self.build.compiled.ctx;
        let written = kept_rows(&rows)?;
        let deleting = rows
            .iter()
            .map(|batch| batch.num_rows() as u64)
            .sum::<u64>()
            > written;
        let source = if deleting {
            let deletions =
                self.deletions(ctx.read_batches(rows.clone()).map_err(deleting_failed)?)?;
            let deletions = deletions.collect().await.map_err(deleting_failed)?;
            if delta_publish::exists(&deleted) {
                let source = ctx.read_batches(deletions).map_err(deleting_failed)?;
                let key_and_sequence = self.key_and_sequence();
                let on = MergeOn {
                    key: self.key,
                    sequence_by: Some(self.sequence_by),
                    deletes: None,
                };
                delta_publish::merge(
                    deleted,
                    source,
                    on,
                    &key_and_sequence,
                    Provenance::default(),
                )
                .await?;
            } else {
                self.remember(deleted, deletions, false).await?;
            }
            let source = self.matched_deletions_only(&target, rows)?;
            collect_keeping_schema(source)
                .await
                .map_err(deleting_failed)?
        } else {
            rows
        };
        let source = ctx.read_batches(source).map_err(deleting_failed)?;
        let on = MergeOn {
            key: self.key,
            sequence_by: Some(self.sequence_by),
            deletes: Some(MARKER),
        };
        let merged = delta_publish::merge(target, source, on, columns, provenance).await?;
        Ok((merged, written))
    }

    /// Builds the table anew from the latest row of each key: the rows that delete their
    /// key are left out, and become the remembered deletions.
    pub(super) async fn rebuild(
        &self,
        target: DeltaTable,
        latest: Vec<RecordBatch>,
        provenance: Provenance,
    ) -> Result<(DeltaTable, u64)> {
        let marked = self.marked(latest)?;
        let deletions = collect_keeping_schema(self.deletions(marked.clone())?)
            .await
            .map_err(deleting_failed)?;
        let deleted = delta_publish::open(&self.deleted_dir()).await?;
        self.remember(deleted, deletions, true).await?;
        let kept = marked
            .filter(std::ops::Not::not(column(MARKER)))
            .and_then(|rows| rows.drop_columns(&[MARKER]))
            .map_err(deleting_failed)?;
        let rows = collect_keeping_schema(kept)
            .await
            .map_err(deleting_failed)?;
        let written = rows.iter().map(|batch| batch.num_rows() as u64).sum();
        let name = self.table.name.to_string();
        let table = delta_publish::write(
            target,
            rows,
            true,
            &self.table.partitioned_by,
            &name,
            provenance,
        )
        .await?;
        Ok((table, written))
    }

    fn deleted_dir(&self) -> strata_storage::TableDir {
        self.build.warehouse.table(&self.table.name.deleted())
    }

    fn key_and_sequence(&self) -> Vec<String> {
        self.key
            .iter()
            .cloned()
            .chain([self.sequence_by.to_owned()])
            .collect()
    }

    /// The rows, each marked whether the condition holds for it (NULL is no deletion).
    fn marked(&self, latest: Vec<RecordBatch>) -> Result<DataFrame> {
        let frame = self
            .build
            .compiled
            .ctx
            .read_batches(latest)
            .map_err(deleting_failed)?;
        let condition = frame.parse_sql_expr(self.condition).map_err(|error| {
            EngineError::at(
                BuildStep::Planning,
                datafusion::error::DataFusionError::Plan(format!(
                    "DELETE WHEN {}: {error}",
                    self.condition
                )),
            )
        })?;
        frame
            .with_column(MARKER, coalesce(vec![condition, lit(false)]))
            .map_err(deleting_failed)
    }

    /// The key and sequence of the rows that delete their key.
    fn deletions(&self, marked: DataFrame) -> Result<DataFrame> {
        let columns: Vec<Expr> = self.key_and_sequence().iter().map(|c| column(c)).collect();
        marked
            .filter(column(MARKER))
            .and_then(|rows| rows.select(columns))
            .map_err(deleting_failed)
    }

    /// The rows without the deletions of keys the table does not hold (read only when
    /// there are deletions, since it reads the table's keys): those change
    /// nothing but the remembered deletions, and a merge whose unmatched rows are not
    /// all inserted writes a broken change feed (deltalake 1.1).
    fn matched_deletions_only(
        &self,
        target: &DeltaTable,
        rows: Vec<RecordBatch>,
    ) -> Result<DataFrame> {
        let rows = self
            .build
            .compiled
            .ctx
            .read_batches(rows)
            .map_err(deleting_failed)?;
        let (keys, on) = self.keys_of(target, "__strata_held_", Vec::new())?;
        let kept = rows
            .clone()
            .filter(std::ops::Not::not(column(MARKER)))
            .map_err(deleting_failed)?;
        rows.filter(column(MARKER))
            .and_then(|deletions| deletions.join_on(keys, JoinType::LeftSemi, on))
            .and_then(|deletions| kept.union(deletions))
            .map_err(deleting_failed)
    }

    /// The key columns of `table`'s rows, renamed with `prefix`, and `extra` columns;
    /// with the condition that matches them to the key of this build's rows.
    fn keys_of(
        &self,
        table: &DeltaTable,
        prefix: &str,
        extra: Vec<Expr>,
    ) -> Result<(DataFrame, Vec<Expr>)> {
        let renamed = |name: &str| format!("{prefix}{name}");
        let columns: Vec<Expr> = self
            .key
            .iter()
            .map(|name| column(name).alias(renamed(name)))
            .chain(extra)
            .collect();
        let rows = self
            .build
            .compiled
            .ctx
            .read_table(Arc::new(
                DeltaFiles::try_new(table).map_err(deleting_failed)?,
            ))
            .and_then(|rows| rows.select(columns))
            .map_err(deleting_failed)?;
        let on = self
            .key
            .iter()
            .map(|name| column(name).eq(column(&renamed(name))))
            .collect();
        Ok((rows, on))
    }

    /// The rows not older than their key's remembered deletion.
    fn newer_than_deletions(&self, marked: DataFrame, deleted: &DeltaTable) -> Result<DataFrame> {
        let names: Vec<String> = marked
            .schema()
            .fields()
            .iter()
            .map(|field| field.name().clone())
            .collect();
        let sequence = column(self.sequence_by).alias(DELETED_AT);
        let (deletions, on) = self.keys_of(deleted, "__strata_deleted_", vec![sequence])?;
        marked
            .join_on(deletions, JoinType::Left, on)
            .and_then(|joined| {
                joined.filter(
                    column(DELETED_AT)
                        .is_null()
                        .or(column(self.sequence_by).gt(column(DELETED_AT))),
                )
            })
            .and_then(|rows| rows.select(names.iter().map(|name| column(name)).collect::<Vec<_>>()))
            .map_err(deleting_failed)
    }

    /// Writes the remembered deletions: added to, or (`replace`) replacing, those kept.
    async fn remember(
        &self,
        deleted: DeltaTable,
        rows: Vec<RecordBatch>,
        replace: bool,
    ) -> Result<()> {
        let name = self.table.name.deleted().to_string();
        delta_publish::write(deleted, rows, replace, &[], &name, Provenance::default()).await?;
        Ok(())
    }
}

/// The rows of a build that are kept (not deletions).
fn kept_rows(rows: &[RecordBatch]) -> Result<u64> {
    let mut kept = 0;
    for batch in rows {
        let marker = batch
            .column_by_name(MARKER)
            .and_then(|marker| marker.as_any().downcast_ref::<BooleanArray>())
            .ok_or_else(|| {
                deleting_failed(datafusion::error::DataFusionError::Internal(
                    "the deletion marker is missing".into(),
                ))
            })?;
        kept += (marker.len() - marker.true_count()) as u64;
    }
    Ok(kept)
}
