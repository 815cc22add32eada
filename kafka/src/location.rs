//! Where a topic is: `kafka://host:port[,host:port…]/topic`, the one place that form is read.

use serde::{Deserialize, Serialize};

use crate::error::{KafkaError, Result};

/// The scheme of a Kafka source's `LOCATION`.
pub const SCHEME: &str = "kafka://";

/// A topic and the brokers to ask for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaLocation {
    /// `host:port` pairs, comma-separated, as librdkafka's `bootstrap.servers` takes them.
    pub brokers: String,
    pub topic: String,
}

impl KafkaLocation {
    pub fn parse(location: &str) -> Result<Self> {
        let invalid = |reason: &str| KafkaError::InvalidLocation {
            location: location.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = location
            .strip_prefix(SCHEME)
            .ok_or_else(|| invalid("it does not start with kafka://"))?;
        let (brokers, topic) = rest
            .split_once('/')
            .ok_or_else(|| invalid("it names no topic"))?;
        let topic = topic.trim_end_matches('/');
        if topic.is_empty() || topic.contains('/') {
            return Err(invalid("it names no topic, or more than one path segment"));
        }
        if !topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            || topic.len() > 249
        {
            return Err(invalid(
                "a topic name is at most 249 letters, digits, '.', '_' or '-'",
            ));
        }
        let hosts: Vec<&str> = brokers.split(',').map(str::trim).collect();
        for host in &hosts {
            let port = host
                .rsplit_once(':')
                .map(|(name, port)| (name, port.parse::<u16>()));
            if !matches!(port, Some((name, Ok(_))) if !name.is_empty()) {
                return Err(invalid(&format!("broker '{host}' is not host:port")));
            }
        }
        Ok(Self {
            brokers: hosts.join(","),
            topic: topic.to_owned(),
        })
    }

    /// The name of one partition, as run reports and the rejects table give it.
    pub fn partition_name(&self, partition: i32) -> String {
        format!("{SCHEME}{}/{}/{partition}", self.brokers, self.topic)
    }

    /// The partition a [`KafkaLocation::partition_name`] names.
    pub fn partition_of(name: &str) -> Option<i32> {
        name.strip_prefix(SCHEME)?.rsplit('/').next()?.parse().ok()
    }
}

impl std::fmt::Display for KafkaLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.brokers, self.topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_brokers_and_one_topic() {
        let location = KafkaLocation::parse("kafka://b1:9092, b2:9093/tracking-events").unwrap();
        assert_eq!(location.brokers, "b1:9092,b2:9093");
        assert_eq!(location.topic, "tracking-events");
        assert_eq!(
            location.partition_name(3),
            "kafka://b1:9092,b2:9093/tracking-events/3"
        );
        assert_eq!(
            KafkaLocation::partition_of(&location.partition_name(3)),
            Some(3)
        );
        for bad in [
            "b1:9092/t",
            "kafka://b1:9092",
            "kafka://b1:9092/",
            "kafka://b1/t",
            "kafka://b1:x/t",
            "kafka://b1:9092/a/b",
            "kafka://b1:9092/bad topic",
        ] {
            let error = KafkaLocation::parse(bad).unwrap_err();
            assert!(
                matches!(error, KafkaError::InvalidLocation { .. }),
                "{bad}: {error}"
            );
        }
    }
}
