//! Kafka landing sources against librdkafka's mock cluster (in this process, on a real
//! port of 127.0.0.1): each message is in raw exactly once, by partition and offset,
//! across builds bounded by `max_messages_per_partition`, a build killed before its
//! commit, and bad messages set aside with their offsets; unreachable brokers, unknown
//! topics and wrong options are clear errors that commit nothing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::support::{raw_committed, run_pipeline, stderr, stdout, strata, table_report, workdir};

/// Counts the messages the broker did not take.
#[derive(Default)]
struct Deliveries {
    failed: std::sync::Mutex<Vec<String>>,
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failed.lock().unwrap().push(error.to_string());
        }
    }
}

/// Produces `(partition, key, value)` messages, each with a header, and waits until the
/// broker has every one.
pub(crate) fn produce<V: AsRef<[u8]>>(brokers: &str, topic: &str, messages: &[(i32, String, V)]) {
    let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Deliveries::default())
        .unwrap();
    for (partition, key, value) in messages {
        let mut record = BaseRecord::to(topic)
            .partition(*partition)
            .key(key.as_str())
            .payload(value.as_ref())
            .headers(OwnedHeaders::new().insert(Header {
                key: "origin",
                value: Some("app"),
            }));
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    // The queue is full: let the broker catch up.
                    std::thread::sleep(Duration::from_millis(10));
                    record = returned;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let failed = producer.context().failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} messages not delivered: {:?}",
        failed.len(),
        failed.first()
    );
}

fn pipeline(dir: &Path, location: &str, options: &str) -> std::path::PathBuf {
    let file = dir.join("events.sql");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        &file,
        format!(
            "CREATE EXTERNAL TABLE landing.events (
               event_id BIGINT NOT NULL, kind VARCHAR, ts TIMESTAMP,
               _kafka_key VARCHAR, _kafka_partition INT, _kafka_offset BIGINT,
               _kafka_timestamp TIMESTAMP, _kafka_headers VARCHAR
             ) STORED AS KAFKA LOCATION '{location}' OPTIONS ({options});
             CREATE TABLE raw.events AS SELECT * FROM landing.events;
             CREATE TABLE enriched.kinds WRITE APPEND AS SELECT kind, event_id FROM STREAM(raw.events);\n"
        ),
    )
    .unwrap();
    file
}

/// A raw row: `(partition, offset, event_id, key, headers)`.
type Row = (i64, i64, i64, String, String);
/// A reject: `(partition name, offset, reason)`.
type Rejected = (String, i64, String);

/// The raw table as its commits name it: its rows and its rejects.
fn raw(warehouse: &Path) -> (Vec<Row>, Vec<Rejected>) {
    let found = raw_committed(&warehouse.join("raw/events"));
    let data = found["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let text = |column: &str| r[column].as_str().unwrap().to_owned();
            let number = |column: &str| r[column].as_i64().unwrap();
            (
                number("_kafka_partition"),
                number("_kafka_offset"),
                number("event_id"),
                text("_kafka_key"),
                text("_kafka_headers"),
            )
        })
        .collect();
    let rejects = found["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["landing_file"].as_str().unwrap().to_owned(),
                r["line"].as_i64().unwrap(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (data, rejects)
}

/// The raw table, checked to hold each produced offset (`partition → count`) once.
fn raw_exactly_once(warehouse: &Path, produced: &[(i64, i64)]) -> (Vec<Row>, Vec<Rejected>) {
    let (data, rejects) = raw(warehouse);
    assert_each_offset_once(&data, &rejects, &produced.iter().copied().collect());
    (data, rejects)
}

/// A mock cluster with a topic `events` of `partitions`, and its bootstrap servers.
fn topic(partitions: i32) -> (MockCluster<'static, DefaultProducerContext>, String) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", partitions, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    (cluster, brokers)
}

/// Runs a pipeline that must fail; what it said.
fn run_fails(file: &Path, warehouse: &Path) -> String {
    let output = strata(&[
        "run",
        file.to_str().unwrap(),
        "--warehouse",
        warehouse.to_str().unwrap(),
    ]);
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert!(!output.status.success(), "{said}");
    said
}

/// `count` good events spread over three partitions, ids from `first`.
fn events(first: i64, count: i64) -> Vec<(i32, String, String)> {
    (first..first + count)
        .map(|id| {
            (
                (id % 3) as i32,
                format!("k{id}"),
                format!(r#"{{"event_id": {id}, "kind": "view", "ts": "2026-12-01T10:00:00"}}"#),
            )
        })
        .collect()
}

/// Each partition's offsets in raw (rows and rejects together) are 0.. with none twice.
fn assert_each_offset_once(data: &[Row], rejects: &[Rejected], produced: &BTreeMap<i64, i64>) {
    let mut seen: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (partition, offset, ..) in data {
        seen.entry(*partition).or_default().push(*offset);
    }
    for (name, offset, _) in rejects {
        let partition: i64 = name.rsplit('/').next().unwrap().parse().unwrap();
        seen.entry(partition).or_default().push(*offset);
    }
    for (partition, count) in produced {
        let mut offsets = seen.get(partition).cloned().unwrap_or_default();
        offsets.sort_unstable();
        let twice = offsets.windows(2).filter(|pair| pair[0] == pair[1]).count();
        offsets.dedup();
        let missing = *count - offsets.len() as i64;
        assert!(
            twice == 0 && missing == 0 && offsets.last() == Some(&(count - 1)),
            "partition {partition}: {twice} offsets held twice, {missing} missing of 0..{count}"
        );
    }
}

#[test]
fn kafka_messages_reach_raw_exactly_once_with_their_metadata_and_bad_ones_set_aside() {
    let dir = workdir("kafka-exactly-once");
    let warehouse = dir.join("wh");
    let (_cluster, brokers) = topic(3);
    let mut messages = events(0, 90);
    // Bad messages, one of each kind, in partition 0 after its 30 good ones.
    for bad in [
        "not json",
        r#"{"event_id": "seven"}"#,
        r#"{"kind": "no id"}"#,
        "",
    ] {
        messages.push((0, "bad".into(), bad.into()));
    }
    produce(&brokers, "events", &messages);
    let file = pipeline(
        &dir,
        &format!("kafka://{brokers}/events"),
        "'max_messages_per_partition' '20', 'group.id' 'strata-events'",
    );

    let out = run_pipeline(&file, &warehouse, &[]);
    let report = table_report(&out, "raw.events");
    assert_eq!(report["status"], "built", "{report}");
    assert_eq!(report["rows_read"], 60, "20 per partition: {report}");
    assert_eq!(report["topic"]["lag_messages"], 34, "{report}");
    assert_eq!(table_report(&out, "enriched.kinds")["rows_written"], 60);

    let out = run_pipeline(&file, &warehouse, &[]);
    let report = table_report(&out, "raw.events");
    assert_eq!(report["rows_read"], 34, "{report}");
    assert_eq!(report["rows_rejected"], 4, "{report}");
    assert_eq!(report["topic"]["lag_messages"], 0, "{report}");
    let out = run_pipeline(&file, &warehouse, &[]);
    assert_eq!(table_report(&out, "raw.events")["status"], "up_to_date");

    let (data, rejects) = raw_exactly_once(&warehouse, &[(0, 34), (1, 30), (2, 30)]);
    assert_eq!(data.len(), 90);
    let ids: std::collections::BTreeSet<i64> = data.iter().map(|row| row.2).collect();
    assert_eq!(ids, (0..90).collect(), "every event once");
    assert!(
        data.iter().all(|row| row.3 == format!("k{}", row.2)),
        "keys"
    );
    assert!(
        data.iter().all(|row| row.4 == r#"{"origin":"app"}"#),
        "headers"
    );
    let mut reasons: Vec<(i64, &str)> = rejects
        .iter()
        .map(|(name, offset, reason)| {
            assert_eq!(name, &format!("kafka://{brokers}/events/0"));
            (*offset, reason.as_str())
        })
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons.iter().map(|r| r.0).collect::<Vec<_>>(),
        [30, 31, 32, 33]
    );
    assert!(reasons[3].1.contains("no value"), "{reasons:?}");

    // Lag monitors see Strata's positions in the consumer group.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "strata-events")
        .create()
        .unwrap();
    let mut asked = TopicPartitionList::new();
    for partition in 0..3 {
        asked.add_partition("events", partition);
    }
    let committed = consumer
        .committed_offsets(asked, Duration::from_secs(10))
        .unwrap();
    let offsets: Vec<Offset> = committed.elements().iter().map(|e| e.offset()).collect();
    assert_eq!(
        offsets,
        [Offset::Offset(34), Offset::Offset(30), Offset::Offset(30)]
    );

    // Later messages are read once more, and only they.
    produce(&brokers, "events", &events(90, 9));
    let out = run_pipeline(&file, &warehouse, &[]);
    assert_eq!(table_report(&out, "raw.events")["rows_read"], 9);
    assert_eq!(table_report(&out, "enriched.kinds")["rows_written"], 9);
    raw_exactly_once(&warehouse, &[(0, 37), (1, 33), (2, 33)]);
}

#[test]
fn a_kafka_build_s_lag_by_partition_is_in_its_report_and_the_console() {
    let dir = workdir("kafka-lag");
    let warehouse = dir.join("wh");
    let (_cluster, brokers) = topic(3);
    let produced = std::time::Instant::now();
    produce(&brokers, "events", &events(0, 90));
    // The messages left wait at least this long before the build asks how old they are.
    std::thread::sleep(Duration::from_millis(1500));
    let file = pipeline(
        &dir,
        &format!("kafka://{brokers}/events"),
        "'max_messages_per_partition' '20'",
    );
    let out = run_pipeline(&file, &warehouse, &[]);
    let waited = produced.elapsed().as_millis() as u64;
    let topic = &table_report(&out, "raw.events")["topic"];
    let behind: Vec<(i64, i64, u64)> = topic["behind"]
        .as_array()
        .unwrap_or_else(|| panic!("no partitions behind: {topic}"))
        .iter()
        .map(|p| {
            let lag_ms = p["lag_ms"].as_u64().unwrap_or_else(|| panic!("{topic}"));
            (
                p["partition"].as_i64().unwrap(),
                p["messages"].as_i64().unwrap(),
                lag_ms,
            )
        })
        .collect();
    assert_eq!(
        behind.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
        [(0, 10), (1, 10), (2, 10)],
        "{topic}"
    );
    for (_, _, lag_ms) in &behind {
        assert!(
            (1500..=waited).contains(lag_ms),
            "{lag_ms} ms, {waited} ms since produced: {topic}"
        );
    }
    assert_eq!(topic["lag_ms"].as_u64(), behind.iter().map(|p| p.2).max());

    let port = crate::cluster::free_port();
    let listen = format!("127.0.0.1:{port}");
    let users = format!("{}:{}", crate::console::USER, crate::console::PASSWORD);
    let _console = crate::console::Served::start(&[
        "console",
        "--warehouse",
        warehouse.to_str().unwrap(),
        "--pipeline",
        file.to_str().unwrap(),
        "--listen",
        &listen,
        "--users",
        &users,
    ]);
    let report = out
        .lines()
        .find_map(|line| line.strip_prefix("report: "))
        .expect("a report line");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let said = crate::support::python_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/console/kafka_lag.py"),
        &[
            &format!("http://{listen}/"),
            crate::console::USER,
            crate::console::PASSWORD,
            report.trim(),
            shots.to_str().unwrap(),
        ],
    );
    assert!(said.contains("kafka lag checked: 3 partitions"), "{said}");
}

#[test]
fn a_kafka_build_killed_before_its_commit_reads_the_same_messages_again() {
    let dir = workdir("kafka-killed");
    let warehouse = dir.join("wh");
    let (_cluster, brokers) = topic(3);
    produce(&brokers, "events", &events(0, 300));
    let file = pipeline(&dir, &format!("kafka://{brokers}/events"), "'timeout' '10'");
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["run", file.to_str().unwrap(), "--warehouse"])
        .arg(&warehouse)
        .env("STRATA_PAUSE_BEFORE_COMMIT", "raw.events")
        .env_remove("STRATA_WAREHOUSE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let paused = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("paused before committing raw.events"));
    assert!(paused, "the build paused before its commit");
    let written = std::fs::read_dir(warehouse.join("raw/events"))
        .unwrap()
        .count();
    assert!(written > 0, "the build wrote its files before the kill");
    child.kill().unwrap();
    child.wait().unwrap();

    let out = run_pipeline(&file, &warehouse, &[]);
    assert_eq!(table_report(&out, "raw.events")["rows_read"], 300);
    let (_, rejects) = raw_exactly_once(&warehouse, &[(0, 100), (1, 100), (2, 100)]);
    assert!(rejects.is_empty());
}

#[test]
fn kafka_sources_that_cannot_be_read_fail_clearly_and_commit_nothing() {
    let dir = workdir("kafka-errors");
    let warehouse = dir.join("wh");
    let (_cluster, brokers) = topic(1);
    let first: Vec<_> = events(0, 3)
        .into_iter()
        .map(|(_, key, value)| (0, key, value))
        .collect();
    produce(&brokers, "events", &first);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    for (name, location, options, says) in [
        (
            "unreachable",
            format!("kafka://127.0.0.1:{port}/events"),
            "'timeout' '3'",
            "no Kafka broker of 127.0.0.1",
        ),
        (
            "unknown-topic",
            format!("kafka://{brokers}/no-such-topic"),
            "'timeout' '10'",
            "topic 'no-such-topic' does not exist",
        ),
        (
            "secret",
            format!("kafka://{brokers}/events"),
            "'sasl.password' 'env:STRATA_TEST_UNSET_KAFKA_SECRET'",
            "STRATA_TEST_UNSET_KAFKA_SECRET is not set",
        ),
    ] {
        let case = dir.join(name);
        let file = pipeline(&case, &location, options);
        let said = run_fails(&file, &case.join("wh"));
        assert!(said.contains(says), "{name}: {said}");
        assert!(
            !case.join("wh/raw/events/_strata_log").exists()
                || std::fs::read_dir(case.join("wh/raw/events/_strata_log"))
                    .unwrap()
                    .next()
                    .is_none(),
            "{name}: nothing committed"
        );
    }

    // Mistakes in the definition are found by `strata check`, before any broker is asked.
    for (options, says) in [
        ("'format' 'xml'", "'json', 'csv'"),
        ("'enable.auto.commit' 'true'", "Strata's to set"),
        ("'after_ingest' 'delete'", "for landing files"),
        ("'no.such.property' '1'", "no.such.property"),
    ] {
        let file = pipeline(
            &dir.join("check"),
            &format!("kafka://{brokers}/events"),
            options,
        );
        let output = strata(&[
            "check",
            file.to_str().unwrap(),
            "--warehouse",
            warehouse.to_str().unwrap(),
        ]);
        let said = format!("{}{}", stdout(&output), stderr(&output));
        if options.contains("no.such") {
            // librdkafka knows its properties: the build is refused before reading.
            let said = run_fails(&file, &warehouse);
            assert!(said.contains(says), "{said}");
            continue;
        }
        assert!(!output.status.success(), "{options}: {said}");
        assert!(said.contains(says), "{options}: {said}");
    }

    // A position beyond the partition's end (a topic made anew) fails the build unless
    // 'on_data_loss' 'skip' says to read the partition from its start.
    let file = pipeline(
        &dir.join("ahead"),
        &format!("kafka://{brokers}/events"),
        "'timeout' '10'",
    );
    run_pipeline(&file, &warehouse, &[]);
    let log = warehouse.join("raw/events/_strata_log");
    let ahead = serde_json::json!({
        "version": 1, "run_id": "hand-made", "reset": false, "sources": [], "files": [],
        "positions": [{"topic": "events", "partition": 0, "next": 1000}]
    });
    std::fs::write(log.join("00000000000000000001.json"), ahead.to_string()).unwrap();
    let said = run_fails(&file, &warehouse);
    assert!(said.contains("was the topic recreated"), "{said}");
    let skip = pipeline(
        &dir.join("ahead"),
        &format!("kafka://{brokers}/events"),
        "'on_data_loss' 'skip'",
    );
    let out = run_pipeline(&skip, &warehouse, &[]);
    assert_eq!(table_report(&out, "raw.events")["rows_read"], 3);

    // Bad messages over a limit fail the build, which commits nothing; without one
    // (a stream's default) each is set aside.
    produce(
        &brokers,
        "events",
        &[(0, "x".to_owned(), "{"), (0, "y".to_owned(), "[]")],
    );
    let limited = pipeline(
        &dir.join("limit"),
        &format!("kafka://{brokers}/events"),
        "'bad_rows.limit' '1'",
    );
    let said = run_fails(&limited, &warehouse);
    assert!(
        said.contains("2 of 2 rows are bad, over the limit"),
        "{said}"
    );
    let out = run_pipeline(&skip, &warehouse, &[]);
    let report = table_report(&out, "raw.events");
    assert_eq!(
        (
            report["rows_read"].as_u64(),
            report["rows_rejected"].as_u64()
        ),
        (Some(2), Some(2))
    );
}

#[test]
fn on_a_cluster_each_partition_is_read_by_a_task_exactly_once() {
    let dir = workdir("kafka-cluster");
    let warehouse = dir.join("wh");
    let (_kafka, brokers) = topic(3);
    let mut messages = events(0, 600);
    messages.push((1, "bad".into(), "not json".into()));
    produce(&brokers, "events", &messages);
    let file = pipeline(
        &dir,
        &format!("kafka://{brokers}/events"),
        "'max_messages_per_partition' '150'",
    );
    std::fs::create_dir_all(&warehouse).unwrap();
    let cluster = crate::cluster::Cluster::start("kafka", 2);
    for expected in [450, 151] {
        let output = cluster.submit(file.to_str().unwrap(), &warehouse);
        assert!(
            output.status.success(),
            "{}{}",
            stdout(&output),
            stderr(&output)
        );
        let report = table_report(&stdout(&output), "raw.events");
        assert_eq!(report["rows_read"], expected, "{report}");
    }
    let (data, rejects) = raw_exactly_once(&warehouse, &[(0, 200), (1, 201), (2, 200)]);
    assert_eq!((data.len(), rejects.len()), (600, 1));
}

#[test]
fn an_executor_killed_while_it_reads_a_partition_loses_and_duplicates_nothing() {
    let dir = workdir("kafka-executor-killed");
    let warehouse = dir.join("wh");
    let (_kafka, brokers) = topic(3);
    let total = 90_000;
    produce(&brokers, "events", &events(0, total));
    let file = pipeline(&dir, &format!("kafka://{brokers}/events"), "'timeout' '20'");
    std::fs::create_dir_all(&warehouse).unwrap();
    // Each task waits a second after each batch of messages (four batches a partition),
    // so a kill 1.5 s into the raw build lands while its tasks read.
    let slow = [(
        strata_engine::faults::READ_BATCH_DELAY_MS.to_owned(),
        "1000".to_owned(),
    )];
    let mut cluster = crate::cluster::Cluster::start_in("kafka-killed", 2, &[], &slow);
    let scheduler = cluster.address.clone();
    let submit = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command
            .args(["run", file.to_str().unwrap(), "--scheduler", &scheduler])
            .args(["--warehouse", warehouse.to_str().unwrap()])
            .env_remove("STRATA_WAREHOUSE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let mut run = submit().spawn().unwrap();
    let mut progress = BufReader::new(run.stderr.take().unwrap());
    crate::cluster::wait_for(&mut progress, "building raw.events");
    std::thread::sleep(Duration::from_millis(1500));
    let log = warehouse.join("raw/events/_strata_log");
    assert_eq!(
        std::fs::read_dir(&log).map_or(0, |entries| entries.count()),
        0,
        "the raw build had not committed when its executor was killed"
    );
    cluster.kill_executor(0);
    // The run ends, whether the survivor took the lost tasks over or the build failed.
    let mut said = String::new();
    progress.read_to_string(&mut said).unwrap();
    run.wait().unwrap();
    for _ in 0..5 {
        let output = submit().output().unwrap();
        said.push_str(&stderr(&output));
        if output.status.success()
            && table_report(&stdout(&output), "raw.events")["topic"]["lag_messages"] == 0
        {
            break;
        }
    }
    let per_partition = total / 3;
    let (data, rejects) = raw_exactly_once(
        &warehouse,
        &[(0, per_partition), (1, per_partition), (2, per_partition)],
    );
    assert_eq!((data.len() as i64, rejects.len()), (total, 0), "{said}");
}

/// A real Kafka-protocol broker: `tansu` (installed by `scripts/test`) on a free port of
/// 127.0.0.1, keeping its topics in memory; stopped when dropped.
struct Tansu {
    child: std::process::Child,
    brokers: String,
}

impl Tansu {
    fn start(name: &str) -> Tansu {
        let port = crate::cluster::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(workdir(&format!("tansu-{name}.log"))).unwrap();
        let child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &format!("memory://{name}/")])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("tansu runs: scripts/test installs it with cargo install");
        // Dropped (and so stopped) whatever happens next.
        let broker = Tansu {
            child,
            brokers: format!("127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&broker.brokers).is_ok() {
                return broker;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tansu did not listen on {}", broker.brokers);
    }

    fn create_topic(&self, topic: &str, partitions: u32) {
        let status = Command::new("tansu")
            .args(["topic", "create", topic, "--broker"])
            .arg(format!("tcp://{}", self.brokers))
            .args(["--partitions", &partitions.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "tansu topic create {topic}");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When a test kills a run.
#[derive(Clone, Copy, PartialEq)]
enum Kill {
    /// This many milliseconds after it starts.
    At(u64),
    /// Between the raw build's write and its commit.
    Paused,
    /// As soon as the raw build has committed.
    AfterCommit,
}

/// The Avro files under a raw table that no commit names: what a killed build wrote.
fn uncommitted_files(table: &Path) -> usize {
    let named: String = std::fs::read_dir(table.join("_strata_log"))
        .map(|entries| {
            entries
                .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    let mut pending = vec![table.to_path_buf()];
    let mut count = 0;
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if path.is_dir() {
                pending.push(path);
            } else if name.ends_with(".avro") && !named.contains(&name) {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn a_real_broker_s_topic_reaches_raw_exactly_once_through_runs_killed_at_any_moment() {
    let dir = workdir("kafka-tansu");
    let warehouse = dir.join("wh");
    let broker = Tansu::start("strata");
    broker.create_topic("events", 3);
    let total = 150_000;
    produce(&broker.brokers, "events", &events(0, total - 3));
    // tansu 0.6 answers a partition's newest offset as its last batch's first offset
    // plus one; a last batch of one message each keeps that the true end.
    produce(&broker.brokers, "events", &events(total - 3, 3));
    let file = pipeline(
        &dir,
        &format!("kafka://{}/events", broker.brokers),
        "'max_messages_per_partition' '10000', 'timeout' '20'",
    );
    // Runs killed at moments spread over a few builds: at set times, between a raw
    // build's write and its commit (paused there, so the moment is certain), and just
    // after a commit, while the next table builds. A run reads at most 30,000 messages,
    // so the four kills that may commit leave messages for each paused build.
    let table = warehouse.join("raw/events");
    let commits = || std::fs::read_dir(table.join("_strata_log")).map_or(0, |e| e.count());
    for kill in [
        Kill::At(300),
        Kill::Paused,
        Kill::AfterCommit,
        Kill::At(1100),
        Kill::Paused,
        Kill::At(1900),
        Kill::At(2900),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command
            .args(["run", file.to_str().unwrap(), "--warehouse"])
            .arg(&warehouse)
            .env_remove("STRATA_WAREHOUSE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let before = commits();
        if kill == Kill::Paused {
            command.env(strata_engine::faults::PAUSE_BEFORE_COMMIT, "raw.events");
        }
        let mut child = command.spawn().unwrap();
        let mut progress = BufReader::new(child.stderr.take().unwrap());
        match kill {
            Kill::At(after_ms) => std::thread::sleep(Duration::from_millis(after_ms)),
            Kill::Paused => {
                crate::cluster::wait_for(&mut progress, strata_engine::faults::PAUSED);
            }
            Kill::AfterCommit => {
                while commits() == before {
                    assert!(
                        child.try_wait().unwrap().is_none(),
                        "the run ended before committing"
                    );
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if kill == Kill::Paused {
            assert!(
                uncommitted_files(&table) > 0,
                "the paused build had written its files"
            );
            assert_eq!(commits(), before, "the paused build committed nothing");
        }
    }
    for _ in 0..20 {
        let out = run_pipeline(&file, &warehouse, &[]);
        if table_report(&out, "raw.events")["topic"]["lag_messages"] == 0 {
            break;
        }
    }
    let per_partition = total / 3;
    let (data, rejects) = raw_exactly_once(
        &warehouse,
        &[(0, per_partition), (1, per_partition), (2, per_partition)],
    );
    assert_eq!((data.len() as i64, rejects.len()), (total, 0));
}

#[test]
fn a_continuous_run_follows_the_topic_into_stream_tables_and_survives_a_broker_outage() {
    let dir = workdir("kafka-continuous");
    let warehouse = dir.join("wh");
    let (cluster, brokers) = topic(2);
    let file = pipeline(&dir, &format!("kafka://{brokers}/events"), "'timeout' '2'");
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["run", file.to_str().unwrap(), "--warehouse"])
        .arg(&warehouse)
        .args(["--continuous", "--interval", "300ms"])
        .env_remove("STRATA_WAREHOUSE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, said) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Waits for a batch line that says `wanted`, and returns it.
    let wait_for = |wanted: &dyn Fn(&str) -> bool| loop {
        let line = said
            .recv_timeout(Duration::from_secs(60))
            .expect("a batch line within a minute");
        if wanted(&line) {
            return line;
        }
    };
    let rows_in = |line: &str| -> u64 {
        line.split(": ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|rows| rows.parse().ok())
            .unwrap_or(0)
    };
    let two_partitions = |first, count| -> Vec<(i32, String, String)> {
        events(first, count)
            .into_iter()
            .map(|(partition, key, value)| (partition % 2, key, value))
            .collect()
    };
    produce(&brokers, "events", &two_partitions(0, 200));
    let mut read = 0;
    while read < 200 {
        read += rows_in(&wait_for(&|line| line.starts_with("batch ")));
    }
    // The broker goes away: batches fail and commit nothing, then go on where they were.
    cluster.broker_down(1).unwrap();
    wait_for(&|line| line.contains("failed"));
    cluster.broker_up(1).unwrap();
    produce(&brokers, "events", &two_partitions(200, 100));
    while read < 300 {
        read += rows_in(&wait_for(&|line| line.starts_with("batch ")));
    }
    let caught_up = wait_for(&|line| line.contains("0 Kafka messages behind"));
    assert!(caught_up.starts_with("batch "), "{caught_up}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(read, 300, "each message read once");
    let (data, _) = raw_exactly_once(&warehouse, &[(0, 200), (1, 100)]);
    assert_eq!(data.len(), 300);
}

#[test]
fn a_schedule_on_new_data_fires_when_messages_arrive_in_the_topic() {
    use crate::schedule::{schedule, succeeded, terminate, wait_until};

    let dir = workdir("kafka-schedule");
    let warehouse = dir.join("wh");
    std::fs::create_dir_all(&warehouse).unwrap();
    let (_cluster, brokers) = topic(1);
    let file = pipeline(&dir, &format!("kafka://{brokers}/events"), "'timeout' '10'");
    let wh = warehouse.to_str().unwrap();
    schedule(&[
        "add",
        "events",
        file.to_str().unwrap(),
        "--warehouse",
        wh,
        "--on-new-files",
    ]);
    let mut orchestrator = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["run", "--schedule", "--warehouse", wh])
        .env_remove("STRATA_WAREHOUSE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let one_partition = |first, count| -> Vec<(i32, String, String)> {
        events(first, count)
            .into_iter()
            .map(|(_, key, value)| (0, key, value))
            .collect()
    };
    let committed = |warehouse: &Path| {
        std::fs::read_dir(warehouse.join("raw/events/_strata_log")).map_or(0, |e| e.count())
    };
    produce(&brokers, "events", &one_partition(0, 10));
    wait_until("messages in the topic fired the schedule", || {
        succeeded(&warehouse, "events", "new_files") >= 1 && committed(&warehouse) >= 1
    });
    let fired = succeeded(&warehouse, "events", "new_files");
    produce(&brokers, "events", &one_partition(10, 5));
    wait_until("more messages fired it again", || {
        succeeded(&warehouse, "events", "new_files") > fired
    });
    assert!(terminate(&mut orchestrator).success());
    raw_exactly_once(&warehouse, &[(0, 15)]);
}

/// The writer schema of the Avro test messages.
const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "event", "fields": [{"name": "event_id", "type": "long"}, {"name": "kind", "type": ["null", "string"]}, {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#;

/// Event `id` as one Avro datum of [`AVRO_SCHEMA`].
fn avro_event(id: i64) -> Vec<u8> {
    use apache_avro::types::Value;
    let schema = apache_avro::Schema::parse_str(AVRO_SCHEMA).unwrap();
    let record = Value::Record(vec![
        ("event_id".into(), Value::Long(id)),
        (
            "kind".into(),
            Value::Union(1, Box::new(Value::String("view".into()))),
        ),
        ("ts".into(), Value::TimestampMillis(1_796_623_626_000 + id)),
    ]);
    apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(record)
        .unwrap()
}

/// A stand-in for a Confluent schema registry (none can run here: it is a Java service
/// from Maven): `GET /schemas/ids/1` answers [`AVRO_SCHEMA`], any other id 404, as the
/// registry's REST API does. Stopped when dropped.
struct Registry {
    child: std::process::Child,
    url: String,
}

impl Registry {
    fn start() -> Registry {
        const SERVE: &str = r#"
import http.server, json, sys
schema = sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/schemas/ids/1":
            body, status = json.dumps({"schema": schema}).encode(), 200
        else:
            body, status = json.dumps({"error_code": 40403, "message": "Schema not found"}).encode(), 404
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"#;
        let port = crate::cluster::free_port();
        let child = Command::new("python3")
            .args(["-c", SERVE, &port.to_string(), AVRO_SCHEMA])
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return registry;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the registry stand-in did not start");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn avro_values_plain_or_in_confluent_s_wire_format_reach_raw_and_bad_ones_are_set_aside() {
    let dir = workdir("kafka-avro");
    // Plain Avro: the writer schema is the source's option.
    let (_plain, brokers) = topic(1);
    let mut messages: Vec<(i32, String, Vec<u8>)> = (0..5)
        .map(|id| (0, format!("k{id}"), avro_event(id)))
        .collect();
    messages.push((0, "bad".into(), b"\xff\xff not avro".to_vec()));
    produce(&brokers, "events", &messages);
    let file = pipeline(
        &dir.join("plain"),
        &format!("kafka://{brokers}/events"),
        &format!("'format' 'avro', 'avro.schema' '{AVRO_SCHEMA}'"),
    );
    let warehouse = dir.join("plain/wh");
    let out = run_pipeline(&file, &warehouse, &[]);
    let report = table_report(&out, "raw.events");
    assert_eq!(
        (
            report["rows_read"].as_u64(),
            report["rows_rejected"].as_u64()
        ),
        (Some(6), Some(1)),
        "{report}"
    );
    let (data, rejects) = raw_exactly_once(&warehouse, &[(0, 6)]);
    assert_eq!(
        data.iter().map(|row| row.2).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert!(rejects[0].2.contains("not an Avro datum"), "{rejects:?}");
    let found = raw_committed(&warehouse.join("raw/events"));
    assert_eq!(
        found["files"][1]["ts"], "2026-12-07 06:07:06.001000",
        "timestamp-millis is read as a timestamp"
    );

    // Confluent's wire format: a zero byte, the schema id, the datum.
    let registry = Registry::start();
    let (_confluent, brokers) = topic(1);
    let framed = |id: u32, datum: Vec<u8>| [vec![0], id.to_be_bytes().to_vec(), datum].concat();
    let mut messages: Vec<(i32, String, Vec<u8>)> = (0..3)
        .map(|id| (0, format!("k{id}"), framed(1, avro_event(id))))
        .collect();
    messages.push((0, "unknown".into(), framed(99, avro_event(3))));
    messages.push((0, "json".into(), br#"{"event_id": 4}"#.to_vec()));
    produce(&brokers, "events", &messages);
    let options = format!(
        "'format' 'avro-confluent', 'schema_registry.url' '{}'",
        registry.url
    );
    let file = pipeline(
        &dir.join("confluent"),
        &format!("kafka://{brokers}/events"),
        &options,
    );
    let warehouse = dir.join("confluent/wh");
    let out = run_pipeline(&file, &warehouse, &[]);
    let report = table_report(&out, "raw.events");
    assert_eq!(
        (
            report["rows_read"].as_u64(),
            report["rows_rejected"].as_u64()
        ),
        (Some(5), Some(2)),
        "{report}"
    );
    let (_, rejects) = raw_exactly_once(&warehouse, &[(0, 5)]);
    let reasons: Vec<&str> = rejects.iter().map(|r| r.2.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("schema id 99 is not in the schema registry")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not in Confluent's wire format")),
        "{reasons:?}"
    );

    // A registry that does not answer fails the build, which commits nothing.
    drop(registry);
    produce(
        &brokers,
        "events",
        &[(0, "k5".to_owned(), framed(1, avro_event(5)))],
    );
    let said = run_fails(&file, &warehouse);
    assert!(said.contains("did not answer"), "{said}");
    raw_exactly_once(&warehouse, &[(0, 5)]);
}
