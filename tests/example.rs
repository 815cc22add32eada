//! The recruitment example: generated landing data, and the pipeline that reads it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use crate::support::{example, strata, table_report, workdir};

/// Every file under a directory with its bytes, keyed by relative path.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let key = path.strip_prefix(root).unwrap().display().to_string();
                found.insert(key, std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

fn generate(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["gen", "--scale", "0.002", "--out", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    strata(&args)
}

#[test]
fn gen_is_deterministic_and_documents_its_bad_data() {
    let (first, second) = (workdir("gen-a"), workdir("gen-b"));
    for dir in [&first, &second] {
        let output = generate(dir, &[]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (a, b) = (files(&first), files(&second));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a == b, "the same seed must give the same bytes");
    for expected in [
        "landing/jobs/jobs-0000.parquet",
        "landing/candidates/candidates-0000.csv.gz",
        "landing/candidates/candidates-updates-0000.csv.gz",
        "landing/searches/searches-0000.json",
        "landing/events/events-2026-11-07.csv.gz",
        "landing/events/events-2026-11-20.csv.gz",
        "landing/events/events-2026-11-21-partial.csv.gz",
        "landing/manifest.json",
    ] {
        assert!(
            a.contains_key(expected),
            "missing {expected}: {:?}",
            a.keys()
        );
    }
    let manifest = String::from_utf8(a["landing/manifest.json"].clone()).unwrap();
    assert!(manifest.contains("\"events\": 2000,"), "{manifest}");
    assert!(
        manifest
            .contains("\"malformed_files\": [\"landing/events/events-2026-11-21-partial.csv.gz\"]"),
        "{manifest}"
    );

    let other_seed = workdir("gen-c");
    assert!(generate(&other_seed, &["--seed", "7"]).status.success());
    assert_ne!(
        files(&other_seed)["landing/events/events-2026-11-07.csv.gz"],
        a["landing/events/events-2026-11-07.csv.gz"]
    );
}

#[test]
fn gen_without_bad_data_writes_no_malformed_file() {
    let dir = workdir("gen-clean");
    let output = generate(&dir, &["--no-bad-data"]);
    assert!(output.status.success());
    let written = files(&dir);
    assert!(!written.keys().any(|name| name.contains("partial")));
    let manifest = String::from_utf8(written["landing/manifest.json"].clone()).unwrap();
    assert!(
        manifest.contains("\"events_missing_job\": 0,"),
        "{manifest}"
    );
    assert!(manifest.contains("\"malformed_files\": []"), "{manifest}");
}

#[test]
fn gen_rejects_bad_options() {
    let dir = workdir("gen-bad");
    let output = strata(&["gen", "--scale", "0", "--out", dir.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("scale must be a positive number"));

    let output = strata(&[
        "gen",
        "--scale",
        "0.001",
        "--out",
        "/proc/strata-cannot-write-here",
    ]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("cannot write /proc/strata-cannot-write-here")
    );
}

#[test]
fn the_example_pipeline_checks_against_generated_data() {
    let dir = workdir("example-check");
    assert!(generate(&dir, &[]).status.success());
    let output = strata(&["check", &example(), "--warehouse", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("ok: 15 tables in 5 file(s)"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("  enriched.candidates")
                && line.ends_with("; masks name, email")),
        "{stdout}"
    );
    let order: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let position = |name: &str| order.iter().position(|t| *t == name).unwrap();
    assert!(position("raw.events") < position("enriched.events"));
    assert!(position("enriched.events") < position("enriched.job_events_daily"));
    assert!(position("enriched.candidates") < position("ranked.candidates_per_job"));
    assert!(position("enriched.job_keywords") < position("ranked.candidates_per_job"));
}

#[test]
fn demo_generates_runs_and_shows_the_best_candidates() {
    let dir = workdir("demo");
    let wh = dir.to_str().unwrap();
    let output = strata(&["demo", "--scale", "0.002", "--warehouse", wh]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1/3 generating") && stdout.contains("3/3 the best candidates"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| job_id | job") && stdout.contains("| candidate"),
        "{stdout}"
    );
    assert!(dir.join("pipeline/40_ranked.sql").exists());
    // As the README shows: gen's unparsable events are set aside one by one, and the
    // cut-off delivery is rejected whole.
    assert!(
        stdout.contains("bad row(s) set aside in raw.events__rejects")
            && stdout.contains("1 rejected whole"),
        "{stdout}"
    );

    // A second demo delivers 1 % new events, and the tables they change are refreshed
    // from them alone; the others are up to date.
    let again = strata(&["demo", "--scale", "0.002", "--warehouse", wh]);
    let stdout = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(again.status.success(), "{stdout}");
    assert!(
        stdout.contains("1/3 delivering 20 new tracking events")
            && stdout.contains("events-delivery-001.csv.gz"),
        "{stdout}"
    );
    let raw_events = table_report(&stdout, "raw.events");
    assert_eq!(raw_events["rows_read"], 20, "{raw_events}");
    for table in ["enriched.events", "enriched.job_events_daily"] {
        let report = table_report(&stdout, table);
        assert!(
            report["strategy"]
                .as_str()
                .is_some_and(|said| said.starts_with("incremental"))
                || !report["stream"]["from"].is_null(),
            "{report}"
        );
    }
    assert_eq!(
        table_report(&stdout, "enriched.jobs")["status"],
        "up_to_date"
    );
    assert!(
        dir.join("landing/events/events-delivery-001.csv.gz")
            .exists()
    );
}

#[test]
fn demo_with_a_bad_scale_fails_clearly_and_writes_no_tables() {
    let dir = workdir("demo-bad");
    let output = strata(&["demo", "--scale", "0", "--warehouse", dir.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("scale must be a positive number, got 0"),
        "{stderr}"
    );
    assert!(!dir.join("raw").exists() && !dir.join("enriched").exists());
}
