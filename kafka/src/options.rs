//! A Kafka source's `OPTIONS`: Strata's own (what a build reads and what it does when
//! messages are gone), and every other as a librdkafka property, whose secrets are named
//! (`env:NAME`, `file:PATH`) rather than written.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::error::{KafkaError, Result};

/// The value format of the messages (`'format'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueFormat {
    Json,
    Csv,
    /// One Avro datum per message, written with the schema `'avro.schema'` gives.
    Avro,
    /// Confluent's wire format: a zero byte, the writer schema's id in the schema
    /// registry at `'schema_registry.url'` (4 bytes, big-endian), then the Avro datum.
    AvroConfluent,
}

/// Where a partition Strata has not read yet starts (`'starting_offsets'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartingOffsets {
    Earliest,
    Latest,
}

/// What a build does when the next offset to read was deleted (`'on_data_loss'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnDataLoss {
    Fail,
    Skip,
}

const FORMAT: &str = "format";
const STARTING_OFFSETS: &str = "starting_offsets";
const MAX_MESSAGES: &str = "max_messages_per_partition";
const ON_DATA_LOSS: &str = "on_data_loss";
const TIMEOUT: &str = "timeout";
const AVRO_SCHEMA: &str = "avro.schema";
const SCHEMA_REGISTRY: &str = "schema_registry.url";
/// The consumer group offsets are committed to after each Strata commit, for lag monitors.
const GROUP_ID: &str = "group.id";

/// Strata's own option names; the rest go to librdkafka.
pub const OPTION_NAMES: [&str; 5] = [
    FORMAT,
    STARTING_OFFSETS,
    MAX_MESSAGES,
    ON_DATA_LOSS,
    TIMEOUT,
];

/// librdkafka properties Strata sets itself, for exactly-once reads.
const OWNED_PROPERTIES: [&str; 5] = [
    "bootstrap.servers",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
];

/// Messages a build reads of one partition, unless `'max_messages_per_partition'` says.
const DEFAULT_MAX_MESSAGES: u64 = 1_000_000;
/// How long a build waits for a broker's answer, unless `'timeout'` says (seconds).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A Kafka source's options, read once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaOptions {
    pub format: ValueFormat,
    pub starting: StartingOffsets,
    pub max_messages: u64,
    pub on_data_loss: OnDataLoss,
    pub timeout: Duration,
    pub group_id: Option<String>,
    /// The writer schema of `'format' 'avro'` values, as Avro's JSON.
    pub avro_schema: Option<String>,
    /// The schema registry of `'format' 'avro-confluent'` values.
    pub schema_registry: Option<String>,
    /// librdkafka properties as written: a value may name its secret (`env:`, `file:`).
    properties: BTreeMap<String, String>,
}

impl KafkaOptions {
    /// Reads the options, names lower-cased; an unknown librdkafka property is refused
    /// when a client is made ([`KafkaOptions::client_config`]).
    pub fn from_options<'a>(options: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut read = Self {
            format: ValueFormat::Json,
            starting: StartingOffsets::Earliest,
            max_messages: DEFAULT_MAX_MESSAGES,
            on_data_loss: OnDataLoss::Fail,
            timeout: DEFAULT_TIMEOUT,
            group_id: None,
            avro_schema: None,
            schema_registry: None,
            properties: BTreeMap::new(),
        };
        for (key, value) in options {
            let key = key.to_ascii_lowercase();
            let choice = |choices: &[&str]| -> Result<usize> {
                choices
                    .iter()
                    .position(|choice| value.eq_ignore_ascii_case(choice))
                    .ok_or_else(|| {
                        KafkaError::InvalidOption(format!(
                            "option '{key}' is '{value}'; it takes '{}'",
                            choices.join("', '")
                        ))
                    })
            };
            match key.as_str() {
                FORMAT => {
                    read.format = [
                        ValueFormat::Json,
                        ValueFormat::Csv,
                        ValueFormat::Avro,
                        ValueFormat::AvroConfluent,
                    ][choice(&["json", "csv", "avro", "avro-confluent"])?]
                }
                AVRO_SCHEMA => read.avro_schema = Some(value.to_owned()),
                SCHEMA_REGISTRY => {
                    read.schema_registry = Some(value.trim_end_matches('/').to_owned())
                }
                STARTING_OFFSETS => {
                    read.starting = [StartingOffsets::Earliest, StartingOffsets::Latest]
                        [choice(&["earliest", "latest"])?]
                }
                ON_DATA_LOSS => {
                    read.on_data_loss =
                        [OnDataLoss::Fail, OnDataLoss::Skip][choice(&["fail", "skip"])?]
                }
                MAX_MESSAGES => {
                    read.max_messages = value.parse().ok().filter(|count| *count > 0).ok_or_else(
                        || {
                            KafkaError::InvalidOption(format!(
                                "option '{key}' is '{value}'; it takes a count of messages above 0"
                            ))
                        },
                    )?
                }
                TIMEOUT => {
                    read.timeout = value
                        .parse()
                        .ok()
                        .filter(|seconds| *seconds > 0)
                        .map(Duration::from_secs)
                        .ok_or_else(|| {
                            KafkaError::InvalidOption(format!(
                                "option '{key}' is '{value}'; it takes whole seconds above 0"
                            ))
                        })?
                }
                GROUP_ID => read.group_id = Some(value.to_owned()),
                owned if OWNED_PROPERTIES.contains(&owned) => {
                    return Err(KafkaError::InvalidOption(format!(
                        "option '{key}' is Strata's to set: offsets are read and recorded by each raw commit (brokers come from the LOCATION)"
                    )));
                }
                _ => {
                    read.properties.insert(key, value.to_owned());
                }
            }
        }
        let needs = |option: &str, set: bool, format: &str| {
            if set {
                Ok(())
            } else {
                Err(KafkaError::InvalidOption(format!(
                    "'format' '{format}' needs option '{option}'"
                )))
            }
        };
        match read.format {
            ValueFormat::Avro => needs(AVRO_SCHEMA, read.avro_schema.is_some(), "avro")?,
            ValueFormat::AvroConfluent => needs(
                SCHEMA_REGISTRY,
                read.schema_registry.is_some(),
                "avro-confluent",
            )?,
            ValueFormat::Json | ValueFormat::Csv => {}
        }
        Ok(read)
    }

    /// The librdkafka settings of a client of `brokers` that reads exactly what it is
    /// told, with every named secret read now.
    pub fn client_config(&self, brokers: &str) -> Result<ClientConfig> {
        let mut config = ClientConfig::new();
        for (key, value) in &self.properties {
            config.set(key, resolve(key, value)?);
        }
        config
            .set("bootstrap.servers", brokers)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            .set("enable.partition.eof", "true")
            .set(
                "socket.timeout.ms",
                self.timeout.as_millis().min(300_000).to_string(),
            );
        // A group id is needed to commit offsets for lag monitors; reading never joins it.
        config.set(GROUP_ID, self.group_id.as_deref().unwrap_or("strata"));
        Ok(config)
    }
}

/// A property's value, or the secret it names.
fn resolve(key: &str, value: &str) -> Result<String> {
    let secret = |reason: String| KafkaError::Secret {
        option: key.to_owned(),
        reason,
    };
    if let Some(name) = value.strip_prefix("env:") {
        std::env::var(name).map_err(|_| secret(format!("environment variable {name} is not set")))
    } else if let Some(path) = value.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|error| secret(format!("cannot read {path}: {error}")))
    } else {
        Ok(value.to_owned())
    }
}

/// Whether a property's value is a credential, shown only by name.
fn is_secret(key: &str) -> bool {
    ["password", "secret", "token", "key.pem", "username"]
        .iter()
        .any(|word| key.contains(word))
}

impl fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(key, value)| {
                let shown = if is_secret(key)
                    && !value.starts_with("env:")
                    && !value.starts_with("file:")
                {
                    "<redacted>"
                } else {
                    value.as_str()
                };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaOptions")
            .field("format", &self.format)
            .field("starting", &self.starting)
            .field("max_messages", &self.max_messages)
            .field("on_data_loss", &self.on_data_loss)
            .field("timeout", &self.timeout)
            .field("group_id", &self.group_id)
            .field("avro_schema", &self.avro_schema.is_some())
            .field("schema_registry", &self.schema_registry)
            .field("properties", &properties)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strata_options_are_read_and_the_rest_go_to_librdkafka() {
        let options = KafkaOptions::from_options([
            ("format", "CSV"),
            ("Starting_Offsets", "latest"),
            ("max_messages_per_partition", "10"),
            ("on_data_loss", "skip"),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.password", "hunter2"),
        ])
        .unwrap();
        assert_eq!(options.format, ValueFormat::Csv);
        assert_eq!(options.starting, StartingOffsets::Latest);
        assert_eq!(options.max_messages, 10);
        assert_eq!(options.on_data_loss, OnDataLoss::Skip);
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("SASL_PLAINTEXT"), "{shown}");
        let config = options.client_config("b:9092").unwrap();
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        assert_eq!(config.get("auto.offset.reset"), Some("error"));
    }

    #[test]
    fn wrong_values_and_strata_owned_properties_are_refused() {
        for (key, value, says) in [
            ("format", "xml", "'json', 'csv', 'avro', 'avro-confluent'"),
            ("format", "avro", "needs option 'avro.schema'"),
            (
                "format",
                "avro-confluent",
                "needs option 'schema_registry.url'",
            ),
            ("starting_offsets", "first", "'earliest', 'latest'"),
            ("max_messages_per_partition", "0", "above 0"),
            ("enable.auto.commit", "true", "Strata's to set"),
            ("bootstrap.servers", "x:1", "LOCATION"),
        ] {
            let error = KafkaOptions::from_options([(key, value)]).unwrap_err();
            assert!(error.to_string().contains(says), "{key}: {error}");
        }
    }

    #[test]
    fn secrets_are_read_from_the_environment_or_a_file_when_a_client_is_made() {
        let file = std::env::temp_dir().join(format!("strata-kafka-secret-{}", std::process::id()));
        std::fs::write(&file, "from-file\n").unwrap();
        let options = KafkaOptions::from_options([
            (
                "sasl.username",
                "env:STRATA_TEST_KAFKA_USER_THAT_IS_NOT_SET",
            ),
            ("sasl.password", &format!("file:{}", file.display())),
        ])
        .unwrap();
        let error = options.client_config("b:9092").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("STRATA_TEST_KAFKA_USER_THAT_IS_NOT_SET is not set"),
            "{error}"
        );
        let options =
            KafkaOptions::from_options([("sasl.password", &*format!("file:{}", file.display()))])
                .unwrap();
        let config = options.client_config("b:9092").unwrap();
        assert_eq!(config.get("sasl.password"), Some("from-file"));
        std::fs::remove_file(file).unwrap();
    }
}
