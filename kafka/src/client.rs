//! A connection to a topic's brokers for what a build asks before and after it reads:
//! the partitions and their watermarks, the age of the messages it leaves, and the
//! consumer group's offsets for lag monitors.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError as ClientError;
use rdkafka::message::Message as _;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{KafkaError, Result};
use crate::location::KafkaLocation;
use crate::options::KafkaOptions;
use crate::plan::Watermarks;

/// How long [`KafkaClient::timestamps`] waits for the messages it asks for.
const AGE_PATIENCE: Duration = Duration::from_secs(5);

/// A client of one topic.
pub struct KafkaClient {
    consumer: BaseConsumer,
    location: KafkaLocation,
    options: KafkaOptions,
}

impl KafkaClient {
    /// A client with the source's settings; it connects when first asked.
    pub fn new(location: &KafkaLocation, options: &KafkaOptions) -> Result<Self> {
        let consumer = options
            .client_config(&location.brokers)?
            .create()
            .map_err(|error| KafkaError::InvalidOption(client_message(&error)))?;
        Ok(Self {
            consumer,
            location: location.clone(),
            options: options.clone(),
        })
    }

    /// Every partition of the topic with its low and high watermarks, in partition order.
    pub fn watermarks(&self) -> Result<Vec<Watermarks>> {
        let topic = &self.location.topic;
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), self.options.timeout)
            .map_err(|error| self.failure(&error))?;
        let described = metadata
            .topics()
            .iter()
            .find(|described| described.name() == topic)
            .ok_or_else(|| self.unknown_topic())?;
        if let Some(error) = described.error() {
            let code = RDKafkaErrorCode::from(error);
            return Err(match code {
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                    self.unknown_topic()
                }
                other => KafkaError::Client(format!("topic '{topic}': {other}")),
            });
        }
        let mut partitions: Vec<i32> = described.partitions().iter().map(|p| p.id()).collect();
        if partitions.is_empty() {
            return Err(self.unknown_topic());
        }
        partitions.sort_unstable();
        partitions
            .into_iter()
            .map(|partition| {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(topic, partition, self.options.timeout)
                    .map_err(|error| self.failure(&error))?;
                Ok(Watermarks {
                    partition,
                    low,
                    high,
                })
            })
            .collect()
    }

    /// The timestamp, in milliseconds since the epoch, of the message at each
    /// `(partition, offset)`: the age of the oldest message a build leaves unread is the
    /// lag in time. A partition whose message does not come within a few seconds is left
    /// out, since the age is for monitors and must not hold a build up.
    pub fn timestamps(&self, at: &[(i32, i64)]) -> Result<BTreeMap<i32, i64>> {
        let mut assignment = TopicPartitionList::new();
        for (partition, offset) in at {
            assignment
                .add_partition_offset(&self.location.topic, *partition, Offset::Offset(*offset))
                .map_err(|error| KafkaError::Client(client_message(&error)))?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(|error| self.failure(&error))?;
        let deadline = Instant::now() + self.options.timeout.min(AGE_PATIENCE);
        let mut found = BTreeMap::new();
        while found.len() < at.len() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.consumer.poll(left) {
                Some(Ok(message)) => {
                    if let Some(ms) = message.timestamp().to_millis() {
                        found.entry(message.partition()).or_insert(ms);
                    }
                }
                Some(Err(ClientError::PartitionEOF(_))) => {}
                Some(Err(error)) => {
                    let _ = self.consumer.unassign();
                    return Err(self.failure(&error));
                }
                None => break,
            }
        }
        let _ = self.consumer.unassign();
        Ok(found)
    }

    /// Commits `positions` (partition, next offset) to the source's consumer group, so
    /// lag monitors see how far Strata has read. Strata's own positions are in its commits.
    pub fn commit_group(&self, positions: &[(i32, i64)]) -> Result<()> {
        let mut list = TopicPartitionList::new();
        for (partition, next) in positions {
            list.add_partition_offset(&self.location.topic, *partition, Offset::Offset(*next))
                .map_err(|error| KafkaError::Client(client_message(&error)))?;
        }
        self.consumer
            .commit(&list, CommitMode::Sync)
            .map_err(|error| self.failure(&error))
    }

    fn unknown_topic(&self) -> KafkaError {
        KafkaError::UnknownTopic {
            topic: self.location.topic.clone(),
            brokers: self.location.brokers.clone(),
        }
    }

    /// A client failure in the words of what went wrong: no broker, or a refusal.
    fn failure(&self, error: &ClientError) -> KafkaError {
        failure(&self.location, &self.options, error)
    }
}

/// A client failure in the words of what went wrong: no broker, or a refusal.
pub(crate) fn failure(
    location: &KafkaLocation,
    options: &KafkaOptions,
    error: &ClientError,
) -> KafkaError {
    let reason = client_message(error);
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed,
        ) => KafkaError::Refused {
            brokers: location.brokers.clone(),
            reason,
        },
        Some(
            RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::Resolve,
        ) => KafkaError::Unreachable {
            brokers: location.brokers.clone(),
            seconds: options.timeout.as_secs(),
            reason,
        },
        _ => KafkaError::Client(reason),
    }
}

/// librdkafka's words for an error, without its Rust wrapper's prefix.
pub(crate) fn client_message(error: &ClientError) -> String {
    match error {
        ClientError::ClientCreation(text) => text.clone(),
        other => other.to_string(),
    }
}
