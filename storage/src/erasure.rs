//! Removing one subject's rows from a table (`strata forget`): a raw table's Avro files,
//! data and rejects, rewritten without them and committed in their place; a Delta
//! table's rows deleted (which its change feed records); and, on request, the files
//! older versions still read removed at once.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::compute::{filter_record_batch, not, or_kleene, prep_null_mask_filter};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::{Column, ScalarValue};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{Expr, lit};
use datafusion::prelude::SessionContext;
use deltalake_core::operations::vacuum::VacuumMode;

use crate::avro_sink::{AvroFileSink, FileSink, WrittenFile};
use crate::commit_log::{Added, CommitLog};
use crate::delta_files::DeltaFiles;
use crate::delta_publish::{self, Provenance};
use crate::error::{Result, StorageError};
use crate::paths::{self, TableDir};
use crate::raw_compaction::{self, Rewrite};
use crate::raw_table;
use crate::store::StoreRegistry;

/// The rejects table's column that holds the start of each bad row's text.
const REJECTED_TEXT: &str = "raw_text";
/// How many times an erasure re-reads a raw table's log after a build committed first.
const COMMIT_ATTEMPTS: usize = 5;

/// A subject's rows: those whose value in one of `columns` equals `value`, compared as
/// the column's type (`'42'` finds the BIGINT 42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub columns: Vec<String>,
    pub value: String,
}

impl Subject {
    /// The value as a column of `data_type` holds it; `None` when no such column can
    /// (`'abc'` in a BIGINT column).
    fn typed(&self, data_type: &DataType) -> Option<ScalarValue> {
        ScalarValue::try_from_string(self.value.clone(), data_type)
            .ok()
            .filter(|value| !value.is_null())
    }

    /// Which rows of `batch` hold the subject; a NULL holds nothing.
    pub fn rows_in(&self, batch: &RecordBatch) -> DFResult<BooleanArray> {
        let mut held = BooleanArray::from(vec![false; batch.num_rows()]);
        for name in &self.columns {
            let Some((at, field)) = batch
                .schema()
                .column_with_name(name)
                .map(|(at, f)| (at, f.clone()))
            else {
                continue;
            };
            let Some(value) = self.typed(field.data_type()) else {
                continue;
            };
            let mut equal = eq(batch.column(at), &value.to_scalar()?)?;
            if equal.null_count() > 0 {
                equal = prep_null_mask_filter(&equal);
            }
            held = or_kleene(&held, &equal)?;
        }
        Ok(held)
    }

    /// The rows holding the subject, as a predicate over `schema`'s columns; `None` when
    /// no column of it can.
    pub fn predicate(&self, schema: &Schema) -> Option<Expr> {
        self.columns
            .iter()
            .filter_map(|name| {
                let field = schema.field_with_name(name).ok()?;
                let value = self.typed(field.data_type())?;
                Some(Expr::Column(Column::from_name(name.as_str())).eq(lit(value)))
            })
            .reduce(Expr::or)
    }
}

/// Whether a rejected row's text holds `value` as a whole field, not inside a longer
/// word (`C12` is not in `C123`).
pub fn text_holds(text: &str, value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    let word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(value).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + value.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// What an erasure removed from a raw table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawErased {
    pub rows: u64,
    pub rejects: u64,
    /// Files rewritten (or dropped, when every row was the subject's); the files they
    /// replace stay for reads begun before, until [`vacuum_raw`] or the retention.
    pub files: u64,
}

/// Rewrites the raw table's files that hold the subject without its rows (and its
/// rejected rows whose text holds the value), committed as one version in their place
/// with their versions, so no stream reader reads a row again.
pub async fn erase_raw(dir: &TableDir, subject: &Subject, erasure: &str) -> Result<RawErased> {
    let ctx = SessionContext::new_with_state(
        SessionStateBuilder::new()
            .with_default_features()
            .with_runtime_env(StoreRegistry::runtime())
            .build(),
    );
    let log = CommitLog::new(dir);
    for _ in 0..COMMIT_ATTEMPTS {
        let folded = log.folded().await?;
        let version = folded.next_version;
        let mut erased = RawErased::default();
        let mut rewrite = Rewrite::default();
        let files = folded.files.iter().map(|added| (added, false));
        let rejects = folded.rejects.iter().map(|added| (added, true));
        for (index, (added, reject)) in files.chain(rejects).enumerate() {
            let relative = paths::erased_file(version, index, &added.file.path);
            let outcome = without_subject(dir, &ctx, added, subject, reject, relative).await;
            let (removed, kept) = match outcome {
                Ok(outcome) => outcome,
                Err(error) => {
                    rewrite.abandon(dir).await;
                    return Err(error);
                }
            };
            if removed == 0 {
                continue;
            }
            if reject {
                erased.rejects += removed;
                rewrite.rejects.extend(kept);
            } else {
                erased.rows += removed;
                rewrite.files.extend(kept);
            }
            erased.files += 1;
            rewrite.replaced.push(added.file.path.clone());
        }
        if rewrite.replaced.is_empty() {
            return Ok(erased);
        }
        if raw_compaction::commit_rewrite(dir, &log, version, erasure, rewrite).await? {
            return Ok(erased);
        }
    }
    Err(StorageError::CommitConflict {
        table: dir.to_string(),
        version: log.next_version().await?,
    })
}

/// Reads one file and, when it holds the subject, writes its other rows to `relative`
/// (no file when none is left); how many rows it held, and the file written.
async fn without_subject(
    dir: &TableDir,
    ctx: &SessionContext,
    added: &Added,
    subject: &Subject,
    reject: bool,
    relative: String,
) -> Result<(u64, Option<WrittenFile>)> {
    let failed = |error: DataFusionError| StorageError::Compaction {
        table: dir.to_string(),
        reason: error.to_string(),
    };
    let Some(provider) =
        raw_table::avro_files(dir, std::slice::from_ref(&added.file), &ctx.state())
            .await
            .map_err(failed)?
    else {
        return Ok((0, None));
    };
    let batches = ctx
        .read_table(Arc::clone(&provider))
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
    let mut kept = Vec::with_capacity(batches.len());
    let mut removed = 0;
    for batch in &batches {
        let held = if reject {
            rejected_rows_holding(batch, &subject.value)
        } else {
            subject.rows_in(batch).map_err(failed)?
        };
        removed += held.true_count() as u64;
        let rest = filter_record_batch(batch, &not(&held).map_err(|e| failed(e.into()))?)
            .map_err(|e| failed(e.into()))?;
        if rest.num_rows() > 0 {
            kept.push(rest);
        }
    }
    if removed == 0 || kept.is_empty() {
        return Ok((removed, None));
    }
    let schema = provider.schema();
    let mut sink = Box::new(AvroFileSink::create(dir, relative, &schema).map_err(failed)?);
    for batch in &kept {
        if let Err(error) = sink.write(batch).await {
            sink.abort().await;
            return Err(failed(error));
        }
    }
    let written = (sink as Box<dyn FileSink>).finish().await.map_err(failed)?;
    Ok((removed, Some(written)))
}

/// The rejected rows whose text holds `value` as a field.
fn rejected_rows_holding(batch: &RecordBatch, value: &str) -> BooleanArray {
    let text = batch
        .column_by_name(REJECTED_TEXT)
        .and_then(|column| column.as_any().downcast_ref::<StringArray>());
    match text {
        Some(text) => text
            .iter()
            .map(|text| Some(text.is_some_and(|text| text_holds(text, value))))
            .collect(),
        None => BooleanArray::from(vec![false; batch.num_rows()]),
    }
}

/// Deletes the subject's rows from the Delta table in `dir`; how many there were, or
/// `None` when there is no table there.
pub async fn erase_delta(dir: &TableDir, subject: &Subject) -> Result<Option<u64>> {
    if !delta_publish::has_table(dir).await {
        return Ok(None);
    }
    let table = delta_publish::load(dir, None).await?;
    let provider = DeltaFiles::try_new(&table)?;
    let Some(predicate) = subject.predicate(&provider.schema()) else {
        return Ok(Some(0));
    };
    let ctx = SessionContext::new_with_state(
        SessionStateBuilder::new()
            .with_default_features()
            .with_runtime_env(StoreRegistry::runtime())
            .build(),
    );
    let held = ctx
        .read_table(Arc::new(provider))?
        .filter(predicate.clone())?
        .count()
        .await? as u64;
    if held == 0 {
        return Ok(Some(0));
    }
    // The table stays what its last build made of its inputs, less the subject's rows,
    // as its inputs are: the next build refreshes it from what they record, not whole.
    let provenance = Provenance {
        inputs: delta_publish::recorded_inputs(&table).await,
        stream_position: None,
    };
    table
        .delete()
        .with_predicate(predicate)
        .with_commit_properties(provenance.properties())
        .await
        .map_err(|error| StorageError::delta(dir, error))?;
    Ok(Some(held))
}

/// Removes at once the files of the Delta table in `dir` that only older versions read,
/// whatever its retention: after it, no version before the newest can be read whole.
pub async fn vacuum_delta(dir: &TableDir) -> Result<u64> {
    if !delta_publish::has_table(dir).await {
        return Ok(0);
    }
    let table = delta_publish::load(dir, None).await?;
    let (_, vacuumed) = table
        .vacuum()
        .with_retention_period(chrono::Duration::zero())
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .await
        .map_err(|error| StorageError::delta(dir, error))?;
    Ok(vacuumed.files_deleted.len() as u64)
}

/// Removes at once every raw file a rewrite (an erasure, a compaction) replaced, which
/// reads begun before it could still open.
pub async fn vacuum_raw(dir: &TableDir) -> Result<u64> {
    raw_compaction::remove_all_replaced(dir).await
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;

    use super::*;

    #[test]
    fn a_value_is_found_only_as_a_whole_field() {
        assert!(text_holds("C12,Ann,,x", "C12"));
        assert!(text_holds("\"C12\";Ann", "C12"));
        assert!(text_holds("{\"id\":\"C12\"}", "C12"));
        assert!(!text_holds("C123,Ann", "C12"));
        assert!(!text_holds("XC12,Ann", "C12"));
        assert!(!text_holds("anything", ""));
        assert!(text_holds("a,é C12", "C12"));
    }

    #[test]
    fn rows_are_found_by_the_value_cast_to_each_columns_type() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ref", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(42), None, Some(7), Some(420)])),
                Arc::new(StringArray::from(vec![
                    None,
                    Some("42"),
                    Some("x"),
                    Some("4"),
                ])),
            ],
        )
        .unwrap();
        let subject = Subject {
            columns: vec!["id".into(), "ref".into(), "missing".into()],
            value: "42".into(),
        };
        let held: Vec<bool> = subject.rows_in(&batch).unwrap().iter().flatten().collect();
        assert_eq!(held, [true, true, false, false]);
        assert_eq!(
            subject.predicate(&schema).unwrap().to_string(),
            "id = Int64(42) OR ref = Utf8(\"42\")"
        );
        let text = Subject {
            columns: vec!["id".into()],
            value: "abc".into(),
        };
        assert!(text.predicate(&schema).is_none(), "no BIGINT is 'abc'");
        assert_eq!(text.rows_in(&batch).unwrap().true_count(), 0);
    }
}
