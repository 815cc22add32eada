//! Reading one partition's range of offsets as text, one line per message, for the same
//! row-by-row parsers that read landing files. The messages' keys, offsets, timestamps and
//! headers go to a [`ReadLog`] beside the text, in line order, so each row can be paired
//! with its message; a message without a value is logged apart (it has no row to parse).

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as ClientError;
use rdkafka::message::{Headers, Message as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{client_message, failure};
use crate::error::{KafkaError, Result};
use crate::location::KafkaLocation;
use crate::options::KafkaOptions;
use crate::plan::PartitionRange;

/// A message's place and metadata, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The messages a reader has turned into text, for the parser's reader to take.
#[derive(Debug, Default)]
pub struct ReadLog {
    /// One per line of text, in order.
    pub lines: VecDeque<Message>,
    /// Messages with no line: no value (or only white space), or a value its decoder
    /// could not read; each with why.
    pub set_aside: Vec<(Message, String)>,
}

/// What a decoder made of one message's value.
pub enum Decoded {
    /// The value as one row of text (JSON, say).
    Line(Vec<u8>),
    /// Why the value is bad: the message is set aside.
    Bad(String),
}

/// Turns a value that is not text (Avro, say) into a row of text; an `Err` is a failure
/// of the reading itself (a schema registry that does not answer), which fails the read.
pub type DecodeValue = Box<dyn FnMut(&[u8]) -> std::result::Result<Decoded, String> + Send>;

/// Text gathered from messages before it is handed to the parser.
const FILL_BYTES: usize = 1 << 20;
/// How long one poll waits before the reader checks its timeout.
const POLL: Duration = Duration::from_millis(200);

/// One partition's range as lines of text; see the module documentation.
pub struct RangeReader {
    consumer: BaseConsumer,
    location: KafkaLocation,
    options: KafkaOptions,
    range: PartitionRange,
    /// The offset after the last message read.
    next: i64,
    done: bool,
    text: Vec<u8>,
    at: usize,
    log: Arc<Mutex<ReadLog>>,
    /// `None` when values are text already.
    decode: Option<DecodeValue>,
}

impl RangeReader {
    /// A reader of `range`, assigned to it (no consumer group is joined), each value
    /// turned to text by `decode` if given.
    pub fn open(
        location: &KafkaLocation,
        options: &KafkaOptions,
        range: PartitionRange,
        decode: Option<DecodeValue>,
    ) -> Result<(Self, Arc<Mutex<ReadLog>>)> {
        let consumer: BaseConsumer = options
            .client_config(&location.brokers)?
            .create()
            .map_err(|error| KafkaError::InvalidOption(client_message(&error)))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(
                &location.topic,
                range.partition,
                Offset::Offset(range.start),
            )
            .and_then(|()| consumer.assign(&assignment))
            .map_err(|error| failure(location, options, &error))?;
        let log = Arc::new(Mutex::new(ReadLog::default()));
        Ok((
            Self {
                consumer,
                location: location.clone(),
                options: options.clone(),
                range,
                next: range.start,
                done: range.start >= range.end,
                text: Vec::new(),
                at: 0,
                log: Arc::clone(&log),
                decode,
            },
            log,
        ))
    }

    /// Polls messages into the text until it holds enough or the range is read.
    fn fill(&mut self) -> Result<()> {
        self.text.clear();
        self.at = 0;
        let mut waited_since = Instant::now();
        let mut last_error = String::from("no answer");
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        while !self.done && self.text.len() < FILL_BYTES {
            match self.consumer.poll(POLL) {
                None => {}
                Some(Ok(message)) => {
                    waited_since = Instant::now();
                    let offset = message.offset();
                    if offset >= self.range.end {
                        self.done = true;
                        break;
                    }
                    self.next = offset + 1;
                    let kept = Message {
                        offset,
                        key: message.key().map(<[u8]>::to_vec),
                        timestamp_ms: message.timestamp().to_millis(),
                        headers: message
                            .headers()
                            .map(|headers| {
                                headers
                                    .iter()
                                    .map(|header| {
                                        (header.key.to_owned(), header.value.map(<[u8]>::to_vec))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    };
                    let value = message
                        .payload()
                        .filter(|value| !value.trim_ascii().is_empty());
                    let decoded = match (value, self.decode.as_mut()) {
                        (None, _) => Decoded::Bad("the message has no value".to_owned()),
                        (Some(value), None) => Decoded::Line(value.to_vec()),
                        (Some(value), Some(decode)) => match decode(value) {
                            Ok(decoded) => decoded,
                            Err(why) => {
                                let why = format!("decoding offset {offset}: {why}");
                                return Err(self.stalled(0, why));
                            }
                        },
                    };
                    match decoded {
                        Decoded::Line(line) => {
                            // A message is one row: its line breaks are white space.
                            self.text.extend(line.iter().map(|&byte| match byte {
                                b'\n' | b'\r' => b' ',
                                other => other,
                            }));
                            self.text.push(b'\n');
                            log.lines.push_back(kept);
                        }
                        Decoded::Bad(why) => log.set_aside.push((kept, why)),
                    }
                    if self.next >= self.range.end {
                        self.done = true;
                    }
                }
                // The partition's end now: every offset below the range's end was seen
                // (the rest were compacted away or were transaction markers).
                Some(Err(ClientError::PartitionEOF(_))) => self.done = true,
                Some(Err(error)) => {
                    if matches!(
                        error.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange
                        )
                    ) {
                        return Err(KafkaError::Stalled {
                            topic: self.location.topic.clone(),
                            partition: self.range.partition,
                            offset: self.next,
                            start: self.range.start,
                            end: self.range.end,
                            seconds: 0,
                            reason: format!(
                                "the offset is no longer in the partition (deleted by retention since this build planned it): {}",
                                client_message(&error)
                            ),
                        });
                    }
                    last_error = failure(&self.location, &self.options, &error).to_string();
                }
            }
            if !self.done && waited_since.elapsed() > self.options.timeout {
                return Err(self.stalled(self.options.timeout.as_secs(), last_error));
            }
        }
        Ok(())
    }

    /// The read stopped at the next offset, after `seconds` without a message.
    fn stalled(&self, seconds: u64, reason: String) -> KafkaError {
        KafkaError::Stalled {
            topic: self.location.topic.clone(),
            partition: self.range.partition,
            offset: self.next,
            start: self.range.start,
            end: self.range.end,
            seconds,
            reason,
        }
    }
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.text.len() {
            if self.done {
                return Ok(0);
            }
            self.fill().map_err(io::Error::other)?;
        }
        let count = buf.len().min(self.text.len() - self.at);
        buf[..count].copy_from_slice(&self.text[self.at..self.at + count]);
        self.at += count;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rdkafka::ClientConfig;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    use super::*;
    use crate::client::KafkaClient;
    use crate::plan::plan;

    fn produce(brokers: &str, topic: &str, messages: &[(i32, Option<&str>, &str)]) {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .unwrap();
        for (partition, key, value) in messages {
            let mut record = BaseRecord::to(topic)
                .partition(*partition)
                .payload(*value)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "source",
                    value: Some("test"),
                }));
            if let Some(key) = key {
                record = record.key(*key);
            }
            producer.send(record).map_err(|(error, _)| error).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn a_range_is_read_exactly_with_each_line_paired_with_its_message() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("events", 2, 1).unwrap();
        let brokers = cluster.bootstrap_servers();
        produce(
            &brokers,
            "events",
            &[
                (0, Some("a"), "{\"n\": 1}"),
                (0, None, "{\"n\":\n 2}"),
                (0, Some("c"), ""),
                (0, Some("d"), "{\"n\": 4}"),
                (1, Some("e"), "{\"n\": 5}"),
            ],
        );
        let location = KafkaLocation::parse(&format!("kafka://{brokers}/events")).unwrap();
        let options = KafkaOptions::from_options([("timeout", "10")]).unwrap();
        let client = KafkaClient::new(&location, &options).unwrap();
        let marks = client.watermarks().unwrap();
        assert_eq!(marks.iter().map(|m| m.high).collect::<Vec<_>>(), [4, 1]);
        // What a first build of at most three messages per partition reads.
        let options3 = KafkaOptions::from_options([("max_messages_per_partition", "3")]).unwrap();
        let first = plan("events", &BTreeMap::new(), &marks, &options3).unwrap();
        let (mut reader, log) =
            RangeReader::open(&location, &options, first.ranges[0], None).unwrap();
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "{\"n\": 1}\n{\"n\":  2}\n");
        let log = log.lock().unwrap();
        let offsets: Vec<i64> = log.lines.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, [0, 1]);
        assert_eq!(log.lines[0].key.as_deref(), Some(b"a".as_slice()));
        assert_eq!(
            log.lines[0].headers,
            [("source".to_owned(), Some(b"test".to_vec()))]
        );
        assert!(log.lines[0].timestamp_ms.is_some());
        let set_aside: Vec<(i64, &str)> = log
            .set_aside
            .iter()
            .map(|(m, why)| (m.offset, why.as_str()))
            .collect();
        assert_eq!(set_aside, [(2, "the message has no value")]);
        // The next build starts where the first one's commit said.
        let committed: BTreeMap<i32, i64> = first.positions.iter().copied().collect();
        let second = plan("events", &committed, &marks, &options3).unwrap();
        assert_eq!(
            second.ranges,
            [PartitionRange {
                partition: 0,
                start: 3,
                end: 4
            }]
        );
        let (mut reader, _) =
            RangeReader::open(&location, &options, second.ranges[0], None).unwrap();
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "{\"n\": 4}\n");
        client.commit_group(&second.positions).unwrap();
    }

    #[test]
    fn the_age_of_a_message_left_unread_is_its_timestamp() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("events", 2, 1).unwrap();
        let brokers = cluster.bootstrap_servers();
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        for (offset, timestamp) in [1_000_000, 2_000_000, 3_000_000].into_iter().enumerate() {
            let key = offset.to_string();
            let record = BaseRecord::to("events")
                .partition(0)
                .key(&key)
                .payload("{}")
                .timestamp(timestamp);
            producer.send(record).map_err(|(error, _)| error).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        let location = KafkaLocation::parse(&format!("kafka://{brokers}/events")).unwrap();
        let options = KafkaOptions::from_options([("timeout", "10")]).unwrap();
        let client = KafkaClient::new(&location, &options).unwrap();
        // Partition 1 has no message at offset 0: it is left out, after a short wait.
        let found = client.timestamps(&[(0, 1), (1, 0)]).unwrap();
        assert_eq!(found, BTreeMap::from([(0, 2_000_000)]));
        // The client still answers what a build asks next.
        assert_eq!(client.watermarks().unwrap()[0].high, 3);
    }

    #[test]
    fn unknown_topics_and_absent_brokers_are_errors_that_say_so() {
        let cluster = MockCluster::new(1).unwrap();
        let brokers = cluster.bootstrap_servers();
        let options = KafkaOptions::from_options([("timeout", "3")]).unwrap();
        let missing = KafkaLocation::parse(&format!("kafka://{brokers}/nothing-here")).unwrap();
        let error = KafkaClient::new(&missing, &options)
            .unwrap()
            .watermarks()
            .unwrap_err();
        assert!(matches!(error, KafkaError::UnknownTopic { .. }), "{error}");
        drop(cluster);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let nobody = KafkaLocation::parse(&format!("kafka://127.0.0.1:{port}/events")).unwrap();
        let error = KafkaClient::new(&nobody, &options)
            .unwrap()
            .watermarks()
            .unwrap_err();
        assert!(matches!(error, KafkaError::Unreachable { .. }), "{error}");
        let unknown = KafkaOptions::from_options([("no.such.property", "1")]).unwrap();
        let error = KafkaClient::new(&nobody, &unknown).err().unwrap();
        assert!(error.to_string().contains("no.such.property"), "{error}");
    }
}
