//! `strata run --continuous` and `strata submit --continuous`: a file dropped into the
//! landing zone is published within two batches, and SIGTERM lets the current batch
//! finish, exits 0, and leaves nothing half-committed (every raw file on disk is named
//! by a commit).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use crate::cluster::Cluster;
use crate::support::{python, workdir};

const PIPELINE: &str = "\
CREATE EXTERNAL TABLE landing.readings (id BIGINT NOT NULL, value DOUBLE)
STORED AS CSV LOCATION 'landing/readings/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.readings AS SELECT * FROM landing.readings;
CREATE TABLE enriched.totals AS SELECT count(*) AS n FROM raw.readings;
";

/// The published count, and whether every Avro file of the raw table is named by a commit.
const CHECK: &str = r#"
import glob, json, os, sys
from deltalake import DeltaTable
wh = sys.argv[1]
table = os.path.join(wh, "raw", "readings")
named = set()
for path in glob.glob(os.path.join(table, "_strata_log", "*.json")):
    named.update(f["path"] for f in json.load(open(path))["files"])
on_disk = {os.path.relpath(p, table) for p in glob.glob(os.path.join(table, "**", "*.avro"), recursive=True)}
print(DeltaTable(os.path.join(wh, "enriched", "totals")).to_pyarrow_table().column("n")[0].as_py(), on_disk == named)
sys.stdout.flush()
os._exit(0)
"#;

/// The number of a `batch N: …` line.
fn batch_of(line: &str) -> Option<u64> {
    line.strip_prefix("batch ")?
        .split([':', ' '])
        .next()?
        .parse()
        .ok()
}

/// Reads lines until one satisfies `until`; returns every line read.
fn read_until(lines: &Receiver<String>, until: impl Fn(&str) -> bool) -> Vec<String> {
    let mut read = Vec::new();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no line came; read so far: {read:?}"));
        let done = until(&line);
        read.push(line);
        if done {
            return read;
        }
    }
}

fn csv(first: u64, rows: u64) -> String {
    let mut text = String::from("id,value\n");
    for id in first..first + rows {
        text.push_str(&format!("{id},{id}.5\n"));
    }
    text
}

#[test]
fn a_continuous_run_publishes_new_files_within_two_batches_and_stops_cleanly() {
    publishes_within_two_batches_and_stops_cleanly("continuous", "run", &[]);
}

#[test]
fn continuous_submissions_to_a_cluster_publish_and_stop_cleanly() {
    let cluster = Cluster::start("continuous-submit", 1);
    publishes_within_two_batches_and_stops_cleanly(
        "continuous-submit",
        "submit",
        &["--scheduler", &cluster.address],
    );
}

/// `strata <command> --continuous` publishes a file within two batches of its landing,
/// and SIGTERM lets the running batch finish and exits 0 with nothing half-committed.
fn publishes_within_two_batches_and_stops_cleanly(name: &str, command: &str, args: &[&str]) {
    let dir = workdir(name);
    let landing = dir.join("landing/readings");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(dir.join("pipeline.sql"), PIPELINE).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([command, dir.join("pipeline.sql").to_str().unwrap()])
        .args(args)
        .args([
            "--warehouse",
            dir.to_str().unwrap(),
            "--continuous",
            "--interval",
            "1s",
        ])
        .env_remove("STRATA_WAREHOUSE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let started = read_until(&lines, |line| batch_of(line) == Some(1));
    let seen = batch_of(started.last().unwrap()).unwrap();
    std::fs::write(landing.join("a.csv"), csv(0, 100)).unwrap();
    // The batch running when the file landed may have listed before it; the next one reads it.
    let after = read_until(&lines, |line| batch_of(line) == Some(seen + 2));
    assert!(
        after
            .iter()
            .any(|line| batch_of(line).is_some() && line.contains(": 100 landing rows")),
        "{after:?}"
    );
    let published = python(&["-c", CHECK, dir.to_str().unwrap()]);
    assert_eq!(published.trim(), "100 True");

    // SIGTERM right after a delivery: the batch that is running finishes, then it stops.
    std::fs::write(landing.join("b.csv"), csv(100, 50)).unwrap();
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM exits 0: {status}");
    let rest: Vec<String> = lines.iter().collect();
    assert_eq!(rest.last().map(String::as_str), Some("stopped"), "{rest:?}");
    let after_stop = python(&["-c", CHECK, dir.to_str().unwrap()]);
    let (count, whole) = after_stop.trim().split_once(' ').unwrap();
    assert!(count == "100" || count == "150", "{after_stop}");
    assert_eq!(whole, "True", "nothing half-committed");
}
