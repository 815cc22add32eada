//! Bad landing rows are rejected one at a time: good rows are ingested, each bad row is
//! in `raw.<table>__rejects` with its line and reason, and the counts add up per file.
//! Checked with `fastavro` reading exactly the files the commit log names, embedded and
//! on a cluster, for every bad-row policy.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::cluster::Cluster;
use crate::support::{raw_committed, stderr, stdout, strata, table_report, workdir};

const PIPELINE: &str = "\
CREATE EXTERNAL TABLE landing.readings (
  id BIGINT NOT NULL, sensor VARCHAR, value DOUBLE, ts TIMESTAMP
) STORED AS CSV LOCATION 'landing/readings/'
  OPTIONS ('format.has_header' 'true', 'format.compression' 'gzip', 'format.comment' '#');

CREATE EXTERNAL TABLE landing.events (id BIGINT, kind VARCHAR, ts TIMESTAMP)
STORED AS JSON LOCATION 'landing/events/' OPTIONS ('bad_rows.limit' '50');

CREATE TABLE raw.readings AS SELECT * FROM landing.readings;
CREATE TABLE raw.events AS SELECT * FROM landing.events;
";

/// A bad row of the readings file: its line, column and the start of its reason.
struct Bad {
    line: u64,
    column: Option<&'static str>,
    reason: &'static str,
}

/// Writes the readings landing files: `a.csv.gz` with 300 good rows, one tricky good
/// row and a bad row of each kind; `b.csv.gz` clean; `c.csv.gz` a gzip stream cut off.
fn readings(landing: &Path) -> Vec<Bad> {
    let dir = landing.join("readings");
    std::fs::create_dir_all(&dir).unwrap();
    let mut lines: Vec<Vec<u8>> = vec![b"id,sensor,value,ts".to_vec()];
    for id in 1..=300 {
        lines
            .push(format!("{id},s{},{id}.5,2026-11-0{}T10:00:00", id % 7, 1 + id % 9).into_bytes());
        if id == 100 {
            lines.push(Vec::new());
            lines.push(b"# sensor 3 rebooted".to_vec());
            lines.push(b"1008,\"s\"\"quoted\"\", ok\",2.5,2026-11-01T10:00:00".to_vec());
        }
    }
    let mut bad = Vec::new();
    let mut add = |lines: &mut Vec<Vec<u8>>, text: Vec<u8>, column, reason| {
        lines.push(text);
        bad.push(Bad {
            line: lines.len() as u64,
            column,
            reason,
        });
    };
    add(
        &mut lines,
        b"1001,s1,notanumber,2026-11-01T10:00:00".to_vec(),
        Some("value"),
        "'notanumber' is not a DOUBLE",
    );
    add(
        &mut lines,
        b"1002,s1,2.5".to_vec(),
        None,
        "expected 4 fields, found 3",
    );
    add(
        &mut lines,
        b"1003,\"s1,2.5,2026-11-01T10:00:00".to_vec(),
        None,
        "field 2 opens a quote that is never closed",
    );
    let mut latin1 = b"1004,caf".to_vec();
    latin1.extend([0xe9, b',']);
    latin1.extend(b"2.5,2026-11-01T10:00:00");
    add(&mut lines, latin1, Some("sensor"), "not valid UTF-8");
    add(
        &mut lines,
        b",s1,2.5,2026-11-01T10:00:00".to_vec(),
        Some("id"),
        "no value, and the column is NOT NULL",
    );
    add(
        &mut lines,
        b"1006,s1,2.5,yesterday".to_vec(),
        Some("ts"),
        "'yesterday' is not a TIMESTAMP",
    );
    let mut huge = b"1007,".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 20 * 1024 * 1024));
    huge.extend(b",2.5,2026-11-01T10:00:00");
    add(
        &mut lines,
        huge,
        None,
        "the row is 20971549 bytes, over the limit of 8388608",
    );
    lines.push(b"1009,s2,9.5,2026-11-02T10:00:00".to_vec());
    gzip(&dir.join("a.csv.gz"), &lines.join(&b'\n'));

    let clean: Vec<String> = std::iter::once("id,sensor,value,ts".to_owned())
        .chain((2001..=2050).map(|id| format!("{id},s1,1.0,2026-11-03T10:00:00")))
        .collect();
    gzip(&dir.join("b.csv.gz"), clean.join("\n").as_bytes());
    let cut: Vec<String> = std::iter::once("id,sensor,value,ts".to_owned())
        .chain((3001..=5000).map(|id| format!("{id},s1,1.0,2026-11-03T10:00:00")))
        .collect();
    gzip(&dir.join("c.csv.gz"), cut.join("\n").as_bytes());
    let whole = std::fs::read(dir.join("c.csv.gz")).unwrap();
    std::fs::write(dir.join("c.csv.gz"), &whole[..whole.len() / 2]).unwrap();
    bad
}

fn gzip(path: &Path, bytes: &[u8]) {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    std::fs::write(path, encoder.finish().unwrap()).unwrap();
}

/// NDJSON events under the extensions people use, with bad lines in `a.ndjson`.
fn events(landing: &Path) {
    let dir = landing.join("events");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a.ndjson"),
        "{\"id\": 1, \"kind\": \"view\", \"ts\": \"2026-11-01T10:00:00\"}\n\
         {\"id\": 2, \"kind\": \n\
         \n\
         [3, \"click\"]\n\
         {\"id\": \"four\", \"kind\": \"click\"}\n\
         {\"id\": 5, \"kind\": \"apply\", \"extra\": true}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.jsonl"),
        "{\"id\": 6, \"kind\": \"view\"}\n{\"id\": 7}\n",
    )
    .unwrap();
    std::fs::write(dir.join("c.json"), "{\"id\": 8, \"kind\": \"view\"}\n").unwrap();
}

/// A warehouse with the pipeline and its landing files; returns it and the readings' bad rows.
fn warehouse(name: &str) -> (PathBuf, PathBuf, Vec<Bad>) {
    let dir = workdir(name);
    let landing = dir.join("landing");
    let bad = readings(&landing);
    events(&landing);
    let pipeline = dir.join("pipeline.sql");
    std::fs::write(&pipeline, PIPELINE).unwrap();
    (dir, pipeline, bad)
}

/// Reads a raw table as its commits name it: the data rows' ids, sorted, and every reject
/// as `[file name, line, column, reason, start of text, raw bytes, run id]`, by file and line.
fn read_raw(warehouse: &Path, table: &str) -> serde_json::Value {
    let found = raw_committed(&warehouse.join("raw").join(table));
    let mut ids: Vec<i64> = found["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    let mut rejects: Vec<serde_json::Value> = found["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let file = r["landing_file"].as_str().unwrap();
            let text: String = r["raw_text"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(40)
                .collect();
            serde_json::json!([
                file.rsplit('/').next().unwrap(),
                r["line"],
                r["column"],
                r["reason"],
                text,
                r["raw_bytes"],
                r["run_id"]
            ])
        })
        .collect();
    rejects.sort_by_key(|r| {
        (
            r[0].as_str().unwrap().to_owned(),
            r[1].as_u64().unwrap_or(0),
        )
    });
    serde_json::json!({"ids": ids, "rejects": rejects})
}

/// Checks what the run committed against what the files hold, and returns the rejects.
fn check_readings(warehouse: &Path, bad: &[Bad], stdout: &str) {
    let found = read_raw(warehouse, "readings");
    let ids: Vec<i64> = serde_json::from_value(found["ids"].clone()).unwrap();
    let mut expected: Vec<i64> = (1..=300).chain([1008, 1009]).chain(2001..=2050).collect();
    expected.sort();
    assert_eq!(
        ids, expected,
        "every good row, once; none of the cut-off file"
    );
    let rejects = found["rejects"].as_array().unwrap();
    let in_a: Vec<&serde_json::Value> = rejects.iter().filter(|r| r[0] == "a.csv.gz").collect();
    assert_eq!(in_a.len(), bad.len(), "{rejects:#?}");
    for (reject, expected) in in_a.iter().zip(bad) {
        assert_eq!(reject[1], expected.line, "{reject}");
        assert_eq!(reject[2].as_str(), expected.column, "{reject}");
        assert!(
            reject[3].as_str().unwrap().starts_with(expected.reason),
            "{reject} vs {}",
            expected.reason
        );
    }
    let huge = in_a
        .iter()
        .find(|r| r[5].as_u64() > Some(1_000_000))
        .unwrap();
    assert_eq!(
        huge[5],
        20 * 1024 * 1024 + 29,
        "the whole length is kept, not the text"
    );
    let cut: Vec<&serde_json::Value> = rejects.iter().filter(|r| r[0] == "c.csv.gz").collect();
    assert_eq!(
        cut.len(),
        1,
        "a file that cannot be read is one reject: {rejects:#?}"
    );
    assert!(cut[0][1].is_null(), "with no line: {}", cut[0]);

    let report = table_report(stdout, "raw.readings");
    assert_eq!(
        report["rows_read"],
        303 + bad.len() as u64 + 50 - 1,
        "{report}"
    );
    assert_eq!(report["rows_rejected"], bad.len() as u64, "{report}");
    assert_eq!(report["rows_written"], 352, "{report}");
    assert_eq!(
        (
            &report["files_ingested"],
            &report["files_partly_rejected"],
            &report["files_rejected"]
        ),
        (&1.into(), &1.into(), &1.into()),
        "{report}"
    );
    for file in report["landing_files"].as_array().unwrap() {
        let (read, ingested, rejected) = (
            file["rows_read"].as_u64().unwrap(),
            file["rows_ingested"].as_u64().unwrap(),
            file["rows_rejected"].as_u64().unwrap(),
        );
        assert_eq!(
            read,
            ingested + rejected,
            "rows in = ingested + rejected: {file}"
        );
    }
    assert!(
        report["rejected_files"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("c.csv.gz")
            || report["rejected_files"][0]["path"]
                .as_str()
                .unwrap()
                .ends_with("c.csv.gz"),
        "{report}"
    );
}

fn check_events(warehouse: &Path) {
    let found = read_raw(warehouse, "events");
    assert_eq!(
        found["ids"],
        serde_json::json!([1, 5, 6, 7, 8]),
        ".json, .ndjson and .jsonl files are read"
    );
    let rejects: Vec<(u64, String)> = found["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[1].as_u64().unwrap(), r[3].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(rejects.len(), 3, "{rejects:?}");
    assert_eq!(rejects[0].0, 2);
    assert!(rejects[0].1.starts_with("malformed JSON"), "{rejects:?}");
    assert_eq!(
        rejects[1],
        (4, "the line is JSON but not an object".to_owned())
    );
    assert_eq!(rejects[2], (5, "'four' is not a BIGINT".to_owned()));
}

#[test]
fn bad_rows_are_rejected_one_at_a_time_and_the_counts_add_up() {
    let (dir, pipeline, bad) = warehouse("rejects-embedded");
    let wh = dir.to_str().unwrap();
    let run = strata(&["run", pipeline.to_str().unwrap(), "--warehouse", wh]);
    let out = stdout(&run);
    assert!(run.status.success(), "{out}\n{}", stderr(&run));
    check_readings(&dir, &bad, &out);
    check_events(&dir);
    assert!(
        out.contains("landing files: 1 ingested, 1 partly rejected, 1 rejected whole"),
        "{out}"
    );

    let shown = strata(&[
        "rejects",
        "raw.readings",
        "--warehouse",
        wh,
        "--format",
        "csv",
    ]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let text = stdout(&shown);
    assert!(text.contains("'notanumber' is not a DOUBLE"), "{text}");
    assert_eq!(
        text.lines().count(),
        1 + bad.len() + 1,
        "a header, each bad row, the cut file:\n{text}"
    );

    // A second run reads nothing again: no row and no reject twice.
    let again = strata(&["run", pipeline.to_str().unwrap(), "--warehouse", wh]);
    assert!(again.status.success(), "{}", stderr(&again));
    check_readings(&dir, &bad, &out);
    let run_id = read_raw(&dir, "readings")["rejects"][0][6]
        .as_str()
        .unwrap()
        .to_owned();
    let by_run = strata(&[
        "rejects",
        "raw.readings__rejects",
        "--warehouse",
        wh,
        "--run",
        &run_id,
        "--format",
        "json",
    ]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&by_run)).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), bad.len() + 1);
    let none = strata(&[
        "rejects",
        "raw.readings",
        "--warehouse",
        wh,
        "--run",
        "run-0",
    ]);
    assert!(
        stdout(&none).contains("no rows rejected by run run-0"),
        "{}",
        stdout(&none)
    );

    let unknown = strata(&["rejects", "raw.reading", "--warehouse", wh]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("did you mean raw.readings?"),
        "{}",
        stderr(&unknown)
    );
    let no_layer = strata(&["rejects", "readings", "--warehouse", wh]);
    assert!(!no_layer.status.success());
    assert!(
        stderr(&no_layer).contains("readings is not a table name; name a raw table as raw.<table>"),
        "{}",
        stderr(&no_layer)
    );
    let missing = dir.join("no-such-warehouse");
    let nowhere = strata(&[
        "rejects",
        "raw.readings",
        "--warehouse",
        missing.to_str().unwrap(),
    ]);
    assert!(!nowhere.status.success());
    assert!(
        stderr(&nowhere).contains("has no raw table raw.readings"),
        "{}",
        stderr(&nowhere)
    );
    let enriched = strata(&["rejects", "enriched.readings", "--warehouse", wh]);
    assert!(
        stderr(&enriched).contains("not in the raw layer"),
        "{}",
        stderr(&enriched)
    );
}

#[test]
fn a_cluster_commits_each_tasks_rejects_with_its_rows_once() {
    let (embedded, pipeline, bad) = warehouse("rejects-cluster");
    let cluster = Cluster::start("rejects", 2);
    let run = strata(&[
        "run",
        pipeline.to_str().unwrap(),
        "--warehouse",
        embedded.to_str().unwrap(),
        "--scheduler",
        &cluster.address,
    ]);
    let out = stdout(&run);
    assert!(run.status.success(), "{out}\n{}", stderr(&run));
    check_readings(&embedded, &bad, &out);
    check_events(&embedded);
}

/// Runs the readings pipeline with other options on its source; returns the run.
fn run_with_options(name: &str, options: &str, extra: &[&str]) -> (PathBuf, std::process::Output) {
    let (dir, pipeline, _) = warehouse(name);
    let text = PIPELINE.replace(
        "'format.comment' '#'",
        &format!("'format.comment' '#', {options}"),
    );
    std::fs::write(&pipeline, text).unwrap();
    let mut args = vec![
        "run",
        pipeline.to_str().unwrap(),
        "--warehouse",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = strata(&args);
    (dir, run)
}

#[test]
fn each_bad_row_policy_and_limit_does_what_it_says() {
    // fail_file: the file with bad rows is rejected whole, the others go in, exit is non-zero.
    let (dir, run) = run_with_options("rejects-fail-file", "'bad_rows' 'fail_file'", &[]);
    assert!(!run.status.success(), "{}", stdout(&run));
    assert!(
        stderr(&run).contains("'bad_rows' is 'fail_file'"),
        "{}",
        stderr(&run)
    );
    let found = read_raw(&dir, "readings");
    assert_eq!(
        found["ids"].as_array().unwrap().len(),
        50,
        "only b.csv.gz: {found}"
    );
    assert!(
        found["rejects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r[1].is_null()),
        "whole files only: {found}"
    );

    // fail_run: the table fails and nothing of it is committed.
    let (dir, run) = run_with_options("rejects-fail-run", "'bad_rows' 'fail_run'", &[]);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(
        err.contains("line 305, column value: 'notanumber' is not a DOUBLE"),
        "{err}"
    );
    assert!(
        !dir.join("raw/readings/_strata_log").exists(),
        "nothing committed"
    );
    assert_eq!(
        read_raw(&dir, "events")["ids"].as_array().unwrap().len(),
        5,
        "other tables still build"
    );

    // A count limit: 7 bad rows are over 5, so a.csv.gz is rejected whole; exit 0.
    let (dir, run) = run_with_options("rejects-limit", "'bad_rows.limit' '5'", &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    let report = table_report(&stdout(&run), "raw.readings");
    let reason = report["rejected_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|file| file["path"].as_str().unwrap().ends_with("a.csv.gz"))
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("over the limit of 5 rows ('bad_rows.limit')"),
        "{reason}"
    );
    assert_eq!(
        read_raw(&dir, "readings")["ids"].as_array().unwrap().len(),
        50
    );

    // A share: 7 of 309 rows is 2.3%, under 3% and over 2%.
    let (_, run) = run_with_options("rejects-share-under", "'bad_rows.limit' '3%'", &[]);
    assert_eq!(
        table_report(&stdout(&run), "raw.readings")["files_partly_rejected"],
        1
    );
    let (_, run) = run_with_options("rejects-share-over", "'bad_rows.limit' '2%'", &[]);
    let report = table_report(&stdout(&run), "raw.readings");
    assert_eq!(report["files_rejected"], 2, "{report}");

    // --strict: the default policy ingests, and the exit status says rows were rejected.
    let (dir, run) = run_with_options("rejects-strict", "'bad_rows' 'reject'", &["--strict"]);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("raw.readings: 7 row(s) and 1 file(s) rejected (--strict)"),
        "{}",
        stderr(&run)
    );
    assert_eq!(
        read_raw(&dir, "readings")["ids"].as_array().unwrap().len(),
        352
    );

    // A policy that makes no sense is a located error before anything runs.
    let (_, run) = run_with_options("rejects-bad-policy", "'bad_rows' 'skip'", &[]);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("it must be 'reject', 'fail_file' or 'fail_run'"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn a_location_of_files_the_format_will_not_read_is_refused_by_name() {
    let dir = workdir("rejects-extensions");
    std::fs::create_dir_all(dir.join("landing/events")).unwrap();
    std::fs::write(dir.join("landing/events/a.txt"), "{}\n").unwrap();
    std::fs::write(dir.join("landing/events/b.csv"), "id\n1\n").unwrap();
    let pipeline = dir.join("pipeline.sql");
    std::fs::write(
        &pipeline,
        "CREATE EXTERNAL TABLE landing.events (id BIGINT) STORED AS JSON LOCATION 'landing/events/';\n\
         CREATE TABLE raw.events AS SELECT * FROM landing.events;\n",
    )
    .unwrap();
    let check = strata(&[
        "check",
        pipeline.to_str().unwrap(),
        "--warehouse",
        dir.to_str().unwrap(),
    ]);
    assert!(!check.status.success());
    let text = format!("{}{}", stdout(&check), stderr(&check));
    assert!(
        text.contains("reads files ending .json, .ndjson, .jsonl, but none of the 2 file(s) at its location does: a.txt, b.csv"),
        "{text}"
    );
}

#[test]
fn a_corrupt_parquet_file_is_rejected_whole_and_the_others_are_ingested() {
    let dir = workdir("rejects-parquet");
    let landing = dir.join("landing/jobs");
    std::fs::create_dir_all(&landing).unwrap();
    let wh = dir.to_str().unwrap();
    let made = strata(&[
        "query",
        &format!(
            "COPY (SELECT 1 AS id, 'a' AS title UNION ALL SELECT 2, 'b') TO '{}' STORED AS PARQUET",
            landing.join("a.parquet").display()
        ),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    // A delivery cut off in transit: no footer. (A file that ends in "PAR1" after a
    // footer length larger than the file makes the parquet crate overflow an
    // integer: a panic in debug builds, an error in release ones.)
    let whole = std::fs::read(landing.join("a.parquet")).unwrap();
    std::fs::write(landing.join("b.parquet"), &whole[..whole.len() / 2]).unwrap();
    let pipeline = dir.join("jobs.sql");
    std::fs::write(
        &pipeline,
        "CREATE EXTERNAL TABLE landing.jobs (id BIGINT, title VARCHAR) STORED AS PARQUET LOCATION 'landing/jobs/';\n\
         CREATE TABLE raw.jobs AS SELECT * FROM landing.jobs;\n",
    )
    .unwrap();
    let run = strata(&["run", pipeline.to_str().unwrap(), "--warehouse", wh]);
    let out = stdout(&run);
    assert!(run.status.success(), "{out}\n{}", stderr(&run));
    let report = table_report(&out, "raw.jobs");
    assert_eq!(report["rows_written"], 2, "{report}");
    assert_eq!(report["files_rejected"], 1, "{report}");
    let found = read_raw(&dir, "jobs");
    assert_eq!(found["ids"], serde_json::json!([1, 2]));
    let rejects = found["rejects"].as_array().unwrap();
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0][0], "b.parquet");
    assert!(rejects[0][1].is_null(), "{rejects:?}");
}
