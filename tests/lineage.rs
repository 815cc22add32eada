//! Column lineage of the example: every column of the ranked tables against lineage
//! worked out by hand from 40_ranked.sql, the enriched columns that exercise aggregate
//! filters, SCD2 and expectations, and the OpenLineage events of a run (to a file and to
//! an HTTP endpoint) validated against the spec's JSON Schema.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::generated;
use crate::support::{Receiver, example, python_file, stderr, stdout, strata, workdir};

/// Sources that make up the ranked tables' `score` in candidates_per_job, and so,
/// through `top_k`'s `{item, score}` list, the candidate and the score it keeps.
const SCORE: [&str; 11] = [
    "enriched.candidates.candidate_id",
    "enriched.candidates.last_active",
    "enriched.candidates.lat",
    "enriched.candidates.lon",
    "enriched.candidates.skills",
    "enriched.candidates.title",
    "enriched.job_keywords.keywords",
    "enriched.jobs.lat",
    "enriched.jobs.lon",
    "enriched.jobs.required_skills",
    "enriched.jobs.title",
];

fn all(sources: &[&str], kind: Value) -> Value {
    Value::Object(
        sources
            .iter()
            .map(|source| (source.to_string(), kind.clone()))
            .collect(),
    )
}

/// The lineage of every table of the example, as `strata lineage --json` prints it.
fn lineage_json(warehouse: &str) -> Value {
    let output = strata(&["lineage", &example(), "--warehouse", warehouse, "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap()
}

#[test]
fn every_column_of_the_ranked_tables_has_the_lineage_worked_out_by_hand() {
    let warehouse = generated("lineage", "0.01");
    let lineage = lineage_json(warehouse.to_str().unwrap());

    // candidates_per_job: job_id is the job's own; candidate_id and score come out of
    // top_k's list, built from the candidate and every input of the score; pos is a
    // row_number, ordered by those and partitioned by job. Rows exist where the
    // keywords join the jobs, the jobs are open and the candidates in their city and
    // current, one list per job.
    let mut window = all(&SCORE, json!(["WINDOW"]));
    window["enriched.jobs.job_id"] = json!(["WINDOW"]);
    let candidates_per_job = json!({
        "columns": {
            "job_id": { "direct": { "enriched.jobs.job_id": "IDENTITY" }, "indirect": {} },
            "candidate_id": { "direct": all(&SCORE, json!("AGGREGATION")), "indirect": {} },
            "score": { "direct": all(&SCORE, json!("AGGREGATION")), "indirect": {} },
            "pos": { "direct": {}, "indirect": window },
        },
        "dataset": {
            "enriched.candidates.city": ["JOIN"],
            "enriched.candidates.is_current": ["JOIN"],
            "enriched.job_keywords.job_id": ["JOIN"],
            "enriched.jobs.city": ["JOIN"],
            "enriched.jobs.job_id": ["JOIN", "GROUP_BY"],
            "enriched.jobs.status": ["FILTER"],
        },
    });
    assert_eq!(lineage["ranked.candidates_per_job"], candidates_per_job);

    // jobs_per_candidate: the reverse list, scored on skills and distance only; the
    // open-status test sits in the join's ON, is_current in the WHERE.
    let best_jobs = [
        "enriched.candidates.lat",
        "enriched.candidates.lon",
        "enriched.candidates.skills",
        "enriched.jobs.job_id",
        "enriched.jobs.lat",
        "enriched.jobs.lon",
        "enriched.jobs.required_skills",
    ];
    let jobs_per_candidate = json!({
        "columns": {
            "candidate_id": {
                "direct": { "enriched.candidates.candidate_id": "IDENTITY" },
                "indirect": {},
            },
            "best_jobs": { "direct": all(&best_jobs, json!("AGGREGATION")), "indirect": {} },
        },
        "dataset": {
            "enriched.candidates.candidate_id": ["GROUP_BY"],
            "enriched.candidates.city": ["JOIN"],
            "enriched.candidates.is_current": ["FILTER"],
            "enriched.jobs.city": ["JOIN"],
            "enriched.jobs.status": ["JOIN"],
        },
    });
    assert_eq!(lineage["ranked.jobs_per_candidate"], jobs_per_candidate);

    // A count with a FILTER has no direct source: only the filtered column.
    let daily = &lineage["enriched.job_events_daily"];
    assert_eq!(
        daily["columns"]["clicks"],
        json!({ "direct": {}, "indirect": { "enriched.events.kind": ["FILTER"] } })
    );
    assert_eq!(
        daily["dataset"]["enriched.events.publisher"],
        json!(["GROUP_BY"])
    );
    // SCD2: valid_from is the sequence column; one current row per key, newest by
    // sequence; the quarantine expectation filters on the coordinates.
    let candidates = &lineage["enriched.candidates"];
    assert_eq!(
        candidates["columns"]["valid_from"]["direct"],
        json!({ "raw.candidates.updated_at": "IDENTITY" })
    );
    assert_eq!(
        candidates["columns"]["is_current"]["indirect"],
        json!({ "raw.candidates.candidate_id": ["WINDOW"] })
    );
    for (source, kinds) in [
        ("raw.candidates.candidate_id", json!(["GROUP_BY"])),
        ("raw.candidates.updated_at", json!(["SORT"])),
        ("raw.candidates.lat", json!(["FILTER"])),
        ("raw.candidates.lon", json!(["FILTER"])),
    ] {
        assert_eq!(candidates["dataset"][source], kinds, "{source}");
    }
    // A cast is a transformation; DROP ROW and QUARANTINE expectations filter.
    let events = &lineage["enriched.events"];
    assert_eq!(
        events["columns"]["event_date"]["direct"],
        json!({ "raw.events.ts": "TRANSFORMATION" })
    );
    assert_eq!(events["dataset"]["raw.events.job_id"], json!(["FILTER"]));
    assert_eq!(events["dataset"]["raw.events.ts"], json!(["FILTER"]));
    // Raw tables come from their landing files; the ingest date from nothing.
    let raw = &lineage["raw.jobs"]["columns"];
    assert_eq!(
        raw["job_id"]["direct"],
        json!({ "landing.jobs.job_id": "IDENTITY" })
    );
    assert_eq!(raw["ingest_date"], json!({ "direct": {}, "indirect": {} }));

    // One column, as people read it.
    let one = strata(&[
        "lineage",
        &example(),
        "--warehouse",
        warehouse.to_str().unwrap(),
        "--of",
        "ranked.candidates_per_job.pos",
    ]);
    assert!(one.status.success(), "{}", stderr(&one));
    let said = stdout(&one);
    assert!(
        said.contains("  pos\n      from: none\n      via:  "),
        "{said}"
    );
    assert!(said.contains("enriched.jobs.job_id (window)"), "{said}");
    assert!(said.contains("enriched.jobs.status (filter)"), "{said}");
    assert!(!said.contains("  job_id"), "{said}");
}

#[test]
fn a_runs_openlineage_events_are_valid_against_the_spec() {
    let warehouse = generated("lineage-events", "0.01");
    let wh = warehouse.to_str().unwrap();
    let file = warehouse.join("openlineage.ndjson");
    let run = strata(&[
        "run",
        &example(),
        "--warehouse",
        wh,
        "--openlineage",
        file.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("openlineage: 11 event(s) sent to"),
        "{}",
        stderr(&run)
    );
    let said = python_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/openlineage/validate.py"),
        &[file.to_str().unwrap()],
    );
    assert!(said.contains("11 OpenLineage events valid"), "{said}");

    // The events carry the lineage `strata lineage` shows.
    let events: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let ranked = events
        .iter()
        .find(|event| event["job"]["name"] == "ranked.candidates_per_job")
        .expect("an event for ranked.candidates_per_job");
    assert_eq!(ranked["eventType"], "COMPLETE");
    let output = &ranked["outputs"][0];
    assert_eq!(output["name"], "ranked.candidates_per_job");
    let inputs: Vec<&str> = ranked["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|input| input["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        inputs,
        [
            "enriched.candidates",
            "enriched.job_keywords",
            "enriched.jobs"
        ]
    );
    let pos = &output["facets"]["columnLineage"]["fields"]["pos"]["inputFields"];
    let job = pos
        .as_array()
        .unwrap()
        .iter()
        .find(|field| field["name"] == "enriched.jobs" && field["field"] == "job_id")
        .expect("pos depends on the job");
    assert_eq!(
        job["transformations"],
        json!([{ "type": "INDIRECT", "subtype": "WINDOW" }])
    );

    // A failed build is a FAIL event with its error; to an HTTP endpoint this time.
    let endpoint = Receiver::start(Duration::from_secs(60));
    let broken = workdir("lineage-events-broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("p.sql"),
        "CREATE TABLE enriched.ratios AS SELECT 1 / (job_id - job_id) AS r FROM raw.jobs;",
    )
    .unwrap();
    let failed = strata(&[
        "run",
        &example(),
        broken.join("p.sql").to_str().unwrap(),
        "--warehouse",
        wh,
        "--select",
        "enriched.ratios",
        "--openlineage",
        &endpoint.url,
    ]);
    assert!(!failed.status.success());
    assert!(
        stderr(&failed).contains("event(s) sent to http://"),
        "{}",
        stderr(&failed)
    );
    let mut received = Vec::new();
    loop {
        let event = endpoint.next();
        let done = event["job"]["name"] == "enriched.ratios";
        received.push(event);
        if done {
            break;
        }
    }
    let fail = received.last().unwrap();
    assert_eq!(fail["eventType"], "FAIL");
    let message = fail["run"]["facets"]["errorMessage"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("Divide by zero"), "{message}");
    let sent = warehouse.join("openlineage-http.ndjson");
    let lines: Vec<String> = received.iter().map(Value::to_string).collect();
    std::fs::write(&sent, lines.join("\n") + "\n").unwrap();
    let said = python_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/openlineage/validate.py"),
        &[sent.to_str().unwrap()],
    );
    assert!(said.contains("OpenLineage events valid"), "{said}");
}

#[test]
fn lineage_says_clearly_what_it_cannot_show() {
    let warehouse = generated("lineage-errors", "0.01");
    let wh = warehouse.to_str().unwrap();
    let lineage =
        |args: &[&str]| strata(&[&["lineage", &example(), "--warehouse", wh], args].concat());
    for (args, says) in [
        (
            ["--of", "ranked.nope"],
            "ranked.nope is not a table or column the pipeline builds",
        ),
        (
            ["--of", "ranked.jobs_per_candidate.nope"],
            "has no column nope; it has candidate_id, best_jobs",
        ),
        (
            ["--openlineage", "/proc/strata/events.ndjson"],
            "cannot write OpenLineage events to /proc/strata/events.ndjson",
        ),
    ] {
        let output = lineage(&args);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let broken = workdir("lineage-broken-sql");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("p.sql"), "CREATE TABLE raw.x AS SELEC 1;").unwrap();
    let bad = strata(&[
        "lineage",
        broken.join("p.sql").to_str().unwrap(),
        "--warehouse",
        wh,
    ]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("p.sql"), "{}", stderr(&bad));
    // A run whose events cannot be sent still runs, and says so.
    let run = strata(&[
        "run",
        &example(),
        "--warehouse",
        wh,
        "--openlineage",
        "http://127.0.0.1:9/lineage",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains(
            "openlineage: no events sent: OpenLineage endpoint http://127.0.0.1:9/lineage"
        ),
        "{}",
        stderr(&run)
    );
}
