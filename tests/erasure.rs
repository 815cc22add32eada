//! `strata forget`: a subject present in landing, raw (rows and rejects), enriched
//! tables (with history, quarantine and a stream), aggregates and rankings is erased
//! from every current version; every other row ends as in a twin warehouse that never
//! received the subject; a later delivery of the subject is dropped at ingest and
//! counted; `--vacuum` leaves no file of any version holding it.

use std::path::Path;

use serde_json::Value;

use crate::support::{on_warehouse, run_pipeline, stderr, stdout, table_report, workdir};

const PIPELINE: &str = "
CREATE EXTERNAL TABLE landing.people (
  person_id VARCHAR NOT NULL, name VARCHAR, email VARCHAR, city VARCHAR, score INT, updated_at TIMESTAMP
) STORED AS CSV LOCATION 'landing/people/'
  OPTIONS ('format.has_header' 'true', 'bad_rows.limit' '50%');
CREATE EXTERNAL TABLE landing.visits (visit_id BIGINT, person_id VARCHAR, city VARCHAR, ts TIMESTAMP)
  STORED AS CSV LOCATION 'landing/visits/' OPTIONS ('format.has_header' 'true');

CREATE TABLE raw.people AS SELECT * FROM landing.people;
CREATE TABLE raw.visits AS SELECT * FROM landing.visits;

CREATE TABLE enriched.people (
  CONSTRAINT has_city EXPECT (city IS NOT NULL) ON VIOLATION QUARANTINE
) WRITE SCD2 KEY (person_id) SEQUENCE BY updated_at
AS SELECT person_id, name, email, city, score, updated_at FROM raw.people;

CREATE TABLE enriched.visits WRITE APPEND
AS SELECT visit_id, person_id, city, ts FROM STREAM(raw.visits);

CREATE TABLE enriched.visits_per_city
AS SELECT city, count(*) AS visits, count(DISTINCT person_id) AS people
   FROM enriched.visits GROUP BY city;

CREATE TABLE ranked.top_people
AS SELECT city, person_id, score,
          row_number() OVER (PARTITION BY city ORDER BY score DESC, person_id) AS pos
   FROM enriched.people WHERE is_current;

CREATE TABLE ranked.best_per_city
AS SELECT city, max(score) AS best, count(*) AS people FROM enriched.people WHERE is_current GROUP BY city;
";

const PEOPLE: &str = "person_id,name,email,city,score,updated_at
P1,Ann,ann@x.io,Madrid,70,2026-01-01 00:00:00
P2,Pat,pat@x.io,Madrid,90,2026-01-01 00:00:00
P20,Paz,paz@x.io,Madrid,60,2026-01-01 00:00:00
P3,Lu,lu@x.io,Bilbao,80,2026-01-01 00:00:00
P2,Pat,pat@x.io,Madrid,95,2026-02-01 00:00:00
P2,Pat,pat@x.io,,96,2026-03-01 00:00:00
P2,Pat,pat@x.io,Madrid,notanumber,2026-04-01 00:00:00
P4,\"Ole, Jr\",ole@x.io,Bilbao,,2026-01-01 00:00:00
P1,Ann,ann@x.io,Bilbao,75,2026-02-01 00:00:00
";

const VISITS: &str = "visit_id,person_id,city,ts
1,P1,Madrid,2026-01-02 10:00:00
2,P2,Madrid,2026-01-02 11:00:00
3,P2,Madrid,2026-01-03 11:00:00
4,P20,Madrid,2026-01-03 12:00:00
5,P3,Bilbao,2026-01-04 09:00:00
6,,Bilbao,2026-01-04 10:00:00
";

const LATER_PEOPLE: &str = "person_id,name,email,city,score,updated_at
P2,Pat,pat@x.io,Madrid,99,2026-05-01 00:00:00
P5,Eva,eva@x.io,Madrid,85,2026-05-01 00:00:00
";

const LATER_VISITS: &str = "visit_id,person_id,city,ts
7,P2,Madrid,2026-05-02 10:00:00
8,P5,Madrid,2026-05-02 11:00:00
";

/// Every table of a warehouse with rows, as a reader of its current versions sees it (raw tables
/// by folding their commit logs, replaced files included; Delta tables with the Python
/// `deltalake` package), rows sorted, run ids and landing paths left out; and every data
/// file on disk, of any version, whose rows hold one of `values` as a whole field.
const DUMP: &str = r#"
import glob, json, os, re, sys
import fastavro, pyarrow.parquet as pq
from deltalake import DeltaTable
wh, values = sys.argv[1], sys.argv[2:]
SKIP = {"_run_id", "run_id", "landing_file"}
def clean(rows):
    return sorted(json.dumps({k: v for k, v in r.items() if k not in SKIP}, sort_keys=True, default=str) for r in rows)
def avro(path):
    with open(path, "rb") as handle:
        return list(fastavro.reader(handle))
tables = {}
for layer in ("raw", "enriched", "ranked"):
    for d in sorted(glob.glob(os.path.join(wh, layer, "*"))):
        name = layer + "." + os.path.basename(d)
        if os.path.isdir(os.path.join(d, "_delta_log")):
            tables[name] = clean(DeltaTable(d).to_pyarrow_table().to_pylist())
        elif os.path.isdir(os.path.join(d, "_strata_log")):
            files, rejects = [], []
            for p in sorted(glob.glob(os.path.join(d, "_strata_log", "*.json"))):
                c = json.load(open(p))
                if c.get("reset"):
                    files, rejects = [], []
                gone = set(c.get("replaced", []))
                files = [f for f in files if f not in gone] + [f["path"] for f in c.get("files", [])]
                rejects = [f for f in rejects if f not in gone] + [f["path"] for f in c.get("rejects", [])]
            tables[name] = clean(r for f in files for r in avro(os.path.join(d, f)))
            tables[name + "__rejects"] = clean(r for f in rejects for r in avro(os.path.join(d, f)))
tables = {name: rows for name, rows in tables.items() if rows}
holding = []
pattern = [re.compile(r"(?<![A-Za-z0-9_])" + re.escape(v) + r"(?![A-Za-z0-9_])") for v in values]
for layer in ("raw", "enriched", "ranked"):
    for path in glob.glob(os.path.join(wh, layer, "**", "*"), recursive=True):
        if path.endswith(".avro"):
            rows = avro(path)
        elif path.endswith(".parquet"):
            rows = pq.read_table(path).to_pylist()
        else:
            continue
        text = json.dumps(rows, default=str)
        if any(p.search(text) for p in pattern):
            holding.append(os.path.relpath(path, wh))
print(json.dumps({"tables": tables, "holding": sorted(holding)}))
sys.stdout.flush()
os._exit(0)
"#;

fn dump(warehouse: &Path, values: &[&str]) -> Value {
    let mut args = vec!["-c", DUMP, warehouse.to_str().unwrap()];
    args.extend(values);
    serde_json::from_str(&crate::support::python(&args)).unwrap()
}

/// The tables (with a row count of each) whose rows hold `value` as a whole field.
fn tables_holding(dumped: &Value, value: &str) -> Vec<String> {
    let pattern = format!("\"{value}\"");
    let mut found: Vec<String> = dumped["tables"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, rows)| {
            rows.as_array().unwrap().iter().any(|row| {
                let row = row.as_str().unwrap();
                row.contains(&pattern) || row.contains(&format!("{value},"))
            })
        })
        .map(|(name, _)| name.clone())
        .collect();
    found.sort();
    found
}

/// The lines of a delivery that do not mention `value`: what a warehouse that never
/// received the subject was delivered.
fn without(text: &str, value: &str) -> String {
    text.lines()
        .filter(|line| !line.split(',').any(|field| field == value))
        .map(|line| format!("{line}\n"))
        .collect()
}

fn deliver(warehouse: &Path, name: &str, people: &str, visits: &str) {
    for (dir, text) in [("people", people), ("visits", visits)] {
        let at = warehouse.join("landing").join(dir);
        std::fs::create_dir_all(&at).unwrap();
        std::fs::write(at.join(name), text).unwrap();
    }
}

fn run(pipeline: &Path, warehouse: &Path) -> String {
    run_pipeline(pipeline, warehouse, &[])
}

fn forget(pipeline: &Path, warehouse: &Path, more: &[&str]) -> std::process::Output {
    on_warehouse("forget", pipeline, warehouse, more)
}

#[test]
fn forget_erases_a_subject_along_lineage_and_keeps_it_out_of_later_deliveries() {
    let (erased, never) = (workdir("erasure-a"), workdir("erasure-b"));
    let pipeline = workdir("erasure-pipeline").with_extension("sql");
    std::fs::write(&pipeline, PIPELINE).unwrap();
    deliver(&erased, "a.csv", PEOPLE, VISITS);
    deliver(
        &never,
        "a.csv",
        &without(PEOPLE, "P2"),
        &without(VISITS, "P2"),
    );
    run(&pipeline, &erased);
    run(&pipeline, &never);

    // The subject is everywhere the test says it erases it from.
    let before = dump(&erased, &["P2"]);
    let everywhere = [
        "enriched.people",
        "enriched.people__quarantine",
        "enriched.visits",
        "ranked.top_people",
        "raw.people",
        "raw.people__rejects",
        "raw.visits",
    ];
    assert_eq!(tables_holding(&before, "P2"), everywhere);
    assert_ne!(before["tables"], dump(&never, &["P2"])["tables"]);

    // A dry run says what it would do, and does nothing.
    let dry = forget(
        &pipeline,
        &erased,
        &["--subject", "person_id=P2", "--dry-run"],
    );
    assert!(dry.status.success(), "{}", stderr(&dry));
    let said = stdout(&dry);
    for line in [
        "raw.people: rows whose person_id holds it",
        "enriched.visits: rows whose person_id holds it",
        "enriched.visits_per_city: recomputed without them",
        "ranked.best_per_city: recomputed without them",
        "ranked.top_people: recomputed without them",
    ] {
        assert!(said.contains(line), "{line} not in\n{said}");
    }
    assert_eq!(dump(&erased, &["P2"])["tables"], before["tables"]);
    assert!(!erased.join("_strata/suppressed").exists());

    let output = forget(&pipeline, &erased, &["--subject", "person_id=P2", "--json"]);
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["complete"], true, "{report:#}");
    let entry = |table: &str| -> Value {
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["table"] == table)
            .cloned()
            .unwrap_or_else(|| panic!("{table} not in {report:#}"))
    };
    let raw_people = entry("raw.people");
    assert_eq!(
        (
            &raw_people["action"],
            &raw_people["rows_removed"],
            &raw_people["rejects_removed"]
        ),
        (&Value::from("rewritten"), &Value::from(3), &Value::from(1))
    );
    assert_eq!(entry("raw.visits")["rows_removed"], 2);
    assert_eq!(
        entry("enriched.people")["rows_removed"],
        2,
        "two versions of P2"
    );
    assert_eq!(entry("enriched.people__quarantine")["rows_removed"], 1);
    assert_eq!(entry("enriched.visits")["rows_removed"], 2);
    assert_eq!(entry("ranked.top_people")["rows_removed"], 1);
    assert_eq!(entry("enriched.visits_per_city")["action"], "recomputed");
    assert_eq!(entry("ranked.best_per_city")["action"], "recomputed");
    assert_eq!(
        report["landing"],
        serde_json::json!(["landing.people", "landing.visits"])
    );
    let saved = erased
        .join("_strata/erasures")
        .join(format!("{}.json", report["erasure"].as_str().unwrap()));
    assert!(saved.exists(), "the report is kept in the warehouse");

    // No current version holds the subject, and every other row is as if it never came.
    let after = dump(&erased, &["P2"]);
    assert_eq!(tables_holding(&after, "P2"), Vec::<String>::new());
    assert_eq!(after["tables"], dump(&never, &["P2"])["tables"]);
    assert!(
        !after["holding"].as_array().unwrap().is_empty(),
        "older versions keep their files until the retention or --vacuum"
    );

    // The subject delivered again is dropped at ingest, and counted.
    deliver(&erased, "b.csv", LATER_PEOPLE, LATER_VISITS);
    deliver(
        &never,
        "b.csv",
        &without(LATER_PEOPLE, "P2"),
        &without(LATER_VISITS, "P2"),
    );
    let said = run(&pipeline, &erased);
    run(&pipeline, &never);
    let people = table_report(&said, "raw.people");
    assert_eq!(
        (
            &people["rows_read"],
            &people["rows_written"],
            &people["rows_dropped"]
        ),
        (&Value::from(2), &Value::from(1), &Value::from(1)),
        "{people:#}"
    );
    let after = dump(&erased, &["P2"]);
    assert_eq!(tables_holding(&after, "P2"), Vec::<String>::new());
    assert_eq!(after["tables"], dump(&never, &["P2"])["tables"]);

    // Nor does a full refresh, which reads every landing file again.
    run_pipeline(&pipeline, &erased, &["--full-refresh"]);
    run_pipeline(&pipeline, &never, &["--full-refresh"]);
    let after = dump(&erased, &["P2"]);
    assert_eq!(tables_holding(&after, "P2"), Vec::<String>::new());
    assert_eq!(after["tables"], dump(&never, &["P2"])["tables"]);

    // With --vacuum, no file of any version holds the subjects erased.
    let output = forget(
        &pipeline,
        &erased,
        &["--subject", "person_id=P3", "--vacuum"],
    );
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("older versions:"),
        "{}",
        stdout(&output)
    );
    let vacuumed = dump(&erased, &["P2", "P3"]);
    assert_eq!(tables_holding(&vacuumed, "P3"), Vec::<String>::new());
    assert_eq!(vacuumed["holding"], serde_json::json!([]), "{vacuumed:#}");
    assert!(
        tables_holding(&vacuumed, "P20").contains(&"raw.people".to_owned()),
        "P20 is another person"
    );
}

#[test]
fn forget_refuses_what_it_cannot_erase_and_changes_nothing() {
    let warehouse = workdir("erasure-refused");
    let pipeline = workdir("erasure-refused-pipeline").with_extension("sql");
    std::fs::write(&pipeline, PIPELINE).unwrap();
    deliver(&warehouse, "a.csv", PEOPLE, VISITS);
    run(&pipeline, &warehouse);
    let before = dump(&warehouse, &["P2"]);

    let cases: [(&[&str], &str); 3] = [
        (&["--subject", "person_id"], "column=value"),
        (
            &["--subject", "personid=P2"],
            "no landing table of the pipeline has a column personid — did you mean person_id?",
        ),
        (&["--subject", "person_id="], "column=value"),
    ];
    for (args, said) in cases {
        let output = forget(&pipeline, &warehouse, args);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr(&output).contains(said),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let missing = forget(
        &warehouse.join("no-such-pipeline.sql"),
        &warehouse,
        &["--subject", "person_id=P2"],
    );
    assert!(!missing.status.success());
    let broken = workdir("erasure-broken").with_extension("sql");
    std::fs::write(&broken, "CREATE TABLE raw.x AS SELEC 1;").unwrap();
    let output = forget(&broken, &warehouse, &["--subject", "person_id=P2"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("nothing was run"),
        "{}",
        stderr(&output)
    );

    assert!(!warehouse.join("_strata/suppressed").exists());
    assert_eq!(dump(&warehouse, &["P2"])["tables"], before["tables"]);

    // A damaged suppression list stops ingest rather than let a subject back in.
    std::fs::create_dir_all(warehouse.join("_strata/suppressed")).unwrap();
    std::fs::write(warehouse.join("_strata/suppressed/x.json"), "{").unwrap();
    deliver(&warehouse, "b.csv", LATER_PEOPLE, LATER_VISITS);
    let output = on_warehouse("run", &pipeline, &warehouse, &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("_strata/suppressed/x.json"),
        "{}",
        stderr(&output)
    );
    assert_eq!(dump(&warehouse, &["P2"])["tables"], before["tables"]);
}
