//! Flight SQL queries within limits, driven by arrow-rs's Flight SQL client against a
//! real `strata serve`: a runaway query stops at its time limit, when its client goes
//! away and when the client cancels it, and then the server's CPU returns to idle; a
//! user's queries beyond their turns wait and are then refused with RESOURCE_EXHAUSTED;
//! a query over its memory limit fails clearly.

use std::time::{Duration, Instant};

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{CancelFlightInfoRequest, CancelStatus, FlightClient, FlightInfo};
use futures::TryStreamExt;
use tonic::Code;
use tonic::transport::Channel;

use crate::flight::{Server, connect, example_warehouse};
use crate::support::workdir;

type Client = FlightSqlServiceClient<Channel>;

/// A query that would run for hours: a sum over a five-way cross join (a count would
/// be answered from the tables' statistics).
const RUNAWAY: &str = "SELECT sum(length(a.name) + length(b.name) + length(c.name) + \
                       length(d.name) + length(e.name)) FROM enriched.candidates a, \
                       enriched.candidates b, enriched.candidates c, enriched.candidates d, \
                       enriched.candidates e";

/// A query that answers at once.
const QUICK: &str = "SELECT count(*) FROM enriched.jobs";

/// Runs a query to its end; the status it failed with, if it did.
async fn run(client: &mut Client, sql: &str) -> Result<usize, tonic::Status> {
    let info = client
        .execute(sql.to_owned(), None)
        .await
        .map_err(to_status)?;
    fetch(client, info).await
}

async fn fetch(client: &mut Client, info: FlightInfo) -> Result<usize, tonic::Status> {
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    // The raw call, so a refusal keeps its gRPC code.
    let stream = client.inner_mut().do_get(ticket).await?.into_inner();
    let batches: Vec<_> =
        FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from))
            .try_collect()
            .await
            .map_err(to_status)?;
    Ok(batches.iter().map(|batch| batch.num_rows()).sum())
}

fn to_status(error: FlightError) -> tonic::Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => tonic::Status::unknown(other.to_string()),
    }
}

/// Sends `CancelFlightInfo` for a query.
async fn cancel(addr: &str, info: FlightInfo) -> CancelStatus {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightClient::new(channel)
        .cancel_flight_info(CancelFlightInfoRequest::new(info))
        .await
        .unwrap()
        .status()
}

/// CPU seconds a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Waits until the server uses under a tenth of a core over a second; panics if it
/// does not within `within`. Returns how long that took.
fn assert_goes_idle(server: &Server, within: Duration, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let before = cpu_seconds(server.pid());
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu_seconds(server.pid()) - before;
        if used < 0.1 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "the server still used {used:.2} CPU seconds a second, {:?} after {what}",
            started.elapsed()
        );
    }
}

/// Waits until the server works hard, so a stop is a stop of real work.
fn assert_busy(server: &Server) {
    let before = cpu_seconds(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_seconds(server.pid()) - before;
    // Other tests share the machine's cores: a quarter of one is busy enough.
    assert!(
        used > 0.25,
        "the runaway query is not running ({used:.2} s)"
    );
}

/// Starts the runaway query from its own client and waits until the server works on it.
fn start_runaway(
    runtime: &tokio::runtime::Runtime,
    server: &Server,
) -> tokio::task::JoinHandle<Result<usize, tonic::Status>> {
    let addr = server.addr.clone();
    let running = runtime.spawn(async move {
        let mut client = connect(&addr).await;
        run(&mut client, RUNAWAY).await
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_busy(server);
    running
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn a_runaway_query_stops_at_its_time_limit_and_the_server_goes_idle() {
    let server = Server::start(example_warehouse(), &["--query-timeout", "4"]);
    let runtime = runtime();
    let mut client = runtime.block_on(connect(&server.addr));
    let started = Instant::now();
    let error = runtime.block_on(run(&mut client, RUNAWAY)).unwrap_err();
    let took = started.elapsed();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error}");
    assert!(
        error.message().contains("limit of 4 s"),
        "{}",
        error.message()
    );
    assert!(took >= Duration::from_secs(4), "stopped early: {took:?}");
    assert_goes_idle(&server, Duration::from_secs(10), "the time limit");
    // The server still answers.
    assert_eq!(runtime.block_on(run(&mut client, QUICK)).unwrap(), 1);
}

#[test]
fn a_runaway_query_stops_when_its_client_goes_away_or_cancels_it() {
    let server = Server::start(example_warehouse(), &["--query-timeout", "600"]);
    let runtime = runtime();

    // A client that disconnects mid-query.
    let gone = start_runaway(&runtime, &server);
    gone.abort();
    assert_goes_idle(&server, Duration::from_secs(10), "the client went away");

    // A client that cancels with CancelFlightInfo.
    let mut client = runtime.block_on(connect(&server.addr));
    let info = runtime
        .block_on(client.execute(RUNAWAY.to_owned(), None))
        .unwrap();
    let mut fetching = runtime.block_on(connect(&server.addr));
    let running = runtime.spawn({
        let info = info.clone();
        async move { fetch(&mut fetching, info).await }
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_busy(&server);
    let cancelled = runtime.block_on(cancel(&server.addr, info.clone()));
    assert_eq!(cancelled, CancelStatus::Cancelled);
    let ended = runtime.block_on(running).unwrap().unwrap_err();
    assert_eq!(ended.code(), Code::Cancelled, "{ended}");
    assert_goes_idle(&server, Duration::from_secs(10), "CancelFlightInfo");

    // Nothing runs for that ticket any more.
    let again = runtime.block_on(cancel(&server.addr, info));
    assert_eq!(again, CancelStatus::NotCancellable);
}

/// A query that runs for hours on a cluster: hash joins whose every probe row matches
/// thousands of build rows, in stages that exchange data.
const CLUSTER_RUNAWAY: &str = "SELECT count(*) FROM enriched.events a \
                               JOIN enriched.events b ON a.kind = b.kind \
                               JOIN enriched.events c ON b.kind = c.kind \
                               JOIN enriched.events d ON c.kind = d.kind";

#[test]
fn a_runaway_query_on_the_cluster_stops_on_the_executors_when_its_client_goes_away() {
    let mut cluster = crate::cluster::Cluster::start_with(
        "flightsql-runaway",
        1,
        &[
            "--flight-sql-port",
            "0",
            "--warehouse",
            example_warehouse().to_str().unwrap(),
        ],
    );
    let line = cluster.scheduler_line();
    let addr = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("grpc://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    let executor = cluster.executor_pids()[0];
    let used = |pid: u32| {
        let before = cpu_seconds(pid);
        std::thread::sleep(Duration::from_secs(1));
        cpu_seconds(pid) - before
    };
    let runtime = runtime();
    let gone = runtime.spawn(async move {
        let mut client = connect(&addr).await;
        run(&mut client, CLUSTER_RUNAWAY).await
    });
    let busy = Instant::now();
    while used(executor) < 0.25 {
        assert!(
            busy.elapsed() < Duration::from_secs(30),
            "the executor never started the runaway query"
        );
    }
    gone.abort();
    drop(runtime);
    let stopped = Instant::now();
    loop {
        let now = used(executor);
        if now < 0.1 {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "the executor still used {now:.2} CPU seconds a second, {:?} after the client went away",
            stopped.elapsed()
        );
    }
}

/// Queries that run for hours, each stopping differently inside: some emit no row for
/// minutes (a nested-loop join whose filter never matches), some loop inside one
/// operator (a hash join's build, a sort), some stream.
const SHAPES: &[(&str, &str)] = &[
    (
        "a filtered nested-loop join that emits nothing",
        "SELECT count(*) FROM enriched.events a, enriched.events b, enriched.events c \
         WHERE a.job_id + b.job_id + c.job_id < 0",
    ),
    ("a cross join", RUNAWAY),
    (
        "a hash join with a huge build side",
        "SELECT count(*) FROM enriched.events a JOIN enriched.events b ON a.kind = b.kind \
         JOIN enriched.events c ON b.kind = c.kind JOIN enriched.events d ON c.kind = d.kind",
    ),
    (
        "a large sort",
        "SELECT a.event_id, b.event_id, c.candidate_id FROM enriched.events a, enriched.events b, \
         enriched.candidates c ORDER BY a.event_id || b.event_id || c.name DESC LIMIT 3",
    ),
    (
        "a recursive CTE",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    ),
    (
        "a heavy function over a cross join",
        "SELECT max(jaro_winkler(a.name || b.name, c.name || d.name)) FROM enriched.candidates a, \
         enriched.candidates b, enriched.candidates c, enriched.candidates d",
    ),
    (
        "count(*) over a join that emits rows",
        "SELECT count(*) FROM enriched.events a, enriched.events b, enriched.events c \
         WHERE a.kind || b.kind || c.kind <> 'none'",
    ),
    (
        "a streaming projection",
        "SELECT a.event_id, b.event_id, c.event_id FROM enriched.events a, enriched.events b, \
         enriched.events c WHERE (a.job_id * 7 + b.job_id * 13 + c.job_id) % 100003 = 0",
    ),
];

#[test]
fn every_shape_of_runaway_query_stops_at_its_time_limit_and_when_its_client_goes_away() {
    let limited = Server::start(example_warehouse(), &["--query-timeout", "3"]);
    let unlimited = Server::start(example_warehouse(), &["--query-timeout", "600"]);
    let runtime = runtime();
    for (shape, sql) in SHAPES {
        let mut client = runtime.block_on(connect(&limited.addr));
        let error = match runtime.block_on(run(&mut client, sql)) {
            Ok(rows) => panic!("{shape} ended within its limit, with {rows} rows"),
            Err(error) => error,
        };
        assert_eq!(error.code(), Code::DeadlineExceeded, "{shape}: {error}");
        assert_goes_idle(
            &limited,
            Duration::from_secs(5),
            &format!("{shape} hit its limit"),
        );

        let addr = unlimited.addr.clone();
        let sql = sql.to_string();
        let gone = runtime.spawn(async move {
            let mut client = connect(&addr).await;
            run(&mut client, &sql).await
        });
        std::thread::sleep(Duration::from_secs(2));
        let before = cpu_seconds(unlimited.pid());
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu_seconds(unlimited.pid()) - before;
        assert!(used > 0.25, "{shape} is not running ({used:.2} s)");
        gone.abort();
        assert_goes_idle(
            &unlimited,
            Duration::from_secs(5),
            &format!("{shape}'s client went away"),
        );
    }
}

#[test]
fn a_stopping_server_cancels_its_running_queries_instead_of_waiting_for_them() {
    let mut server = Server::start(example_warehouse(), &["--query-timeout", "600"]);
    let runtime = runtime();
    let running = start_runaway(&runtime, &server);
    assert!(
        server.terminate(Duration::from_secs(10)),
        "the server still runs 10 s after SIGTERM"
    );
    let ended = runtime.block_on(running).unwrap().unwrap_err();
    assert!(
        matches!(
            ended.code(),
            Code::Cancelled | Code::Unavailable | Code::Unknown
        ),
        "{ended}"
    );
}

#[test]
fn a_user_beyond_their_turns_waits_and_is_then_refused_with_resource_exhausted() {
    let dir = workdir("flight-limits-config");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("flight.toml");
    std::fs::write(
        &config,
        "[limits]\nconcurrent_queries_per_user = 1\nqueued_queries_per_user = 1\n\
         queue_timeout_seconds = 2\nquery_timeout_seconds = 30\n",
    )
    .unwrap();
    let server = Server::start(example_warehouse(), &["--config", config.to_str().unwrap()]);
    let runtime = runtime();
    let runaway = start_runaway(&runtime, &server);

    // One waits its turn, for two seconds, and is refused.
    let addr = server.addr.clone();
    let waiting = runtime.spawn(async move {
        let mut client = connect(&addr).await;
        let started = Instant::now();
        (run(&mut client, QUICK).await, started.elapsed())
    });
    std::thread::sleep(Duration::from_secs(1));
    // The queue holds one: another is refused at once.
    let mut client = runtime.block_on(connect(&server.addr));
    let started = Instant::now();
    let full = runtime.block_on(run(&mut client, QUICK)).unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted, "{full}");
    assert!(full.message().contains("waiting"), "{}", full.message());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let (waited, took) = runtime.block_on(waiting).unwrap();
    let waited = waited.unwrap_err();
    assert_eq!(waited.code(), Code::ResourceExhausted, "{waited}");
    assert!(
        waited.message().contains("waited 2 s"),
        "{}",
        waited.message()
    );
    assert!(took >= Duration::from_secs(2), "{took:?}");

    runaway.abort();
    assert_goes_idle(&server, Duration::from_secs(10), "the client went away");
    // With the turn free again, the user's queries run.
    assert_eq!(runtime.block_on(run(&mut client, QUICK)).unwrap(), 1);
}

#[test]
fn a_query_over_its_memory_limit_fails_clearly() {
    let server = Server::start(example_warehouse(), &["--query-memory", "1"]);
    let runtime = runtime();
    let mut client = runtime.block_on(connect(&server.addr));
    let error = runtime
        .block_on(run(
            &mut client,
            "SELECT array_agg(a.name || b.name || c.name) \
             FROM enriched.candidates a, enriched.candidates b, enriched.candidates c",
        ))
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted, "{error}");
    assert!(
        error.message().contains("memory limit of 1 MiB"),
        "{}",
        error.message()
    );
    assert_eq!(runtime.block_on(run(&mut client, QUICK)).unwrap(), 1);
}
