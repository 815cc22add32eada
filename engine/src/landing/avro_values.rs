//! Avro message values as rows of JSON for the row-by-row parser: one datum per message
//! with a writer schema the source declares (`'format' 'avro'`), or Confluent's wire
//! format (a zero byte, a 4-byte schema id, the datum) with each writer schema fetched
//! once from the schema registry (`'format' 'avro-confluent'`). A value that cannot be
//! read is a bad message; a registry that does not answer fails the read.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use chrono::{DateTime, NaiveDate};
use datafusion::error::{DataFusionError, Result};
use serde_json::Value as Json;
use strata_kafka::{DecodeValue, Decoded, KafkaOptions, ValueFormat};

/// How a Kafka source's values become rows of text; `None` when they are text already.
pub(super) fn decoder(
    options: &KafkaOptions,
    handle: tokio::runtime::Handle,
) -> Result<Option<DecodeValue>> {
    match options.format {
        ValueFormat::Json | ValueFormat::Csv => Ok(None),
        ValueFormat::Avro => {
            let text = options.avro_schema.as_deref().unwrap_or_default();
            let schema = Schema::parse_str(text).map_err(|error| {
                DataFusionError::Plan(format!(
                    "option 'avro.schema' is not an Avro schema: {error}"
                ))
            })?;
            Ok(Some(Box::new(move |value: &[u8]| {
                Ok(datum(&schema, value))
            })))
        }
        ValueFormat::AvroConfluent => {
            let mut registry = Registry {
                url: options.schema_registry.clone().unwrap_or_default(),
                client: reqwest::Client::new(),
                handle,
                schemas: HashMap::new(),
            };
            Ok(Some(Box::new(move |value: &[u8]| registry.decode(value))))
        }
    }
}

/// One datum of `schema` as a JSON row.
fn datum(schema: &Schema, value: &[u8]) -> Decoded {
    let mut input = value;
    let read = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .and_then(|reader| reader.read_value(&mut input));
    match read {
        Ok(datum) => match to_json(datum) {
            Ok(json) => Decoded::Line(json.to_string().into_bytes()),
            Err(why) => Decoded::Bad(why),
        },
        Err(error) => Decoded::Bad(format!("not an Avro datum of its writer schema: {error}")),
    }
}

/// A schema registry's writer schemas, each fetched once (`None`: the registry has no
/// schema of that id).
struct Registry {
    url: String,
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
    schemas: HashMap<u32, Option<Schema>>,
}

impl Registry {
    fn decode(&mut self, value: &[u8]) -> std::result::Result<Decoded, String> {
        let (Some(0), Some(id)) = (
            value.first().copied(),
            value.get(1..5).and_then(|id| <[u8; 4]>::try_from(id).ok()),
        ) else {
            return Ok(Decoded::Bad(
                "not in Confluent's wire format (a zero byte and a schema id before the datum)"
                    .to_owned(),
            ));
        };
        let id = u32::from_be_bytes(id);
        if !self.schemas.contains_key(&id) {
            let fetched = self.fetch(id)?;
            self.schemas.insert(id, fetched);
        }
        Ok(match self.schemas.get(&id) {
            Some(Some(schema)) => datum(schema, &value[5..]),
            _ => Decoded::Bad(format!(
                "schema id {id} is not in the schema registry at {}",
                self.url
            )),
        })
    }

    /// The schema of `id`; `Err` when the registry cannot be asked.
    fn fetch(&self, id: u32) -> std::result::Result<Option<Schema>, String> {
        let url = format!("{}/schemas/ids/{id}", self.url);
        let asked = self.handle.block_on(async {
            let response = self.client.get(&url).send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        });
        let (status, body) = asked
            .map_err(|error| format!("the schema registry {} did not answer: {error}", self.url))?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("the schema registry answered {status} for {url}"));
        }
        let schema = serde_json::from_str::<Json>(&body)
            .ok()
            .and_then(|answer| {
                answer
                    .get("schema")
                    .and_then(Json::as_str)
                    .map(str::to_owned)
            })
            .ok_or_else(|| format!("{url} answered no schema: {body}"))?;
        Schema::parse_str(&schema)
            .map(Some)
            .map_err(|error| format!("schema id {id} from {url} is not an Avro schema: {error}"))
    }
}

/// An Avro value as JSON the parser casts to the declared columns: dates and timestamps
/// as ISO 8601 text, the rest as Avro's own JSON.
fn to_json(value: Avro) -> std::result::Result<Json, String> {
    let iso = |micros: i64| {
        DateTime::from_timestamp_micros(micros)
            .map(|at| Json::String(at.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()))
            .ok_or_else(|| format!("timestamp {micros} µs is out of range"))
    };
    match value {
        Avro::Date(days) => NaiveDate::from_num_days_from_ce_opt(days + 719_163)
            .map(|date| Json::String(date.to_string()))
            .ok_or_else(|| format!("date {days} is out of range")),
        Avro::TimestampMillis(ms) | Avro::LocalTimestampMillis(ms) => iso(ms.saturating_mul(1000)),
        Avro::TimestampMicros(us) | Avro::LocalTimestampMicros(us) => iso(us),
        Avro::TimestampNanos(ns) | Avro::LocalTimestampNanos(ns) => iso(ns / 1000),
        Avro::Union(_, inner) => to_json(*inner),
        Avro::Record(fields) => fields
            .into_iter()
            .map(|(name, value)| to_json(value).map(|json| (name, json)))
            .collect::<std::result::Result<serde_json::Map<_, _>, _>>()
            .map(Json::Object),
        Avro::Array(items) => items
            .into_iter()
            .map(to_json)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Json::Array),
        Avro::Map(entries) => entries
            .into_iter()
            .map(|(key, value)| to_json(value).map(|json| (key, json)))
            .collect::<std::result::Result<serde_json::Map<_, _>, _>>()
            .map(Json::Object),
        other => Json::try_from(other).map_err(|error| error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type": "record", "name": "event", "fields": [
        {"name": "event_id", "type": "long"},
        {"name": "kind", "type": ["null", "string"]},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}}
    ]}"#;

    #[test]
    fn avro_datums_become_json_rows_and_garbage_is_a_bad_message() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let record = Avro::Record(vec![
            ("event_id".into(), Avro::Long(7)),
            (
                "kind".into(),
                Avro::Union(1, Box::new(Avro::String("view".into()))),
            ),
            ("ts".into(), Avro::TimestampMillis(1_796_623_626_093)),
            ("day".into(), Avro::Date(20_794)),
        ]);
        let bytes = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_value_to_vec(record)
            .unwrap();
        let Decoded::Line(line) = datum(&schema, &bytes) else {
            panic!("a datum of its schema is read")
        };
        let row: Json = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            row,
            serde_json::json!({"event_id": 7, "kind": "view",
                "ts": "2026-12-07T06:07:06.093000", "day": "2026-12-07"})
        );
        assert!(
            matches!(datum(&schema, b"\xff"), Decoded::Bad(why) if why.contains("not an Avro datum"))
        );
    }

    #[test]
    fn the_wire_format_needs_its_magic_byte_and_schema_id() {
        let mut registry = Registry {
            url: "http://127.0.0.1:9".into(),
            client: reqwest::Client::new(),
            handle: tokio::runtime::Runtime::new().unwrap().handle().clone(),
            schemas: HashMap::from([(3, None)]),
        };
        let bad = |decoded| matches!(decoded, Ok(Decoded::Bad(_)));
        assert!(bad(registry.decode(b"{\"json\": 1}")));
        assert!(bad(registry.decode(&[0, 0, 0])));
        let Ok(Decoded::Bad(why)) = registry.decode(&[0, 0, 0, 0, 3, 2]) else {
            panic!("an id the registry does not have is a bad message")
        };
        assert!(
            why.contains("schema id 3 is not in the schema registry"),
            "{why}"
        );
    }
}
