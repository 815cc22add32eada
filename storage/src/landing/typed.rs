//! Turning parsed text into the declared column types, row by row: a value that does
//! not cast rejects its row and names the column, instead of failing the batch.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::util::display::FormatOptions;
use datafusion::error::Result;

use super::lines::{Chunk, LineMeta};
use super::rejects::{Reject, bounded_text};

/// How much of a value a reason quotes.
const QUOTED_VALUE_LIMIT: usize = 60;

/// Casts each column (text, or already typed) to its field's type and keeps the rows
/// whose every value fits, as zero-copy slices between the bad rows; each bad row
/// becomes a reject naming its first bad column.
pub(super) fn to_declared(
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    rows: &[LineMeta],
    chunk: &Chunk,
    rejects: &mut Vec<Reject>,
) -> Result<Vec<RecordBatch>> {
    let safe = CastOptions {
        safe: true,
        format_options: FormatOptions::default(),
    };
    let mut bad: Vec<Option<(usize, String)>> = vec![None; rows.len()];
    let mut typed = Vec::with_capacity(columns.len());
    for (index, (column, field)) in columns.into_iter().zip(schema.fields()).enumerate() {
        let cast = if column.data_type() == field.data_type() {
            column
        } else {
            let cast = cast_with_options(&column, field.data_type(), &safe)?;
            if cast.null_count() > column.null_count() {
                for (row, bad) in bad.iter_mut().enumerate() {
                    if bad.is_none() && column.is_valid(row) && cast.is_null(row) {
                        *bad = Some((
                            index,
                            format!(
                                "'{}' is not a {}",
                                quoted(&column, row),
                                sql_type(field.data_type())
                            ),
                        ));
                    }
                }
            }
            cast
        };
        if !field.is_nullable() && cast.null_count() > 0 {
            for (row, bad) in bad.iter_mut().enumerate() {
                if bad.is_none() && cast.is_null(row) {
                    *bad = Some((index, "no value, and the column is NOT NULL".to_owned()));
                }
            }
        }
        typed.push(cast);
    }
    let mut slices = Vec::new();
    let mut good_from = 0;
    for (row, bad) in bad.into_iter().enumerate() {
        let Some((index, reason)) = bad else {
            continue;
        };
        let line = &rows[row];
        rejects.push(Reject {
            line: Some(line.number),
            byte_offset: Some(line.offset),
            column: Some(schema.field(index).name().clone()),
            reason,
            raw_text: Some(bounded_text(chunk.text(line))),
            raw_bytes: Some(line.length),
        });
        slices.push(good_from..row);
        good_from = row + 1;
    }
    slices.push(good_from..rows.len());
    // Each slice holds only good rows, so a NOT NULL column has no null in it.
    slices
        .into_iter()
        .filter(|range| !range.is_empty())
        .map(|range| {
            let columns = typed
                .iter()
                .map(|column| column.slice(range.start, range.len()))
                .collect();
            let options = RecordBatchOptions::new().with_row_count(Some(range.len()));
            Ok(RecordBatch::try_new_with_options(
                Arc::clone(schema),
                columns,
                &options,
            )?)
        })
        .collect()
}

/// A value as a reason quotes it: its start, if it is long.
fn quoted(column: &ArrayRef, row: usize) -> String {
    let text = match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().value(row).to_owned(),
        _ => {
            datafusion::arrow::util::display::array_value_to_string(column, row).unwrap_or_default()
        }
    };
    match text.char_indices().nth(QUOTED_VALUE_LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// A column type as it is written in a pipeline's SQL.
fn sql_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
            format!("DECIMAL({precision},{scale})")
        }
        other => other.to_string(),
    }
}
