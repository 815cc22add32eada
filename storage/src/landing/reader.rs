//! Reading one CSV or NDJSON landing file row by row: batches of its good rows in the
//! declared types, each with the rejects of the rows read alongside.

use std::io::Read;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use serde::{Deserialize, Serialize};

use super::csv::{CsvLayout, CsvRows};
use super::lines::{Chunk, LineReader, QuoteRule, RangeStart};
use super::ndjson::NdjsonRows;
use super::rejects::Reject;
use super::typed::to_declared;

/// The text formats Strata parses row by row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowFormat {
    Csv(CsvLayout),
    Ndjson,
}

/// Rows read together: the good ones (in one or more batches), and the bad ones set
/// aside.
#[derive(Debug)]
pub struct Parsed {
    pub batches: Vec<RecordBatch>,
    /// Rows read (good and bad; not blank lines, comments or the header).
    pub rows: u64,
    pub rejects: Vec<Reject>,
}

enum Rows {
    Csv(CsvRows),
    Ndjson(NdjsonRows),
}

/// A landing file's rows, a chunk at a time.
pub struct LandingReader<R: Read> {
    lines: LineReader<R>,
    rows: Rows,
    schema: SchemaRef,
    chunk: Chunk,
    batch_size: usize,
    max_row_bytes: u64,
}

impl<R: Read> LandingReader<R> {
    /// Reads `input` (already decompressed) as `format` into `schema`'s columns: the
    /// whole file, or from `start` (where `input` is) to the rows starting at `end`.
    pub fn new(
        input: R,
        format: &RowFormat,
        schema: SchemaRef,
        max_row_bytes: u64,
        batch_size: usize,
        range: (RangeStart, Option<u64>),
    ) -> Result<Self> {
        let (start, end) = range;
        let (rows, join) = match format {
            RowFormat::Csv(layout) => {
                let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
                let join = layout.newlines_in_values.then_some(QuoteRule {
                    quote: layout.quote,
                    escape: layout.escape,
                });
                // Only the range that starts the file has its header.
                let layout = CsvLayout {
                    has_header: layout.has_header && start.offset == 0,
                    ..layout.clone()
                };
                (Rows::Csv(CsvRows::new(layout, columns)?), join)
            }
            RowFormat::Ndjson => (Rows::Ndjson(NdjsonRows::new(&schema)), None),
        };
        Ok(Self {
            lines: LineReader::new(input, max_row_bytes, join).in_range(start, end),
            rows,
            schema,
            chunk: Chunk::default(),
            batch_size: batch_size.max(1),
            max_row_bytes,
        })
    }

    /// The next rows, or `None` at the end of the file. An error reading the stream
    /// (a truncated gzip stream, say) is an error: the file cannot be read whole.
    pub fn next_rows(&mut self) -> Result<Option<Parsed>> {
        loop {
            if let Err(error) = self.lines.fill(&mut self.chunk, self.batch_size) {
                return Err(DataFusionError::IoError(std::io::Error::new(
                    error.kind(),
                    format!(
                        "cannot read the file after line {}: {error}",
                        self.lines.lines_read()
                    ),
                )));
            }
            if self.chunk.lines.is_empty() {
                return Ok(None);
            }
            let mut rejects = Vec::new();
            let (columns, rows) = match &mut self.rows {
                Rows::Csv(csv) => csv.parse(&self.chunk, self.max_row_bytes, &mut rejects),
                Rows::Ndjson(json) => json.parse(&self.chunk, self.max_row_bytes, &mut rejects)?,
            };
            let read = (rows.len() + rejects.len()) as u64;
            if read == 0 {
                // Only blank lines, comments or the header: read on.
                continue;
            }
            let batches = to_declared(&self.schema, columns, &rows, &self.chunk, &mut rejects)?;
            rejects.sort_by_key(|reject| reject.line);
            return Ok(Some(Parsed {
                batches,
                rows: read,
                rejects,
            }));
        }
    }
}
