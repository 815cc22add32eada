//! The error type of `strata-kafka`: which broker, topic or partition could not be read,
//! in words that never carry a credential.

/// Result with the Kafka source's error.
pub type Result<T, E = KafkaError> = std::result::Result<T, E>;

/// Why a Kafka source could not be defined or read.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The `LOCATION` is not `kafka://host:port[,host:port…]/topic`.
    #[error("{location}: {reason}; a Kafka location is 'kafka://host:port[,host:port…]/topic'")]
    InvalidLocation { location: String, reason: String },
    /// An option Strata or librdkafka does not take, or a value it cannot use.
    #[error("{0}")]
    InvalidOption(String),
    /// A secret named by `env:` or `file:` could not be read.
    #[error("option '{option}': {reason}")]
    Secret { option: String, reason: String },
    /// No broker answered within the timeout.
    #[error("no Kafka broker of {brokers} answered within {seconds} s: {reason}")]
    Unreachable {
        brokers: String,
        seconds: u64,
        reason: String,
    },
    /// The brokers answered, but do not have the topic.
    #[error("topic '{topic}' does not exist on {brokers}")]
    UnknownTopic { topic: String, brokers: String },
    /// The brokers refused the client's credentials or TLS settings.
    #[error("{brokers} refused the connection: {reason}")]
    Refused { brokers: String, reason: String },
    /// The next offset to read is gone from the partition (retention deleted it).
    #[error(
        "{topic} partition {partition}: the next offset to read is {next}, but the partition now starts at {earliest}; {lost} messages were deleted before Strata read them. Set 'on_data_loss' 'skip' to go on from the earliest offset and record the loss"
    )]
    DataLoss {
        topic: String,
        partition: i32,
        next: i64,
        earliest: i64,
        lost: i64,
    },
    /// The partition ends before the offset Strata recorded: the topic was deleted and
    /// made again, or truncated.
    #[error(
        "{topic} partition {partition}: Strata has read up to offset {next}, but the partition now ends at {latest}; was the topic recreated? Set 'on_data_loss' 'skip' to read it from its earliest offset"
    )]
    OffsetAhead {
        topic: String,
        partition: i32,
        next: i64,
        latest: i64,
    },
    /// A partition stopped answering part way through a read.
    #[error(
        "{topic} partition {partition}: no message came for {seconds} s at offset {offset} (of {start}..{end}): {reason}"
    )]
    Stalled {
        topic: String,
        partition: i32,
        offset: i64,
        start: i64,
        end: i64,
        seconds: u64,
        reason: String,
    },
    /// Any other failure of librdkafka.
    #[error("Kafka: {0}")]
    Client(String),
}
