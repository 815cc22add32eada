//! The contract of automatic incremental refresh, tested as a property: pipelines drawn
//! at random from the shapes Strata refreshes from what changed (row-by-row queries,
//! joins with a side that did not change, inner and left; `UNION ALL`; `DISTINCT`;
//! aggregates with count, sum,
//! min, max and avg; windows partitioned by a key; merges; aggregates and windows over a
//! merged table, through its change feed; tables built on those), fed
//! random deliveries (new rows, corrections of old keys, deletions (`op = 'd'`) and rows
//! of deleted keys held up until after their deletion, rows that arrive late, changes
//! of the joined side, alone or with new orders) over several runs. After every run, every table equals a
//! `--full-refresh` build of the same landing files, row for row.
//!
//! CI runs a fixed seed and a few cases; `STRATA_PROPERTY_SEED` and
//! `STRATA_PROPERTY_CASES` run others (`benches/incremental/property.sh` runs many).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

use crate::support::{delta_rows, run_pipeline, stderr, strata, table_report, workdir};

/// A small, fixed pseudo-random sequence (xorshift), so a failing case can be replayed
/// from its seed.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One table of a drawn pipeline: its name, its statement, and the tables it needs.
struct Shape {
    name: &'static str,
    sql: String,
    needs: &'static [&'static str],
}

fn shapes(draw: &mut Draw) -> Vec<Shape> {
    let threshold = 100 + draw.below(600);
    let factor = 1 + draw.below(5);
    let join = if draw.chance(50) { "JOIN" } else { "LEFT JOIN" };
    let filter = if draw.chance(50) {
        format!("WHERE amount > {}", draw.below(300))
    } else {
        String::new()
    };
    vec![
        Shape {
            name: "enriched.scaled",
            sql: format!(
                "SELECT order_id, customer_id, amount * {factor} AS scaled, version FROM raw.orders WHERE amount > {threshold}"
            ),
            needs: &[],
        },
        Shape {
            name: "enriched.order_regions",
            sql: format!(
                "SELECT o.order_id, o.version, o.amount, c.region FROM raw.orders o {join} raw.customers c ON o.customer_id = c.customer_id"
            ),
            needs: &[],
        },
        Shape {
            name: "enriched.customer_totals",
            sql: format!(
                "SELECT customer_id, count(*) AS orders, sum(amount) AS total, min(amount) AS low, max(amount) AS high, avg(amount) AS mean FROM raw.orders {filter} GROUP BY customer_id"
            ),
            needs: &[],
        },
        Shape {
            name: "enriched.daily",
            sql: "SELECT customer_id, date_trunc('day', ts) AS day, count(*) AS orders, max(amount) AS high FROM raw.orders GROUP BY customer_id, date_trunc('day', ts)".into(),
            needs: &[],
        },
        Shape {
            name: "enriched.running",
            sql: "SELECT order_id, version, customer_id, row_number() OVER (PARTITION BY customer_id ORDER BY ts, order_id, version) AS nth, sum(amount) OVER (PARTITION BY customer_id ORDER BY ts, order_id, version ROWS UNBOUNDED PRECEDING) AS running FROM raw.orders".into(),
            needs: &[],
        },
        Shape {
            name: "enriched.latest",
            sql: "WRITE MERGE KEY (order_id) SEQUENCE BY version DELETE WHEN op = 'd' AS SELECT order_id, customer_id, amount, version, op FROM raw.orders".into(),
            needs: &[],
        },
        Shape {
            name: "enriched.latest_stream",
            sql: "WRITE MERGE KEY (order_id) SEQUENCE BY version DELETE WHEN op = 'd' AS SELECT order_id, customer_id, amount, version, op FROM STREAM(raw.orders)".into(),
            needs: &[],
        },
        Shape {
            name: "enriched.union_all",
            sql: format!(
                "SELECT order_id AS id, customer_id, amount FROM raw.orders WHERE amount > {threshold} UNION ALL SELECT customer_id AS id, customer_id, -1 AS amount FROM raw.customers"
            ),
            needs: &[],
        },
        Shape {
            name: "enriched.union_counts",
            sql: "SELECT customer_id, count(*) AS rows_of_both FROM (SELECT customer_id FROM raw.orders UNION ALL SELECT customer_id FROM raw.customers) GROUP BY customer_id".into(),
            needs: &[],
        },
        Shape {
            name: "enriched.distinct_buckets",
            sql: format!(
                "SELECT DISTINCT customer_id, amount % {} AS bucket FROM raw.orders",
                2 + factor
            ),
            needs: &[],
        },
        Shape {
            name: "ranked.bucket_counts",
            sql: "SELECT bucket, count(*) AS customers FROM enriched.distinct_buckets GROUP BY bucket".into(),
            needs: &["enriched.distinct_buckets"],
        },
        Shape {
            name: "ranked.region_totals",
            sql: "SELECT region, count(*) AS orders, sum(amount) AS total FROM enriched.order_regions GROUP BY region".into(),
            needs: &["enriched.order_regions"],
        },
        Shape {
            name: "ranked.big_customers",
            sql: format!(
                "SELECT customer_id, total FROM enriched.customer_totals WHERE total > {}",
                threshold * 3
            ),
            needs: &["enriched.customer_totals"],
        },
        Shape {
            name: "ranked.merged_by_customer",
            sql: format!(
                "SELECT customer_id, count(*) AS orders, sum(amount) AS total, min(amount) AS low FROM enriched.latest_stream {filter} GROUP BY customer_id"
            ),
            needs: &["enriched.latest_stream"],
        },
        Shape {
            name: "ranked.merged_running",
            sql: "SELECT order_id, customer_id, rank() OVER (PARTITION BY customer_id ORDER BY amount DESC, order_id) AS place FROM enriched.latest_stream".into(),
            needs: &["enriched.latest_stream"],
        },
        Shape {
            name: "enriched.latest_regions",
            sql: format!(
                "SELECT l.order_id, l.amount, c.region FROM enriched.latest_stream l {join} raw.customers c ON l.customer_id = c.customer_id WHERE l.amount > {threshold}"
            ),
            needs: &["enriched.latest_stream"],
        },
        Shape {
            name: "ranked.latest_region_totals",
            sql: "SELECT region, count(*) AS orders, sum(amount) AS total FROM enriched.latest_regions GROUP BY region".into(),
            needs: &["enriched.latest_regions", "enriched.latest_stream"],
        },
        Shape {
            name: "ranked.latest_doubled",
            sql: "SELECT order_id, customer_id, amount * 2 AS doubled FROM enriched.latest WHERE op <> 'x'".into(),
            needs: &["enriched.latest"],
        },
        Shape {
            name: "ranked.latest_by_customer",
            sql: "SELECT customer_id, count(*) AS orders, sum(amount) AS total FROM enriched.latest GROUP BY customer_id".into(),
            needs: &["enriched.latest"],
        },
    ]
}

/// A pipeline of some of the shapes (with what they need), over `landing`.
fn pipeline(draw: &mut Draw, landing: &Path) -> (String, Vec<&'static str>) {
    let all = shapes(draw);
    let mut chosen: BTreeSet<&'static str> = BTreeSet::new();
    while chosen.len() < 3 {
        for shape in &all {
            if draw.chance(40) {
                chosen.insert(shape.name);
                chosen.extend(shape.needs);
            }
        }
    }
    let landing = landing.display();
    let mut text = format!(
        "CREATE EXTERNAL TABLE landing.orders (order_id BIGINT NOT NULL, customer_id BIGINT NOT NULL, amount BIGINT NOT NULL, ts TIMESTAMP NOT NULL, version BIGINT NOT NULL, op VARCHAR NOT NULL)
STORED AS CSV LOCATION '{landing}/orders/' OPTIONS ('format.has_header' 'true');
CREATE EXTERNAL TABLE landing.customers (customer_id BIGINT NOT NULL, region VARCHAR)
STORED AS CSV LOCATION '{landing}/customers/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.orders AS SELECT * FROM landing.orders;
CREATE TABLE raw.customers AS SELECT * FROM landing.customers;
"
    );
    let mut names = Vec::new();
    for shape in all.iter().filter(|shape| chosen.contains(shape.name)) {
        let body = if shape.sql.starts_with("WRITE") {
            shape.sql.clone()
        } else {
            format!("AS {}", shape.sql)
        };
        writeln!(text, "CREATE TABLE {} {body};", shape.name).unwrap();
        names.push(shape.name);
    }
    (text, names)
}

const CUSTOMERS: u64 = 12;

/// Delivery `number`: new orders, some of them late (dated before earlier deliveries'),
/// corrections of earlier orders with a higher version, and now and then new regions
/// for some customers (the joined side changes, and what joins it is rebuilt).
/// What the deliveries so far hold.
#[derive(Default)]
struct History {
    /// Orders delivered, numbered from 0.
    delivered: u64,
    /// Orders whose newest row deletes them.
    deleted: BTreeSet<u64>,
    /// Deleted orders that have had a row arrive late, older than their deletion.
    late: BTreeSet<u64>,
}

fn deliver(draw: &mut Draw, landing: &Path, number: u64, history: &mut History) {
    // Now and then only the customers change.
    if number == 0 || !draw.chance(20) {
        deliver_orders(draw, landing, number, history);
    }
    let customers = landing.join("customers");
    if number == 0 || draw.chance(30) {
        std::fs::create_dir_all(&customers).unwrap();
        // A customer without a row tests the left join; each delivery adds rows, so a
        // changed region is a second row for the customer.
        let mut text = String::from("customer_id,region\n");
        for customer in 0..CUSTOMERS - 1 {
            if number == 0 || draw.chance(30) {
                writeln!(text, "{customer},region-{}", draw.below(4)).unwrap();
            }
        }
        std::fs::write(customers.join(format!("customers-{number:02}.csv")), text).unwrap();
    }
}

fn deliver_orders(draw: &mut Draw, landing: &Path, number: u64, history: &mut History) {
    let orders = landing.join("orders");
    std::fs::create_dir_all(&orders).unwrap();
    let mut text = String::from("order_id,customer_id,amount,ts,version,op\n");
    let fresh = 20 + draw.below(60);
    let delivered = history.delivered;
    for id in delivered..delivered + fresh {
        let late = draw.chance(15);
        let minute = if late { draw.below(id.max(1)) } else { id * 7 };
        let ts = format!(
            "2026-03-{:02}T{:02}:{:02}:00",
            1 + minute / 1440 % 28,
            minute / 60 % 24,
            minute % 60
        );
        let line = format!(
            "{id},{},{},{ts},1,u\n",
            draw.below(CUSTOMERS),
            1 + draw.below(999)
        );
        text.push_str(&line);
    }
    let at = |id: u64| {
        let minute = id * 7;
        format!(
            "2026-03-{:02}T{:02}:{:02}:00",
            1 + minute / 1440 % 28,
            minute / 60 % 24,
            minute % 60
        )
    };
    if delivered > 0 {
        // One change per order and delivery, each with its own version: a correction,
        // a deletion, or a correction of a deleted order (which brings it back).
        let changed: BTreeSet<u64> = (0..draw.below(15)).map(|_| draw.below(delivered)).collect();
        for id in changed {
            let deletes = draw.chance(30);
            let op = if deletes { "d" } else { "u" };
            if deletes {
                history.deleted.insert(id);
            } else {
                history.deleted.remove(&id);
            }
            let line = format!(
                "{id},{},{},{},{},{op}\n",
                draw.below(CUSTOMERS),
                1 + draw.below(999),
                at(id),
                number + 1
            );
            text.push_str(&line);
        }
        // A row of a deleted order that was held up somewhere, older than its deletion:
        // it stays deleted.
        let held_up: Vec<u64> = history
            .deleted
            .iter()
            .filter(|id| !history.late.contains(id))
            .copied()
            .filter(|_| draw.chance(40))
            .collect();
        for id in held_up {
            history.late.insert(id);
            let line = format!(
                "{id},{},{},{},0,u\n",
                draw.below(CUSTOMERS),
                1 + draw.below(999),
                at(id)
            );
            text.push_str(&line);
        }
    }
    history.delivered += fresh;
    std::fs::write(orders.join(format!("orders-{number:02}.csv")), text).unwrap();
}

fn dump(warehouse: &Path, tables: &[&str]) -> Vec<String> {
    let paths: Vec<String> = tables.iter().map(|table| table.replace('.', "/")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    delta_rows(warehouse, &paths)
}

#[test]
fn incremental_refreshes_of_random_pipelines_equal_full_refreshes() {
    let seed: u64 = std::env::var("STRATA_PROPERTY_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5eed_0027);
    let cases: u64 = std::env::var("STRATA_PROPERTY_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(3);
    let (mut refreshed_from_changes, mut builds) = (0, 0);
    let mut strategies = BTreeMap::new();
    for case in 0..cases {
        let case_seed = seed.wrapping_add(case.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
        let mut draw = Draw(case_seed);
        let dir = workdir(&format!("refresh-property-{case}"));
        let landing = dir.join("landing");
        std::fs::create_dir_all(&dir).unwrap();
        let (text, tables) = pipeline(&mut draw, &landing);
        let pipeline_file = dir.join("pipeline.sql");
        std::fs::write(&pipeline_file, &text).unwrap();
        let (incremental, full) = (dir.join("incremental"), dir.join("full"));
        let mut history = History::default();
        for number in 0..4 {
            deliver(&mut draw, &landing, number, &mut history);
            let shown = run_pipeline(&pipeline_file, &incremental, &[]);
            run_pipeline(&pipeline_file, &full, &["--full-refresh"]);
            let context = format!("seed {case_seed:#x}, delivery {number}, pipeline:\n{text}");
            let (built, rebuilt) = (dump(&incremental, &tables), dump(&full, &tables));
            assert_eq!(built.len(), tables.len(), "{context}");
            for (built, rebuilt) in built.iter().zip(&rebuilt) {
                assert_eq!(built, rebuilt, "{context}");
            }
            for table in &tables {
                let report = table_report(&shown, table);
                let from_changes = report["strategy"]
                    .as_str()
                    .is_some_and(|said| said.starts_with("incremental"))
                    || report["stream"]["from"].as_u64().is_some();
                refreshed_from_changes += u64::from(from_changes);
                if let Some(said) = report["strategy"].as_str() {
                    let kind: Vec<&str> = said.split(' ').take(4).collect();
                    *strategies.entry(kind.join(" ")).or_insert(0u64) += 1;
                }
                builds += 1;
            }
        }
        // Tidied (raw and Delta tables compacted, the deleted keys' tables too), then
        // run again: still equal to a full refresh.
        let tidied = strata(&["tidy", "--warehouse", incremental.to_str().unwrap()]);
        assert!(tidied.status.success(), "{}", stderr(&tidied));
        run_pipeline(&pipeline_file, &incremental, &[]);
        assert_eq!(
            dump(&incremental, &tables),
            dump(&full, &tables),
            "after tidying, seed {case_seed:#x}"
        );
    }
    println!("{refreshed_from_changes} of {builds} builds were refreshed from what changed");
    for (kind, count) in &strategies {
        println!("{count:>5}  {kind}…");
    }
    assert!(
        refreshed_from_changes > 0,
        "no build was refreshed from what changed: the property was not exercised"
    );
}
