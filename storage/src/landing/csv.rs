//! CSV rows, each parsed on its own: fields split by the source's delimiter and quote
//! rules, so a short row, a stray quote or bad bytes reject that row alone.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::error::{DataFusionError, Result};
use memchr::memchr;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::lines::{Chunk, LineMeta};
use super::rejects::{Reject, bounded_text};

/// How a source's CSV is laid out, from its `format.*` options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvLayout {
    pub has_header: bool,
    pub delimiter: u8,
    pub quote: u8,
    pub escape: Option<u8>,
    /// Lines starting with this byte are skipped.
    pub comment: Option<u8>,
    /// Values matching this are null; without it, empty values are.
    pub null_regex: Option<String>,
    /// Quoted values may hold line breaks (a row then spans lines).
    pub newlines_in_values: bool,
}

impl Default for CsvLayout {
    fn default() -> Self {
        Self {
            has_header: true,
            delimiter: b',',
            quote: b'"',
            escape: None,
            comment: None,
            null_regex: None,
            newlines_in_values: false,
        }
    }
}

/// Parses chunks of one file's rows into text columns.
pub(super) struct CsvRows {
    layout: CsvLayout,
    null_regex: Option<Regex>,
    columns: Vec<String>,
    header_pending: bool,
    fields: Vec<Range<usize>>,
    unescaped: Vec<u8>,
}

impl CsvRows {
    pub(super) fn new(layout: CsvLayout, columns: Vec<String>) -> Result<Self> {
        let null_regex = layout
            .null_regex
            .as_deref()
            .map(Regex::new)
            .transpose()
            .map_err(|error| {
                DataFusionError::Configuration(format!("format.null_regex: {error}"))
            })?;
        Ok(Self {
            header_pending: layout.has_header,
            layout,
            null_regex,
            columns,
            fields: Vec::new(),
            unescaped: Vec::new(),
        })
    }

    /// The rows of a chunk that split into the right number of text fields, as one
    /// text column per declared column, and a reject for each other row. Blank lines,
    /// comment lines and the header are not rows.
    pub(super) fn parse(
        &mut self,
        chunk: &Chunk,
        max_row_bytes: u64,
        rejects: &mut Vec<Reject>,
    ) -> (Vec<ArrayRef>, Vec<LineMeta>) {
        let mut builders: Vec<StringBuilder> = self
            .columns
            .iter()
            .map(|_| StringBuilder::with_capacity(chunk.lines.len(), chunk.data.len()))
            .collect();
        let mut rows = Vec::with_capacity(chunk.lines.len());
        for line in &chunk.lines {
            let text = chunk.text(line);
            if line.length == 0
                || self
                    .layout
                    .comment
                    .is_some_and(|c| text.first() == Some(&c))
            {
                continue;
            }
            if std::mem::take(&mut self.header_pending) {
                continue;
            }
            let reject = |column: Option<&str>, reason: String| Reject {
                line: Some(line.number),
                byte_offset: Some(line.offset),
                column: column.map(str::to_owned),
                reason,
                raw_text: Some(bounded_text(text)),
                raw_bytes: Some(line.length),
            };
            if line.length > max_row_bytes {
                rejects.push(reject(
                    None,
                    format!(
                        "the row is {} bytes, over the limit of {max_row_bytes} ('bad_rows.max_row_bytes')",
                        line.length
                    ),
                ));
                continue;
            }
            if let Err(reason) = self.split(text) {
                rejects.push(reject(None, reason));
                continue;
            }
            if self.fields.len() != self.columns.len() {
                rejects.push(reject(
                    None,
                    format!(
                        "expected {} fields, found {}",
                        self.columns.len(),
                        self.fields.len()
                    ),
                ));
                continue;
            }
            // One check for the row; its fields are valid if each starts and ends on a
            // character (two halves of one character in two fields are not).
            let row = std::str::from_utf8(&self.unescaped).ok().filter(|row| {
                self.fields.iter().all(|range| {
                    row.is_char_boundary(range.start) && row.is_char_boundary(range.end)
                })
            });
            let Some(row) = row else {
                let (index, valid_up_to) = self
                    .fields
                    .iter()
                    .enumerate()
                    .find_map(|(index, range)| {
                        std::str::from_utf8(&self.unescaped[range.clone()])
                            .err()
                            .map(|error| (index, error.valid_up_to()))
                    })
                    .unwrap_or((0, 0));
                rejects.push(reject(
                    Some(&self.columns[index]),
                    format!("not valid UTF-8 (byte {} of the value)", valid_up_to + 1),
                ));
                continue;
            };
            for (builder, range) in builders.iter_mut().zip(&self.fields) {
                let value = &row[range.clone()];
                let null = match &self.null_regex {
                    Some(regex) => regex.is_match(value),
                    None => value.is_empty(),
                };
                if null {
                    builder.append_null();
                } else {
                    builder.append_value(value);
                }
            }
            rows.push(line.clone());
        }
        let columns = builders
            .into_iter()
            .map(|mut builder| Arc::new(builder.finish()) as ArrayRef)
            .collect();
        (columns, rows)
    }

    /// Splits one row into unescaped fields, or says why it cannot be split.
    fn split(&mut self, line: &[u8]) -> std::result::Result<(), String> {
        let CsvLayout {
            delimiter,
            quote,
            escape,
            ..
        } = self.layout;
        self.fields.clear();
        self.unescaped.clear();
        let out = &mut self.unescaped;
        let mut at = 0;
        loop {
            let start = out.len();
            if line.get(at) == Some(&quote) {
                at += 1;
                loop {
                    let Some(&byte) = line.get(at) else {
                        return Err(format!(
                            "field {} opens a quote that is never closed",
                            self.fields.len() + 1
                        ));
                    };
                    if Some(byte) == escape && byte != quote && at + 1 < line.len() {
                        out.push(line[at + 1]);
                        at += 2;
                    } else if byte == quote {
                        if line.get(at + 1) == Some(&quote) {
                            out.push(quote);
                            at += 2;
                        } else {
                            at += 1;
                            break;
                        }
                    } else {
                        out.push(byte);
                        at += 1;
                    }
                }
                if at < line.len() && line[at] != delimiter {
                    return Err(format!(
                        "field {} has text after its closing quote",
                        self.fields.len() + 1
                    ));
                }
            } else {
                let end = memchr(delimiter, &line[at..]).map_or(line.len(), |end| at + end);
                out.extend_from_slice(&line[at..end]);
                at = end;
            }
            self.fields.push(start..out.len());
            if at >= line.len() {
                return Ok(());
            }
            at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::super::lines::LineReader;
    use super::super::typed::to_declared;
    use super::*;

    /// Splits `text` (columns id, name, score) into its chunk, text columns, good
    /// rows and rejects.
    fn split(text: &[u8], layout: CsvLayout) -> (Chunk, Vec<ArrayRef>, Vec<LineMeta>, Vec<Reject>) {
        let mut reader = LineReader::new(
            text,
            1_000,
            layout
                .newlines_in_values
                .then_some(super::super::lines::QuoteRule {
                    quote: layout.quote,
                    escape: layout.escape,
                }),
        );
        let mut chunk = Chunk::default();
        reader.fill(&mut chunk, 100).unwrap();
        let mut rows =
            CsvRows::new(layout, vec!["id".into(), "name".into(), "score".into()]).unwrap();
        let mut rejects = Vec::new();
        let (columns, metas) = rows.parse(&chunk, 1_000, &mut rejects);
        (chunk, columns, metas, rejects)
    }

    fn parse(text: &str, layout: CsvLayout) -> (Vec<Vec<Option<String>>>, Vec<Reject>) {
        let (_, columns, metas, rejects) = split(text.as_bytes(), layout);
        let values = (0..metas.len())
            .map(|row| {
                columns
                    .iter()
                    .map(|column| {
                        let column = column.as_string::<i32>();
                        column.is_valid(row).then(|| column.value(row).to_owned())
                    })
                    .collect()
            })
            .collect();
        (values, rejects)
    }

    fn reasons(rejects: &[Reject]) -> Vec<(u64, String)> {
        rejects
            .iter()
            .map(|reject| (reject.line.unwrap(), reject.reason.clone()))
            .collect()
    }

    #[test]
    fn each_bad_row_is_rejected_with_its_line_and_the_good_rows_stay() {
        let text = "id,name,score\n\
                    1,ann,1.5\n\
                    2,bob\n\
                    \n\
                    3,\"cy, jr\",2\n\
                    4,\"open,3\n\
                    5,\"dee\"x,4\n\
                    6,,\n";
        let (rows, rejects) = parse(text, CsvLayout::default());
        assert_eq!(
            rows,
            [
                vec![Some("1".into()), Some("ann".into()), Some("1.5".into())],
                vec![Some("3".into()), Some("cy, jr".into()), Some("2".into())],
                vec![Some("6".into()), None, None],
            ]
        );
        assert_eq!(
            reasons(&rejects),
            [
                (3, "expected 3 fields, found 2".to_owned()),
                (6, "field 2 opens a quote that is never closed".to_owned()),
                (7, "field 2 has text after its closing quote".to_owned()),
            ]
        );
        assert_eq!(rejects[0].byte_offset, Some(24));
        assert_eq!(rejects[0].raw_text.as_deref(), Some("2,bob"));
    }

    #[test]
    fn comments_escapes_doubled_quotes_and_multi_line_values() {
        let layout = CsvLayout {
            comment: Some(b'#'),
            escape: Some(b'\\'),
            newlines_in_values: true,
            ..CsvLayout::default()
        };
        let text = "id,name,score\n# a comment\n1,\"say \"\"hi\"\"\",1\n2,\"a\\\"b\",2\n3,\"two\nlines\",3\n";
        let (rows, rejects) = parse(text, layout);
        assert!(rejects.is_empty(), "{rejects:?}");
        let names: Vec<_> = rows.iter().map(|row| row[1].clone().unwrap()).collect();
        assert_eq!(names, ["say \"hi\"", "a\"b", "two\nlines"]);
    }

    #[test]
    fn bad_bytes_name_their_column_and_types_reject_rows_by_column() {
        let mut text = b"id,name,score\n1,ok,1\n2,".to_vec();
        text.extend([0xff, 0xfe]);
        text.extend(b",2\n3,c,notanumber\n4,d,\n");
        let (chunk, columns, metas, mut rejects) = split(&text, CsvLayout::default());
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].column.as_deref(), Some("name"));
        assert!(
            rejects[0].reason.contains("not valid UTF-8"),
            "{}",
            rejects[0].reason
        );

        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("score", DataType::Float64, false),
        ]));
        let batches = to_declared(&schema, columns, &metas, &chunk, &mut rejects).unwrap();
        assert_eq!(batches.len(), 1, "the good row before the bad ones");
        assert_eq!(batches[0].num_rows(), 1);
        assert_eq!(
            reasons(&rejects)[1..],
            [
                (4, "'notanumber' is not a DOUBLE".to_owned()),
                (5, "no value, and the column is NOT NULL".to_owned()),
            ]
        );
        assert_eq!(rejects[1].column.as_deref(), Some("score"));
    }

    #[test]
    fn a_character_split_across_two_fields_is_not_valid_text() {
        let mut text = b"id,name,score\n1,a".to_vec();
        text.extend([0xc3, b',', 0xa9]);
        text.push(b'\n');
        let (_, _, metas, rejects) = split(&text, CsvLayout::default());
        assert!(metas.is_empty());
        assert_eq!(rejects[0].column.as_deref(), Some("name"));
    }
}
