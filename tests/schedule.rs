//! Schedules run by a real scheduler and executor: a cron schedule and a trigger on new
//! landing files both fire; a failing run is retried with backoff and a webhook (a local
//! HTTP receiver) hears of the failure and of the recovery; a paused schedule stops;
//! after a scheduler restart the schedules and their history are still there and fire
//! again. And `strata run --schedule` does the same on one machine.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{Cluster, contents};
use crate::support::{Receiver, stderr, stdout, strata, workdir};

/// Raw ticks, from one CSV a tick.
const TICKS: &str = "CREATE EXTERNAL TABLE landing.ticks (n INT) STORED AS CSV \
    LOCATION 'landing/ticks/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.ticks AS SELECT * FROM landing.ticks;";

/// Orders, where one bad row fails the build (so the run fails until the file goes).
const ORDERS: &str = "CREATE EXTERNAL TABLE landing.orders (id INT, amount INT) STORED AS CSV \
    LOCATION 'landing/orders/' OPTIONS ('format.has_header' 'true', 'bad_rows' 'fail_run');
CREATE TABLE raw.orders AS SELECT * FROM landing.orders;
CREATE TABLE enriched.order_totals AS SELECT count(*) AS orders, sum(amount) AS amount FROM raw.orders;";

/// Long enough for a debug build's run on a one-executor cluster, with margin.
const PATIENCE: Duration = Duration::from_secs(120);

pub(crate) fn state(warehouse: &Path, schedule: &str) -> Value {
    let path = warehouse.join(format!("_strata/schedule_state/{schedule}.json"));
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Err(_) => serde_json::json!({ "firings": [] }),
    }
}

/// The schedule's firings: `(cause, attempt, outcome)`.
pub(crate) fn firings(warehouse: &Path, schedule: &str) -> Vec<(String, u64, String)> {
    state(warehouse, schedule)["firings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|firing| {
            (
                firing["cause"].as_str().unwrap().to_owned(),
                firing["attempt"].as_u64().unwrap(),
                firing["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub(crate) fn succeeded(warehouse: &Path, schedule: &str, cause: &str) -> usize {
    firings(warehouse, schedule)
        .iter()
        .filter(|(c, _, outcome)| c == cause && outcome == "succeeded")
        .count()
}

fn write(path: PathBuf, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Stops a process as a service manager does (SIGTERM) and waits for it.
pub(crate) fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    child.wait().unwrap()
}

pub(crate) fn schedule(args: &[&str]) -> String {
    let output = strata(&[&["schedule"], args].concat());
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
}

#[test]
fn cron_and_file_triggers_fire_retry_tell_a_webhook_and_survive_a_restart() {
    let warehouse = workdir("schedule-cluster");
    let pipelines = workdir("schedule-cluster-pipelines");
    write(pipelines.join("ticks.sql"), TICKS);
    write(pipelines.join("orders.sql"), ORDERS);
    write(warehouse.join("landing/ticks/t1.csv"), "n\n1\n");
    write(warehouse.join("landing/orders/o1.csv"), "id,amount\n1,10\n");
    let wh = warehouse.to_str().unwrap();
    let mut cluster = Cluster::start_with("schedule", 1, &["--warehouse", wh]);
    let hook = Receiver::start(PATIENCE);

    let said = schedule(&[
        "add",
        "ticks",
        pipelines.join("ticks.sql").to_str().unwrap(),
        "--warehouse",
        wh,
        "--cron",
        "*/2 * * * * *",
    ]);
    assert!(
        said.contains("registered ticks (cron */2 * * * * *)"),
        "{said}"
    );
    schedule(&[
        "add",
        "orders",
        pipelines.join("orders.sql").to_str().unwrap(),
        "--warehouse",
        wh,
        "--on-new-files",
        "--retries",
        "1",
        "--retry-backoff",
        "1s",
        "--webhook",
        &hook.url,
    ]);

    wait_until("the cron schedule fired twice", || {
        succeeded(&warehouse, "ticks", "cron") >= 2
    });
    wait_until("the file trigger fired", || {
        succeeded(&warehouse, "orders", "new_files") >= 1
    });

    // A delivery with a bad row fails the run, its retry fails too, and the hook hears.
    write(
        warehouse.join("landing/orders/o2.csv"),
        "id,amount\n2,lots\n",
    );
    let failed = hook.next();
    assert_eq!(failed["event"], "failed", "{failed}");
    assert_eq!(failed["schedule"], "orders");
    assert_eq!(failed["attempts"], 2);
    let errors = failed["errors"].to_string();
    assert!(errors.contains("raw.orders"), "{failed}");
    let report = PathBuf::from(failed["report"].as_str().unwrap());
    assert!(report.exists(), "{failed}");
    let tried = firings(&warehouse, "orders");
    assert!(
        tried.contains(&("new_files".into(), 1, "failed".into()))
            && tried.contains(&("retry".into(), 2, "failed".into())),
        "{tried:?}"
    );

    // The bad file goes and a good one comes: the next run recovers, and the hook hears.
    std::fs::remove_file(warehouse.join("landing/orders/o2.csv")).unwrap();
    write(warehouse.join("landing/orders/o3.csv"), "id,amount\n3,30\n");
    let recovered = hook.next();
    assert_eq!(recovered["event"], "recovered", "{recovered}");
    assert_eq!(recovered["errors"], serde_json::json!([]));

    // A paused schedule starts nothing.
    assert!(schedule(&["pause", "ticks", "--warehouse", wh]).contains("paused ticks"));
    std::thread::sleep(Duration::from_secs(3));
    let before = firings(&warehouse, "ticks").len();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        firings(&warehouse, "ticks").len(),
        before,
        "a paused schedule fired"
    );
    let listed = schedule(&["list", "--warehouse", wh]);
    let line = |name: &str| {
        listed
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("{name} is not listed:\n{listed}"))
            .to_owned()
    };
    assert!(line("ticks").contains("paused"), "{listed}");
    assert!(line("orders").contains("active"), "{listed}");
    assert!(line("orders").contains("succeeded"), "{listed}");

    // After a restart the schedules, their history and the run reports are all there,
    // and the new scheduler runs them.
    let history = firings(&warehouse, "orders").len();
    cluster.restart_scheduler();
    let relisted = schedule(&["list", "--warehouse", wh]);
    let orders_line = relisted.lines().find(|line| line.starts_with("orders"));
    assert_eq!(orders_line, Some(line("orders").as_str()), "{relisted}");
    assert!(
        relisted
            .lines()
            .any(|l| l.starts_with("ticks") && l.contains("paused")),
        "{relisted}"
    );
    let runs = strata(&["runs", "--scheduler", &cluster.address, "--warehouse", wh]);
    assert!(runs.status.success(), "{}", stderr(&runs));
    let first = state(&warehouse, "orders")["firings"][0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(stdout(&runs).contains(&first), "{}", stdout(&runs));
    write(warehouse.join("landing/orders/o4.csv"), "id,amount\n4,40\n");
    wait_until("the restarted scheduler fired the file trigger", || {
        let now = firings(&warehouse, "orders");
        now.len() > history && now.last().unwrap().2 == "succeeded"
    });
    // o1, o3 and o4: the rejected delivery left nothing behind.
    let tables = contents(&warehouse);
    let (_, totals) = tables
        .iter()
        .find(|(name, _)| name == "enriched.order_totals")
        .expect("enriched.order_totals is built");
    assert!(totals.contains("| 3      | 80     |"), "{totals}");

    assert!(schedule(&["remove", "ticks", "--warehouse", wh]).contains("removed ticks"));
    let gone = strata(&["schedule", "pause", "ticks", "--warehouse", wh]);
    assert!(!gone.status.success());
    assert!(
        stderr(&gone).contains("no schedule \"ticks\""),
        "{}",
        stderr(&gone)
    );
}

#[test]
fn run_schedule_runs_a_declared_file_on_one_machine_until_stopped() {
    let warehouse = workdir("schedule-embedded");
    let dir = workdir("schedule-embedded-file");
    write(dir.join("pipeline/ticks.sql"), TICKS);
    write(warehouse.join("landing/ticks/t1.csv"), "n\n1\n");
    write(
        dir.join("schedules.toml"),
        "[[schedule]]\nname = \"ticks\"\npipeline = [\"pipeline\"]\ncron = \"* * * * * *\"\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "run",
            "--schedule",
            "--warehouse",
            warehouse.to_str().unwrap(),
        ])
        .arg("--schedules")
        .arg(dir.join("schedules.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_until("the embedded schedule fired twice", || {
        succeeded(&warehouse, "ticks", "cron") >= 2
    });
    let status = terminate(&mut child);
    let mut said = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert!(status.success(), "{said}");
    assert!(said.contains("registered ticks"), "{said}");
    assert!(said.contains("stopped"), "{said}");

    // Bad input: a broken file, a pipeline given too, an unknown schedule.
    write(dir.join("broken.toml"), "[[schedule]]\nname = \"x\"\n");
    let broken = strata(&[
        "run",
        "--schedule",
        "--warehouse",
        warehouse.to_str().unwrap(),
        "--schedules",
        dir.join("broken.toml").to_str().unwrap(),
    ]);
    assert!(!broken.status.success());
    assert!(
        stderr(&broken).contains("broken.toml"),
        "{}",
        stderr(&broken)
    );
    let both = strata(&["run", "--schedule", "p.sql", "--warehouse", "w"]);
    assert!(!both.status.success());
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
    let bad_cron = strata(&[
        "schedule",
        "add",
        "x",
        dir.join("pipeline").to_str().unwrap(),
        "--warehouse",
        warehouse.to_str().unwrap(),
        "--cron",
        "* * * 13 *",
    ]);
    assert!(!bad_cron.status.success());
    assert!(
        stderr(&bad_cron).contains("month: 13 is outside 1-12"),
        "{}",
        stderr(&bad_cron)
    );
    let no_trigger = strata(&["schedule", "add", "x", "p.sql", "--warehouse", "w"]);
    assert!(!no_trigger.status.success());
    assert!(
        stderr(&no_trigger).contains("--cron"),
        "{}",
        stderr(&no_trigger)
    );
}

#[test]
fn of_two_orchestrators_on_one_warehouse_one_fires_and_the_other_takes_over_when_it_dies() {
    let warehouse = workdir("schedule-lease");
    let pipelines = workdir("schedule-lease-pipelines");
    write(pipelines.join("ticks.sql"), TICKS);
    write(warehouse.join("landing/ticks/t1.csv"), "n\n1\n");
    let wh = warehouse.to_str().unwrap();
    schedule(&[
        "add",
        "ticks",
        pipelines.join("ticks.sql").to_str().unwrap(),
        "--warehouse",
        wh,
        "--cron",
        "*/2 * * * * *",
    ]);
    let orchestrator = |name: &str| {
        let log = std::fs::File::create(pipelines.join(format!("{name}.log"))).unwrap();
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["run", "--schedule", "--warehouse", wh])
            .env("STRATA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let log = |name: &str| std::fs::read_to_string(pipelines.join(format!("{name}.log"))).unwrap();
    let mut first = orchestrator("first");
    wait_until("the first orchestrator fired", || {
        succeeded(&warehouse, "ticks", "cron") >= 1
    });
    let mut second = orchestrator("second");
    wait_until("the second orchestrator stands by", || {
        log("second").contains("standing by")
    });
    let before = succeeded(&warehouse, "ticks", "cron");
    wait_until("both ran side by side for a few firings", || {
        succeeded(&warehouse, "ticks", "cron") >= before + 3
    });
    first.kill().unwrap();
    first.wait().unwrap();
    let at_kill = succeeded(&warehouse, "ticks", "cron");
    wait_until("the standby took over and fired", || {
        succeeded(&warehouse, "ticks", "cron") >= at_kill + 3
    });
    assert!(log("second").contains("took over"), "{}", log("second"));
    assert!(terminate(&mut second).success());

    // Every cron time ran once: no two runs of the schedule started in one 2 s slot.
    let mut slots = std::collections::BTreeMap::<u64, Vec<String>>::new();
    for entry in std::fs::read_dir(warehouse.join("_strata/runs")).unwrap() {
        let report: Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        let run_id = report["run_id"].as_str().unwrap().to_owned();
        if run_id.ends_with("-ticks") {
            let started = report["started_at_ms"].as_u64().unwrap();
            slots.entry(started / 2000).or_default().push(run_id);
        }
    }
    assert!(slots.len() >= 6, "{slots:?}");
    let twice: Vec<_> = slots.values().filter(|runs| runs.len() > 1).collect();
    assert!(twice.is_empty(), "cron times fired twice: {twice:?}");
}
