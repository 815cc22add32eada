//! Faults at many moments of a distributed run of the example, at a scale where each
//! stage lasts seconds: an executor killed during raw ingest, an enriched build, a
//! ranked build, a shuffle read and a commit; an executor killed and a new one
//! started; the scheduler restarted. Each run ends, within a bound, with the embedded
//! run's tables or with a clear error after which a re-run gets there.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, assert_same_tables, copy_dir, embedded_and_copy};
use crate::support::{example, stderr, stdout, strata, workdir};

/// Large enough that raw ingest and each enriched and ranked build take seconds on a
/// debug build, small enough that the sweep fits in a few minutes.
const SCALE: &str = "0.2";

/// A run that has neither finished nor failed by then is hung.
const BOUND: Duration = Duration::from_secs(300);

/// A moment of a run: a progress line, then a little longer.
struct Moment {
    what: &'static str,
    after_line: &'static str,
    then: Duration,
}

const MOMENTS: [Moment; 4] = [
    Moment {
        what: "raw ingest",
        after_line: "building raw.events",
        then: Duration::from_millis(500),
    },
    Moment {
        what: "an enriched build",
        after_line: "building enriched.events",
        then: Duration::from_millis(1500),
    },
    Moment {
        what: "a ranked build",
        after_line: "building ranked.candidates_per_job",
        then: Duration::from_millis(300),
    },
    Moment {
        what: "a ranked build's shuffle read",
        after_line: "building ranked.candidates_per_job",
        then: Duration::from_millis(3000),
    },
];

/// A running `strata` whose stderr lines arrive on a channel.
struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: String,
}

impl Watched {
    fn start(command: &mut Command) -> Watched {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strata starts");
        let progress = BufReader::new(child.stderr.take().unwrap());
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in progress.lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Watched {
            child,
            lines,
            seen: String::new(),
        }
    }

    /// The next line of standard output.
    fn stdout_line(&mut self) -> String {
        let mut line = String::new();
        let mut byte = [0u8];
        let stdout = self.child.stdout.as_mut().unwrap();
        while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0] as char);
        }
        line
    }

    /// Waits for a line containing `needle`; false if the process ended first.
    fn wait_for(&mut self, needle: &str) -> bool {
        let deadline = Instant::now() + BOUND;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(needle) {
                        return true;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
            }
        }
        panic!("no {needle:?} within {BOUND:?}:\n{}", self.seen);
    }

    /// Waits for the end, within [`BOUND`] of `started`: whether it succeeded, and its output.
    fn finish(mut self, started: Instant) -> (bool, String) {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                let mut out = String::new();
                self.child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                return (status.success(), format!("{out}\n{}", self.seen));
            }
            if started.elapsed() > BOUND {
                let _ = self.child.kill();
                panic!("the run hung: not ended after {BOUND:?}:\n{}", self.seen);
            }
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push_str(&line);
                self.seen.push('\n');
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn submit(cluster: &Cluster, warehouse: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .args(["submit", &example(), "--scheduler", &cluster.address])
        .args(["--warehouse", warehouse.to_str().unwrap()]);
    command
}

/// A failed run must say why in sentences, not in Ballista's nested debug text.
fn assert_clear_failure(output: &str) {
    for noise in [
        "DataFusionError(",
        "Shared(",
        "External(",
        "[strata-task-error",
    ] {
        assert!(
            !output.contains(noise),
            "an unclear error ({noise}):\n{output}"
        );
    }
}

/// Ends the run started at `started`, then checks the tables against the embedded
/// run's; after a clear failure, a re-run on what is left of the cluster must get there.
fn settle(
    run: Watched,
    started: Instant,
    cluster: &Cluster,
    warehouse: &Path,
    embedded: &Path,
    what: &str,
) {
    let (succeeded, output) = run.finish(started);
    if !succeeded {
        assert_clear_failure(&output);
        let again = cluster.submit(&example(), warehouse);
        assert!(
            again.status.success(),
            "after a kill during {what} failed with\n{output}\nthe re-run failed too:\n{}\n{}",
            stdout(&again),
            stderr(&again)
        );
    }
    assert_same_tables(embedded, warehouse);
}

#[test]
fn an_executor_killed_at_any_moment_of_a_run_never_hangs_it_or_changes_its_tables() {
    let (embedded, landing) = embedded_and_copy("chaos", SCALE);
    for (index, moment) in MOMENTS.iter().enumerate() {
        let warehouse = workdir(&format!("chaos-{index}"));
        copy_dir(&landing, &warehouse);
        let mut cluster = Cluster::start(&format!("chaos-{index}"), 2);
        let started = Instant::now();
        let mut run = Watched::start(&mut submit(&cluster, &warehouse));
        assert!(
            run.wait_for(moment.after_line),
            "the run ended before {}:\n{}",
            moment.what,
            run.seen
        );
        std::thread::sleep(moment.then);
        cluster.kill_executor(0);
        eprintln!("chaos: executor killed during {}", moment.what);
        settle(run, started, &cluster, &warehouse, &embedded, moment.what);
    }
}

#[test]
fn an_executor_killed_before_a_commit_and_replaced_changes_nothing() {
    let (embedded, landing) = embedded_and_copy("chaos-commit", SCALE);
    let warehouse = workdir("chaos-commit-run");
    copy_dir(&landing, &warehouse);
    let mut cluster = Cluster::start("chaos-commit", 2);
    // `run --scheduler` orchestrates in this process, so the pause is here to see.
    let started = Instant::now();
    let mut run = Watched::start(
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["run", &example(), "--scheduler", &cluster.address])
            .args(["--warehouse", warehouse.to_str().unwrap()])
            .env(
                strata_engine::faults::PAUSE_BEFORE_COMMIT,
                "enriched.candidates",
            )
            .env(strata_engine::faults::PAUSE_SECONDS, "3"),
    );
    assert!(
        run.wait_for(strata_engine::faults::PAUSED),
        "no pause:\n{}",
        run.seen
    );
    cluster.kill_executor(0);
    cluster.add_executor("chaos-commit-new");
    settle(run, started, &cluster, &warehouse, &embedded, "a commit");
}

#[test]
fn a_scheduler_restarted_mid_run_reports_it_interrupted_and_a_re_run_finishes() {
    let (embedded, landing) = embedded_and_copy("chaos-restart", SCALE);
    let warehouse = workdir("chaos-restart-run");
    copy_dir(&landing, &warehouse);
    let mut cluster = Cluster::start("chaos-restart", 2);
    let started = Instant::now();
    let mut run = Watched::start(&mut submit(&cluster, &warehouse));
    let run_id = run.stdout_line();
    let run_id = run_id
        .strip_prefix("submitted run ")
        .unwrap_or_else(|| panic!("{run_id:?}"))
        .trim()
        .to_owned();
    assert!(run.wait_for("building enriched."), "{}", run.seen);
    cluster.restart_scheduler();
    let (succeeded, output) = run.finish(started);
    assert!(!succeeded, "{output}");
    assert!(
        output.contains("may still be running"),
        "the client should say it lost the scheduler:\n{output}"
    );

    // The history is in the warehouse: the new scheduler shows the run as interrupted.
    let runs = strata(&[
        "runs",
        "--scheduler",
        &cluster.address,
        "--warehouse",
        warehouse.to_str().unwrap(),
    ]);
    assert!(runs.status.success(), "{}", stderr(&runs));
    let listed = stdout(&runs);
    let line = listed
        .lines()
        .find(|line| line.starts_with(&run_id))
        .unwrap_or_else(|| panic!("{run_id} is missing:\n{listed}"));
    assert!(line.contains("interrupted"), "{listed}");

    // Whatever it committed is whole: every table there is the embedded run's table.
    crate::cluster::assert_tables_among(&embedded, &warehouse);

    let again = cluster.submit(&example(), &warehouse);
    assert!(
        again.status.success(),
        "{}\n{}",
        stdout(&again),
        stderr(&again)
    );
    assert_same_tables(&embedded, &warehouse);
}
