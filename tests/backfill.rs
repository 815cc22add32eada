//! `strata run --backfill --from --to`: the partitions of a date range of the tables
//! partitioned by a date are rebuilt from what their inputs hold now, one commit per
//! table; the other partitions, the other tables and the raw zone stay as they were.

use std::path::Path;

use serde_json::Value;

use crate::support::{on_warehouse, python, stderr, stdout, workdir};

const PIPELINE: &str = "CREATE EXTERNAL TABLE landing.readings (sensor VARCHAR, day DATE, value INT) \
    STORED AS CSV LOCATION 'landing/readings/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.readings AS SELECT * FROM landing.readings;
CREATE TABLE enriched.daily PARTITIONED BY (day)
AS SELECT day, count(*) AS readings, sum(value) AS total FROM raw.readings GROUP BY day;
CREATE TABLE enriched.sensors AS SELECT sensor, sum(value) AS total FROM raw.readings GROUP BY sensor;";

/// `day → total` of enriched.daily, and the table's Delta history, read by the Python
/// `deltalake` package (which can abort at interpreter exit, hence `os._exit`).
fn daily(warehouse: &Path) -> (Value, Value) {
    let script = format!(
        "import json, deltalake\n\
         t = deltalake.DeltaTable('{}')\n\
         rows = t.to_pyarrow_table().to_pylist()\n\
         print(json.dumps({{'totals': {{str(r['day']): r['total'] for r in rows}}, \
         'history': t.history()}}, default=str))\n\
         import os, sys\n\
         sys.stdout.flush()\n\
         os._exit(0)",
        warehouse.join("enriched/daily").display()
    );
    let read: Value = serde_json::from_str(python(&["-c", &script]).trim()).unwrap();
    (read["totals"].clone(), read["history"].clone())
}

fn run(pipeline: &Path, warehouse: &Path, more: &[&str]) -> std::process::Output {
    on_warehouse("run", pipeline, warehouse, more)
}

#[test]
fn a_backfill_rebuilds_only_its_range_of_the_date_partitioned_tables() {
    let warehouse = workdir("backfill");
    let landing = warehouse.join("landing/readings");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(
        landing.join("a.csv"),
        "sensor,day,value\ns1,2026-11-01,1\ns1,2026-11-02,2\ns2,2026-11-03,3\ns2,2026-11-04,4\n",
    )
    .unwrap();
    let pipeline = workdir("backfill-pipeline").with_extension("sql");
    std::fs::write(&pipeline, PIPELINE).unwrap();
    let first = run(&pipeline, &warehouse, &[]);
    assert!(first.status.success(), "{}", stderr(&first));

    // Corrections for the 2nd and the 4th arrive and are ingested, nothing else rebuilt.
    std::fs::write(
        landing.join("b.csv"),
        "sensor,day,value\ns1,2026-11-02,20\ns2,2026-11-04,40\n",
    )
    .unwrap();
    let ingest = run(&pipeline, &warehouse, &["--select", "raw.readings"]);
    assert!(ingest.status.success(), "{}", stderr(&ingest));
    let (before, history_before) = daily(&warehouse);
    assert_eq!(before["2026-11-02"], 2);

    // A backfill of the 2nd and 3rd: the 2nd takes the correction; the 4th, outside
    // the range, does not; enriched.sensors (not partitioned) is left as it was.
    let backfill = run(
        &pipeline,
        &warehouse,
        &["--backfill", "--from", "2026-11-02", "--to", "2026-11-03"],
    );
    assert!(backfill.status.success(), "{}", stderr(&backfill));
    let said = stdout(&backfill);
    let (after, history) = daily(&warehouse);
    assert_eq!(
        after,
        serde_json::json!({ "2026-11-01": 1, "2026-11-02": 22, "2026-11-03": 3, "2026-11-04": 4 }),
        "{said}"
    );
    let versions = history.as_array().unwrap();
    assert_eq!(versions.len(), history_before.as_array().unwrap().len() + 1);
    let commit = &versions[0];
    assert_eq!(commit["operation"], "WRITE", "{commit}");
    let predicate = commit["operationParameters"]["predicate"].as_str().unwrap();
    assert_eq!(predicate, "day >= '2026-11-02' AND day <= '2026-11-03'");
    let report = crate::support::table_report(&said, "enriched.daily");
    assert_eq!(report["status"], "built");
    assert_eq!(report["rows_written"], 2, "{report}");
    for kept in ["raw.readings", "enriched.sensors"] {
        let report = crate::support::table_report(&said, kept);
        assert_eq!(report["status"], "up_to_date", "{kept}: {report}");
    }

    // The next plain run rebuilds the whole table, so the 4th takes its correction too.
    let plain = run(&pipeline, &warehouse, &[]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert_eq!(daily(&warehouse).0["2026-11-04"], 44);
}

#[test]
fn a_backfill_says_what_is_wrong_with_its_range_or_its_tables() {
    let warehouse = workdir("backfill-errors");
    std::fs::create_dir_all(warehouse.join("landing/readings")).unwrap();
    std::fs::write(
        warehouse.join("landing/readings/a.csv"),
        "sensor,day,value\ns1,2026-11-01,1\n",
    )
    .unwrap();
    let pipeline = workdir("backfill-errors-pipeline").with_extension("sql");
    std::fs::write(&pipeline, PIPELINE).unwrap();
    for (args, says) in [
        (
            vec!["--backfill", "--from", "2026-11-05", "--to", "2026-11-01"],
            "--from 2026-11-05 is after --to 2026-11-01",
        ),
        (
            vec!["--backfill", "--from", "yesterday", "--to", "2026-11-01"],
            "\"yesterday\" is not a date as YYYY-MM-DD",
        ),
        (vec!["--backfill", "--from", "2026-11-01"], "--to <DATE>"),
        (
            vec![
                "--backfill",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-02",
                "--full-refresh",
            ],
            "cannot be used with",
        ),
    ] {
        let output = run(&pipeline, &warehouse, &args);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // Nothing built yet: the tables a backfill reads as they stand are not there.
    let early = run(
        &pipeline,
        &warehouse,
        &["--backfill", "--from", "2026-11-01", "--to", "2026-11-02"],
    );
    assert!(!early.status.success());
    assert!(
        stderr(&early).contains("raw.readings has no data yet; a backfill reads the tables"),
        "{}",
        stderr(&early)
    );
}
