//! The `strata` binary as a user runs it.

use crate::support::{stderr, stdout, strata};

#[test]
fn query_prints_paris_london_distance_as_a_table() {
    let output = strata(&[
        "query",
        "SELECT geo_distance_km(48.8566, 2.3522, 51.5074, -0.1278) AS km",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("| km"), "{text}");
    // 343.556 km by the haversine formula with R = 6371.0088 km (checked with Python's math module).
    assert!(text.contains("343.55"), "{text}");
}

#[test]
fn query_prints_csv_and_json() {
    let sql = "SELECT * FROM (VALUES (1, 'rust'), (2, NULL)) AS t(id, skill) ORDER BY id";
    let csv = strata(&["query", "--format", "csv", sql]);
    assert!(csv.status.success(), "stderr: {}", stderr(&csv));
    assert_eq!(stdout(&csv), "id,skill\n1,rust\n2,\n");

    let json = strata(&["query", "--format", "json", sql]);
    assert!(json.status.success(), "stderr: {}", stderr(&json));
    assert_eq!(
        stdout(&json).trim(),
        r#"[{"id":1,"skill":"rust"},{"id":2,"skill":null}]"#
    );
}

#[test]
fn query_with_wrong_argument_types_names_the_signature_and_fails() {
    let output = strata(&["query", "SELECT skill_match(1, 2)"]);
    assert!(!output.status.success());
    assert!(stdout(&output).is_empty());
    let text = stderr(&output);
    assert!(
        text.contains("skill_match(have LIST<VARCHAR>, want LIST<VARCHAR>)")
            && text.contains("have must be a list of strings, got Int64"),
        "{text}"
    );
}

#[test]
fn query_reports_broken_sql_unknown_tables_and_runtime_errors() {
    for (sql, expected) in [
        ("SELEC 1", "SELEC"),
        ("SELECT * FROM enriched.jobs", "enriched.jobs"),
        (
            "SELECT geo_distance_km(91, 0, 0, 0)",
            "lat1 = 91 is outside [-90, 90]",
        ),
    ] {
        let output = strata(&["query", sql]);
        assert!(!output.status.success(), "{sql} should fail");
        let text = stderr(&output);
        assert!(
            text.starts_with("Error: ") && text.contains(expected),
            "{sql}: {text}"
        );
    }
}

#[test]
fn query_rejects_an_unknown_format() {
    let output = strata(&["query", "--format", "xml", "SELECT 1"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("invalid value 'xml'"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn csv_of_a_nested_result_shows_it_as_the_table_does() {
    let output = strata(&[
        "query",
        "--format",
        "csv",
        "SELECT tokenize('a b') AS tokens",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "tokens\n\"[a, b]\"\n");
}

#[test]
fn query_reads_sql_from_a_file() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/rank_candidates.sql"
    );
    let output = strata(&["query", "--format", "csv", "--file", file]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let text = stdout(&output);
    let names: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap())
        .collect();
    assert_eq!(names, ["ana", "chen", "bo"], "{text}");
}

#[test]
fn query_with_a_missing_file_names_it() {
    let output = strata(&["query", "--file", "/nonexistent/rank.sql"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot read SQL file /nonexistent/rank.sql"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn query_needs_sql_or_a_file() {
    let output = strata(&["query"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("required"), "{}", stderr(&output));
}

#[test]
fn a_location_strata_cannot_reach_and_a_bad_interval_are_clear_errors() {
    let dir = crate::support::workdir("cli-bad-locations");
    std::fs::create_dir_all(&dir).unwrap();
    let pipeline = dir.join("p.sql");
    std::fs::write(
        &pipeline,
        "CREATE EXTERNAL TABLE landing.a (id BIGINT) STORED AS CSV LOCATION 'landing/a/';\n\
         CREATE TABLE raw.a AS SELECT * FROM landing.a;\n",
    )
    .unwrap();
    let pipeline = pipeline.to_str().unwrap();
    for args in [
        vec!["gen", "--scale", "0.001", "--out", "ftp://host/wh"],
        vec!["check", pipeline, "--warehouse", "ftp://host/wh"],
        vec!["run", pipeline, "--warehouse", "s3:///no-bucket"],
    ] {
        let output = strata(&args);
        assert!(!output.status.success(), "{args:?}");
        let said = stderr(&output);
        assert!(
            said.contains("Strata reads s3://") || said.contains("names no bucket"),
            "{args:?}: {said}"
        );
    }
    let bad_interval = [
        "run",
        pipeline,
        "--warehouse",
        ".",
        "--continuous",
        "--interval",
        "soon",
    ];
    let interval = strata(&bad_interval);
    assert!(!interval.status.success());
    assert!(
        stderr(&interval).contains("--interval"),
        "{}",
        stderr(&interval)
    );
    let without = strata(&["run", pipeline, "--warehouse", ".", "--interval", "5s"]);
    assert!(!without.status.success());
    assert!(
        stderr(&without).contains("--continuous"),
        "{}",
        stderr(&without)
    );
}
