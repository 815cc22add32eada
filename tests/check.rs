//! `strata check` on small pipelines, one per error, as a user runs it.
//!
//! Each `tests/check/cases/*.sql` starts with `-- expect: <message>` and
//! `-- at: <line>:<col>`; `ok.sql` must pass.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::workdir;

fn check_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/check")
}

fn strata_check(files: &[&Path]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("check")
        .args(files)
        .arg("--warehouse")
        .arg(check_dir())
        .output()
        .expect("the strata binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("-- {key}: ")))
        .map(str::trim)
}

#[test]
fn every_error_case_names_its_file_line_and_column() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(check_dir().join("cases"))
        .expect("tests/check/cases exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.file_name().is_some_and(|name| name != "ok.sql"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 15,
        "expected the error cases, found {}",
        cases.len()
    );

    let mut failures = Vec::new();
    for case in &cases {
        let text = std::fs::read_to_string(case).expect("readable case");
        let expected = header(&text, "expect").expect("case has -- expect:");
        let at = header(&text, "at").expect("case has -- at:");
        let (ok, stdout, stderr) = strata_check(&[case]);
        let location = format!("{}:{at}", case.display());
        if ok || !stdout.is_empty() || !stderr.contains(expected) || !stderr.contains(&location) {
            failures.push(format!(
                "{}\n  expected failure with `{expected}` at {location}\n  exit ok: {ok}\n  stderr:\n{stderr}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_valid_pipeline_checks_and_lists_tables_in_build_order() {
    let case = check_dir().join("cases/ok.sql");
    let (ok, stdout, stderr) = strata_check(&[&case]);
    assert!(ok, "stderr: {stderr}");
    let order: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        order,
        [
            "landing.events",
            "raw.events",
            "enriched.applications",
            "enriched.event_history",
            "ranked.busy_jobs"
        ],
        "{stdout}"
    );
    assert!(stdout.starts_with("ok: 5 tables in 1 file(s)"), "{stdout}");
    assert!(stdout.contains("scd2 on (event_id) by ts"), "{stdout}");
}

#[test]
fn several_problems_are_reported_in_one_run() {
    let cases = check_dir().join("cases");
    let (ok, _, stderr) = strata_check(&[
        &cases.join("unknown_layer.sql"),
        &cases.join("not_a_table.sql"),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("unknown layer staging") && stderr.contains("found INSERT"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 problem(s) found; nothing was run"),
        "{stderr}"
    );
}

#[test]
fn a_pipeline_can_span_a_directory_of_files() {
    let dir = created(workdir("check-dir"));
    std::fs::write(
        dir.join("10_sources.sql"),
        format!(
            "CREATE EXTERNAL TABLE landing.events (event_id VARCHAR, kind VARCHAR) STORED AS CSV LOCATION '{}/landing/events/' OPTIONS ('format.has_header' 'true');",
            check_dir().display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("20_raw.sql"),
        "CREATE TABLE raw.events AS SELECT * FROM landing.events;",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not part of the pipeline").unwrap();
    let (ok, stdout, stderr) = strata_check(&[&dir]);
    assert!(ok, "stderr: {stderr}");
    assert!(stdout.starts_with("ok: 2 tables in 2 file(s)"), "{stdout}");
}

#[test]
fn missing_and_empty_pipeline_paths_are_clear_errors() {
    let (ok, _, stderr) = strata_check(&[Path::new("/nonexistent/pipeline.sql")]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot read /nonexistent/pipeline.sql"),
        "{stderr}"
    );

    let empty = created(workdir("check-empty"));
    let (ok, _, stderr) = strata_check(&[&empty]);
    assert!(!ok);
    assert!(stderr.contains("no .sql files in"), "{stderr}");
}

fn created(dir: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
