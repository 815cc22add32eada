//! Newline-delimited JSON rows, each checked on its own: a line that is not a JSON
//! object, or whose value does not fit its column, rejects that line alone.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::json::reader::Decoder;
use datafusion::error::Result;

use super::lines::{Chunk, LineMeta};
use super::rejects::{Reject, bounded_text};

/// Parses chunks of one file's lines into columns: primitive values as text, which
/// [`super::typed::to_declared`] then casts, so a bad value rejects only its row.
pub(super) struct NdjsonRows {
    /// The declared schema with every primitive column read as text.
    text_schema: SchemaRef,
}

impl NdjsonRows {
    pub(super) fn new(schema: &SchemaRef) -> Self {
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|field| {
                let data_type = if field.data_type().is_nested() {
                    field.data_type().clone()
                } else {
                    DataType::Utf8
                };
                Field::new(field.name(), data_type, true)
            })
            .collect();
        Self {
            text_schema: Arc::new(Schema::new(fields)),
        }
    }

    fn decoder(&self, rows: usize) -> Result<Decoder> {
        Ok(ReaderBuilder::new(Arc::clone(&self.text_schema))
            .with_batch_size(rows.max(1))
            .with_coerce_primitive(true)
            .build_decoder()?)
    }

    /// Decodes lines that should each be one object; `None` if any is not, or if the
    /// count of rows does not match.
    fn decode_all(&self, lines: &[&[u8]]) -> Option<RecordBatch> {
        let mut decoder = self.decoder(lines.len()).ok()?;
        for line in lines {
            decoder.decode(line).ok()?;
            decoder.decode(b"\n").ok()?;
        }
        let batch = decoder
            .flush()
            .ok()?
            .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.text_schema)));
        (batch.num_rows() == lines.len()).then_some(batch)
    }

    /// The rows of a chunk, one text-or-nested column per declared column, and a
    /// reject for each line that is not one JSON object. Blank lines are not rows.
    pub(super) fn parse(
        &self,
        chunk: &Chunk,
        max_row_bytes: u64,
        rejects: &mut Vec<Reject>,
    ) -> Result<(Vec<ArrayRef>, Vec<LineMeta>)> {
        let mut rows = Vec::with_capacity(chunk.lines.len());
        let mut texts = Vec::with_capacity(chunk.lines.len());
        for line in &chunk.lines {
            let text = chunk.text(line);
            if text.iter().all(u8::is_ascii_whitespace) && line.length == text.len() as u64 {
                continue;
            }
            let reason = if line.length > max_row_bytes {
                Some(format!(
                    "the row is {} bytes, over the limit of {max_row_bytes} ('bad_rows.max_row_bytes')",
                    line.length
                ))
            } else if let Err(error) = std::str::from_utf8(text) {
                Some(format!(
                    "not valid UTF-8 (byte {} of the line)",
                    error.valid_up_to() + 1
                ))
            } else {
                None
            };
            match reason {
                Some(reason) => rejects.push(reject(chunk, line, reason)),
                None => {
                    rows.push(line.clone());
                    texts.push(text);
                }
            }
        }
        if let Some(batch) = self.decode_all(&texts) {
            return Ok((batch.columns().to_vec(), rows));
        }
        // Some line is not one JSON object: set those aside (a cheap syntax check),
        // then decode the others together again.
        let mut kept_rows = Vec::with_capacity(rows.len());
        let mut kept_texts = Vec::with_capacity(rows.len());
        for (line, text) in rows.into_iter().zip(texts) {
            match one_object(text) {
                Ok(()) => {
                    kept_rows.push(line);
                    kept_texts.push(text);
                }
                Err(reason) => rejects.push(reject(chunk, &line, reason)),
            }
        }
        if let Some(batch) = self.decode_all(&kept_texts) {
            return Ok((batch.columns().to_vec(), kept_rows));
        }
        // A value the decoder refuses (an object where text goes, say): line by line.
        let mut rows = Vec::with_capacity(kept_rows.len());
        let mut batches = Vec::with_capacity(kept_rows.len());
        for (line, text) in kept_rows.into_iter().zip(kept_texts) {
            match self.decode_one(text) {
                Ok(batch) => {
                    batches.push(batch);
                    rows.push(line);
                }
                Err(reason) => rejects.push(reject(chunk, &line, reason)),
            }
        }
        let batch = concat_batches(&self.text_schema, &batches)?;
        Ok((batch.columns().to_vec(), rows))
    }

    /// One line as one row, or why it is not one.
    fn decode_one(&self, text: &[u8]) -> std::result::Result<RecordBatch, String> {
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|error| format!("malformed JSON: {error}"))?;
        if !value.is_object() {
            return Err("the line is JSON but not an object".to_owned());
        }
        let mut decoder = self.decoder(1).map_err(|error| error.to_string())?;
        decoder.decode(text).map_err(|error| error.to_string())?;
        match decoder.flush().map_err(|error| error.to_string())? {
            Some(batch) if batch.num_rows() == 1 => Ok(batch),
            _ => Err("the line does not hold exactly one JSON object".to_owned()),
        }
    }
}

/// Whether a line is exactly one JSON object, checked without building it.
fn one_object(text: &[u8]) -> std::result::Result<(), String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(text)
        .map_err(|error| format!("malformed JSON: {error}"))?;
    match text.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err("the line is JSON but not an object".to_owned()),
    }
}

fn reject(chunk: &Chunk, line: &LineMeta, reason: String) -> Reject {
    Reject {
        line: Some(line.number),
        byte_offset: Some(line.offset),
        column: None,
        reason,
        raw_text: Some(bounded_text(chunk.text(line))),
        raw_bytes: Some(line.length),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array};

    use super::super::lines::LineReader;
    use super::super::typed::to_declared;
    use super::*;

    #[test]
    fn malformed_lines_non_objects_and_bad_types_are_rejected_alone() {
        let text = "{\"id\": 1, \"name\": \"ann\"}\n\
                    {\"id\": 2, \"name\": \n\
                    \n\
                    [3]\n\
                    {\"id\": \"four\", \"name\": \"dee\"}\n\
                    {\"id\": 5, \"name\": 55, \"extra\": true}\n\
                    {\"id\": 6, \"name\": {\"first\": \"an\"}}\n";
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let mut reader = LineReader::new(text.as_bytes(), 1_000, None);
        let mut chunk = Chunk::default();
        reader.fill(&mut chunk, 100).unwrap();
        let parser = NdjsonRows::new(&schema);
        let mut rejects = Vec::new();
        let (columns, rows) = parser.parse(&chunk, 1_000, &mut rejects).unwrap();
        let batches = to_declared(&schema, columns, &rows, &chunk, &mut rejects).unwrap();
        let batch = datafusion::arrow::compute::concat_batches(&schema, &batches).unwrap();
        assert_eq!(batches.len(), 2, "slices around the bad row between them");
        let ids = batch
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert_eq!(ids, &Int64Array::from(vec![1, 5]));
        assert_eq!(batch.column(1).as_string::<i32>().value(1), "55");
        let found: Vec<(u64, Option<&str>, &str)> = rejects
            .iter()
            .map(|r| (r.line.unwrap(), r.column.as_deref(), r.reason.as_str()))
            .collect();
        assert_eq!(found[0].0, 2);
        assert!(found[0].2.starts_with("malformed JSON"), "{}", found[0].2);
        assert_eq!(found[1], (4, None, "the line is JSON but not an object"));
        assert_eq!(found[2].0, 7, "an object where text goes: {found:?}");
        assert_eq!(found[3], (5, Some("id"), "'four' is not a BIGINT"));
    }
}
