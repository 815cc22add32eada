//! The whole recruitment example, embedded, read back with the Python `deltalake`
//! package (installed by `scripts/test`): expectations, quarantine, SCD2, one Delta
//! version per build, and a failing build that leaves the last version readable.

use std::path::{Path, PathBuf};

use crate::support::{example, manifest_count, stderr, stdout, strata, table_report, workdir};

/// Runs a Python snippet with `warehouse` as its first argument; returns its stdout lines.
fn python(script: &str, warehouse: &Path) -> Vec<String> {
    let script = format!("{script}\nimport os, sys\nsys.stdout.flush()\nos._exit(0)\n");
    crate::support::python(&["-c", &script, warehouse.to_str().unwrap()])
        .lines()
        .map(str::to_owned)
        .collect()
}

const READ_EXAMPLE: &str = r#"
import sys
from deltalake import DeltaTable
wh = sys.argv[1]
def table(path):
    return DeltaTable(f"{wh}/{path}")
events = table("enriched/events")
quarantine = table("enriched/events__quarantine").to_pyarrow_table()
violations = {v for row in quarantine.column("_violations").to_pylist() for v in row}
candidates = table("enriched/candidates").to_pyarrow_table().to_pylist()
current = [row["candidate_id"] for row in candidates if row["is_current"]]
print("events_rows", events.to_pyarrow_table().num_rows)
print("events_version", events.version())
print("quarantined", quarantine.num_rows)
print("violations", ",".join(sorted(violations)))
print("current_unique", len(current) == len(set(current)))
print("keys_covered", len(set(current)) == len({row["candidate_id"] for row in candidates}))
print("history_rows", len(candidates))
print("ranked_rows", table("ranked/candidates_per_job").to_pyarrow_table().num_rows)
print("ranked_max_pos", max(table("ranked/candidates_per_job").to_pyarrow_table().column("pos").to_pylist()))
print("daily_clicks", sum(table("enriched/job_events_daily").to_pyarrow_table().column("clicks").to_pylist()))
# Polars reads each Delta table in place, checking its Parquet files against the Delta schema.
import os
import polars
read, failed = 0, []
for layer in ("enriched", "ranked"):
    for name in sorted(os.listdir(f"{wh}/{layer}")):
        path = f"{wh}/{layer}/{name}"
        if not os.path.isdir(f"{path}/_delta_log"):
            continue
        try:
            rows = polars.read_delta(path).height
            if rows != DeltaTable(path).to_pyarrow_table().num_rows:
                failed.append(f"{layer}.{name}:rows")
            read += 1
        except Exception as error:
            failed.append(f"{layer}.{name}:{type(error).__name__}:{error}".replace(" ", "_")[:300])
print("polars_tables", read)
print("polars_failed", ",".join(failed) or "none")
"#;

fn values(lines: &[String]) -> std::collections::HashMap<String, String> {
    lines
        .iter()
        .filter_map(|line| line.split_once(' '))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

#[test]
fn the_recruitment_example_publishes_delta_tables_with_expectations_applied() {
    let dir = workdir("publish-example");
    let wh = dir.to_str().unwrap();
    assert!(
        strata(&["gen", "--scale", "0.002", "--out", wh])
            .status
            .success()
    );
    let example = example();
    let run = strata(&["run", &example, "--warehouse", wh]);
    let stdout = stdout(&run);
    assert!(
        run.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        stderr(&run)
    );

    let found = values(&python(READ_EXAMPLE, &dir));
    let events = manifest_count(&dir, "events");
    let missing_job = manifest_count(&dir, "events_missing_job");
    let too_old = manifest_count(&dir, "events_too_old");
    let unparsable = manifest_count(&dir, "events_unparsable");
    assert!(unparsable > 0, "gen injects unparsable events");
    // Rows in = written + dropped + quarantined + rejected, and the quarantine holds
    // exactly the injected rows.
    assert_eq!(
        found["events_rows"],
        (events - unparsable - missing_job - too_old).to_string(),
        "{found:?}\n{stdout}"
    );
    let raw = table_report(&stdout, "raw.events");
    assert_eq!(raw["rows_rejected"], unparsable, "{raw}");
    assert_eq!(raw["files_rejected"], 1, "the cut-off delivery: {raw}");
    assert_eq!(found["quarantined"], missing_job.to_string(), "{found:?}");
    assert_eq!(found["violations"], "known_job");
    assert_eq!(found["events_version"], "0", "one Delta version per build");
    assert_eq!(
        found["current_unique"], "True",
        "SCD2 keeps one current row per key"
    );
    assert_eq!(found["keys_covered"], "True");
    assert!(
        found["ranked_rows"].parse::<i64>().unwrap() > 0,
        "{found:?}"
    );
    assert!(found["ranked_max_pos"].parse::<i64>().unwrap() <= 50);
    let delta_tables = ["enriched", "ranked"]
        .iter()
        .flat_map(|layer| std::fs::read_dir(dir.join(layer)).unwrap())
        .filter(|entry| entry.as_ref().unwrap().path().join("_delta_log").is_dir())
        .count();
    assert!(delta_tables >= 6, "{delta_tables}");
    assert_eq!(found["polars_failed"], "none", "{found:?}");
    assert_eq!(
        found["polars_tables"],
        delta_tables.to_string(),
        "{found:?}"
    );
    let report = table_report(&stdout, "enriched.events");
    assert_eq!(
        report["rows_read"],
        events - unparsable,
        "rows read: {report}"
    );
    assert_eq!(report["rows_dropped"], too_old, "rows dropped: {report}");
    assert_eq!(
        report["rows_quarantined"], missing_job,
        "rows quarantined: {report}"
    );

    // A second run ingests nothing new, so every replace-mode table is up to date: its
    // definition and the versions it reads are those its current version was built from.
    let again = strata(&["run", &example, "--warehouse", wh]);
    assert!(again.status.success(), "{}", crate::support::stdout(&again));
    for table in [
        "enriched.events",
        "enriched.job_events_daily",
        "enriched.job_keywords",
        "ranked.candidates_per_job",
        "ranked.jobs_per_candidate",
    ] {
        let report = table_report(&crate::support::stdout(&again), table);
        assert_eq!(report["status"], "up_to_date", "{table}: {report}");
    }
    assert_eq!(values(&python(READ_EXAMPLE, &dir))["events_version"], "0");

    // A full refresh rebuilds them: each is one more version, whose quarantine replaces
    // the last one's.
    let refreshed = strata(&["run", &example, "--warehouse", wh, "--full-refresh"]);
    assert!(
        refreshed.status.success(),
        "{}",
        crate::support::stdout(&refreshed)
    );
    let found_again = values(&python(READ_EXAMPLE, &dir));
    assert_eq!(found_again["events_version"], "1");
    assert_eq!(found_again["events_rows"], found["events_rows"]);
    assert_eq!(
        found_again["quarantined"],
        missing_job.to_string(),
        "a replace build replaces its quarantine: {found_again:?}"
    );
    assert_eq!(
        found_again["history_rows"], found["history_rows"],
        "no duplicate history"
    );
}

#[test]
fn a_failing_expectation_commits_nothing_and_keeps_the_last_version() {
    let (dir, pipeline) = scores_pipeline(
        "publish-fail",
        "id,score\n1,0.5\n2,0.9\n",
        "ON VIOLATION FAIL",
        "CREATE TABLE ranked.best AS SELECT id FROM enriched.scores ORDER BY score DESC LIMIT 1;\n\
         CREATE TABLE enriched.other AS SELECT count(*) AS n FROM raw.scores;\n",
    );
    let landing = dir.join("landing/scores");
    let wh = dir.to_str().unwrap();
    let first = strata(&["run", pipeline.to_str().unwrap(), "--warehouse", wh]);
    assert!(first.status.success(), "{}", stdout(&first));

    std::fs::write(landing.join("b.csv"), "id,score\n3,7.5\n").unwrap();
    let second = strata(&["run", pipeline.to_str().unwrap(), "--warehouse", wh]);
    assert!(!second.status.success());
    let (stdout, stderr) = (stdout(&second), stderr(&second));
    assert!(
        stderr.contains("enriched.scores")
            && stderr.contains("expectation in_range failed on 1 row(s)"),
        "{stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ranked.best ") && l.contains("skipped")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("enriched.other ") && l.contains("built")),
        "others go on: {stdout}"
    );

    let script = r#"
import sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1] + "/enriched/scores")
print(t.version(), t.to_pyarrow_table().num_rows)
"#;
    assert_eq!(
        python(script, &dir),
        ["0 2"],
        "the last good version stays published"
    );
}

#[test]
fn a_null_predicate_passes_like_a_sql_check_constraint() {
    let (dir, pipeline) = scores_pipeline(
        "publish-null",
        "id,score\n1,0.5\n2,\n3,4.0\n",
        "ON VIOLATION QUARANTINE",
        "",
    );
    let output = strata(&[
        "run",
        pipeline.to_str().unwrap(),
        "--warehouse",
        dir.to_str().unwrap(),
    ]);
    let stdout = stdout(&output);
    assert!(output.status.success(), "{stdout}");
    let scores = table_report(&stdout, "enriched.scores");
    // Read 3: the NULL score is kept, only 4.0 is quarantined.
    let counts = [
        "rows_read",
        "rows_written",
        "rows_dropped",
        "rows_quarantined",
    ]
    .map(|count| scores[count].as_u64().unwrap());
    assert_eq!(counts, [3, 2, 0, 1], "{stdout}");
}

/// A one-file landing table of scores, a raw table, and `enriched.scores` guarded by
/// `score BETWEEN 0 AND 1` with the given violation clause, plus any `extra` tables.
fn scores_pipeline(name: &str, csv: &str, on_violation: &str, extra: &str) -> (PathBuf, PathBuf) {
    let dir = workdir(name);
    let landing = dir.join("landing/scores");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(landing.join("a.csv"), csv).unwrap();
    let pipeline = dir.join("pipeline.sql");
    std::fs::write(
        &pipeline,
        format!(
            "CREATE EXTERNAL TABLE landing.scores (id BIGINT, score DOUBLE) STORED AS CSV LOCATION 'landing/scores/' OPTIONS ('format.has_header' 'true');\n\
             CREATE TABLE raw.scores AS SELECT * FROM landing.scores;\n\
             CREATE TABLE enriched.scores (CONSTRAINT in_range EXPECT (score BETWEEN 0 AND 1) {on_violation}) AS SELECT id, score FROM raw.scores;\n{extra}"
        ),
    )
    .unwrap();
    (dir, pipeline)
}

/// A landing table of people moving between cities, its raw table, and an SCD2 history.
fn moves_pipeline(name: &str, csv: &str) -> (PathBuf, PathBuf) {
    let dir = workdir(name);
    let landing = dir.join("landing/moves");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(landing.join("a.csv"), csv).unwrap();
    let pipeline = dir.join("pipeline.sql");
    std::fs::write(
        &pipeline,
        "CREATE EXTERNAL TABLE landing.moves (id BIGINT, city VARCHAR, at TIMESTAMP) STORED AS CSV LOCATION 'landing/moves/' OPTIONS ('format.has_header' 'true');\n\
         CREATE TABLE raw.moves AS SELECT * FROM landing.moves;\n\
         CREATE TABLE enriched.people WRITE SCD2 KEY (id) SEQUENCE BY at AS SELECT id, city, at FROM raw.moves;\n",
    )
    .unwrap();
    (dir, pipeline)
}

const READ_PEOPLE: &str = r#"
import sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1] + "/enriched/people")
print("version", t.version())
print("operation", t.history(1)[0]["operation"])
rows = sorted(t.to_pyarrow_table().to_pylist(), key=lambda r: (r["id"], r["valid_from"]))
for r in rows:
    print("row", r["id"], r["city"], r["valid_to"] is None, r["is_current"])
"#;

#[test]
fn scd2_merges_a_new_change_into_the_history_as_one_delta_merge() {
    let (dir, pipeline) = moves_pipeline(
        "publish-scd2",
        "id,city,at\n1,Paris,2026-01-01T00:00:00\n2,Lyon,2026-01-01T00:00:00\n",
    );
    let (pipeline, wh) = (pipeline.to_str().unwrap(), dir.to_str().unwrap());
    let first = strata(&["run", pipeline, "--warehouse", wh]);
    assert!(first.status.success(), "{}", stderr(&first));

    // Person 1 moves; person 2 is delivered again unchanged.
    std::fs::write(
        dir.join("landing/moves/b.csv"),
        "id,city,at\n1,Geneva,2026-03-01T00:00:00\n2,Lyon,2026-01-01T00:00:00\n",
    )
    .unwrap();
    let second = strata(&["run", pipeline, "--warehouse", wh]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        python(READ_PEOPLE, &dir),
        [
            "version 1",
            "operation MERGE",
            "row 1 Paris False False",
            "row 1 Geneva True True",
            "row 2 Lyon True True",
        ]
    );

    // Nothing new: no new Delta version.
    let third = strata(&["run", pipeline, "--warehouse", wh]);
    assert!(third.status.success(), "{}", stderr(&third));
    assert_eq!(python(READ_PEOPLE, &dir)[0], "version 1");
    // Nor is any row read: the history's inputs are those its last commit recorded.
    let people = table_report(&stdout(&third), "enriched.people");
    assert_eq!(people["status"], "up_to_date", "{people}");
    assert_eq!(people["rows_read"], 0, "{people}");
}

#[test]
fn scd2_refuses_two_changes_of_one_key_at_the_same_sequence_value() {
    let (dir, pipeline) = moves_pipeline(
        "publish-scd2-ambiguous",
        "id,city,at\n1,Paris,2026-01-01T00:00:00\n1,Rome,2026-01-01T00:00:00\n2,Lyon,\n",
    );
    let run = strata(&[
        "run",
        pipeline.to_str().unwrap(),
        "--warehouse",
        dir.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let stderr = stderr(&run);
    assert!(
        stderr.contains("enriched.people")
            && stderr.contains(
                "2 changes have a NULL at or share it with another change of the same key (id)"
            ),
        "{stderr}"
    );
    assert!(!dir.join("enriched/people/_delta_log").exists());
}

/// A pipeline merging people by a mixed-case key, ordered by `Seq`, with `first` as its
/// first landing file: the work dir, the landing directory and the pipeline file.
fn people(name: &str, first: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = workdir(name);
    let landing = dir.join("landing/people");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(landing.join("a.csv"), first).unwrap();
    let pipeline = dir.join("pipeline.sql");
    std::fs::write(
        &pipeline,
        "CREATE EXTERNAL TABLE landing.people (\"PersonId\" BIGINT, \"City\" VARCHAR, \"Seq\" BIGINT) STORED AS CSV LOCATION 'landing/people/' OPTIONS ('format.has_header' 'true');\n\
         CREATE TABLE raw.people AS SELECT * FROM landing.people;\n\
         CREATE TABLE enriched.people WRITE MERGE KEY (\"PersonId\") SEQUENCE BY \"Seq\" AS SELECT \"PersonId\", \"City\", \"Seq\" FROM raw.people;\n",
    )
    .unwrap();
    (dir, landing, pipeline)
}

#[test]
fn a_merge_key_with_a_mixed_case_name_updates_rows_in_place() {
    let (dir, landing, pipeline) = people(
        "publish-mixed-case-merge",
        "PersonId,City,Seq\n1,Lyon,1\n2,Porto,1\n",
    );
    let wh = dir.to_str().unwrap();
    let pipeline = pipeline.to_str().unwrap();
    let first = strata(&["run", pipeline, "--warehouse", wh]);
    assert!(
        first.status.success(),
        "{}\n{}",
        stdout(&first),
        stderr(&first)
    );

    // Person 2 moves and person 3 arrives: one update, one insert, no duplicate key.
    std::fs::write(
        landing.join("b.csv"),
        "PersonId,City,Seq\n2,Turin,2\n3,Ghent,2\n",
    )
    .unwrap();
    let second = strata(&["run", pipeline, "--warehouse", wh]);
    assert!(
        second.status.success(),
        "{}\n{}",
        stdout(&second),
        stderr(&second)
    );
    let found = values(&python(
        r#"
import sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1] + "/enriched/people")
rows = sorted((r["PersonId"], r["City"]) for r in t.to_pyarrow_table().to_pylist())
print("rows", ";".join(f"{k}={v}" for k, v in rows))
print("operation", t.history(1)[0]["operation"])
"#,
        &dir,
    ));
    assert_eq!(found["rows"], "1=Lyon;2=Turin;3=Ghent", "{found:?}");
    // Only the rows raw.people added were merged: the query is row by row in it.
    assert_eq!(found["operation"], "MERGE", "{found:?}");
    let report = table_report(&stdout(&second), "enriched.people");
    assert_eq!(
        report["strategy"], "incremental: the rows added to raw.people, row by row",
        "{report}"
    );
    assert_eq!(report["rows_read"], 2, "{report}");
}

#[test]
fn a_replace_table_rebuilds_only_when_its_inputs_or_its_definition_change() {
    let (dir, pipeline) = scores_pipeline(
        "publish-up-to-date",
        "id,score\n1,0.5\n2,0.9\n",
        "ON VIOLATION DROP ROW",
        "CREATE TABLE ranked.best AS SELECT max(score) AS best FROM enriched.scores;\n\
         CREATE TABLE ranked.stamped AS SELECT count(*) AS n, now() AS at FROM enriched.scores;\n",
    );
    let wh = dir.to_str().unwrap();
    let run = || {
        let output = strata(&["run", pipeline.to_str().unwrap(), "--warehouse", wh]);
        assert!(
            output.status.success(),
            "{}",
            crate::support::stderr(&output)
        );
        let out = crate::support::stdout(&output);
        let status = |table: &str| {
            table_report(&out, table)["status"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        (
            status("enriched.scores"),
            status("ranked.best"),
            status("ranked.stamped"),
        )
    };
    let built = ("built".to_owned(), "built".to_owned(), "built".to_owned());
    assert_eq!(run(), built);
    // Nothing new: replace builds are up to date, except one whose query reads the clock.
    assert_eq!(
        run(),
        (
            "up_to_date".to_owned(),
            "up_to_date".to_owned(),
            "built".to_owned()
        )
    );
    // A new delivery reaches every table that reads it.
    std::fs::write(dir.join("landing/scores/b.csv"), "id,score\n3,0.7\n").unwrap();
    assert_eq!(run(), built);
    // A changed definition rebuilds that table, and what reads it only if its rows changed
    // version.
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replace("max(score) AS best", "max(score) * 2 AS best"),
    )
    .unwrap();
    assert_eq!(
        run(),
        (
            "up_to_date".to_owned(),
            "built".to_owned(),
            "built".to_owned()
        )
    );
    let read = python(
        "import sys\nfrom deltalake import DeltaTable\nprint(DeltaTable(sys.argv[1] + '/ranked/best').to_pyarrow_table().column('best')[0].as_py())",
        &dir,
    );
    assert_eq!(read, ["1.8"]);
}

#[test]
fn a_replace_builds_quarantine_is_replaced_with_its_own_bad_rows() {
    let (dir, pipeline) = scores_pipeline(
        "publish-quarantine-replaced",
        "id,score\n1,0.5\n2,7.0\n",
        "ON VIOLATION QUARANTINE",
        "",
    );
    let wh = dir.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", pipeline.to_str().unwrap(), "--warehouse", wh];
        args.extend(extra);
        let output = strata(&args);
        assert!(output.status.success(), "{}", stderr(&output));
    };
    let quarantined = || {
        python(
            "import sys\nfrom deltalake import DeltaTable\nt = DeltaTable(sys.argv[1] + '/enriched/scores__quarantine').to_pyarrow_table()\nprint(sorted(t.column('id').to_pylist()), len(set(t.column('_run_id').to_pylist())))",
            &dir,
        )
    };
    run(&[]);
    assert_eq!(quarantined(), ["[2] 1"]);
    std::fs::write(
        dir.join("landing/scores/b.csv"),
        "id,score\n3,-1.0\n4,0.1\n",
    )
    .unwrap();
    run(&[]);
    // Built from the rows raw added (the query is row by row): the new bad row joins
    // the first build's, each once.
    assert_eq!(quarantined(), ["[2, 3] 2"]);
    run(&["--full-refresh"]);
    assert_eq!(quarantined(), ["[2, 3] 1"]);
}

#[test]
fn a_key_delivered_twice_keeps_its_latest_row_and_a_tie_between_different_rows_is_refused() {
    // Person 1 twice (the later Seq wins), person 2 as the same row twice (one row).
    let (dir, landing, pipeline) = people(
        "publish-merge-latest-row",
        "PersonId,City,Seq\n1,Lyon,1\n1,Paris,2\n2,Porto,1\n2,Porto,1\n3,Ghent,1\n",
    );
    let (wh, pipeline) = (dir.to_str().unwrap(), pipeline.to_str().unwrap());
    let first = strata(&["run", pipeline, "--warehouse", wh]);
    assert!(first.status.success(), "{}", stderr(&first));
    let rows = |dir: &Path| {
        crate::support::python(&[
            "-c",
            "import sys, os\nfrom deltalake import DeltaTable\nrows = sorted((r['PersonId'], r['City']) for r in DeltaTable(sys.argv[1]).to_pyarrow_table().to_pylist())\nprint(rows)\nsys.stdout.flush()\nos._exit(0)",
            dir.join("enriched/people").to_str().unwrap(),
        ])
    };
    assert_eq!(
        rows(&dir).trim(),
        "[(1, 'Paris'), (2, 'Porto'), (3, 'Ghent')]"
    );
    // Two different rows of person 3 with the same greatest Seq: which is current is a guess.
    std::fs::write(
        landing.join("b.csv"),
        "PersonId,City,Seq\n3,Ghent,2\n3,Bruges,2\n",
    )
    .unwrap();
    let tie = strata(&["run", pipeline, "--warehouse", wh]);
    assert!(!tie.status.success());
    assert!(
        stderr(&tie).contains(
            "1 keys (PersonId) have different rows with the same greatest Seq; give each change of a key its own Seq"
        ),
        "{}",
        stderr(&tie)
    );
    assert_eq!(
        rows(&dir).trim(),
        "[(1, 'Paris'), (2, 'Porto'), (3, 'Ghent')]",
        "the refused build changed nothing"
    );
}
