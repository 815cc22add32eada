//! Native ranking functions against the same logic in plain DataFusion SQL, at 1 M rows.
//!
//! Run with `cargo bench -p strata-udfs --bench udfs`. Before timing, each pair is run
//! once and both forms must agree, so the comparison is of equal work.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Float64Builder, Int64Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use tokio::runtime::Runtime;

const ROWS: usize = 1_000_000;
const BATCH: usize = 8192;
const PARTITIONS: usize = 2;

const SKILLS: [&str; 40] = [
    "rust",
    "sql",
    "python",
    "kafka",
    "spark",
    "airflow",
    "dbt",
    "java",
    "scala",
    "go",
    "kubernetes",
    "docker",
    "terraform",
    "aws",
    "gcp",
    "azure",
    "react",
    "typescript",
    "node",
    "postgres",
    "mysql",
    "redis",
    "flink",
    "pandas",
    "numpy",
    "pytorch",
    "tensorflow",
    "linux",
    "bash",
    "git",
    "graphql",
    "grpc",
    "c++",
    "c#",
    "swift",
    "kotlin",
    "ruby",
    "php",
    "excel",
    "tableau",
];

const WORDS: [&str; 24] = [
    "senior",
    "junior",
    "lead",
    "data",
    "engineer",
    "developer",
    "platform",
    "rust",
    "python",
    "remote",
    "kafka",
    "analytics",
    "backend",
    "frontend",
    "manager",
    "cloud",
    "ml",
    "ops",
    "scientist",
    "architect",
    "staff",
    "principal",
    "sql",
    "team",
];

/// Deterministic xorshift, so every run benchmarks the same rows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn skills(rng: &mut Rng, builder: &mut ListBuilder<StringBuilder>, count: usize) {
    for _ in 0..count {
        builder
            .values()
            .append_value(SKILLS[rng.below(SKILLS.len())]);
    }
    builder.append(true);
}

fn words(rng: &mut Rng, count: usize) -> String {
    (0..count)
        .map(|_| WORDS[rng.below(WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

fn batch(rng: &mut Rng, schema: &Arc<Schema>, offset: usize, rows: usize) -> RecordBatch {
    let mut have = ListBuilder::new(StringBuilder::new());
    let mut want = ListBuilder::new(StringBuilder::new());
    let mut va = ListBuilder::new(Float64Builder::new());
    let mut vb = ListBuilder::new(Float64Builder::new());
    let (mut lat1, mut lon1, mut lat2, mut lon2, mut ts) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut titles, mut docs, mut groups, mut items, mut scores) =
        (vec![], vec![], vec![], vec![], vec![]);
    let now = 1_795_219_200_000_000_000_i64; // 2026-11-21T00:00:00Z
    for i in 0..rows {
        let have_count = 3 + rng.below(6);
        let want_count = 3 + rng.below(3);
        skills(rng, &mut have, have_count);
        skills(rng, &mut want, want_count);
        for builder in [&mut va, &mut vb] {
            for _ in 0..16 {
                builder.values().append_value(rng.unit() - 0.5);
            }
            builder.append(true);
        }
        lat1.push(rng.unit() * 180.0 - 90.0);
        lon1.push(rng.unit() * 360.0 - 180.0);
        lat2.push(rng.unit() * 180.0 - 90.0);
        lon2.push(rng.unit() * 360.0 - 180.0);
        ts.push(now - (rng.unit() * 400.0 * 86_400e9) as i64);
        let title_len = 2 + rng.below(2);
        titles.push(words(rng, title_len));
        let doc_len = 8 + rng.below(12);
        docs.push(words(rng, doc_len));
        groups.push(rng.below(1000) as i64);
        items.push(format!("candidate-{}", offset + i));
        scores.push((rng.below(10_000) as f64) / 100.0);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(groups)),
        Arc::new(StringArray::from(items)),
        Arc::new(Float64Array::from(scores)),
        Arc::new(Float64Array::from(lat1)),
        Arc::new(Float64Array::from(lon1)),
        Arc::new(Float64Array::from(lat2)),
        Arc::new(Float64Array::from(lon2)),
        Arc::new(have.finish()),
        Arc::new(want.finish()),
        Arc::new(TimestampNanosecondArray::from(ts)),
        Arc::new(StringArray::from(titles)),
        Arc::new(StringArray::from(docs)),
        Arc::new(va.finish()),
        Arc::new(vb.finish()),
    ];
    RecordBatch::try_new(Arc::clone(schema), columns).expect("bench batch matches its schema")
}

fn context() -> SessionContext {
    let list = |element: DataType| DataType::new_list(element, true);
    let schema = Arc::new(Schema::new(vec![
        Field::new("g", DataType::Int64, false),
        Field::new("item", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("lat1", DataType::Float64, false),
        Field::new("lon1", DataType::Float64, false),
        Field::new("lat2", DataType::Float64, false),
        Field::new("lon2", DataType::Float64, false),
        Field::new("have", list(DataType::Utf8), true),
        Field::new("want", list(DataType::Utf8), true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        Field::new("title", DataType::Utf8, false),
        Field::new("doc", DataType::Utf8, false),
        Field::new("va", list(DataType::Float64), true),
        Field::new("vb", list(DataType::Float64), true),
    ]));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut partitions = vec![Vec::new(); PARTITIONS];
    for (n, offset) in (0..ROWS).step_by(BATCH).enumerate() {
        let rows = BATCH.min(ROWS - offset);
        partitions[n % PARTITIONS].push(batch(&mut rng, &schema, offset, rows));
    }
    let ctx = SessionContext::new();
    strata_udfs::register_all(&ctx);
    let table = MemTable::try_new(schema, partitions).expect("bench table");
    ctx.register_table("t", Arc::new(table))
        .expect("register bench table");
    ctx
}

/// One comparison: the native query, and the plain-SQL query that computes the same thing.
struct Pair {
    name: &'static str,
    native: &'static str,
    sql: Option<&'static str>,
}

const PAIRS: &[Pair] = &[
    Pair {
        name: "geo_distance_km",
        native: "SELECT sum(geo_distance_km(lat1, lon1, lat2, lon2)) FROM t",
        sql: Some(
            "SELECT sum(2 * 6371.0088 * asin(sqrt(power(sin(radians(lat2 - lat1) / 2), 2) \
             + cos(radians(lat1)) * cos(radians(lat2)) * power(sin(radians(lon2 - lon1) / 2), 2)))) FROM t",
        ),
    },
    Pair {
        name: "skill_match",
        native: "SELECT sum(skill_match(have, want)) FROM t",
        // The SQL form skips trimming and lower-casing (the data is already clean), which favours SQL.
        sql: Some(
            "SELECT sum(CAST(cardinality(array_intersect(array_distinct(have), array_distinct(want))) AS DOUBLE) \
             / cardinality(array_distinct(want))) FROM t",
        ),
    },
    Pair {
        name: "jaccard",
        native: "SELECT sum(jaccard(have, want)) FROM t",
        sql: Some(
            "SELECT sum(CAST(cardinality(array_intersect(have, want)) AS DOUBLE) \
             / cardinality(array_union(have, want))) FROM t",
        ),
    },
    Pair {
        name: "recency_decay",
        native: "SELECT sum(recency_decay(ts, TIMESTAMP '2026-11-21 00:00:00', INTERVAL '30 days')) FROM t",
        sql: Some(
            "SELECT sum(CASE WHEN ts >= TIMESTAMP '2026-11-21 00:00:00' THEN 1.0 ELSE \
             power(0.5, (date_part('epoch', TIMESTAMP '2026-11-21 00:00:00') - date_part('epoch', ts)) / 2592000.0) END) FROM t",
        ),
    },
    Pair {
        name: "cosine_similarity",
        native: "SELECT sum(cosine_similarity(va, vb)) FROM t",
        sql: Some(
            "SELECT sum(s) FROM (SELECT sum(a * b) / (sqrt(sum(a * a)) * sqrt(sum(b * b))) AS s \
             FROM (SELECT item, unnest(va) AS a, unnest(vb) AS b FROM t) GROUP BY item)",
        ),
    },
    Pair {
        name: "tokenize",
        native: "SELECT sum(cardinality(tokenize(doc))) FROM t",
        sql: Some(
            "SELECT sum(cardinality(string_to_array(trim(lower(regexp_replace(doc, '[^[:alnum:]]+', ' ', 'g'))), ' '))) FROM t",
        ),
    },
    Pair {
        name: "bm25",
        native: "SELECT sum(bm25(doc, 'rust kafka data', 14.0)) FROM t",
        sql: Some(
            "SELECT sum(tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / 14.0))) FROM ( \
               SELECT item, term, count(*) AS tf, dl FROM ( \
                 SELECT item, unnest(tokens) AS term, cardinality(tokens) AS dl FROM ( \
                   SELECT item, string_to_array(trim(lower(regexp_replace(doc, '[^[:alnum:]]+', ' ', 'g'))), ' ') AS tokens FROM t)) \
               WHERE term IN ('rust', 'kafka', 'data') GROUP BY item, term, dl)",
        ),
    },
    Pair {
        name: "jaro_winkler",
        native: "SELECT sum(jaro_winkler(title, 'senior data engineer')) FROM t",
        sql: None,
    },
    Pair {
        name: "top_k",
        native: "SELECT count(*) FROM (SELECT g, unnest(top_k(item, score, 50)) FROM t GROUP BY g)",
        sql: Some(
            "SELECT count(*) FROM (SELECT g, item, row_number() OVER (PARTITION BY g ORDER BY score DESC, item) AS pos \
             FROM t) WHERE pos <= 50",
        ),
    },
];

async fn scalar(ctx: &SessionContext, sql: &str) -> f64 {
    let batches = ctx
        .sql(sql)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    let column = batches[0].column(0);
    let value = datafusion::common::ScalarValue::try_from_array(column, 0).expect("one value");
    match value.cast_to(&DataType::Float64).expect("numeric result") {
        datafusion::common::ScalarValue::Float64(Some(v)) => v,
        other => panic!("unexpected result {other:?} for {sql}"),
    }
}

fn bench(c: &mut Criterion) {
    let runtime = Runtime::new().expect("tokio runtime");
    let ctx = context();
    // STRATA_BENCH_ONLY=top_k,skill_match runs just those pairs.
    let only = std::env::var("STRATA_BENCH_ONLY").ok();
    for pair in PAIRS {
        if only
            .as_deref()
            .is_some_and(|names| !names.split(',').any(|name| name == pair.name))
        {
            continue;
        }
        if let Some(sql) = pair.sql {
            let native = runtime.block_on(scalar(&ctx, pair.native));
            let plain = runtime.block_on(scalar(&ctx, sql));
            assert!(
                (native - plain).abs() <= 1e-6 * native.abs().max(1.0),
                "{}: native {native} and SQL {plain} disagree",
                pair.name
            );
        }
        let mut group = c.benchmark_group(pair.name);
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(8));
        group.bench_function("native", |b| {
            b.to_async(&runtime).iter(|| scalar(&ctx, pair.native))
        });
        if let Some(sql) = pair.sql {
            group.bench_function("sql", |b| b.to_async(&runtime).iter(|| scalar(&ctx, sql)));
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
