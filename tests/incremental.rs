//! Incremental tables (`FROM STREAM(…)`), as a sensor team uses them: readings arrive
//! in ten deliveries, with corrections of earlier readings. After every run each
//! incremental table equals a `--full-refresh` build of the same landing files, row for
//! row (append with a quarantine, merge with corrections, SCD2, and a stream–static
//! join downstream of an append table); and a run killed between the write and the
//! commit of an incremental build neither loses nor duplicates a row.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{
    delta_rows, python, run_pipeline, stderr, stdout, strata, table_report, workdir,
};

/// The pipeline, reading its landing files from `landing` (shared by both warehouses).
fn pipeline(landing: &Path) -> String {
    let landing = landing.display();
    format!(
        "\
CREATE EXTERNAL TABLE landing.readings (
  reading_id BIGINT NOT NULL, sensor_id VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, value DOUBLE, version BIGINT NOT NULL
) STORED AS CSV LOCATION '{landing}/readings/' OPTIONS ('format.has_header' 'true');
CREATE EXTERNAL TABLE landing.sensors (sensor_id VARCHAR NOT NULL, site VARCHAR)
STORED AS CSV LOCATION '{landing}/sensors/' OPTIONS ('format.has_header' 'true');

CREATE TABLE raw.readings AS SELECT * FROM landing.readings;
CREATE TABLE raw.sensors AS SELECT * FROM landing.sensors;

-- Every delivered row once; implausible values set aside.
CREATE TABLE enriched.reading_log (
  CONSTRAINT plausible EXPECT (value BETWEEN -60 AND 60) ON VIOLATION QUARANTINE
) WRITE APPEND
AS SELECT reading_id, sensor_id, ts, value, version FROM STREAM(raw.readings);

-- Each reading as last corrected.
CREATE TABLE enriched.readings WRITE MERGE KEY (reading_id) SEQUENCE BY version
AS SELECT reading_id, sensor_id, ts, value, version FROM STREAM(raw.readings);

-- Each sensor's level over time, a version per change.
CREATE TABLE enriched.sensor_levels WRITE SCD2 KEY (sensor_id) SEQUENCE BY ts
AS SELECT sensor_id, ts, round(value / 10) AS level FROM STREAM(raw.readings) WHERE version = 1;

-- New log rows joined with the sensors as they are now.
CREATE TABLE ranked.readings_by_site WRITE APPEND
AS SELECT l.reading_id, l.version, l.value, s.site
   FROM STREAM(enriched.reading_log) AS l JOIN raw.sensors AS s USING (sensor_id);
"
    )
}

/// The tables compared after every run.
const TABLES: [&str; 5] = [
    "enriched/reading_log",
    "enriched/reading_log__quarantine",
    "enriched/readings",
    "enriched/sensor_levels",
    "ranked/readings_by_site",
];

const SENSORS: usize = 7;
const PER_BATCH: u64 = 300;

/// Delivery `batch`: `PER_BATCH` new readings (one of them implausible), one per sensor
/// per minute and later than every earlier delivery's; from the second delivery on,
/// corrections of earlier readings, each with a higher version than any before it.
fn deliver(landing: &Path, batch: u64) {
    let at = |id: u64| {
        let minute = id / SENSORS as u64;
        let (hours, minutes) = (minute / 60, minute % 60);
        format!(
            "2026-01-{:02}T{:02}:{minutes:02}:00",
            hours / 24 + 1,
            hours % 24
        )
    };
    let mut text = String::from("reading_id,sensor_id,ts,value,version\n");
    let first = batch * PER_BATCH;
    for id in first..first + PER_BATCH {
        let value = if id == first + 7 {
            999.0
        } else {
            ((id * 37) % 80) as f64 - 20.0
        };
        let sensor = id as usize % SENSORS;
        text.push_str(&format!("{id},s{sensor},{},{value},1\n", at(id)));
    }
    for correction in 0..batch * 5 {
        let id = (correction * 53 + batch) % first;
        let value = (id % 30 + batch) as f64 - 5.5;
        let sensor = id as usize % SENSORS;
        text.push_str(&format!(
            "{id},s{sensor},{},{value},{}\n",
            at(id),
            batch + 1
        ));
    }
    let dir = landing.join("readings");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("batch-{batch:02}.csv")), text).unwrap();
}

fn sensors(landing: &Path) {
    let dir = landing.join("sensors");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::from("sensor_id,site\n");
    for sensor in 0..SENSORS {
        if sensor != 3 {
            text.push_str(&format!("s{sensor},site-{}\n", sensor % 3));
        }
    }
    std::fs::write(dir.join("sensors.csv"), text).unwrap();
}

fn dump(warehouse: &Path) -> Vec<String> {
    delta_rows(warehouse, &TABLES)
}

struct Setup {
    pipeline: PathBuf,
    landing: PathBuf,
    incremental: PathBuf,
    full: PathBuf,
}

fn setup(name: &str) -> Setup {
    let dir = workdir(name);
    let landing = dir.join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    sensors(&landing);
    let pipeline = dir.join("sensors.sql");
    std::fs::write(&pipeline, self::pipeline(&landing)).unwrap();
    Setup {
        pipeline,
        landing,
        incremental: dir.join("incremental"),
        full: dir.join("full"),
    }
}

#[test]
fn ten_deliveries_built_incrementally_equal_a_full_refresh_after_each() {
    let setup = setup("incremental-ten-deliveries");
    for batch in 0..10 {
        deliver(&setup.landing, batch);
        let shown = run_pipeline(&setup.pipeline, &setup.incremental, &[]);
        run_pipeline(&setup.pipeline, &setup.full, &["--full-refresh"]);
        let (built, rebuilt) = (dump(&setup.incremental), dump(&setup.full));
        assert_eq!(built.len(), TABLES.len());
        for (built, rebuilt) in built.iter().zip(&rebuilt) {
            assert!(
                built == rebuilt,
                "after delivery {batch}, incremental and full refresh differ:\n{}\n{}",
                &built[..built.len().min(2000)],
                &rebuilt[..rebuilt.len().min(2000)]
            );
        }
        // The incremental run read only this delivery's rows.
        let delivered = PER_BATCH + batch * 5;
        for table in ["enriched.reading_log", "enriched.readings"] {
            let report = table_report(&shown, table);
            assert_eq!(report["rows_read"], delivered, "{table} in run {batch}");
            let from = &report["stream"]["from"];
            assert_eq!(
                from.is_null(),
                batch == 0,
                "{table} read its stream from {from} in run {batch}"
            );
        }
    }
    // Every correction was applied: 3,000 readings, each at its latest version.
    let readings = dump(&setup.incremental)[2].clone();
    assert_eq!(readings.matches("reading_id").count(), 3000);
    assert!(
        readings.contains(r#"\"version\": 10"#),
        "{}",
        &readings[..500]
    );

    // Nothing new: every incremental table is up to date and nothing is committed.
    let shown = run_pipeline(&setup.pipeline, &setup.incremental, &[]);
    for table in [
        "enriched.reading_log",
        "enriched.readings",
        "enriched.sensor_levels",
        "ranked.readings_by_site",
    ] {
        assert_eq!(
            table_report(&shown, table)["status"],
            "up_to_date",
            "{table}: {shown}"
        );
    }
    assert_eq!(dump(&setup.incremental), dump(&setup.full));
}

/// Tables that read their inputs whole (no STREAM): each says how it is refreshed.
const WHOLE_READS: &str = "
-- Row by row: built from the rows raw.readings added.
CREATE TABLE enriched.plausible AS
SELECT reading_id, sensor_id, ts, value, version FROM raw.readings WHERE value BETWEEN -60 AND 60;
-- Joined with a table that did not change, inner and left.
CREATE TABLE enriched.by_site AS
SELECT r.reading_id, r.version, r.value, s.site FROM raw.readings r JOIN raw.sensors s USING (sensor_id);
CREATE TABLE enriched.by_site_left AS
SELECT r.reading_id, r.version, s.site FROM raw.readings r LEFT JOIN raw.sensors s USING (sensor_id);
-- A merge of the whole raw table: only the added rows are merged.
CREATE TABLE enriched.latest WRITE MERGE KEY (reading_id) SEQUENCE BY version AS
SELECT reading_id, value, version FROM raw.readings;
-- Downstream of a table built from added rows: its added rows again.
CREATE TABLE ranked.high AS SELECT reading_id, version, value FROM enriched.plausible WHERE value > 30;
-- Aggregates recompute the groups the added rows fall in (a NULL group too).
CREATE TABLE ranked.per_sensor AS
SELECT sensor_id, count(*) AS n, max(value) AS top, avg(value) AS mean FROM enriched.plausible GROUP BY sensor_id;
CREATE TABLE ranked.per_site_left AS
SELECT site, count(*) AS n, min(version) AS first FROM enriched.by_site_left GROUP BY site;
-- Window functions recompute the partitions the added rows fall in.
CREATE TABLE ranked.top3 AS
SELECT sensor_id, reading_id, version, value FROM (
  SELECT sensor_id, reading_id, version, value,
         row_number() OVER (PARTITION BY sensor_id ORDER BY value DESC, reading_id, version) AS place
  FROM enriched.plausible)
WHERE place <= 3;
CREATE TABLE ranked.changes AS
SELECT reading_id, version, sensor_id,
       value - lag(value) OVER (PARTITION BY sensor_id ORDER BY ts, reading_id, version) AS change
FROM enriched.plausible;
-- HAVING can drop a group rows are added to: rebuilt. A merged-into input is not
-- only added to: rebuilt.
CREATE TABLE ranked.busy AS
SELECT sensor_id, count(*) AS n FROM enriched.plausible GROUP BY sensor_id HAVING count(*) > 500;
CREATE TABLE ranked.latest_high AS SELECT reading_id, value FROM enriched.latest WHERE value > 30;
-- Without SEQUENCE BY a merge cannot order a key's rows across builds: rebuilt.
CREATE TABLE enriched.sites WRITE MERGE KEY (sensor_id) AS SELECT sensor_id, site FROM raw.sensors;
";

const WHOLE_READ_TABLES: [&str; 11] = [
    "ranked/top3",
    "ranked/changes",
    "enriched/plausible",
    "enriched/by_site",
    "enriched/by_site_left",
    "enriched/latest",
    "ranked/high",
    "ranked/per_sensor",
    "ranked/per_site_left",
    "ranked/busy",
    "ranked/latest_high",
];

fn dump_whole_reads(warehouse: &Path) -> Vec<String> {
    delta_rows(warehouse, &WHOLE_READ_TABLES)
}

/// A setup whose pipeline is the landing and raw tables and [`WHOLE_READS`].
fn whole_reads_setup(name: &str) -> Setup {
    let setup = setup(name);
    let text = std::fs::read_to_string(&setup.pipeline).unwrap();
    let head = &text[..text.find("-- Every delivered row once").unwrap()];
    std::fs::write(&setup.pipeline, format!("{head}{WHOLE_READS}")).unwrap();
    setup
}

#[test]
fn tables_that_read_whole_inputs_are_built_from_added_rows_and_equal_a_full_refresh() {
    let setup = whole_reads_setup("incremental-whole-reads");
    for batch in 0..4 {
        deliver(&setup.landing, batch);
        if batch == 2 {
            // A new sensor: raw.sensors changes too, so the joins are rebuilt.
            let sensors = setup.landing.join("sensors/more.csv");
            std::fs::write(sensors, "sensor_id,site\ns3,site-9\n").unwrap();
        }
        let shown = run_pipeline(&setup.pipeline, &setup.incremental, &[]);
        run_pipeline(&setup.pipeline, &setup.full, &["--full-refresh"]);
        let (built, rebuilt) = (
            dump_whole_reads(&setup.incremental),
            dump_whole_reads(&setup.full),
        );
        assert_eq!(built.len(), WHOLE_READ_TABLES.len());
        for (built, rebuilt) in built.iter().zip(&rebuilt) {
            assert!(
                built == rebuilt,
                "after delivery {batch}, the refresh and a full refresh differ:\n{}\n{}",
                &built[..built.len().min(2000)],
                &rebuilt[..rebuilt.len().min(2000)]
            );
        }
        let strategy = |table: &str| {
            table_report(&shown, table)["strategy"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        if batch == 0 {
            assert_eq!(
                strategy("enriched.plausible"),
                "full: no earlier build to add to"
            );
            continue;
        }
        let added = |input: &str| format!("incremental: the rows added to {input}, row by row");
        assert_eq!(strategy("enriched.plausible"), added("raw.readings"));
        assert_eq!(strategy("enriched.latest"), added("raw.readings"));
        assert_eq!(strategy("ranked.high"), added("enriched.plausible"));
        let regrouped = |key: &str, input: &str| {
            format!("incremental: the groups of ({key}) the rows added to {input} fall in")
        };
        assert!(
            strategy("ranked.per_sensor")
                .starts_with(&regrouped("sensor_id", "enriched.plausible")),
            "{}",
            strategy("ranked.per_sensor")
        );
        let per_site = strategy("ranked.per_site_left");
        if batch == 2 {
            // Its input was rebuilt (a left join's other side changed): the groups of
            // every row its change feed says changed are recomputed.
            assert!(
                per_site.starts_with(
                    "incremental: the groups of (site) the rows changed in enriched.by_site_left fall in"
                ),
                "{per_site}"
            );
        } else {
            assert!(
                per_site.starts_with(&regrouped("site", "enriched.by_site_left")),
                "{per_site}"
            );
        }
        for windowed in ["ranked.top3", "ranked.changes"] {
            let partitions = "incremental: the partitions by (sensor_id) the rows added to enriched.plausible fall in";
            assert!(
                strategy(windowed).starts_with(partitions),
                "{}",
                strategy(windowed)
            );
        }
        assert_eq!(
            strategy("ranked.busy"),
            "full: an aggregate (GROUP BY, count, sum…) needs every row of enriched.plausible"
        );
        // Its input was merged into: the rows the corrected readings gave, before and
        // after, are recomputed by the key the query passes through.
        assert!(
            strategy("ranked.latest_high").starts_with(
                "incremental: the rows of (reading_id) the rows changed in enriched.latest fall in"
            ),
            "{}",
            strategy("ranked.latest_high")
        );
        for join in ["enriched.by_site", "enriched.by_site_left"] {
            let expected = match (batch, join) {
                // Both inputs gained rows: an inner join joins each side's new rows with
                // the other; a left join's sensors side may change rows already built.
                (2, "enriched.by_site") => "incremental: the rows added to raw.readings with raw.sensors as it is, and those added to raw.sensors with raw.readings as it was".to_owned(),
                (2, _) => "full: raw.readings and raw.sensors changed: a Left join keeps rows that rows added to raw.sensors may change".to_owned(),
                _ => added("raw.readings"),
            };
            assert_eq!(strategy(join), expected, "{join} after delivery {batch}");
        }
        // Only this delivery's rows were read.
        let delivered = PER_BATCH + batch * 5;
        assert_eq!(
            table_report(&shown, "enriched.latest")["rows_read"],
            delivered
        );
    }
    let shown = run_pipeline(&setup.pipeline, &setup.incremental, &[]);
    for table in [
        "enriched.plausible",
        "enriched.latest",
        "ranked.per_sensor",
        "ranked.busy",
    ] {
        assert_eq!(
            table_report(&shown, table)["status"],
            "up_to_date",
            "{table}"
        );
    }

    // `strata check` says how each is refreshed before anything runs.
    let checked = strata(&[
        "check",
        setup.pipeline.to_str().unwrap(),
        "--warehouse",
        setup.incremental.to_str().unwrap(),
    ]);
    let said = stdout(&checked);
    let line = |table: &str| {
        said.lines()
            .find(|line| line.trim_start().starts_with(&format!("{table} ")))
            .unwrap_or_else(|| panic!("{table}: {said}"))
            .to_owned()
    };
    for (table, expected) in [
        (
            "enriched.plausible",
            "(built from the rows added to raw.readings when only that input changed by added rows, whole otherwise)",
        ),
        (
            "enriched.by_site",
            "(built from the rows added to raw.readings or raw.sensors when",
        ),
        (
            "enriched.by_site_left",
            "(built from the rows added to raw.readings when",
        ),
        (
            "enriched.sites",
            "(rebuilt whole: MERGE KEY without SEQUENCE BY cannot order a key's rows across builds)",
        ),
        (
            "ranked.per_sensor",
            "(its groups of (sensor_id) that rows added to enriched.plausible fall in recomputed when only that input changed by added rows, whole otherwise)",
        ),
        (
            "ranked.latest_high",
            "(built from the rows added to enriched.latest when only that input changed by added rows, its rows of the rows changed in enriched.latest recomputed when it changed otherwise, whole otherwise)",
        ),
        (
            "ranked.busy",
            "(rebuilt whole: an aggregate (GROUP BY, count, sum…) needs every row of enriched.plausible)",
        ),
        (
            "ranked.top3",
            "(its partitions by (sensor_id) that rows added to enriched.plausible fall in recomputed when",
        ),
    ] {
        assert!(line(table).contains(expected), "{}", line(table));
    }
}

/// Keeps no file a version no longer reads (Delta's retention set to nothing), as an
/// operator may with any Delta tool.
const RETAIN_NOTHING: &str = r#"
import os, sys
from deltalake import DeltaTable
for path in sys.argv[1:]:
    DeltaTable(path).alter.set_table_properties({"delta.deletedFileRetentionDuration": "interval 0 seconds"})
os._exit(0)
"#;

#[test]
fn tables_tidied_between_deliveries_equal_a_full_refresh_and_are_still_read_incrementally() {
    let setup = setup("incremental-tidied");
    let tidy = |tables: &[&str]| {
        let mut args = vec!["tidy", "--warehouse", setup.incremental.to_str().unwrap()];
        args.extend(tables);
        strata(&args)
    };
    for batch in 0..4 {
        deliver(&setup.landing, batch);
        let shown = run_pipeline(&setup.pipeline, &setup.incremental, &[]);
        run_pipeline(&setup.pipeline, &setup.full, &["--full-refresh"]);
        assert_eq!(
            dump(&setup.incremental),
            dump(&setup.full),
            "after delivery {batch}"
        );
        if batch > 0 {
            // The downstream append table read only what the log table added, whatever
            // the compaction of the log table before this run did to its files.
            let report = table_report(&shown, "ranked.readings_by_site");
            assert!(!report["stream"]["from"].is_null(), "{report}");
            assert!(
                report["rows_read"].as_u64().unwrap() < PER_BATCH + batch * 5,
                "{report}"
            );
        }
        if batch == 0 {
            let tables = TABLES.map(|table| setup.incremental.join(table).display().to_string());
            let mut args = vec!["-c", RETAIN_NOTHING];
            args.extend(tables.iter().map(String::as_str));
            python(&args);
        }
        let tidied = tidy(&[]);
        assert!(tidied.status.success(), "{}", stderr(&tidied));
        let said = stdout(&tidied);
        if batch > 0 {
            // Both a Delta table and the raw table its readers have read up to its end.
            for table in ["enriched.reading_log", "raw.readings"] {
                assert!(
                    said.contains(&format!("{table}: "))
                        && !said.contains(&format!("{table}: 0 small")),
                    "{said}"
                );
            }
        }
        // What no version reads any more is gone: one file per table and partition.
        assert_eq!(
            files_ending(&setup.incremental.join("enriched/reading_log"), "parquet"),
            1,
            "{said}"
        );
        assert_eq!(
            dump(&setup.incremental),
            dump(&setup.full),
            "tidied after {batch}"
        );
    }

    // The raw table keeps the files its compactions replaced for a week, for reads
    // begun before; a shorter retention lets them go, and every row stays.
    let raw = setup.incremental.join("raw/readings");
    let kept = data_files(&raw, "avro");
    let shorter = strata(&[
        "tidy",
        "--warehouse",
        setup.incremental.to_str().unwrap(),
        "--retention",
        "0s",
        "raw.readings",
    ]);
    assert!(shorter.status.success(), "{}", stderr(&shorter));
    let removed = data_files(&raw, "avro");
    assert!(removed < kept, "{kept} -> {removed}: {}", stdout(&shorter));
    assert!(
        stdout(&shorter).contains(&format!("{} unread file(s) removed", kept - removed)),
        "{}",
        stdout(&shorter)
    );
    assert_eq!(dump(&setup.incremental), dump(&setup.full));

    let unknown = tidy(&["enriched.reading_logs"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown)
            .contains("has no table enriched.reading_logs — did you mean enriched.reading_log?"),
        "{}",
        stderr(&unknown)
    );

    let nowhere = setup.incremental.with_file_name("nowhere");
    let missing = strata(&["tidy", "--warehouse", nowhere.to_str().unwrap()]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("nowhere"), "{}", stderr(&missing));

    // A table whose log cannot be read is named and left alone; the others are tidied,
    // and no row of any table is lost.
    let log = setup.incremental.join("enriched/sensor_levels/_delta_log");
    let next = files_ending(&log, "json");
    std::fs::write(log.join(format!("{next:020}.json")), "not json\n").unwrap();
    let broken = tidy(&[]);
    assert!(!broken.status.success());
    assert!(
        stderr(&broken).contains("could not tidy enriched.sensor_levels"),
        "{}",
        stderr(&broken)
    );
    assert!(
        stdout(&broken).contains("enriched.reading_log: "),
        "{}",
        stdout(&broken)
    );
    std::fs::remove_file(log.join(format!("{next:020}.json"))).unwrap();
    assert_eq!(dump(&setup.incremental), dump(&setup.full));
}

#[test]
fn a_build_killed_before_its_commit_loses_and_duplicates_nothing() {
    let setup = setup("incremental-killed");
    deliver(&setup.landing, 0);
    run_pipeline(&setup.pipeline, &setup.incremental, &[]);
    deliver(&setup.landing, 1);
    let mut child = run_paused_at(&setup, "enriched.reading_log", 60, &[]);
    // Its data files are written: the table directory holds more Parquet files than
    // its log names.
    let log = setup.incremental.join("enriched/reading_log");
    let written = files_ending(&log, "parquet");
    child.kill().unwrap();
    child.wait().unwrap();
    let versions = files_ending(&log.join("_delta_log"), "json");
    assert_eq!(versions, 1, "the killed build committed nothing");
    assert!(
        written > 1,
        "the killed build had written its files ({written})"
    );

    run_pipeline(&setup.pipeline, &setup.incremental, &[]);
    deliver(&setup.landing, 2);
    run_pipeline(&setup.pipeline, &setup.incremental, &[]);
    run_pipeline(&setup.pipeline, &setup.full, &["--full-refresh"]);
    assert_eq!(dump(&setup.incremental), dump(&setup.full));
    let log_rows = dump(&setup.incremental)[0].matches("reading_id").count();
    assert_eq!(
        log_rows,
        3 * 300 + 5 + 10 - 3,
        "every delivered row once, the 3 implausible ones set aside"
    );
}

#[test]
fn whole_read_tables_killed_before_their_commit_or_racing_lose_and_duplicate_nothing() {
    let setup = whole_reads_setup("incremental-whole-reads-faults");
    deliver(&setup.landing, 0);
    run_pipeline(&setup.pipeline, &setup.incremental, &[]);

    // Killed before the commit of groups recomputed from rows its input added (the
    // input's own build from added rows committed before).
    deliver(&setup.landing, 1);
    let mut child = run_paused_at(&setup, "ranked.per_sensor", 60, &[]);
    child.kill().unwrap();
    child.wait().unwrap();
    let shown = run_pipeline(&setup.pipeline, &setup.incremental, &[]);
    let strategy = &table_report(&shown, "ranked.per_sensor")["strategy"];
    assert!(
        strategy
            .as_str()
            .is_some_and(|text| text.starts_with("incremental: the groups")),
        "{strategy}"
    );

    // Two runs build the same table from the same added rows: one commits.
    deliver(&setup.landing, 2);
    let select = ["--select", "enriched.plausible"];
    let first = run_paused_at(&setup, "enriched.plausible", 6, &select);
    let second = run_pipeline(&setup.pipeline, &setup.incremental, &select);
    assert_eq!(
        table_report(&second, "enriched.plausible")["status"],
        "built"
    );
    let first = first.wait_with_output().unwrap();
    let lost = table_report(&stdout(&first), "enriched.plausible");
    assert_eq!(lost["status"], "failed", "{lost}");
    assert!(!first.status.success());

    run_pipeline(&setup.pipeline, &setup.incremental, &[]);
    run_pipeline(&setup.pipeline, &setup.full, &["--full-refresh"]);
    assert_eq!(
        dump_whole_reads(&setup.incremental),
        dump_whole_reads(&setup.full)
    );
    let plausible = dump_whole_reads(&setup.incremental)[2].clone();
    assert!(plausible.starts_with("enriched/plausible"), "{plausible}");
    assert_eq!(
        plausible.matches("reading_id").count(),
        3 * 300 + 5 + 10 - 3,
        "every delivered row once, the 3 implausible ones left out"
    );
}

/// How many files of a directory have the extension `ext`.
fn files_ending(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            let path = entry.as_ref().unwrap().path();
            path.extension().is_some_and(|found| found == ext)
        })
        .count()
}

/// The files ending in `ext` under `dir` and its partitions, not its logs or records.
fn data_files(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            !path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with('_'))
        })
        .map(|path| {
            if path.is_dir() {
                data_files(&path, ext)
            } else {
                usize::from(path.extension().is_some_and(|found| found == ext))
            }
        })
        .sum()
}

/// Starts `strata run` with the build of `table` paused before its commit for
/// `seconds`, and returns once it has paused.
fn run_paused_at(setup: &Setup, table: &str, seconds: u64, extra: &[&str]) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "run",
            setup.pipeline.to_str().unwrap(),
            "--warehouse",
            setup.incremental.to_str().unwrap(),
        ])
        .args(extra)
        .env(strata_engine::faults::PAUSE_BEFORE_COMMIT, table)
        .env(strata_engine::faults::PAUSE_SECONDS, seconds.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let paused = line.starts_with(strata_engine::faults::PAUSED);
        seen.push(line);
        if paused {
            assert!(seen.last().unwrap().ends_with(table), "{seen:?}");
            // Keep reading, so the run never writes to a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return child;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the build of {table} never paused before its commit: {seen:?}");
}

#[test]
fn two_runs_building_from_the_same_position_commit_the_new_rows_once() {
    let setup = setup("incremental-race");
    deliver(&setup.landing, 0);
    run_pipeline(&setup.pipeline, &setup.incremental, &[]);
    deliver(&setup.landing, 1);
    // The first run reads delivery 1 and waits before its commit; the second reads the
    // same rows from the same position and commits first. Both build only the log (and
    // the raw tables it reads), so they race on that table alone.
    let select = ["--select", "enriched.reading_log"];
    let first = run_paused_at(&setup, "enriched.reading_log", 6, &select);
    let second = run_pipeline(&setup.pipeline, &setup.incremental, &select);
    assert_eq!(
        table_report(&second, "enriched.reading_log")["status"],
        "built"
    );
    let first = first.wait_with_output().unwrap();
    let shown = stdout(&first);
    let lost = table_report(&shown, "enriched.reading_log");
    assert_eq!(lost["status"], "failed", "{shown}");
    assert!(
        lost["error"].as_str().is_some_and(|error| error
            .contains("another run committed to this table while this build ran (it built from the same rows of the same stream)")),
        "{lost}"
    );
    assert!(!first.status.success());

    run_pipeline(&setup.pipeline, &setup.incremental, &[]);
    run_pipeline(&setup.pipeline, &setup.full, &["--full-refresh"]);
    assert_eq!(dump(&setup.incremental), dump(&setup.full));
    let log_rows = dump(&setup.incremental)[0].matches("reading_id").count();
    assert_eq!(log_rows, 2 * 300 + 5 - 2, "each delivered row once");
}

#[test]
fn check_explains_what_is_read_incrementally() {
    let setup = setup("incremental-check");
    deliver(&setup.landing, 0);
    let output = strata(&[
        "check",
        setup.pipeline.to_str().unwrap(),
        "--warehouse",
        setup.incremental.to_str().unwrap(),
    ]);
    let shown = stdout(&output);
    assert!(output.status.success(), "{shown}{}", stderr(&output));
    let line = shown
        .lines()
        .find(|line| line.trim_start().starts_with("ranked.readings_by_site"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(
        line.contains("reads the new rows of enriched.reading_log, raw.sensors (incremental"),
        "{line}"
    );
    assert!(
        shown.contains("merge on (reading_id) by version"),
        "{shown}"
    );
}

/// The pipeline of [`pipeline`], its readings' landing files removed once ingested as
/// `after_ingest` says.
fn removing_pipeline(landing: &Path, after_ingest: &str) -> String {
    pipeline(landing).replacen(
        "OPTIONS ('format.has_header' 'true');",
        &format!("OPTIONS ('format.has_header' 'true', {after_ingest});"),
        1,
    )
}

#[test]
fn landing_files_deleted_after_ingest_leave_the_tables_as_if_kept() {
    let setup = setup("incremental-after-ingest");
    let deleting_landing = setup.landing.with_file_name("landing-deleted");
    sensors(&deleting_landing);
    let deleting = setup.pipeline.with_file_name("deleting.sql");
    std::fs::write(
        &deleting,
        removing_pipeline(&deleting_landing, "'after_ingest' 'delete'"),
    )
    .unwrap();
    let readings = deleting_landing.join("readings");
    for batch in 0..4 {
        deliver(&setup.landing, batch);
        deliver(&deleting_landing, batch);
        let shown = run_pipeline(&deleting, &setup.incremental, &[]);
        run_pipeline(&setup.pipeline, &setup.full, &["--full-refresh"]);
        assert_eq!(dump(&setup.incremental), dump(&setup.full), "after {batch}");
        assert_eq!(
            table_report(&shown, "raw.readings")["landing_files_removed"],
            1,
            "{shown}"
        );
        assert_eq!(std::fs::read_dir(&readings).unwrap().count(), 0);
        // The sensors' source keeps its files.
        assert!(deleting_landing.join("sensors/sensors.csv").exists());
        if batch == 1 {
            let tidied = strata(&["tidy", "--warehouse", setup.incremental.to_str().unwrap()]);
            assert!(tidied.status.success(), "{}", stderr(&tidied));
        }
    }
    // The raw table remembers only the files still delivered, not every one it read.
    let log = setup.incremental.join("raw/readings/_strata_log");
    let newest = std::fs::read_dir(&log)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .max()
        .unwrap();
    let commit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&newest).unwrap()).unwrap();
    assert_eq!(
        commit["forgotten"].as_array().map(Vec::len),
        Some(1),
        "{commit}"
    );

    // A file with a bad row stays where it was delivered, and is not read again.
    // A delivery rejected whole adds no row, and the tables built from its raw table
    // stay as they were.
    let broken = readings.join("broken.csv");
    std::fs::write(&broken, "reading_id,sensor_id\nnot,a-reading\n").unwrap();
    let shown = run_pipeline(&deleting, &setup.incremental, &[]);
    assert_eq!(table_report(&shown, "raw.readings")["files_rejected"], 1);
    assert!(broken.exists());
    assert_eq!(dump(&setup.incremental), dump(&setup.full));
    let bad = readings.join("bad.csv");
    let mut text = String::from(
        "reading_id,sensor_id,ts,value,version\n9000,s1,2026-01-09T00:00:00,not-a-number,1\n",
    );
    for id in 9001..9021 {
        text.push_str(&format!("{id},s1,2026-01-09T00:01:00,1.5,1\n"));
    }
    std::fs::write(&bad, text).unwrap();
    let shown = run_pipeline(&deleting, &setup.incremental, &[]);
    let report = table_report(&shown, "raw.readings");
    assert_eq!(report["rows_rejected"], 1, "{report}");
    assert_eq!(report["landing_files_removed"], 0, "{report}");
    assert!(bad.exists());
    let again = run_pipeline(&deleting, &setup.incremental, &[]);
    assert_eq!(table_report(&again, "raw.readings")["status"], "up_to_date");

    // A full refresh keeps the raw table, which alone holds the deleted files' rows.
    let refreshed = run_pipeline(&deleting, &setup.incremental, &["--full-refresh"]);
    let report = table_report(&refreshed, "raw.readings");
    assert!(
        report["strategy"]
            .as_str()
            .is_some_and(|said| said.starts_with("kept:")),
        "{report}"
    );
    let reading_log = |warehouse: &Path| {
        python(&[
            "-c",
            "import sys, os\nfrom deltalake import DeltaTable\nprint(DeltaTable(sys.argv[1]).to_pyarrow_table().num_rows)\nsys.stdout.flush()\nos._exit(0)",
            warehouse.join("enriched/readings").to_str().unwrap(),
        ])
    };
    assert_eq!(
        reading_log(&setup.incremental)
            .trim()
            .parse::<u64>()
            .unwrap(),
        reading_log(&setup.full).trim().parse::<u64>().unwrap() + 20,
        "every reading, and bad.csv's good rows"
    );

    // Options that cannot work are refused before anything is read.
    for (options, said) in [
        (
            "'after_ingest' 'archive'",
            "it must be 'keep', 'delete' or 'move'",
        ),
        (
            "'after_ingest' 'move'",
            "say where with 'after_ingest.move_to'",
        ),
        (
            "'after_ingest' 'move', 'after_ingest.move_to' 's3://elsewhere/done/'",
            "in another store",
        ),
    ] {
        let wrong = setup.pipeline.with_file_name("wrong.sql");
        std::fs::write(&wrong, removing_pipeline(&deleting_landing, options)).unwrap();
        let output = strata(&[
            "run",
            wrong.to_str().unwrap(),
            "--warehouse",
            setup.incremental.to_str().unwrap(),
        ]);
        assert!(!output.status.success());
        assert!(stderr(&output).contains(said), "{}", stderr(&output));
    }
}

#[test]
fn landing_files_moved_after_ingest_go_below_the_warehouse_relative_location() {
    let setup = setup("incremental-after-ingest-moved");
    let nested = setup.landing.join("readings/2026-01-01");
    std::fs::create_dir_all(&nested).unwrap();
    deliver(&setup.landing, 0);
    std::fs::rename(
        setup.landing.join("readings/batch-00.csv"),
        nested.join("batch-00.csv"),
    )
    .unwrap();
    deliver(&setup.landing, 1);
    run_pipeline(&setup.pipeline, &setup.full, &[]);
    let moving = setup.pipeline.with_file_name("moving.sql");
    std::fs::write(
        &moving,
        removing_pipeline(
            &setup.landing,
            "'after_ingest' 'move', 'after_ingest.move_to' 'ingested/readings/'",
        ),
    )
    .unwrap();
    let shown = run_pipeline(&moving, &setup.incremental, &[]);
    assert_eq!(
        table_report(&shown, "raw.readings")["landing_files_removed"],
        2
    );
    let moved = setup.incremental.join("ingested/readings");
    assert!(moved.join("2026-01-01/batch-00.csv").exists());
    assert!(moved.join("batch-01.csv").exists());
    assert_eq!(dump(&setup.incremental), dump(&setup.full));
}

#[test]
fn a_first_run_before_any_delivery_builds_every_table_empty_and_the_next_one_fills_them() {
    let setup = setup("incremental-nothing-yet");
    let readings = setup.landing.join("readings");
    std::fs::create_dir_all(&readings).unwrap();
    let output = strata(&[
        "run",
        setup.pipeline.to_str().unwrap(),
        "--warehouse",
        setup.incremental.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    // Built, with no row (a quarantine table appears with its first quarantined row).
    for table in TABLES
        .iter()
        .filter(|table| !table.ends_with("__quarantine"))
    {
        let rows = python(&[
            "-c",
            "import sys, os\nfrom deltalake import DeltaTable\nprint(DeltaTable(sys.argv[1]).to_pyarrow_table().num_rows)\nsys.stdout.flush()\nos._exit(0)",
            setup.incremental.join(table).to_str().unwrap(),
        ]);
        assert_eq!(rows.trim(), "0", "{table}");
    }
    deliver(&setup.landing, 0);
    run_pipeline(&setup.pipeline, &setup.incremental, &[]);
    run_pipeline(&setup.pipeline, &setup.full, &["--full-refresh"]);
    assert_eq!(dump(&setup.incremental), dump(&setup.full));
}

#[test]
fn a_merged_tables_changes_are_read_by_pythons_deltalake_as_an_update_per_correction() {
    let setup = setup("incremental-change-feed");
    deliver(&setup.landing, 0);
    run_pipeline(&setup.pipeline, &setup.incremental, &[]);
    deliver(&setup.landing, 1);
    run_pipeline(&setup.pipeline, &setup.incremental, &[]);
    let changes = python(&[
        "-c",
        "import sys, os, collections\nfrom deltalake import DeltaTable\n\
         table = DeltaTable(sys.argv[1])\n\
         assert table.metadata().configuration.get('delta.enableChangeDataFeed') == 'true'\n\
         import pyarrow\n\
         rows = pyarrow.table(table.load_cdf(starting_version=table.version()).read_all()).to_pylist()\n\
         print(dict(sorted(collections.Counter(row['_change_type'] for row in rows).items())))\n\
         sys.stdout.flush()\nos._exit(0)",
        setup
            .incremental
            .join("enriched/readings")
            .to_str()
            .unwrap(),
    ]);
    // Delivery 1: 300 new readings and 5 corrections of readings of delivery 0.
    assert_eq!(
        changes.trim(),
        "{'insert': 300, 'update_postimage': 5, 'update_preimage': 5}"
    );
}

#[test]
fn a_change_log_read_through_changes_holds_every_change_of_its_table_once() {
    let setup = setup("incremental-changes");
    let text = std::fs::read_to_string(&setup.pipeline).unwrap()
        + "\nCREATE TABLE ranked.reading_changes WRITE APPEND\n\
           AS SELECT reading_id, value, version, _change_type AS change, _commit_version AS at\n\
           FROM CHANGES(enriched.readings);\n";
    std::fs::write(&setup.pipeline, text).unwrap();
    let feed = |warehouse: &Path| {
        python(&[
            "-c",
            "import sys, os, json, pyarrow\nfrom deltalake import DeltaTable\n\
             wh = sys.argv[1]\n\
             feed = pyarrow.table(DeltaTable(os.path.join(wh, 'enriched/readings')).load_cdf(starting_version=0).read_all()).to_pylist()\n\
             log = DeltaTable(os.path.join(wh, 'ranked/reading_changes')).to_pyarrow_table().to_pylist()\n\
             key = lambda r: json.dumps(r, sort_keys=True, default=str)\n\
             print(json.dumps(sorted(key({'reading_id': r['reading_id'], 'value': r['value'], 'version': r['version'], 'change': r['_change_type'], 'at': r['_commit_version']}) for r in feed)))\n\
             print(json.dumps(sorted(key({k: r[k] for k in ('reading_id', 'value', 'version', 'change', 'at')}) for r in log)))\n\
             sys.stdout.flush()\nos._exit(0)",
            warehouse.to_str().unwrap(),
        ])
    };
    for batch in 0..3 {
        deliver(&setup.landing, batch);
        let shown = run_pipeline(&setup.pipeline, &setup.incremental, &[]);
        let said = feed(&setup.incremental);
        let (from_feed, logged) = said.trim().split_once('\n').unwrap();
        assert_eq!(from_feed, logged, "after delivery {batch}");
        let report = table_report(&shown, "ranked.reading_changes");
        if batch > 0 {
            assert!(report["stream"]["from"].as_u64().is_some(), "{report}");
            // Delivery n: 300 new readings and 5n corrections, each a pre- and post-image.
            assert_eq!(report["rows_read"], PER_BATCH + 10 * batch, "{report}");
        }
    }
    // A table that keeps no change feed (made before Strata kept them, or switched off
    // with a Delta tool) is a clear error for its CHANGES reader, which commits nothing.
    python(&[
        "-c",
        "import sys, os\nfrom deltalake import DeltaTable\n\
         DeltaTable(sys.argv[1]).alter.set_table_properties({'delta.enableChangeDataFeed': 'false'})\n\
         os._exit(0)",
        setup
            .incremental
            .join("enriched/readings")
            .to_str()
            .unwrap(),
    ]);
    deliver(&setup.landing, 3);
    let output = strata(&[
        "run",
        setup.pipeline.to_str().unwrap(),
        "--warehouse",
        setup.incremental.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("enriched.readings keeps no change feed"),
        "{}",
        stderr(&output)
    );
    let log = table_report(&stdout(&output), "ranked.reading_changes");
    assert_eq!(log["status"], "failed", "{log}");
    assert_eq!(log["rows_written"], 0, "{log}");

    // A raw table has no change feed: CHANGES of it is refused before anything runs.
    let wrong = setup.pipeline.with_file_name("wrong.sql");
    let text = std::fs::read_to_string(&setup.pipeline).unwrap().replace(
        "FROM CHANGES(enriched.readings)",
        "FROM CHANGES(raw.readings)",
    );
    std::fs::write(&wrong, text).unwrap();
    let output = strata(&[
        "check",
        wrong.to_str().unwrap(),
        "--warehouse",
        setup.incremental.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("a raw table has none"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_delivery_touching_most_of_a_large_table_rebuilds_it_and_a_small_one_recomputes_its_part() {
    let dir = workdir("incremental-large-share");
    let readings = dir.join("landing/readings");
    std::fs::create_dir_all(&readings).unwrap();
    let pipeline = dir.join("places.sql");
    std::fs::write(
        &pipeline,
        format!(
            "CREATE EXTERNAL TABLE landing.readings (reading_id BIGINT NOT NULL, sensor_id VARCHAR NOT NULL, value BIGINT NOT NULL, version BIGINT NOT NULL)
STORED AS CSV LOCATION '{}/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.readings AS SELECT * FROM landing.readings;
CREATE TABLE ranked.places AS
SELECT reading_id, sensor_id, row_number() OVER (PARTITION BY sensor_id ORDER BY value, reading_id) AS place
FROM raw.readings;
CREATE TABLE enriched.latest WRITE MERGE KEY (reading_id) SEQUENCE BY version
AS SELECT reading_id, sensor_id, value, version FROM STREAM(raw.readings);
CREATE TABLE ranked.tagged AS SELECT sensor_id, value, reading_id FROM enriched.latest WHERE value >= 0;
",
            readings.display()
        ),
    )
    .unwrap();
    // 20,000 readings of 10 sensors, then 100 of one sensor, then 100 of every sensor,
    // then corrections of two readings.
    let write = |name: &str, ids: std::ops::Range<u64>, sensors: u64, version: u64| {
        let mut text = String::from("reading_id,sensor_id,value,version\n");
        for id in ids {
            let value = (id * 7919 + version) % 1000;
            text.push_str(&format!("{id},s{},{value},{version}\n", id % sensors));
        }
        std::fs::write(readings.join(name), text).unwrap();
    };
    let (incremental, full) = (dir.join("incremental"), dir.join("full"));
    let deliveries = [
        (
            "history.csv",
            0..20_000,
            10,
            1,
            "full: no earlier build to add to",
        ),
        (
            "one-sensor.csv",
            20_000..20_100,
            1,
            1,
            "incremental: the partitions by (sensor_id) the rows added to raw.readings fall in (1 key value(s)), recomputed",
        ),
        (
            "every-sensor.csv",
            20_100..20_200,
            10,
            1,
            "full: the rows added to raw.readings fall in partitions holding 20100 of its 20100 rows: a rebuild costs less",
        ),
        (
            "corrections.csv",
            5..7,
            10,
            2,
            "incremental: the partitions by (sensor_id) the rows added to raw.readings fall in (2 key value(s)), recomputed",
        ),
    ];
    for (name, ids, sensors, version, expected) in deliveries {
        write(name, ids, sensors, version);
        let shown = run_pipeline(&pipeline, &incremental, &[]);
        run_pipeline(&pipeline, &full, &["--full-refresh"]);
        assert_eq!(
            table_report(&shown, "ranked.places")["strategy"],
            expected,
            "after {name}"
        );
        if version == 2 {
            // The corrected readings' rows are recomputed by their ids, which select two
            // rows, not by their sensors, which select 4,000.
            assert_eq!(
                table_report(&shown, "ranked.tagged")["strategy"],
                "incremental: the rows of (reading_id) the rows changed in enriched.latest fall in (2 key value(s)), recomputed"
            );
        }
        let tables = ["ranked/places", "enriched/latest", "ranked/tagged"];
        assert_eq!(
            delta_rows(&incremental, &tables),
            delta_rows(&full, &tables),
            "after {name}"
        );
    }
}
