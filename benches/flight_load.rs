//! Load on `strata serve` over loopback: concurrent Flight SQL clients for a fixed time,
//! then the streaming throughput of one large result.
//!
//! Run with `cargo bench -p strata --bench flight_load`. It generates the recruitment
//! data (`STRATA_LOAD_SCALE`, default 1), runs the example pipeline with the `strata`
//! binary of the same build, serves the warehouse, and runs `STRATA_LOAD_CLIENTS`
//! clients (default 32) for `STRATA_LOAD_SECONDS` (default 30), then the same load with
//! one more client running a runaway query (a five-way cross join) that the server
//! stops at its time limit (`STRATA_LOAD_QUERY_TIMEOUT`, default a third of the load's
//! seconds), and the server's CPU after it. It stops by itself.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow_flight::Ticket;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::{StreamExt, TryStreamExt};
use tonic::transport::Channel;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");
const USER: &str = "bench";
const PASSWORD: &str = "bench-password";

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The example's warehouse at `scale`, built once and kept for later runs.
fn warehouse(scale: f64) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-flight-load-{scale}"));
    if dir.join("ranked/candidates_per_job/_delta_log").exists() {
        return dir;
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/recruitment");
    for args in [
        vec![
            "gen".to_owned(),
            "--scale".to_owned(),
            scale.to_string(),
            "--out".to_owned(),
            dir.display().to_string(),
        ],
        vec![
            "run".to_owned(),
            example.display().to_string(),
            "--warehouse".to_owned(),
            dir.display().to_string(),
        ],
    ] {
        let status = Command::new(STRATA)
            .args(&args)
            .stdout(Stdio::null())
            .status()
            .expect("strata runs");
        assert!(status.success(), "strata {args:?} failed");
    }
    dir
}

/// A query no notebook user should run: it would take hours.
const RUNAWAY: &str = "SELECT sum(length(a.name) + length(b.name) + length(c.name) + \
                       length(d.name) + length(e.name)) FROM enriched.candidates a, \
                       enriched.candidates b, enriched.candidates c, enriched.candidates d, \
                       enriched.candidates e";

/// `strata serve` on a free port; returns the process and its address.
fn serve(warehouse: &Path, query_timeout: u64) -> (Child, String) {
    let mut child = Command::new(STRATA)
        .args(["serve", "--warehouse"])
        .arg(warehouse)
        .args(["--listen", "127.0.0.1:0", "--users"])
        .arg(format!("{USER}:{PASSWORD}"))
        .args(["--query-timeout", &query_timeout.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("strata serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the server says where it listens");
    let addr = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("grpc://"))
        .expect("an address")
        .to_owned();
    (child, addr)
}

async fn client(addr: &str) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("a valid address")
        .connect()
        .await
        .expect("the server accepts connections");
    let mut client = FlightSqlServiceClient::new(channel);
    client
        .handshake(USER, PASSWORD)
        .await
        .expect("the handshake succeeds");
    client
}

/// What a notebook user asks: one job's shortlist, a funnel roll-up, a count, a lookup.
fn query(i: u64, jobs: u64) -> String {
    let job = 1 + (i * 7919) % jobs;
    match i % 4 {
        0 => format!(
            "SELECT candidate_id, score FROM ranked.candidates_per_job WHERE job_id = {job} ORDER BY pos"
        ),
        1 => "SELECT publisher, sum(clicks) AS clicks, sum(applications) AS applications \
              FROM enriched.job_events_daily GROUP BY publisher ORDER BY clicks DESC"
            .to_owned(),
        2 => "SELECT count(*) FROM enriched.candidates WHERE is_current".to_owned(),
        _ => format!("SELECT * FROM enriched.jobs WHERE job_id = {job}"),
    }
}

async fn run_query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: String,
) -> Result<usize, String> {
    let info = client.execute(sql, None).await.map_err(|e| e.to_string())?;
    let mut rows = 0;
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.ok_or("no ticket")?;
        let mut stream = client.do_get(ticket).await.map_err(|e| e.to_string())?;
        while let Some(batch) = stream.next().await {
            rows += batch.map_err(|e| e.to_string())?.num_rows();
        }
    }
    Ok(rows)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

/// CPU seconds a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs the runaway query once; says how it ended and after how long.
async fn runaway(addr: String) -> String {
    let mut client = client(&addr).await;
    let started = Instant::now();
    let outcome = run_query(&mut client, RUNAWAY.to_owned()).await;
    format!(
        "runaway query ended after {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        match outcome {
            Ok(rows) => format!("finished with {rows} rows"),
            Err(error) => error,
        }
    )
}

/// Runs the load; returns its p50.
async fn load(addr: &str, clients: usize, seconds: u64, jobs: u64, label: &str) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            let addr = addr.to_owned();
            tokio::spawn(async move {
                let mut client = client(&addr).await;
                let (mut latencies, mut failures) = (Vec::new(), Vec::new());
                let mut i = n as u64;
                while Instant::now() < deadline {
                    let began = Instant::now();
                    match run_query(&mut client, query(i, jobs)).await {
                        Ok(_) => latencies.push(began.elapsed()),
                        Err(error) => failures.push(error),
                    }
                    i += clients as u64;
                }
                (latencies, failures)
            })
        })
        .collect();
    let (mut latencies, mut failures) = (Vec::new(), Vec::new());
    for task in tasks {
        let (l, f) = task.await.expect("a client task");
        latencies.extend(l);
        failures.extend(f);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    println!(
        "load{label}: {clients} clients for {elapsed:.1} s: {} queries, {:.1} queries/s, p50 {:.1} ms, p99 {:.1} ms, {} failures",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        failures.len()
    );
    if let Some(first) = failures.first() {
        println!("first failure: {first}");
    }
    percentile(&latencies, 0.50)
}

/// Streams every tracking event and counts the bytes of Flight data received.
async fn large_result(addr: &str) {
    let mut client = client(addr).await;
    let sql = "SELECT * FROM enriched.events".to_owned();
    let started = Instant::now();
    let info = client.execute(sql.clone(), None).await.expect("planned");
    let (mut bytes, mut messages) = (0_usize, 0_usize);
    for endpoint in info.endpoint {
        let ticket: Ticket = endpoint.ticket.expect("a ticket");
        let mut request = tonic::Request::new(ticket);
        let bearer = format!("Bearer {}", client.token().expect("a token"));
        request
            .metadata_mut()
            .insert("authorization", bearer.parse().expect("a header"));
        let mut stream = client
            .inner_mut()
            .do_get(request)
            .await
            .expect("streaming starts")
            .into_inner();
        while let Some(data) = stream.try_next().await.expect("a message") {
            bytes += data.data_header.len() + data.data_body.len();
            messages += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let decoded = {
        let started = Instant::now();
        let rows = run_query(&mut client, sql).await.expect("decoded");
        (rows, started.elapsed().as_secs_f64())
    };
    println!(
        "large result: {:.1} MB in {messages} messages in {seconds:.2} s = {:.1} MB/s raw; decoded {} rows in {:.2} s = {:.0} rows/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / seconds,
        decoded.0,
        decoded.1,
        decoded.0 as f64 / decoded.1
    );
}

fn main() {
    // `cargo bench` passes `--bench`; this bench takes no filters.
    let scale: f64 = setting("STRATA_LOAD_SCALE", 1.0);
    let clients: usize = setting("STRATA_LOAD_CLIENTS", 32);
    let seconds: u64 = setting("STRATA_LOAD_SECONDS", 30);
    let query_timeout: u64 = setting("STRATA_LOAD_QUERY_TIMEOUT", (seconds / 3).max(1));
    let dir = warehouse(scale);
    let (mut server, addr) = serve(&dir, query_timeout);
    let jobs = (2000.0 * scale).max(1.0) as u64;
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let alone = load(&addr, clients, seconds, jobs, "").await;
        let stopped = tokio::spawn(runaway(addr.clone()));
        let beside = load(&addr, clients, seconds, jobs, " beside a runaway query").await;
        println!("{}", stopped.await.expect("the runaway client"));
        println!(
            "p50 beside the runaway: {:.2}x the p50 without it",
            beside.as_secs_f64() / alone.as_secs_f64()
        );
        let before = cpu_seconds(server.id());
        tokio::time::sleep(Duration::from_secs(3)).await;
        println!(
            "server CPU over the 3 s after: {:.2} core-seconds",
            cpu_seconds(server.id()) - before
        );
        large_result(&addr).await;
    });
    let _ = server.kill();
    let _ = server.wait();
}
