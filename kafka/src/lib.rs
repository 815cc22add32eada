//! Kafka landing sources: a topic's location and options, the offsets one raw build
//! reads of each partition (from the positions the table's last commit recorded to a
//! bounded end), and the reading of one partition's range as rows of text.

mod client;
mod error;
mod location;
mod options;
mod plan;
mod read;

pub use client::KafkaClient;
pub use error::{KafkaError, Result};
pub use location::{KafkaLocation, SCHEME};
pub use options::{KafkaOptions, OPTION_NAMES, OnDataLoss, StartingOffsets, ValueFormat};
pub use plan::{Behind, Lost, PartitionRange, Plan, Watermarks, plan};
pub use read::{DecodeValue, Decoded, Message, RangeReader, ReadLog};
