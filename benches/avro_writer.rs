//! The raw zone's Avro writer: `arrow-avro` against the `apache-avro` crate on the same batches.
//!
//! Run with `cargo bench -p strata-storage --bench avro_writer`. Both write 1 M tracking
//! events (the shape of `raw.events`) as one snappy Avro container in memory. Before
//! timing, both outputs are read back with `apache-avro` and must hold the same records,
//! so the comparison is of equal work.

use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value;
use apache_avro::{Codec, Reader, Schema as AvroSchema, Writer};
use arrow_avro::compression::CompressionCodec;
use arrow_avro::writer::{AvroWriter, WriterBuilder};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

const ROWS: usize = 1_000_000;
const BATCH: usize = 8192;
const KINDS: [&str; 5] = ["click", "apply", "conversion", "qualified", "unqualified"];
const PUBLISHERS: [&str; 6] = [
    "indeed",
    "linkedin",
    "monster",
    "glassdoor",
    "jobup",
    "direct",
];

/// The Avro schema `apache-avro` needs spelled out; `arrow-avro` derives the same one from
/// Arrow (a timestamp without a time zone is a `local-timestamp-micros`).
const EVENTS_SCHEMA: &str = r#"{
  "type": "record", "name": "events", "fields": [
    {"name": "event_id", "type": "string"},
    {"name": "ts", "type": ["null", {"type": "long", "logicalType": "local-timestamp-micros"}]},
    {"name": "job_id", "type": ["null", "long"]},
    {"name": "candidate_id", "type": ["null", "string"]},
    {"name": "kind", "type": ["null", "string"]},
    {"name": "publisher", "type": ["null", "string"]},
    {"name": "campaign", "type": ["null", "string"]}
  ]}"#;

fn arrow_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("job_id", DataType::Int64, true),
        Field::new("candidate_id", DataType::Utf8, true),
        Field::new("kind", DataType::Utf8, true),
        Field::new("publisher", DataType::Utf8, true),
        Field::new("campaign", DataType::Utf8, true),
    ]))
}

/// Deterministic events, with a NULL in every nullable column now and then.
fn events() -> Vec<RecordBatch> {
    let schema = arrow_schema();
    let start = 1_762_000_000_000_000_i64;
    (0..ROWS)
        .step_by(BATCH)
        .map(|first| {
            let rows = first..(first + BATCH).min(ROWS);
            let nullable = |row: usize| !row.is_multiple_of(97);
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    rows.clone().map(|row| format!("ev-{row:09}")),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter(rows.clone().map(
                    |row| nullable(row).then_some(start + row as i64 * 1_209_600),
                ))),
                Arc::new(Int64Array::from_iter(
                    rows.clone()
                        .map(|row| nullable(row).then_some((row * 7919 % 2000) as i64)),
                )),
                Arc::new(StringArray::from_iter(rows.clone().map(|row| {
                    nullable(row).then(|| format!("c-{:06}", row * 104_729 % 50_000))
                }))),
                Arc::new(StringArray::from_iter(rows.clone().map(|row| {
                    nullable(row).then_some(KINDS[row * 31 % KINDS.len()])
                }))),
                Arc::new(StringArray::from_iter(rows.clone().map(|row| {
                    nullable(row).then_some(PUBLISHERS[row * 17 % PUBLISHERS.len()])
                }))),
                Arc::new(StringArray::from_iter(rows.clone().map(|row| {
                    nullable(row).then(|| format!("campaign-{}", row * 13 % 40))
                }))),
            ];
            RecordBatch::try_new(Arc::clone(&schema), columns).expect("valid batch")
        })
        .collect()
}

fn with_arrow_avro(batches: &[RecordBatch]) -> Vec<u8> {
    let mut writer: AvroWriter<Vec<u8>> = WriterBuilder::new(batches[0].schema().as_ref().clone())
        .with_compression(Some(CompressionCodec::Snappy))
        .build(Vec::new())
        .expect("arrow-avro writer");
    for batch in batches {
        writer.write(batch).expect("arrow-avro write");
    }
    writer.finish().expect("arrow-avro finish");
    writer.into_inner()
}

/// What a sink on `apache-avro` must do: one `Value::Record` per row, then append it.
fn with_apache_avro(batches: &[RecordBatch], schema: &AvroSchema) -> Vec<u8> {
    let mut writer = Writer::with_codec(schema, Vec::new(), Codec::Snappy).expect("writer");
    let schema = batches[0].schema();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let fields = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(column, field)| {
                    let value = cell(column.as_ref(), row, field.is_nullable());
                    (field.name().clone(), value)
                })
                .collect();
            writer
                .unvalidated_append_value_ref(&Value::Record(fields))
                .expect("apache-avro append");
        }
    }
    writer.into_inner().expect("apache-avro finish")
}

fn cell(column: &dyn Array, row: usize, nullable: bool) -> Value {
    let value = match column.data_type() {
        DataType::Utf8 => {
            let strings = column.as_any().downcast_ref::<StringArray>().expect("utf8");
            Value::String(strings.value(row).to_owned())
        }
        DataType::Int64 => {
            let longs = column.as_any().downcast_ref::<Int64Array>().expect("int64");
            Value::Long(longs.value(row))
        }
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            let times = column
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("timestamp");
            Value::LocalTimestampMicros(times.value(row))
        }
        other => panic!("no Avro value for {other}"),
    };
    match (nullable, column.is_null(row)) {
        (false, _) => value,
        (true, true) => Value::Union(0, Box::new(Value::Null)),
        (true, false) => Value::Union(1, Box::new(value)),
    }
}

/// Every record of a container, with unions unwrapped, as both writers may order them differently.
fn records(bytes: &[u8]) -> Vec<Vec<(String, Value)>> {
    let unwrap = |value: Value| match value {
        Value::Union(_, inner) => *inner,
        other => other,
    };
    Reader::new(bytes)
        .expect("readable container")
        .map(|record| match record.expect("readable record") {
            Value::Record(fields) => fields
                .into_iter()
                .map(|(name, value)| (name, unwrap(value)))
                .collect(),
            other => panic!("not a record: {other:?}"),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let batches = events();
    let schema = AvroSchema::parse_str(EVENTS_SCHEMA).expect("schema");
    let arrow_bytes = with_arrow_avro(&batches);
    let apache_bytes = with_apache_avro(&batches, &schema);
    let (arrow_records, apache_records) = (records(&arrow_bytes), records(&apache_bytes));
    assert_eq!(arrow_records.len(), ROWS);
    if let Some((arrow, apache)) = arrow_records
        .iter()
        .zip(&apache_records)
        .find(|(arrow, apache)| arrow != apache)
    {
        panic!("the two writers wrote different records:\n{arrow:?}\n{apache:?}");
    }
    println!(
        "container sizes: arrow-avro {} bytes, apache-avro {} bytes",
        arrow_bytes.len(),
        apache_bytes.len()
    );

    let mut group = c.benchmark_group("avro_writer_1m_events_snappy");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("arrow-avro", |b| b.iter(|| with_arrow_avro(&batches)));
    group.bench_function("apache-avro", |b| {
        b.iter(|| with_apache_avro(&batches, &schema))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
