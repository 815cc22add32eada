//! The scan of one Kafka partition's range: its messages' values parsed as the landing
//! files' rows are, each row then given its message's metadata columns, and each bad
//! message set aside under its offset. A range that cannot be read fails the build, so
//! that the next one reads it again: unlike a landing file, it is never rejected whole.

use std::collections::HashSet;

use datafusion::error::{DataFusionError, Result};
use strata_kafka::{KafkaLocation, Message, PartitionRange, RangeReader};
use strata_storage::AvroFileSink;
use strata_storage::landing::{LandingReader, RangeStart, Reject};

use super::{FileScan, Sender};
use crate::landing::KafkaRead;
use crate::landing::avro_values;
use crate::landing::kafka::{value_schema, with_metadata};
use crate::write::ScannedFile;

impl FileScan {
    /// Reads the part's range of offsets; see the module documentation.
    pub(super) fn read_messages(
        &self,
        kafka: &KafkaRead,
        tx: &Sender,
        sink: &mut Option<Box<AvroFileSink>>,
        counts: &mut ScannedFile,
    ) -> Result<()> {
        let unread = |error: &dyn std::fmt::Display| {
            DataFusionError::Execution(format!("reading {}: {error}", self.file))
        };
        let (Some(partition), Some((start, end))) =
            (KafkaLocation::partition_of(&self.file), self.range)
        else {
            return Err(DataFusionError::Internal(format!(
                "{} is not a Kafka partition's range",
                self.file
            )));
        };
        let range = PartitionRange {
            partition,
            start: start as i64,
            end: end as i64,
        };
        let decode = avro_values::decoder(&kafka.options, self.handle.clone())?;
        let (reader, log) = RangeReader::open(&kafka.location, &kafka.options, range, decode)
            .map_err(|error| unread(&error))?;
        let mut parser = LandingReader::new(
            Box::new(reader) as Box<dyn std::io::Read + Send>,
            &self.read.format,
            value_schema(&self.schema),
            self.read.policy.max_row_bytes,
            self.batch_size,
            (RangeStart::default(), None),
        )
        .map_err(|error| unread(&error))?;
        let mut lines_before = 0;
        while let Some(parsed) = parser.next_rows().map_err(|error| unread(&error))? {
            // Every message with a value is one line, and every line one row or reject.
            let messages: Vec<Message> = {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                let rows = usize::try_from(parsed.rows).unwrap_or(usize::MAX);
                if log.lines.len() < rows {
                    return Err(DataFusionError::Internal(format!(
                        "{}: {rows} rows parsed from {} messages",
                        self.file,
                        log.lines.len()
                    )));
                }
                log.lines.drain(..rows).collect()
            };
            let message_of = |line: u64| {
                line.checked_sub(lines_before + 1)
                    .and_then(|index| messages.get(index as usize))
            };
            let rejected: HashSet<u64> = parsed.rejects.iter().filter_map(|r| r.line).collect();
            let good: Vec<&Message> = (lines_before + 1..=lines_before + parsed.rows)
                .filter(|line| !rejected.contains(line))
                .filter_map(message_of)
                .collect();
            let rejects: Vec<Reject> = parsed
                .rejects
                .into_iter()
                .map(|reject| Reject {
                    line: reject
                        .line
                        .and_then(message_of)
                        .map(|message| message.offset as u64),
                    byte_offset: None,
                    ..reject
                })
                .collect();
            lines_before += parsed.rows;
            counts.rows_read += parsed.rows;
            self.set_aside(&rejects, sink, counts)?;
            let mut taken = 0;
            for batch in parsed.batches {
                let rows = &good[taken..(taken + batch.num_rows()).min(good.len())];
                taken += rows.len();
                if !self.send(with_metadata(&self.schema, &batch, partition, rows)?, tx)? {
                    return Ok(());
                }
            }
            #[cfg(feature = "faults")]
            crate::faults::after_read_batch();
        }
        let set_aside =
            std::mem::take(&mut log.lock().unwrap_or_else(|e| e.into_inner()).set_aside);
        counts.rows_read += set_aside.len() as u64;
        let rejects: Vec<Reject> = set_aside
            .into_iter()
            .map(|(message, reason)| Reject {
                line: Some(message.offset as u64),
                byte_offset: None,
                column: None,
                reason,
                raw_text: None,
                raw_bytes: None,
            })
            .collect();
        self.set_aside(&rejects, sink, counts)
    }
}
