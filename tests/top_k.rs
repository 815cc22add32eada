//! `top_k` must give the same answer however its input is split into partitions,
//! because Ballista aggregates in two phases and merges partial states.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::displayable;
use datafusion::prelude::{SessionConfig, SessionContext};

const K: usize = 7;

/// Deterministic rows with many tied scores: (group, item, score).
fn rows(count: usize) -> Vec<(i64, String, f64)> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..count)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let group = (state % 13) as i64;
            let score = ((state >> 20) % 40) as f64 / 8.0;
            (group, format!("candidate-{i}"), score)
        })
        .collect()
}

/// The expected answer by a full sort per group, independent of the heap.
fn reference(rows: &[(i64, String, f64)]) -> BTreeMap<i64, Vec<(String, f64)>> {
    let mut groups: BTreeMap<i64, Vec<(String, f64)>> = BTreeMap::new();
    for (group, item, score) in rows {
        groups
            .entry(*group)
            .or_default()
            .push((item.clone(), *score));
    }
    for entries in groups.values_mut() {
        entries.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        entries.truncate(K);
    }
    groups
}

async fn top_k_by_group(
    rows: &[(i64, String, f64)],
    partitions: usize,
) -> (BTreeMap<i64, Vec<(String, f64)>>, String) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("g", DataType::Int64, false),
        Field::new("item", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
    ]));
    let chunk = rows.len().div_ceil(partitions);
    let batches: Vec<Vec<RecordBatch>> = rows
        .chunks(chunk)
        .map(|part| {
            vec![
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(Int64Array::from_iter_values(part.iter().map(|r| r.0))),
                        Arc::new(StringArray::from_iter_values(
                            part.iter().map(|r| r.1.as_str()),
                        )),
                        Arc::new(Float64Array::from_iter_values(part.iter().map(|r| r.2))),
                    ],
                )
                .unwrap(),
            ]
        })
        .collect();
    let config = SessionConfig::new().with_target_partitions(partitions);
    let ctx = SessionContext::new_with_config(config);
    strata_udfs::register_all(&ctx);
    ctx.register_table(
        "matches",
        Arc::new(MemTable::try_new(schema, batches).unwrap()),
    )
    .unwrap();

    let frame = ctx
        .sql(&format!(
            "SELECT g, top_k(item, score, {K}) AS best FROM matches GROUP BY g"
        ))
        .await
        .unwrap();
    let plan = frame.clone().create_physical_plan().await.unwrap();
    let plan_text = displayable(plan.as_ref()).indent(true).to_string();

    let mut result = BTreeMap::new();
    for batch in frame.collect().await.unwrap() {
        let groups = batch.column(0).as_primitive::<Int64Type>();
        let lists = batch.column(1).as_list::<i32>();
        for row in 0..batch.num_rows() {
            let entries = lists.value(row);
            let entries = entries.as_struct();
            let items = entries.column(0).as_string::<i32>();
            let scores = entries.column(1).as_primitive::<Float64Type>();
            let kept = (0..entries.len())
                .map(|i| (items.value(i).to_owned(), scores.value(i)))
                .collect();
            result.insert(groups.value(row), kept);
        }
    }
    (result, plan_text)
}

#[tokio::test]
async fn top_k_merges_partial_states_across_partitions() {
    let rows = rows(20_000);
    let expected = reference(&rows);
    for partitions in [1, 3, 8] {
        let (actual, plan) = top_k_by_group(&rows, partitions).await;
        assert_eq!(
            actual, expected,
            "top_k differs with {partitions} partitions"
        );
        if partitions > 1 {
            assert!(
                plan.contains("mode=Partial") && plan.contains("mode=FinalPartitioned"),
                "expected a two-phase aggregate with {partitions} partitions:\n{plan}"
            );
        }
    }
}

#[tokio::test]
async fn top_k_state_round_trips_through_merge_only() {
    // A group whose best rows all sit in the last partition, behind many ties in the first.
    let mut rows: Vec<(i64, String, f64)> =
        (0..1000).map(|i| (1, format!("z{i:04}"), 1.0)).collect();
    rows.extend((0..K).map(|i| (1, format!("a{i}"), 1.0)));
    let expected = reference(&rows);
    let (actual, _) = top_k_by_group(&rows, 4).await;
    assert_eq!(actual, expected);
    assert!(actual[&1].iter().all(|(item, _)| item.starts_with('a')));
}
