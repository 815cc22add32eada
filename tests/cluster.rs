//! A real scheduler and real executors on 127.0.0.1: the example submitted to them
//! publishes what the embedded run publishes, survives a killed executor, and a
//! cancelled run leaves nothing behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use strata_storage::Warehouse;
use strata_storage::catalog::{open, published_tables};
use strata_storage::delta_publish::DeltaReader;

use crate::support::{example, stderr, stdout, strata, workdir};

/// Starts `strata scheduler` on `listen`, with its standard output to read.
fn start_scheduler(
    listen: &str,
    scheduler_args: &[&str],
    env: &[(String, String)],
) -> (Child, BufReader<ChildStdout>) {
    let mut scheduler = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["scheduler", "--listen", listen, "--executor-timeout", "5"])
        .args(scheduler_args)
        .envs(env.iter().cloned())
        .env_remove("STRATA_FLIGHT_USERS")
        .env_remove("STRATA_FLIGHT_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("strata scheduler starts");
    let out = BufReader::new(scheduler.stdout.take().unwrap());
    (scheduler, out)
}

/// A scheduler and executors, killed when dropped.
pub(crate) struct Cluster {
    scheduler: Child,
    scheduler_out: BufReader<ChildStdout>,
    executors: Vec<Child>,
    work_dirs: Vec<PathBuf>,
    /// A directory new executors do not see: a private mount covers it.
    hidden: Option<PathBuf>,
    /// Environment of every process (a store's endpoint and credentials).
    env: Vec<(String, String)>,
    /// What `strata scheduler` was started with, for a restart.
    scheduler_args: Vec<String>,
    pub address: String,
}

impl Cluster {
    /// Starts a scheduler on a free port and `executors` executors, and waits until all are ready.
    pub(crate) fn start(name: &str, executors: usize) -> Cluster {
        Self::start_with(name, executors, &[])
    }

    /// Like [`Cluster::start`], with more arguments for `strata scheduler`.
    pub(crate) fn start_with(name: &str, executors: usize, scheduler_args: &[&str]) -> Cluster {
        Self::start_in(name, executors, scheduler_args, &[])
    }

    /// Like [`Cluster::start_with`], every process with `env` set.
    pub(crate) fn start_in(
        name: &str,
        executors: usize,
        scheduler_args: &[&str],
        env: &[(String, String)],
    ) -> Cluster {
        let (scheduler, mut scheduler_out) = start_scheduler("127.0.0.1:0", scheduler_args, env);
        let mut line = String::new();
        scheduler_out.read_line(&mut line).unwrap();
        assert!(line.contains("listening on"), "{line:?}");
        let address = line.trim().rsplit(' ').next().unwrap().to_owned();
        let mut cluster = Cluster {
            scheduler,
            scheduler_out,
            executors: Vec::new(),
            work_dirs: Vec::new(),
            hidden: None,
            env: env.to_vec(),
            scheduler_args: scheduler_args.iter().map(|arg| arg.to_string()).collect(),
            address,
        };
        for index in 0..executors {
            cluster.add_executor(&format!("{name}-{index}"));
        }
        cluster
    }

    /// Starts one more executor and waits until its heartbeat reached the scheduler.
    pub(crate) fn add_executor(&mut self, name: &str) {
        self.add_executor_with(name, &[]);
    }

    /// [`Cluster::add_executor`] with more arguments (its ports, say). An executor told
    /// to pick its own ports can lose one to another process between picking and
    /// binding it (Ballista then logs that its Flight server did not start, and the
    /// executor never becomes ready): such an executor is started once more.
    pub(crate) fn add_executor_with(&mut self, name: &str, args: &[&str]) {
        let picks_its_ports = !args.iter().any(|arg| arg.ends_with("-port"));
        if !self.start_executor(
            name,
            args,
            Duration::from_secs(if picks_its_ports { 30 } else { 60 }),
        ) {
            assert!(picks_its_ports, "executor {name} never became ready");
            let mut lost = self.executors.pop().expect("the executor just started");
            let _ = lost.kill();
            let _ = lost.wait();
            self.work_dirs.pop();
            assert!(
                self.start_executor(name, args, Duration::from_secs(60)),
                "executor {name} never became ready"
            );
        }
    }

    /// Starts an executor; whether it became ready within `patience`.
    fn start_executor(&mut self, name: &str, args: &[&str], patience: Duration) -> bool {
        let health_port = free_port();
        let work_dir = workdir(&format!("executor-{name}"));
        let mut command = match &self.hidden {
            // A mount namespace of its own, with an empty file system over `hidden`.
            Some(hidden) => {
                let mut command = Command::new("unshare");
                command.args([
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    "mount -t tmpfs strata-hidden \"$0\" && exec \"$@\"",
                    hidden.to_str().unwrap(),
                    env!("CARGO_BIN_EXE_strata"),
                ]);
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_strata")),
        };
        let child = command
            .args([
                "executor",
                "--scheduler",
                &self.address,
                "--concurrent-tasks",
                "2",
                "--heartbeat-interval",
                "1",
            ])
            .args(["--health-port", &health_port.to_string()])
            .args(["--work-dir", work_dir.to_str().unwrap()])
            .args(args)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("strata executor starts");
        self.executors.push(child);
        self.work_dirs.push(work_dir);
        let deadline = Instant::now() + patience;
        while probe(health_port, "/readyz") != Some(200) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(probe(health_port, "/healthz"), Some(200));
        true
    }

    /// Runs `strata submit` of `pipeline` into `warehouse` to its end.
    pub(crate) fn submit(&self, pipeline: &str, warehouse: &Path) -> std::process::Output {
        strata(&[
            "submit",
            pipeline,
            "--scheduler",
            &self.address,
            "--warehouse",
            warehouse.to_str().unwrap(),
        ])
    }

    /// The scheduler's next line of output.
    /// The address of the scheduler's Flight SQL service, from the line that announces
    /// it, which must say queries run on the cluster.
    pub(crate) fn flight_sql_uri(&mut self) -> String {
        let line = self.scheduler_line();
        assert!(line.contains("queries run on the cluster"), "{line:?}");
        line.split_whitespace()
            .find(|word| word.starts_with("grpc://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned()
    }

    pub(crate) fn scheduler_line(&mut self) -> String {
        let mut line = String::new();
        self.scheduler_out.read_line(&mut line).unwrap();
        line
    }

    /// The Ballista jobs whose shuffle or result files are in an executor's work directory.
    pub(crate) fn executor_jobs(&self) -> Vec<String> {
        let mut jobs: Vec<String> = self
            .work_dirs
            .iter()
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flatten()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_dir())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            // DataFusion's spill directories sit beside the jobs.
            .filter(|name| !name.starts_with("datafusion-"))
            .collect();
        jobs.sort();
        jobs.dedup();
        jobs
    }

    pub(crate) fn executor_pids(&self) -> Vec<u32> {
        self.executors.iter().map(Child::id).collect()
    }

    /// SIGKILLs the scheduler and starts another on the same port; the executors
    /// register again with their next heartbeat.
    pub(crate) fn restart_scheduler(&mut self) {
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
        let args: Vec<&str> = self.scheduler_args.iter().map(String::as_str).collect();
        let (mut scheduler, scheduler_out) = start_scheduler(&self.address, &args, &self.env);
        let started = Instant::now();
        while scheduler.try_wait().unwrap().is_none()
            && started.elapsed() < Duration::from_secs(30)
            && TcpStream::connect(&self.address).is_err()
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.scheduler = scheduler;
        self.scheduler_out = scheduler_out;
    }

    /// SIGKILLs one executor, as a crashed machine would stop.
    pub(crate) fn kill_executor(&mut self, index: usize) {
        self.executors[index].kill().unwrap();
        self.executors[index].wait().unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.executors.iter_mut().chain([&mut self.scheduler]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The HTTP status of a GET, or None if nothing answers.
fn probe(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Generated landing data in a fresh warehouse.
pub(crate) fn generated(name: &str, scale: &str) -> PathBuf {
    let dir = workdir(name);
    let output = strata(&["gen", "--scale", scale, "--out", dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    dir
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A warehouse built by the embedded engine, and an untouched copy of its landing data.
pub(crate) fn embedded_and_copy(name: &str, scale: &str) -> (PathBuf, PathBuf) {
    let embedded = generated(&format!("{name}-embedded"), scale);
    let distributed = workdir(&format!("{name}-distributed"));
    copy_dir(&embedded, &distributed);
    let run = strata(&["run", &example(), "--warehouse", embedded.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    (embedded, distributed)
}

/// Every published table of a warehouse, each sorted on all its columns, as text.
pub(crate) fn contents(warehouse: &Path) -> Vec<(String, String)> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut tables = Vec::new();
        for table in published_tables(&Warehouse::local(warehouse))
            .await
            .unwrap()
        {
            let ctx = SessionContext::new();
            let provider = open(&table, None, &ctx.state(), DeltaReader::Native, None)
                .await
                .unwrap();
            ctx.register_table("t", Arc::clone(&provider)).unwrap();
            // Quarantined and rejected rows name the run that set them aside, and
            // rejects their landing file, whose warehouse differs by design.
            let schema = provider.schema();
            let fields: Vec<_> = schema
                .fields()
                .iter()
                .filter(|field| !["_run_id", "run_id"].contains(&field.name().as_str()))
                .collect();
            let quoted = |name: &String| format!("\"{name}\"");
            let all: Vec<String> = fields
                .iter()
                .map(|field| match field.name().as_str() {
                    "landing_file" => {
                        "regexp_replace(landing_file, '^.*/', '') AS landing_file".to_owned()
                    }
                    name => quoted(&name.to_owned()),
                })
                .collect();
            let columns: Vec<String> = fields
                .iter()
                .filter(|field| !field.data_type().is_nested())
                .map(|field| quoted(field.name()))
                .collect();
            let sql = format!(
                "SELECT {} FROM t ORDER BY {}",
                all.join(", "),
                columns.join(", ")
            );
            let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
            let name = table.name.to_string();
            tables.push((name, pretty_format_batches(&batches).unwrap().to_string()));
        }
        tables.sort();
        tables
    })
}

pub(crate) fn assert_same_tables(embedded: &Path, distributed: &Path) {
    let expected = contents(embedded);
    let found = contents(distributed);
    assert!(
        expected.len() >= 8,
        "{:?}",
        expected.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    assert_eq!(
        expected.iter().map(|t| &t.0).collect::<Vec<_>>(),
        found.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    for ((name, rows), (_, distributed_rows)) in expected.iter().zip(&found) {
        assert!(
            rows == distributed_rows,
            "{name} differs between the embedded and the cluster run ({} and {} lines); \
             only embedded:\n{}\nonly cluster:\n{}",
            rows.lines().count(),
            distributed_rows.lines().count(),
            lines_missing_from(rows, distributed_rows),
            lines_missing_from(distributed_rows, rows),
        );
    }
}

/// Up to ten lines of `a` that `b` lacks, to show how two tables differ.
fn lines_missing_from(a: &str, b: &str) -> String {
    let b: std::collections::HashSet<&str> = b.lines().collect();
    let missing: Vec<&str> = a.lines().filter(|line| !b.contains(line)).collect();
    let shown: Vec<&str> = missing.iter().take(10).copied().collect();
    format!("{} lines, first: \n{}", missing.len(), shown.join("\n"))
}

/// Every table a warehouse has is the table the embedded run built (a run that stopped
/// part way has fewer, each whole).
pub(crate) fn assert_tables_among(embedded: &Path, partial: &Path) {
    let expected = contents(embedded);
    for (name, rows) in contents(partial) {
        let built = expected
            .iter()
            .find(|(table, _)| *table == name)
            .unwrap_or_else(|| panic!("{name} is not a table of the embedded run"));
        assert!(built.1 == rows, "{name} differs from the embedded run's");
    }
}

/// The newest run report of a warehouse, as JSON.
fn last_report(warehouse: &Path) -> serde_json::Value {
    let runs = warehouse.join("_strata").join("runs");
    let mut reports: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap_or_else(|error| panic!("{}: {error}", runs.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    reports.sort();
    serde_json::from_str(&std::fs::read_to_string(reports.last().unwrap()).unwrap()).unwrap()
}

fn table_report<'a>(report: &'a serde_json::Value, table: &str) -> &'a serde_json::Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["table"] == table)
        .unwrap_or_else(|| panic!("no {table} in {report}"))
}

/// Starts `strata submit` and returns it with its progress stream.
fn submit(cluster: &Cluster, warehouse: &Path, args: &[&str]) -> (Child, BufReader<ChildStderr>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["submit", &example(), "--scheduler", &cluster.address])
        .args(["--warehouse", warehouse.to_str().unwrap()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata submit starts");
    let progress = BufReader::new(child.stderr.take().unwrap());
    (child, progress)
}

/// Reads progress lines until one contains `needle`; returns every line read.
pub(crate) fn wait_for(progress: &mut BufReader<ChildStderr>, needle: &str) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let read = progress.read_line(&mut line).unwrap();
        assert!(read > 0, "the run ended before {needle:?}:\n{seen}");
        seen.push_str(&line);
        if line.contains(needle) {
            return seen;
        }
    }
}

#[test]
fn the_example_submitted_to_a_cluster_publishes_what_the_embedded_run_publishes() {
    let (embedded, distributed) = embedded_and_copy("cluster", "0.01");

    let cluster = Cluster::start("example", 2);
    let submitted = strata(&[
        "submit",
        &example(),
        "--scheduler",
        &cluster.address,
        "--warehouse",
        distributed.to_str().unwrap(),
    ]);
    assert!(
        submitted.status.success(),
        "{}\n{}",
        stdout(&submitted),
        stderr(&submitted)
    );
    assert!(
        stdout(&submitted).contains("submitted run run-"),
        "{}",
        stdout(&submitted)
    );
    assert!(
        stdout(&submitted).contains("enriched.events"),
        "{}",
        stdout(&submitted)
    );
    assert!(stderr(&submitted).contains("building ranked.candidates_per_job"));
    assert_same_tables(&embedded, &distributed);

    // The work ran in the executors, and one table's files came from both of them.
    let executors: Vec<String> = cluster
        .executor_pids()
        .iter()
        .map(|pid| format!(":{pid}"))
        .collect();
    let report = last_report(&distributed);
    for table in report["tables"].as_array().unwrap() {
        for writer in table["writers"].as_array().unwrap() {
            let writer = writer.as_str().unwrap();
            assert!(
                executors.iter().any(|pid| writer.ends_with(pid.as_str())),
                "{} was written by {writer}, not an executor",
                table["table"]
            );
        }
    }
    let events = table_report(&report, "enriched.events");
    assert_eq!(events["writers"].as_array().unwrap().len(), 2, "{events}");

    // The scheduler lists the run as succeeded.
    let runs = strata(&["runs", "--scheduler", &cluster.address]);
    assert!(runs.status.success(), "{}", stderr(&runs));
    assert!(stdout(&runs).contains("succeeded"), "{}", stdout(&runs));
}

#[test]
fn run_with_a_scheduler_orchestrates_here_and_works_on_the_cluster() {
    let (embedded, distributed) = embedded_and_copy("cluster-client", "0.002");

    let cluster = Cluster::start("client", 2);
    let run = strata(&[
        "run",
        &example(),
        "--warehouse",
        distributed.to_str().unwrap(),
        "--scheduler",
        &cluster.address,
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_same_tables(&embedded, &distributed);
    let report = last_report(&distributed);
    let pids: Vec<String> = cluster
        .executor_pids()
        .iter()
        .map(|pid| format!(":{pid}"))
        .collect();
    let ranked = table_report(&report, "ranked.candidates_per_job");
    let writer = ranked["writers"][0].as_str().unwrap();
    assert!(
        pids.iter().any(|pid| writer.ends_with(pid.as_str())),
        "{ranked}"
    );
}

#[test]
fn a_killed_executor_does_not_lose_or_duplicate_rows() {
    let (embedded, distributed) = embedded_and_copy("cluster-fault", "0.05");

    let mut cluster = Cluster::start("fault", 2);
    let (mut child, mut progress) = submit(&cluster, &distributed, &[]);
    wait_for(&mut progress, "building enriched.");
    cluster.kill_executor(0);
    let mut rest = String::new();
    progress.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "{out}\n{rest}");
    assert_same_tables(&embedded, &distributed);
}

#[test]
fn a_cancelled_run_commits_nothing_and_leaves_no_files() {
    // raw.events ingests its landing files one job each and commits once at the end,
    // so a cancellation during its build must leave the table without any version.
    let warehouse = generated("cluster-cancel", "0.2");
    let before = files(&warehouse);
    let cluster = Cluster::start("cancel", 2);
    let (mut child, mut progress) = submit(&cluster, &warehouse, &["--select", "raw.events"]);
    wait_for(&mut progress, "building raw.events");
    let run_id = running_run(&cluster);
    let cancelled = strata(&["cancel", &run_id, "--scheduler", &cluster.address]);
    assert!(cancelled.status.success(), "{}", stderr(&cancelled));
    assert!(
        stdout(&cancelled).contains("cancelled"),
        "{}",
        stdout(&cancelled)
    );
    let status = child.wait().unwrap();
    assert!(!status.success(), "a cancelled run exits non-zero");

    // No table version was added and no data file of the run is left anywhere.
    let after = files(&warehouse);
    let new: Vec<&String> = after
        .iter()
        .filter(|file| !before.contains(file))
        .filter(|file| !file.contains("/_strata/"))
        .collect();
    assert!(new.is_empty(), "files left by the cancelled run: {new:?}");
}

#[test]
fn cancelling_one_run_never_removes_the_files_of_another_run_on_the_same_table() {
    let (warehouse, _) = embedded_and_copy("cluster-cancel-race", "0.05");
    let table = "enriched.events";
    let pause = |seconds: &str| {
        [
            (
                strata_engine::faults::PAUSE_BEFORE_COMMIT.to_owned(),
                table.to_owned(),
            ),
            (
                strata_engine::faults::PAUSE_SECONDS.to_owned(),
                seconds.to_owned(),
            ),
        ]
    };
    // The run to cancel is orchestrated by the scheduler, and waits there before its commit.
    let cluster = Cluster::start_in("cancel-race", 2, &[], &pause("120"));
    let before = files(&warehouse);
    let rebuild = ["--select", table, "--full-refresh"];
    let (mut cancelled_run, mut progress) = submit(&cluster, &warehouse, &rebuild);
    wait_for(&mut progress, &format!("building {table}"));
    // The run that must commit is orchestrated here, and waits before its commit too.
    let mut kept = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["run", &example(), "--scheduler", &cluster.address])
        .args(["--warehouse", warehouse.to_str().unwrap()])
        .args(rebuild)
        .envs(pause("8"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut kept_progress = BufReader::new(kept.stderr.take().unwrap());
    wait_for(&mut kept_progress, strata_engine::faults::PAUSED);
    let written_by_kept = files(&warehouse);

    let run_id = running_run(&cluster);
    let cancel = strata(&["cancel", &run_id, "--scheduler", &cluster.address]);
    assert!(cancel.status.success(), "{}", stderr(&cancel));
    assert!(!cancelled_run.wait().unwrap().success());

    let mut rest = String::new();
    kept_progress.read_to_string(&mut rest).unwrap();
    assert!(kept.wait().unwrap().success(), "{rest}");
    let after = files(&warehouse);
    let theirs = format!("/{}", strata_storage::paths::run_file_prefix(&run_id));
    let left: Vec<&String> = after.iter().filter(|file| file.contains(&theirs)).collect();
    assert!(
        left.is_empty(),
        "the cancelled run's files are left: {left:?}"
    );
    // The other run had written its files, not yet committed, when the sweep ran.
    let kept_s: Vec<&String> = written_by_kept
        .iter()
        .filter(|file| file.ends_with(".parquet") && !file.contains(&theirs))
        .filter(|file| !before.contains(file))
        .collect();
    assert!(
        !kept_s.is_empty(),
        "the other run wrote nothing before the cancel"
    );
    let lost: Vec<&&String> = kept_s.iter().filter(|file| !after.contains(file)).collect();
    assert!(
        lost.is_empty(),
        "the other run's files were removed: {lost:?}"
    );
    // Every published table reads whole: no commit names a file that is gone.
    assert!(contents(&warehouse).len() >= 8);
}

/// The id of the run the scheduler has running.
fn running_run(cluster: &Cluster) -> String {
    let runs = strata(&["runs", "--scheduler", &cluster.address]);
    stdout(&runs)
        .lines()
        .find(|line| line.contains("running"))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no running run in {}", stdout(&runs)))
        .to_owned()
}

/// Every file under a directory, as paths relative to it.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, into: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, into);
            } else {
                into.push(format!("/{}", path.strip_prefix(root).unwrap().display()));
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found);
    found.sort();
    found
}

#[test]
fn a_scheduler_refuses_a_peer_of_another_version() {
    use strata_proto::pipeline::HelloRequest;
    use strata_proto::pipeline::pipeline_service_client::PipelineServiceClient;

    let cluster = Cluster::start("version", 0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let refusal = runtime.block_on(async {
        let mut client = PipelineServiceClient::connect(format!("http://{}", cluster.address))
            .await
            .unwrap();
        client
            .hello(HelloRequest {
                version: "0.0.1".into(),
                role: "executor".into(),
                name: "old".into(),
            })
            .await
            .unwrap_err()
    });
    assert_eq!(refusal.code(), tonic::Code::FailedPrecondition);
    assert!(
        refusal.message().contains("the executor runs Strata 0.0.1"),
        "{refusal:?}"
    );
}

#[test]
fn an_unreachable_scheduler_is_a_clear_error_after_bounded_retries() {
    let port = free_port();
    let warehouse = workdir("cluster-unreachable");
    std::fs::create_dir_all(&warehouse).unwrap();
    let output = strata(&[
        "submit",
        &example(),
        "--scheduler",
        &format!("127.0.0.1:{port}"),
        "--warehouse",
        warehouse.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains(&format!(
            "cannot reach the Strata scheduler at http://127.0.0.1:{port} after 10 attempts"
        )),
        "{error}"
    );
}

#[test]
fn a_submission_with_broken_sql_or_a_missing_warehouse_is_refused() {
    let cluster = Cluster::start("refusals", 0);
    let warehouse = workdir("cluster-refusals");
    std::fs::create_dir_all(&warehouse).unwrap();
    let broken = warehouse.join("broken.sql");
    std::fs::write(&broken, "CREATE TABLE enriched.x AS SELEC 1;\n").unwrap();
    let output = strata(&[
        "submit",
        broken.to_str().unwrap(),
        "--scheduler",
        &cluster.address,
        "--warehouse",
        warehouse.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("broken.sql"),
        "{}",
        stderr(&output)
    );

    let output = strata(&[
        "submit",
        &example(),
        "--scheduler",
        &cluster.address,
        "--warehouse",
        "/nonexistent/warehouse",
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("/nonexistent/warehouse is not a directory the scheduler can see"),
        "{}",
        stderr(&output)
    );

    let output = strata(&["cancel", "run-0-0", "--scheduler", &cluster.address]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no run run-0-0 on this scheduler"),
        "{}",
        stderr(&output)
    );

    let output = strata(&["cluster", "--executors", "0"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--executors must be at least 1"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn ranking_functions_and_top_k_run_in_executor_tasks() {
    use datafusion::physical_plan::displayable;
    use strata_engine::Engine;
    use strata_engine::expectations::Checker;
    use strata_engine::write::{FileFormat, WriteFilesExec, WriteSpec};
    use strata_storage::storage_schema;

    let dir = workdir("cluster-udfs");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("job,candidate,have,want\n");
    for row in 0..400 {
        csv.push_str(&format!(
            "{},{row},rust sql,{}\n",
            row % 4,
            if row % 3 == 0 { "rust sql" } else { "go" }
        ));
    }
    std::fs::write(dir.join("scores.csv"), csv).unwrap();
    let cluster = Cluster::start("udfs", 2);
    let engine = Engine::cluster(&cluster.address, &Default::default());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let written = runtime.block_on(async {
        let ctx = engine.session();
        ctx.register_csv(
            "scores",
            dir.join("scores.csv").to_str().unwrap(),
            Default::default(),
        )
        .await
        .unwrap();
        let sql = "SELECT job, top_k(candidate, skill_match(string_to_array(have, ' '), \
                   string_to_array(want, ' ')) + candidate / 1000.0, 3) AS best \
                   FROM scores GROUP BY job";
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        // Two phases: partial top_k before the shuffle, final top_k after it.
        assert!(
            shown.contains("mode=Partial") && shown.contains("mode=FinalPartitioned"),
            "{shown}"
        );
        assert!(
            shown.contains("top_k") && shown.contains("skill_match"),
            "{shown}"
        );
        let schema = storage_schema(&plan.schema());
        let spec = WriteSpec {
            format: FileFormat::Delta,
            table_dir: dir.join("best").display().to_string(),
            prefix: String::new(),
            partition_columns: Vec::new(),
            quarantine_dir: None,
        };
        let writer = WriteFilesExec::new(plan, spec, Checker::from_rules(Vec::new(), &schema, "t"));
        engine
            .write(Arc::new(writer), &ctx, "test:udfs", &|_| {})
            .await
            .unwrap()
    });
    let pids: Vec<String> = cluster
        .executor_pids()
        .iter()
        .map(|pid| format!(":{pid}"))
        .collect();
    let adds = written.delta_adds();
    assert!(!adds.is_empty());
    assert!(!written.writers.is_empty());
    for writer in &written.writers {
        // The final top_k ran in the same task as the writer, on an executor.
        assert!(
            pids.iter().any(|pid| writer.ends_with(pid.as_str())),
            "{writer}"
        );
    }
    assert_eq!(written.rows_written(), 4);

    // Job 0's best three are the highest candidates wanting what they have: multiples of 12.
    let files: Vec<String> = adds
        .iter()
        .map(|add| dir.join("best").join(&add.path).display().to_string())
        .collect();
    let best = runtime.block_on(async {
        let ctx = SessionContext::new();
        let frame = ctx.read_parquet(files, Default::default()).await.unwrap();
        ctx.register_table("best", frame.into_view()).unwrap();
        let sql =
            "SELECT b['item'] AS item FROM (SELECT unnest(best) AS b FROM best WHERE job = 0)";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    });
    let items: Vec<&str> = best
        .lines()
        .filter_map(|line| line.strip_prefix("| "))
        .map(|cell| cell.trim_end_matches(" |").trim())
        .collect();
    assert_eq!(items, ["item", "396", "384", "372"], "{best}");
}

#[test]
fn flight_sql_on_the_scheduler_runs_the_adbc_scenarios_on_the_executors() {
    use crate::flight::{PASSWORD, USER, assert_adbc_scenarios, example_warehouse};

    let users = format!("{USER}:{PASSWORD}");
    let mut cluster = Cluster::start_with(
        "flightsql",
        2,
        &[
            "--flight-sql-port",
            "0",
            "--warehouse",
            example_warehouse().to_str().unwrap(),
            "--users",
            &users,
        ],
    );
    let uri = cluster.flight_sql_uri();
    let before = cluster.executor_jobs();
    assert_adbc_scenarios(&uri);
    // Every query ran as a Ballista job whose output the executors wrote.
    let after = cluster.executor_jobs();
    let new_jobs = after.iter().filter(|job| !before.contains(job)).count();
    assert!(new_jobs >= 5, "jobs before {before:?}, after {after:?}");
}

#[test]
fn a_scheduler_with_flight_sql_needs_a_warehouse_it_can_read() {
    let output = strata(&[
        "scheduler",
        "--listen",
        "127.0.0.1:0",
        "--flight-sql-port",
        "0",
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--warehouse"),
        "{}",
        stderr(&output)
    );

    let missing = workdir("flightsql-missing-warehouse").join("nowhere");
    let output = strata(&[
        "scheduler",
        "--listen",
        "127.0.0.1:0",
        "--flight-sql-port",
        "0",
        "--warehouse",
        missing.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("nowhere"), "{}", stderr(&output));
}

/// Whether this process may make a mount namespace (root, or a sandbox that allows it).
fn can_hide_directories() -> bool {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs strata-probe /mnt")
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn a_landing_path_the_executors_cannot_see_fails_the_table_and_rejects_nothing() {
    // Without mount namespaces one machine cannot stage two views of its files; CI runs
    // as root, where they are permitted, so this is a failure and not a skip.
    assert!(
        can_hide_directories(),
        "this test needs `unshare --mount` (root, or user namespaces)"
    );
    let warehouse = generated("cluster-hidden-landing", "0.002");
    let mut cluster = Cluster::start("hidden", 0);
    cluster.hidden = Some(warehouse.join("landing"));
    cluster.add_executor("hidden-0");
    let output = strata(&[
        "submit",
        &example(),
        "--scheduler",
        &cluster.address,
        "--warehouse",
        warehouse.to_str().unwrap(),
        "--select",
        "raw.jobs",
    ]);
    let said = stderr(&output);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("cannot read its input"), "{said}");
    assert!(said.contains("No such file or directory"), "{said}");
    let pid = cluster.executor_pids()[0];
    assert!(
        said.contains(&format!(":{pid}")),
        "names the executor: {said}"
    );
    // Not bad data: no landing file is rejected, and nothing is committed.
    assert!(!said.contains("rejected"), "{said}");
    let raw = warehouse.join("raw").join("jobs");
    let committed = std::fs::read_dir(&raw)
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(committed, 0, "nothing under {}", raw.display());
}

#[test]
fn tasks_of_one_stage_in_one_executor_never_overwrite_each_others_files() {
    use crate::run::fastavro_rows;

    let warehouse = workdir("cluster-many-tasks");
    let landing = warehouse.join("landing").join("clicks");
    std::fs::create_dir_all(&landing).unwrap();
    // One Parquet file of many row groups: DataFusion's scan splits it and Ballista
    // gives each task its share, so the stage runs as many tasks, several of them in
    // each executor. (Strata's own CSV and NDJSON scan reads a file in one task on a
    // cluster.)
    let rows: u64 = 20_000;
    write_clicks_parquet(&landing.join("clicks-0000.parquet"), rows as i64);
    let pipeline = warehouse.join("clicks.sql");
    std::fs::write(
        &pipeline,
        "CREATE EXTERNAL TABLE landing.clicks STORED AS PARQUET LOCATION 'landing/clicks/';\n\
         CREATE TABLE raw.clicks AS SELECT * FROM landing.clicks;\n",
    )
    .unwrap();
    let cluster = Cluster::start("many-tasks", 2);
    let output = strata(&[
        "submit",
        pipeline.to_str().unwrap(),
        "--scheduler",
        &cluster.address,
        "--warehouse",
        warehouse.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = latest_report(&warehouse);
    let table = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|table| table["table"] == "raw.clicks")
        .unwrap();
    assert_eq!(table["rows_written"], rows, "{table}");
    let reported = table["files"].as_u64().unwrap();
    assert!(reported > 2, "more tasks than executors wrote: {table}");
    let raw = warehouse.join("raw").join("clicks");
    let on_disk = std::fs::read_dir(&raw)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|ext| ext == "avro"))
        })
        .count() as u64;
    assert_eq!(on_disk, reported, "one file per task in {}", raw.display());
    assert_eq!(fastavro_rows(&raw), rows);
}

/// The newest run report in a warehouse.
fn latest_report(warehouse: &Path) -> serde_json::Value {
    let mut reports: Vec<PathBuf> = std::fs::read_dir(warehouse.join("_strata").join("runs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    reports.sort();
    serde_json::from_str(&std::fs::read_to_string(reports.last().unwrap()).unwrap()).unwrap()
}

/// Writes `rows` clicks (`id`, `job_id`, `note`) in row groups of a thousand; the
/// notes do not compress, so the file passes the size DataFusion splits scans at.
fn write_clicks_parquet(path: &Path, rows: i64) {
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;

    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("job_id", DataType::Int64, false),
        Field::new("note", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows)),
            Arc::new(Int64Array::from_iter_values((0..rows).map(|id| id % 7))),
            Arc::new(StringArray::from_iter_values((0..rows).map(|id| {
                let mut state = id as u64 + 1;
                (0..640)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        format!("{:x}", state % 16)
                    })
                    .collect::<String>()
            }))),
        ],
    )
    .unwrap();
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(1_000))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema, Some(properties)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn a_task_that_fails_on_an_executor_reads_as_one_sentence() {
    let warehouse = workdir("cluster-task-error");
    let landing = warehouse.join("landing/readings");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(landing.join("a.csv"), "id,divisor\n1,2\n2,0\n3,1\n").unwrap();
    let pipeline = workdir("cluster-task-error-pipeline");
    std::fs::create_dir_all(&pipeline).unwrap();
    std::fs::write(
        pipeline.join("pipeline.sql"),
        "CREATE EXTERNAL TABLE landing.readings (id BIGINT, divisor BIGINT) STORED AS CSV \
         LOCATION 'landing/readings/' OPTIONS ('format.has_header' 'true');\n\
         CREATE TABLE raw.readings AS SELECT * FROM landing.readings;\n\
         CREATE TABLE enriched.ratios AS SELECT id, 10 / divisor AS ratio FROM raw.readings;\n",
    )
    .unwrap();
    let cluster = Cluster::start("task-error", 1);
    let output = cluster.submit(pipeline.to_str().unwrap(), &warehouse);
    assert!(!output.status.success());
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        said.contains("enriched.ratios: running the query: Divide by zero error"),
        "{said}"
    );
    for noise in [
        "DataFusionError(",
        "Shared(",
        "External(",
        "Execution error:",
    ] {
        assert!(!said.contains(noise), "{noise} in {said}");
    }
}

/// The newest run report of a warehouse.
fn newest_report(warehouse: &Path) -> serde_json::Value {
    let runs = warehouse.join("_strata/runs");
    let newest = std::fs::read_dir(&runs)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .max_by_key(|path| std::fs::metadata(path).unwrap().modified().unwrap())
        .unwrap();
    serde_json::from_str(&std::fs::read_to_string(newest).unwrap()).unwrap()
}

#[test]
fn a_delivery_refreshes_the_example_on_a_cluster_as_it_does_embedded() {
    let (embedded, distributed) = embedded_and_copy("cluster-refresh", "0.002");
    let cluster = Cluster::start("refresh", 2);
    let first = cluster.submit(&example(), &distributed);
    assert!(first.status.success(), "{}", stderr(&first));
    // A second delivery of one day's events, under a new name.
    for warehouse in [&embedded, &distributed] {
        let events = warehouse.join("landing/events");
        std::fs::copy(
            events.join("events-2026-11-08.csv.gz"),
            events.join("events-2026-11-08-again.csv.gz"),
        )
        .unwrap();
    }
    let again = strata(&["run", &example(), "--warehouse", embedded.to_str().unwrap()]);
    assert!(again.status.success(), "{}", stderr(&again));
    let refreshed = cluster.submit(&example(), &distributed);
    assert!(refreshed.status.success(), "{}", stderr(&refreshed));
    let report = newest_report(&distributed);
    for (table, expected) in [
        (
            "enriched.events",
            "incremental: the rows added to raw.events",
        ),
        (
            "enriched.job_events_daily",
            "incremental: the groups of (job_id, event_date, publisher, campaign)",
        ),
    ] {
        let strategy = table_report(&report, table)["strategy"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(strategy.starts_with(expected), "{table}: {strategy}");
    }
    assert_same_tables(&embedded, &distributed);
}
