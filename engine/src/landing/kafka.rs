//! A Kafka topic as a landing source (`STORED AS KAFKA LOCATION 'kafka://…/topic'`): its
//! options taken out of the definition, the columns a message's metadata fills
//! (`_kafka_key`, `_kafka_partition`, `_kafka_offset`, `_kafka_timestamp`,
//! `_kafka_headers`) and the rest parsed from its value as JSON or CSV.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result};
use datafusion::sql::parser::CreateExternalTable;
use datafusion::sql::sqlparser::ast::Value;
use serde::{Deserialize, Serialize};
use strata_kafka::{KafkaLocation, KafkaOptions, Message, ValueFormat};
use strata_storage::landing::{after_ingest, policy};

/// The `STORED AS` of a Kafka source.
pub const STORED_AS: &str = "KAFKA";

/// A column filled from a message's metadata rather than its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetadataColumn {
    Key,
    Partition,
    Offset,
    Timestamp,
    Headers,
}

impl MetadataColumn {
    const ALL: [MetadataColumn; 5] = [
        MetadataColumn::Key,
        MetadataColumn::Partition,
        MetadataColumn::Offset,
        MetadataColumn::Timestamp,
        MetadataColumn::Headers,
    ];

    fn name(self) -> &'static str {
        match self {
            MetadataColumn::Key => "_kafka_key",
            MetadataColumn::Partition => "_kafka_partition",
            MetadataColumn::Offset => "_kafka_offset",
            MetadataColumn::Timestamp => "_kafka_timestamp",
            MetadataColumn::Headers => "_kafka_headers",
        }
    }

    fn of(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|column| column.name() == name)
    }

    /// The type the value is made in, before it is cast to the declared one.
    fn made_as(self) -> DataType {
        match self {
            MetadataColumn::Key | MetadataColumn::Headers => DataType::Utf8,
            MetadataColumn::Partition => DataType::Int32,
            MetadataColumn::Offset => DataType::Int64,
            MetadataColumn::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }

    fn values(self, partition: i32, messages: &[&Message]) -> ArrayRef {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match self {
            MetadataColumn::Key => Arc::new(StringArray::from_iter(
                messages.iter().map(|m| m.key.as_deref().map(text)),
            )),
            MetadataColumn::Partition => {
                Arc::new(Int32Array::from(vec![partition; messages.len()]))
            }
            MetadataColumn::Offset => Arc::new(Int64Array::from_iter_values(
                messages.iter().map(|m| m.offset),
            )),
            MetadataColumn::Timestamp => Arc::new(TimestampMillisecondArray::from_iter(
                messages.iter().map(|m| m.timestamp_ms),
            )),
            MetadataColumn::Headers => Arc::new(StringArray::from_iter(messages.iter().map(|m| {
                (!m.headers.is_empty()).then(|| {
                    let object: serde_json::Map<String, serde_json::Value> = m
                        .headers
                        .iter()
                        .map(|(key, value)| {
                            let value = value.as_deref().map_or(serde_json::Value::Null, |v| {
                                serde_json::Value::String(text(v))
                            });
                            (key.clone(), value)
                        })
                        .collect();
                    serde_json::Value::Object(object).to_string()
                })
            }))),
        }
    }
}

/// What a scan needs to read a Kafka source's ranges; it crosses to executors with the
/// plan (secrets as the `env:` or `file:` names they were given by).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaRead {
    pub location: KafkaLocation,
    pub options: KafkaOptions,
}

impl KafkaRead {
    /// Takes a Kafka source's own options out of `definition` and leaves it as the
    /// definition of its messages' values (`STORED AS JSON` or `CSV`, no header); `None`
    /// for a source of files.
    pub(super) fn take_from(definition: &mut CreateExternalTable) -> Result<Option<Self>> {
        if !definition.file_type.eq_ignore_ascii_case(STORED_AS) {
            return Ok(None);
        }
        let plan =
            |message: String| DataFusionError::Plan(format!("{}: {message}", definition.name));
        let [location] = definition.locations.as_slice() else {
            return Err(plan(
                "a Kafka source has one LOCATION, 'kafka://host:port/topic'".into(),
            ));
        };
        let location = KafkaLocation::parse(location).map_err(|error| plan(error.to_string()))?;
        if let Some((key, _)) = definition.options.iter().find(|(key, _)| {
            after_ingest::OPTION_NAMES.contains(&key.to_ascii_lowercase().as_str())
        }) {
            return Err(plan(format!(
                "option '{key}' is for landing files; a topic's messages stay in Kafka until its retention deletes them"
            )));
        }
        let (kafka, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut definition.options)
            .into_iter()
            .partition(|(key, _)| {
                let key = key.to_ascii_lowercase();
                !key.starts_with("format.") && !policy::OPTION_NAMES.contains(&key.as_str())
            });
        definition.options = rest;
        let values: Vec<(String, String)> = kafka
            .iter()
            .map(|(key, value)| (key.clone(), super::option_text(value)))
            .collect();
        let options = KafkaOptions::from_options(
            values
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        )
        .map_err(|error| plan(error.to_string()))?;
        // Avro values are read as the JSON rows they decode to.
        definition.file_type = match options.format {
            ValueFormat::Csv => "CSV",
            ValueFormat::Json | ValueFormat::Avro | ValueFormat::AvroConfluent => "JSON",
        }
        .to_owned();
        if options.format == ValueFormat::Csv {
            for (key, value) in &definition.options {
                let key = key.to_ascii_lowercase();
                let set = !matches!(
                    super::option_text(value).to_ascii_lowercase().as_str(),
                    "false" | ""
                );
                if (key == "format.has_header" || key == "format.comment") && set {
                    return Err(plan(format!(
                        "option '{key}': a CSV message is one row, with no header or comment"
                    )));
                }
            }
            definition.options.push((
                "format.has_header".to_owned(),
                Value::SingleQuotedString("false".to_owned()),
            ));
        }
        Ok(Some(Self { location, options }))
    }

    /// Checks the declared columns: some come from the value, and each metadata column
    /// is of a type its values cast to.
    pub(super) fn check_columns(&self, schema: Option<&SchemaRef>) -> Result<()> {
        let Some(schema) = schema else {
            return Err(DataFusionError::Plan(format!(
                "{}: a Kafka source declares its columns (the messages' values are not read to infer them)",
                self.location
            )));
        };
        for field in schema.fields() {
            if let Some(column) = MetadataColumn::of(field.name())
                && !can_cast_types(&column.made_as(), field.data_type())
            {
                return Err(DataFusionError::Plan(format!(
                    "column {} is {}, which a Kafka message's {} cannot be cast to",
                    field.name(),
                    field.data_type(),
                    column.made_as()
                )));
            }
        }
        if value_schema(schema).fields().is_empty() {
            return Err(DataFusionError::Plan(format!(
                "{}: declare at least one column of the messages' values beside the _kafka_ columns",
                self.location
            )));
        }
        Ok(())
    }
}

/// The declared columns parsed from a message's value: all but the metadata columns.
pub(super) fn value_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Arc<Field>> = schema
        .fields()
        .iter()
        .filter(|field| MetadataColumn::of(field.name()).is_none())
        .cloned()
        .collect();
    Arc::new(Schema::new(fields))
}

/// The rows of `values` (the value columns of `messages`) with every declared column,
/// the metadata ones filled from the messages.
pub(super) fn with_metadata(
    schema: &SchemaRef,
    values: &datafusion::arrow::array::RecordBatch,
    partition: i32,
    messages: &[&Message],
) -> Result<datafusion::arrow::array::RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match MetadataColumn::of(field.name()) {
            Some(column) => Ok(cast(
                &column.values(partition, messages),
                field.data_type(),
            )?),
            None => values.column_by_name(field.name()).cloned().ok_or_else(|| {
                DataFusionError::Internal(format!("no value column {}", field.name()))
            }),
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    debug_assert!(columns.iter().all(|column| column.len() == messages.len()));
    Ok(datafusion::arrow::array::RecordBatch::try_new(
        Arc::clone(schema),
        columns,
    )?)
}
