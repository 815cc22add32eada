//! The rows of a raw table's rejects table (`raw.<table>__rejects`): where each bad
//! row was, why it was bad, and the start of its text.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result;

/// At most this much of a bad row's text is kept (a 20 MB row is not copied whole).
pub const RAW_TEXT_LIMIT: usize = 4096;

/// One bad row, or a whole file that could not be read (no line, no column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// 1-based line of the row's first line in the (uncompressed) file.
    pub line: Option<u64>,
    /// Byte offset of the row's start in the uncompressed file.
    pub byte_offset: Option<u64>,
    pub column: Option<String>,
    pub reason: String,
    /// The start of the row's text, at most [`RAW_TEXT_LIMIT`] bytes.
    pub raw_text: Option<String>,
    /// The row's whole length in bytes.
    pub raw_bytes: Option<u64>,
}

impl Reject {
    /// A whole file rejected, with why.
    pub fn file(reason: impl Into<String>) -> Self {
        Self {
            line: None,
            byte_offset: None,
            column: None,
            reason: reason.into(),
            raw_text: None,
            raw_bytes: None,
        }
    }
}

/// The text of a bad row as the rejects table keeps it: its start, valid UTF-8.
pub(super) fn bounded_text(raw: &[u8]) -> String {
    let kept = &raw[..raw.len().min(RAW_TEXT_LIMIT)];
    String::from_utf8_lossy(kept).into_owned()
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("landing_file", DataType::Utf8, false),
        Field::new("line", DataType::Int64, true),
        Field::new("byte_offset", DataType::Int64, true),
        Field::new("column", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw_text", DataType::Utf8, true),
        Field::new("raw_bytes", DataType::Int64, true),
        Field::new("run_id", DataType::Utf8, false),
    ]))
});

/// The columns of every rejects table.
pub fn rejects_schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// The rejects of one landing file as rows of the rejects table.
pub fn rejects_batch(landing_file: &str, run_id: &str, rejects: &[Reject]) -> Result<RecordBatch> {
    let count = rejects.len();
    let number = |value: Option<u64>| value.map(|value| value as i64);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![landing_file; count])),
        Arc::new(Int64Array::from_iter(
            rejects.iter().map(|r| number(r.line)),
        )),
        Arc::new(Int64Array::from_iter(
            rejects.iter().map(|r| number(r.byte_offset)),
        )),
        Arc::new(StringArray::from_iter(
            rejects.iter().map(|r| r.column.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            rejects.iter().map(|r| r.reason.as_str()),
        )),
        Arc::new(StringArray::from_iter(
            rejects.iter().map(|r| r.raw_text.as_deref()),
        )),
        Arc::new(Int64Array::from_iter(
            rejects.iter().map(|r| number(r.raw_bytes)),
        )),
        Arc::new(StringArray::from(vec![run_id; count])),
    ];
    Ok(RecordBatch::try_new(rejects_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_rows_are_kept_bounded_and_valid() {
        let mut raw = vec![b'a'; RAW_TEXT_LIMIT - 1];
        raw.extend("é and more".as_bytes());
        let text = bounded_text(&raw);
        assert!(text.len() <= RAW_TEXT_LIMIT + 2, "{}", text.len());
        assert!(text.starts_with("aaa"));
        let batch = rejects_batch(
            "/landing/a.csv",
            "run-1",
            &[Reject::file("truncated gzip stream")],
        )
        .unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.column(1).null_count(), 1, "a whole file has no line");
    }
}
