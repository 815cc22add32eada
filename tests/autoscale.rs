//! The autoscaler on its `process` backend: real executor processes come when the
//! example's tasks queue, then drain and go, and the tables equal the embedded run's.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, assert_same_tables, embedded_and_copy, free_port};
use crate::support::{example, stderr, stdout, strata};

/// The scheduler's metrics, by series (`name{labels}`).
fn metrics(port: u16) -> BTreeMap<String, f64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("metrics port answers");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// One sample of the cluster, as the metrics tell it.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at: f64,
    pending: f64,
    running: f64,
    active: f64,
    draining: f64,
    adds: f64,
    drains: f64,
    stops: f64,
}

fn sample(port: u16, began: Instant) -> Sample {
    let m = metrics(port);
    let get = |series: &str| m.get(series).copied().unwrap_or(0.0);
    Sample {
        at: began.elapsed().as_secs_f64(),
        pending: get("strata_pending_tasks"),
        running: get("strata_running_tasks"),
        active: get("strata_executors{state=\"active\"}"),
        draining: get("strata_executors{state=\"draining\"}"),
        adds: get("strata_autoscaler_decisions_total{decision=\"add\"}"),
        drains: get("strata_autoscaler_decisions_total{decision=\"drain\"}"),
        stops: get("strata_autoscaler_decisions_total{decision=\"stop\"}"),
    }
}

#[test]
fn the_process_autoscaler_adds_executors_for_a_backlog_and_drains_back_to_one() {
    let (embedded, distributed) = embedded_and_copy("autoscale", "0.4");
    let metrics_port = free_port().to_string();
    let cluster = Cluster::start_with(
        "autoscale",
        0,
        &[
            "--metrics-port",
            &metrics_port,
            "--autoscale",
            "process",
            "--max-executors",
            "3",
            "--executor-slots",
            "2",
            "--idle-timeout",
            "3",
            "--cooldown",
            "2",
        ],
    );
    let port: u16 = metrics_port.parse().unwrap();
    let began = Instant::now();
    // The minimum of one executor comes first, without any work.
    loop {
        let now = sample(port, began);
        if now.active == 1.0 {
            break;
        }
        assert!(
            now.at < 60.0,
            "the first executor never registered: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut submitted = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["submit", &example(), "--scheduler", &cluster.address])
        .args(["--warehouse", distributed.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut timeline: Vec<Sample> = Vec::new();
    let mut outcome = None;
    loop {
        let now = sample(port, began);
        timeline.push(now);
        if outcome.is_none() {
            outcome = submitted.try_wait().unwrap();
        }
        let settled = now.active == 1.0 && now.draining == 0.0 && now.stops >= 2.0;
        if outcome.is_some() && settled {
            break;
        }
        assert!(
            now.at < 300.0,
            "the cluster did not settle back to one executor: {:?}",
            &timeline[timeline.len().saturating_sub(10)..]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = submitted.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );

    // A backlog: more tasks than one executor's two slots, and some waiting.
    let backlog = timeline
        .iter()
        .find(|s| s.pending > 0.0 && s.pending + s.running > 2.0 * s.active)
        .expect("the work made a backlog");
    let first = |what: &str, found: Option<&Sample>| {
        let found = found.unwrap_or_else(|| panic!("never {what}: {timeline:?}"));
        println!(
            "{what}: {:.1} s after the backlog began ({:.1} s into the run)",
            found.at - backlog.at,
            found.at
        );
        found.at - backlog.at
    };
    let added = first("decided to add", timeline.iter().find(|s| s.adds >= 2.0));
    let three = first(
        "3 executors active",
        timeline.iter().find(|s| s.active >= 3.0),
    );
    first("first drain", timeline.iter().find(|s| s.drains >= 1.0));
    first(
        "first drained executor stopped",
        timeline.iter().find(|s| s.stops >= 1.0),
    );
    first("second drain", timeline.iter().find(|s| s.drains >= 2.0));
    first(
        "back to 1 executor",
        timeline.iter().rev().find(|s| s.active > 1.0),
    );
    // A bound on liveness, not a speed goal: the policy waits 2 s (scale_up_after) and
    // ticks every 0.5 s, and this machine runs other cluster tests beside this one, so
    // the bound leaves room for a loaded machine. The measured times are in BENCHMARKS.md.
    let bound = 10.0;
    assert!(added <= bound, "decided {added:.1} s after the backlog");
    assert!(
        three <= bound,
        "executors were added {three:.1} s after the backlog"
    );
    assert!(
        timeline.iter().all(|s| s.active <= 3.0),
        "above the maximum"
    );

    // Scaling down drained one at a time and stopped each once drained. The backlog can
    // grow after the first decision (the first stage has few tasks, the next many), so
    // reaching three executors takes one or two decisions after the minimum's.
    let last = sample(port, began);
    assert_eq!((last.drains, last.stops), (2.0, 2.0), "{last:?}");
    assert!((2.0..=3.0).contains(&last.adds), "{last:?}");
    assert!(timeline.iter().all(|s| s.draining <= 1.0));
    let m = metrics(port);
    assert_eq!(
        m.get("strata_runs_total{state=\"succeeded\"}"),
        Some(&1.0),
        "{m:?}"
    );
    assert_eq!(m.get("strata_runs_total{state=\"failed\"}"), None, "{m:?}");
    assert!(m["strata_table_rows_written_total{layer=\"ranked\"}"] > 0.0);
    assert!(m["strata_run_duration_seconds_count"] == 1.0);

    assert_same_tables(&embedded, &distributed);
}

#[test]
fn autoscaler_settings_that_cannot_work_are_refused_before_serving() {
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--autoscale",
                "process",
                "--min-executors",
                "3",
                "--max-executors",
                "2",
            ],
            "--autoscale: the minimum (3) is above the maximum (2)",
        ),
        (
            &["--autoscale", "process", "--scale-up-after=-1"],
            "--scale-up-after must be a number of seconds, not -1",
        ),
        (
            &["--autoscale", "process", "--executor-slots", "0"],
            "--executor-slots must be at least 1",
        ),
        (
            &["--autoscale", "somewhere"],
            "invalid value 'somewhere' for '--autoscale <AUTOSCALE>'",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["scheduler", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let output = strata(&all);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn the_kubernetes_backend_outside_a_cluster_says_it_cannot_reach_the_api() {
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "scheduler",
            "--listen",
            "127.0.0.1:0",
            "--autoscale",
            "kubernetes",
        ])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--autoscale kubernetes: cannot reach the Kubernetes API"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn strata_drain_marks_an_idle_executor_drained_and_knows_unknown_ones() {
    let cluster = Cluster::start("drain", 1);
    let drain = |executor: &str| {
        strata(&[
            "drain",
            "--scheduler",
            &cluster.address,
            "--executor",
            executor,
            "--timeout",
            "5",
        ])
    };
    let drained = drain("127.0.0.1");
    assert!(drained.status.success(), "{}", stderr(&drained));
    assert_eq!(
        stdout(&drained),
        "executor 127.0.0.1 is drained; it can stop\n"
    );
    let unknown = drain("10.255.0.1");
    assert!(unknown.status.success(), "{}", stderr(&unknown));
    assert_eq!(
        stdout(&unknown),
        "no executor 10.255.0.1 is registered; nothing to drain\n"
    );
    let empty = drain("");
    assert!(!empty.status.success());
    assert!(
        stderr(&empty).contains("name the executor to drain by its host or host:port"),
        "{}",
        stderr(&empty)
    );
}

#[test]
fn a_metrics_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = strata(&[
        "scheduler",
        "--listen",
        "127.0.0.1:0",
        "--metrics-port",
        &port,
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        stderr(&output)
    );
}
