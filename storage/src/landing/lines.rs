//! Splitting an uncompressed landing stream into rows: each with its line number and
//! byte offset, and only a bounded start of a row longer than rows may be.

use std::io::{BufRead, BufReader, Read};
use std::ops::Range;

use memchr::{memchr, memchr_iter};

use super::rejects::RAW_TEXT_LIMIT;

/// Where one row is in its file, and where its text is in the chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LineMeta {
    /// 1-based number of the row's first line.
    pub number: u64,
    /// Byte offset of the row's start.
    pub offset: u64,
    /// The row's whole length in bytes, without its line ending.
    pub length: u64,
    /// The text kept in the chunk: all of it, or the start of a row that is too long.
    pub range: Range<usize>,
}

/// Rows read together, their text in one buffer.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    pub data: Vec<u8>,
    pub lines: Vec<LineMeta>,
}

impl Chunk {
    /// The kept text of a row of this chunk.
    pub(super) fn text(&self, line: &LineMeta) -> &[u8] {
        &self.data[line.range.clone()]
    }
}

/// Most bytes gathered into one chunk before it is parsed (a chunk also stops at its
/// row count).
const CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Reads rows from a stream, one line each, or several while a quote is open.
pub(super) struct LineReader<R: Read> {
    input: BufReader<R>,
    /// Line endings consumed so far.
    lines_ended: u64,
    offset: u64,
    max_row_bytes: u64,
    /// Join lines while a quote is open (CSV values holding newlines).
    join: Option<QuoteRule>,
    /// Rows starting at or after this offset belong to the next byte range.
    end: Option<u64>,
}

/// Where a reader of one byte range of a file starts: the lines before it and the
/// offset of its first row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeStart {
    pub lines_before: u64,
    pub offset: u64,
}

/// Reads `input` (a file from its first byte) up to the first row that starts at or
/// after `start`, counting the lines before it; a row that starts before `start`
/// belongs to the range before.
pub fn skip_to(input: &mut impl BufRead, start: u64) -> std::io::Result<RangeStart> {
    if start == 0 {
        return Ok(RangeStart::default());
    }
    let mut position = RangeStart::default();
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            return Ok(position);
        }
        // Line endings before `start - 1` are counted; the first at or after it ends
        // the row that the range before owns.
        let counted = (start - 1)
            .saturating_sub(position.offset)
            .min(buffer.len() as u64) as usize;
        position.lines_before += memchr_iter(b'\n', &buffer[..counted]).count() as u64;
        if counted < buffer.len()
            && let Some(end) = memchr(b'\n', &buffer[counted..])
        {
            let consumed = counted + end + 1;
            position.lines_before += 1;
            position.offset += consumed as u64;
            input.consume(consumed);
            return Ok(position);
        }
        let consumed = buffer.len();
        position.offset += consumed as u64;
        input.consume(consumed);
    }
}

/// The quote (and escape) characters that decide whether a line ends inside a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct QuoteRule {
    pub quote: u8,
    pub escape: Option<u8>,
}

/// Whether a quote is open after a stretch of text, and whether it ended on an escape.
#[derive(Debug, Default, Clone, Copy)]
struct QuoteState {
    open: bool,
    escaping: bool,
}

impl QuoteState {
    fn scan(&mut self, rule: QuoteRule, text: &[u8]) {
        match rule.escape.filter(|escape| *escape != rule.quote) {
            None => {
                if memchr_iter(rule.quote, text).count() % 2 == 1 {
                    self.open = !self.open;
                }
            }
            Some(escape) => {
                for &byte in text {
                    if self.escaping {
                        self.escaping = false;
                    } else if byte == escape {
                        self.escaping = true;
                    } else if byte == rule.quote {
                        self.open = !self.open;
                    }
                }
            }
        }
    }
}

impl<R: Read> LineReader<R> {
    pub(super) fn new(input: R, max_row_bytes: u64, join: Option<QuoteRule>) -> Self {
        Self {
            input: BufReader::with_capacity(256 * 1024, input),
            lines_ended: 0,
            offset: 0,
            max_row_bytes,
            join,
            end: None,
        }
    }

    /// Reads one byte range: `input` is positioned at `start`, and rows that start at
    /// or after `end` are left to the next range.
    pub(super) fn in_range(mut self, start: RangeStart, end: Option<u64>) -> Self {
        self.lines_ended = start.lines_before;
        self.offset = start.offset;
        self.end = end;
        self
    }

    /// Lines read to their end so far.
    pub(super) fn lines_read(&self) -> u64 {
        self.lines_ended
    }

    /// Replaces the chunk's rows with the next ones, at most `max_rows`; leaves it
    /// empty at the end of the stream.
    pub(super) fn fill(&mut self, chunk: &mut Chunk, max_rows: usize) -> std::io::Result<()> {
        chunk.data.clear();
        chunk.lines.clear();
        while chunk.lines.len() < max_rows && chunk.data.len() < CHUNK_BYTES {
            if !self.read_row(chunk)? {
                break;
            }
        }
        Ok(())
    }

    /// Appends the next row to the chunk; false at the end of the stream.
    fn read_row(&mut self, chunk: &mut Chunk) -> std::io::Result<bool> {
        if self.end.is_some_and(|end| self.offset >= end) {
            return Ok(false);
        }
        let start = chunk.data.len();
        let offset = self.offset;
        let number = self.lines_ended + 1;
        let mut length = 0u64;
        let mut too_long = false;
        let mut quotes = QuoteState::default();
        let mut read_any = false;
        loop {
            let buffer = match self.input.fill_buf() {
                Ok(buffer) => buffer,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if buffer.is_empty() {
                if !read_any {
                    return Ok(false);
                }
                break;
            }
            read_any = true;
            let (segment, consumed, ended) = match memchr(b'\n', buffer) {
                Some(end) => (&buffer[..end], end + 1, true),
                None => (buffer, buffer.len(), false),
            };
            length += segment.len() as u64;
            if !too_long {
                chunk.data.extend_from_slice(segment);
                if let Some(rule) = self.join {
                    quotes.scan(rule, segment);
                }
                if length > self.max_row_bytes {
                    too_long = true;
                    chunk
                        .data
                        .truncate(start + RAW_TEXT_LIMIT.min(chunk.data.len() - start));
                }
            }
            self.offset += consumed as u64;
            self.input.consume(consumed);
            if ended {
                self.lines_ended += 1;
                if quotes.open && !too_long {
                    // The newline belongs to a quoted value: the row goes on.
                    chunk.data.push(b'\n');
                    length += 1;
                    continue;
                }
                break;
            }
        }
        if !too_long && chunk.data.len() > start && chunk.data.last() == Some(&b'\r') {
            chunk.data.pop();
            length -= 1;
        }
        chunk.lines.push(LineMeta {
            number,
            offset,
            length,
            range: start..chunk.data.len(),
        });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(
        text: &[u8],
        max_row_bytes: u64,
        join: Option<QuoteRule>,
    ) -> Vec<(u64, u64, u64, Vec<u8>)> {
        let mut reader = LineReader::new(text, max_row_bytes, join);
        let mut chunk = Chunk::default();
        let mut found = Vec::new();
        loop {
            reader.fill(&mut chunk, 2).unwrap();
            if chunk.lines.is_empty() {
                return found;
            }
            for line in &chunk.lines {
                found.push((
                    line.number,
                    line.offset,
                    line.length,
                    chunk.text(line).to_vec(),
                ));
            }
        }
    }

    #[test]
    fn rows_keep_their_line_numbers_offsets_and_crlf_is_one_ending() {
        let found = rows(b"a,b\r\n\nc,d\nlast", 100, None);
        assert_eq!(
            found,
            [
                (1, 0, 3, b"a,b".to_vec()),
                (2, 5, 0, Vec::new()),
                (3, 6, 3, b"c,d".to_vec()),
                (4, 10, 4, b"last".to_vec()),
            ]
        );
    }

    #[test]
    fn byte_ranges_own_the_rows_that_start_in_them_with_their_line_numbers() {
        let text = b"h\naa\nbbb\n\ncc\nd";
        let mut whole = Vec::new();
        for (start, end) in [(0, 4), (4, 9), (9, 12), (12, 100)] {
            let mut input = std::io::BufReader::new(&text[..]);
            let position = skip_to(&mut input, start).unwrap();
            let mut reader = LineReader::new(input, 100, None).in_range(position, Some(end));
            let mut chunk = Chunk::default();
            reader.fill(&mut chunk, 100).unwrap();
            for line in &chunk.lines {
                whole.push((line.number, line.offset, chunk.text(line).to_vec()));
            }
        }
        assert_eq!(
            whole,
            [
                (1, 0, b"h".to_vec()),
                (2, 2, b"aa".to_vec()),
                (3, 5, b"bbb".to_vec()),
                (4, 9, Vec::new()),
                (5, 10, b"cc".to_vec()),
                (6, 13, b"d".to_vec()),
            ]
        );
    }

    #[test]
    fn a_row_too_long_keeps_only_its_start_and_the_next_row_is_intact() {
        let long = vec![b'x'; RAW_TEXT_LIMIT * 3];
        let mut text = long.clone();
        text.extend(b"\nok\n");
        let found = rows(&text, 100, None);
        assert_eq!(found[0].2, long.len() as u64);
        assert_eq!(found[0].3.len(), RAW_TEXT_LIMIT);
        assert_eq!(found[1], (2, long.len() as u64 + 1, 2, b"ok".to_vec()));
    }

    #[test]
    fn an_open_quote_joins_lines_only_when_values_may_hold_newlines() {
        let text = b"1,\"two\nlines \\\"q\\\"\"\n2,x\n";
        let rule = QuoteRule {
            quote: b'"',
            escape: Some(b'\\'),
        };
        let joined = rows(text, 100, Some(rule));
        assert_eq!(joined[0].3, b"1,\"two\nlines \\\"q\\\"\"".to_vec());
        assert_eq!((joined[1].0, joined[1].3.clone()), (3, b"2,x".to_vec()));
        assert_eq!(rows(text, 100, None).len(), 3);
    }
}
