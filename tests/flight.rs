//! `strata serve` against real Flight SQL clients over the recruitment example's
//! warehouse: the Python ADBC driver (installed by `scripts/test`) and arrow-rs's
//! `FlightSqlServiceClient`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use arrow_flight::sql::client::FlightSqlServiceClient;
use tonic::transport::Channel;

use crate::support::{example, manifest_count, python_file, stderr, stdout, strata, workdir};

pub(crate) const USER: &str = "alice";
pub(crate) const PASSWORD: &str = "s3cret-for-tests";

/// A `strata serve` process, stopped when dropped.
pub(crate) struct Server {
    child: Child,
    pub addr: String,
    uri: String,
}

impl Server {
    /// Starts `strata serve` on a free loopback port with `args` and waits until it listens.
    pub(crate) fn start(warehouse: &Path, args: &[&str]) -> Server {
        Self::start_in(warehouse.to_str().unwrap(), args, &[])
    }

    /// Like [`Server::start`], for a warehouse at a path or URL, with `env` set.
    pub(crate) fn start_in(warehouse: &str, args: &[&str], env: &[(String, String)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["serve", "--warehouse", warehouse, "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().cloned())
            .env_remove("STRATA_FLIGHT_USERS")
            .env_remove("STRATA_FLIGHT_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("strata serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let uri = line
            .split_whitespace()
            .find(|word| word.starts_with("grpc"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        let addr = uri.split_once("://").unwrap().1.to_owned();
        Server { child, addr, uri }
    }

    pub(crate) fn uri(&self) -> String {
        self.uri.clone()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `within` for the server to exit; whether it did.
    pub(crate) fn terminate(&mut self, within: std::time::Duration) -> bool {
        crate::support::terminate(&mut self.child, within)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// arrow-rs's Flight SQL client on a plain connection to `addr`.
pub(crate) async fn connect(addr: &str) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("the server accepts connections");
    FlightSqlServiceClient::new(channel)
}

/// The recruitment example, generated and run once for every test here.
pub(crate) fn example_warehouse() -> &'static Path {
    static WAREHOUSE: OnceLock<PathBuf> = OnceLock::new();
    WAREHOUSE.get_or_init(|| {
        let dir = workdir("flight-example");
        let wh = dir.to_str().unwrap();
        let generated = strata(&["gen", "--scale", "0.002", "--out", wh]);
        assert!(generated.status.success(), "{}", stderr(&generated));
        let run = strata(&["run", &example(), "--warehouse", wh]);
        assert!(run.status.success(), "{}", stderr(&run));
        // A rebuild gives enriched.events a version 1 to travel back from.
        let again = strata(&["run", &example(), "--warehouse", wh, "--full-refresh"]);
        assert!(again.status.success(), "{}", stderr(&again));
        dir
    })
}

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/flight/adbc_scenarios.py")
}

#[test]
fn the_adbc_driver_queries_the_published_tables() {
    let server = Server::start(
        example_warehouse(),
        &["--users", &format!("{USER}:{PASSWORD}")],
    );
    assert_adbc_scenarios(&server.uri());
}

/// Runs every ADBC scenario against the Flight SQL server at `uri`, which serves the
/// example warehouse to `USER`, and checks each answer.
pub(crate) fn assert_adbc_scenarios(uri: &str) {
    let output = python_file(&scenarios(), &[uri, USER, PASSWORD]);
    let found: serde_json::Value = serde_json::from_str(output.trim()).expect("one JSON object");
    let text = |key: &str| found[key].as_str().unwrap_or_default().to_owned();

    assert_eq!(found["top_rows"], 5, "{found}");
    assert_eq!(
        found["top_columns"],
        serde_json::json!(["job_id", "candidate_id", "pos", "score"])
    );
    assert!(found["param_count"].as_i64().unwrap() > 0, "{found}");
    assert_eq!(found["param_count"], found["literal_count"]);
    assert_eq!(
        found["events_v0"], found["events_now"],
        "same rows in both versions"
    );

    assert!(text("drop_error").contains("read-only"), "{found}");
    assert!(text("drop_error").contains("DROP TABLE"), "{found}");
    assert!(text("insert_error").contains("read-only"), "{found}");
    assert!(
        text("unknown_table_error")
            .contains("unknown table enriched.jobz (did you mean enriched.jobs?)"),
        "{found}"
    );
    assert!(text("bad_sql_error").contains("SELEC"), "{found}");
    assert!(
        text("bad_column_error").contains("no_such_column"),
        "{found}"
    );
    assert!(
        text("quarantine_hidden_error").contains("unknown table enriched.events__quarantine"),
        "{found}"
    );

    assert_eq!(found["catalogs"], serde_json::json!(["strata"]));
    assert_eq!(
        found["schemas"],
        serde_json::json!(["enriched", "ranked", "raw"])
    );
    assert_eq!(
        found["ranked_tables"],
        serde_json::json!(["candidates_per_job", "jobs_per_candidate"])
    );
    assert!(
        found["ranked_columns"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("score")),
        "{found}"
    );
    assert!(
        !found["enriched_tables"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("events__quarantine")),
        "quarantine tables stay hidden: {found}"
    );
    assert!(
        found["table_schema"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("job_id:int64")),
        "{found}"
    );
    assert_eq!(found["table_types"], serde_json::json!(["TABLE"]));
    assert_eq!(found["vendor"], "Strata");

    assert!(
        text("wrong_password_error").contains("wrong username or password"),
        "{found}"
    );
    assert!(
        text("no_credentials_error").contains("no authorization header"),
        "{found}"
    );
}

mod rust_client {
    //! The same scenarios with arrow-rs's `FlightSqlServiceClient`.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Barrier};

    use arrow_flight::sql::client::FlightSqlServiceClient;
    use arrow_flight::sql::{
        CommandGetDbSchemas, CommandGetTables, CommandStatementQuery, ProstMessageExt, SqlInfo,
    };
    use arrow_flight::{FlightDescriptor, FlightInfo};
    use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Int64Type};
    use futures::TryStreamExt;
    use prost::Message;
    use tonic::transport::Channel;

    use super::{Deliveries, PASSWORD, Server, USER, example_warehouse};

    use super::connect;

    type Client = FlightSqlServiceClient<Channel>;

    async fn fetch(client: &mut Client, info: FlightInfo) -> Vec<RecordBatch> {
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            assert!(
                endpoint.location.is_empty(),
                "results come from this server"
            );
            let stream = client.do_get(endpoint.ticket.unwrap()).await.unwrap();
            batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
        }
        batches
    }

    async fn query(client: &mut Client, sql: &str) -> Vec<RecordBatch> {
        let info = client.execute(sql.to_owned(), None).await.unwrap();
        fetch(client, info).await
    }

    fn rows(batches: &[RecordBatch]) -> usize {
        batches.iter().map(RecordBatch::num_rows).sum()
    }

    fn first_i64(batches: &[RecordBatch], column: &str) -> i64 {
        let batch = batches.iter().find(|b| b.num_rows() > 0).unwrap();
        batch
            .column_by_name(column)
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Runtime::new().unwrap()
    }

    #[test]
    fn the_rust_flight_sql_client_runs_the_same_scenarios() {
        let server = Server::start(
            example_warehouse(),
            &["--users", &format!("{USER}:{PASSWORD}")],
        );
        runtime().block_on(async {
            let mut client = connect(&server.addr).await;
            let refused = client
                .execute("SELECT 1".to_owned(), None)
                .await
                .unwrap_err();
            assert!(
                refused.to_string().contains("no authorization header"),
                "{refused}"
            );
            let wrong = client.handshake(USER, "nope").await.unwrap_err();
            assert!(
                wrong.to_string().contains("wrong username or password"),
                "{wrong}"
            );
            client.handshake(USER, PASSWORD).await.unwrap();

            let top = query(
                &mut client,
                "SELECT job_id, pos FROM ranked.candidates_per_job ORDER BY job_id, pos LIMIT 5",
            )
            .await;
            assert_eq!(rows(&top), 5);
            let job = first_i64(&top, "job_id");

            let mut prepared = client
                .prepare(
                    "SELECT count(*) AS n FROM ranked.candidates_per_job WHERE job_id = ?"
                        .to_owned(),
                    None,
                )
                .await
                .unwrap();
            assert_eq!(prepared.dataset_schema().unwrap().field(0).name(), "n");
            assert_eq!(
                prepared.parameter_schema().unwrap().field(0).data_type(),
                &DataType::Int64
            );
            let parameters = RecordBatch::try_from_iter([(
                "$1",
                Arc::new(Int64Array::from(vec![job])) as Arc<dyn Array>,
            )])
            .unwrap();
            prepared.set_parameters(parameters).unwrap();
            let info = prepared.execute().await.unwrap();
            let bound = fetch(&mut client, info).await;
            let literal = query(
                &mut client,
                &format!(
                    "SELECT count(*) AS n FROM ranked.candidates_per_job WHERE job_id = {job}"
                ),
            )
            .await;
            assert_eq!(first_i64(&bound, "n"), first_i64(&literal, "n"));
            prepared.close().await.unwrap();

            let info = client.get_catalogs().await.unwrap();
            assert_eq!(rows(&fetch(&mut client, info).await), 1);
            let info = client
                .get_db_schemas(CommandGetDbSchemas {
                    catalog: None,
                    db_schema_filter_pattern: Some("r%".to_owned()),
                })
                .await
                .unwrap();
            let schemas = fetch(&mut client, info).await;
            let names: Vec<String> = schemas
                .iter()
                .flat_map(|b| {
                    b.column(1)
                        .as_string::<i32>()
                        .iter()
                        .map(|v| v.unwrap().to_owned())
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(names, ["ranked", "raw"]);
            let info = client
                .get_tables(CommandGetTables {
                    catalog: Some("strata".to_owned()),
                    db_schema_filter_pattern: Some("ranked".to_owned()),
                    table_name_filter_pattern: Some("candidates%".to_owned()),
                    table_types: vec![],
                    include_schema: true,
                })
                .await
                .unwrap();
            let tables = fetch(&mut client, info).await;
            assert_eq!(rows(&tables), 1);
            assert!(tables[0].column_by_name("table_schema").is_some());
            let info = client.get_table_types().await.unwrap();
            assert_eq!(rows(&fetch(&mut client, info).await), 1);
            let info = client
                .get_sql_info(vec![
                    SqlInfo::FlightSqlServerName,
                    SqlInfo::FlightSqlServerReadOnly,
                ])
                .await
                .unwrap();
            assert_eq!(rows(&fetch(&mut client, info).await), 2);
            let info = client
                .get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys {
                    catalog: None,
                    db_schema: Some("ranked".to_owned()),
                    table: "candidates_per_job".to_owned(),
                })
                .await
                .unwrap();
            assert_eq!(rows(&fetch(&mut client, info).await), 0);
            let info = client
                .get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None })
                .await
                .unwrap();
            assert!(rows(&fetch(&mut client, info).await) > 5);

            // GetSchema and PollFlightInfo, which arrow-rs's server trait leaves out.
            let command = CommandStatementQuery {
                query: "SELECT job_id FROM ranked.candidates_per_job".to_owned(),
                transaction_id: None,
            };
            let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
            let bearer = format!("Bearer {}", client.token().unwrap());
            let mut request = tonic::Request::new(descriptor.clone());
            request
                .metadata_mut()
                .insert("authorization", bearer.parse().unwrap());
            let schema = client
                .inner_mut()
                .get_schema(request)
                .await
                .unwrap()
                .into_inner();
            let schema = datafusion::arrow::datatypes::Schema::try_from(&schema).unwrap();
            assert_eq!(schema.field(0).name(), "job_id");
            let mut request = tonic::Request::new(descriptor);
            request
                .metadata_mut()
                .insert("authorization", bearer.parse().unwrap());
            let poll = client
                .inner_mut()
                .poll_flight_info(request)
                .await
                .unwrap()
                .into_inner();
            assert_eq!(poll.progress, Some(1.0));
            assert!(poll.info.is_some());

            let drop = client
                .execute("DROP TABLE ranked.candidates_per_job".to_owned(), None)
                .await
                .unwrap_err();
            assert!(drop.to_string().contains("read-only"), "{drop}");
            let update = client
                .execute_update("DELETE FROM enriched.jobs".to_owned(), None)
                .await
                .unwrap_err();
            assert!(update.to_string().contains("read-only"), "{update}");
            let cte = query(
                &mut client,
                "WITH firsts AS (SELECT * FROM ranked.candidates_per_job VERSION AS OF 0 AS c WHERE c.pos = 1) \
                 SELECT count(*) AS n FROM firsts",
            )
            .await;
            assert!(first_i64(&cte, "n") > 0, "CTEs and aliases after VERSION AS OF");
            let missing = client
                .execute(
                    "SELECT * FROM enriched.events VERSION AS OF 99".to_owned(),
                    None,
                )
                .await
                .unwrap_err();
            assert!(
                missing.to_string().contains("has no version 99"),
                "{missing}"
            );
        });
    }

    #[test]
    fn a_query_during_a_commit_reads_one_whole_version() {
        let deliveries = Deliveries::new("flight-snapshot-rust");
        let server = Server::start(&deliveries.dir, &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(Barrier::new(2));
        let reader = {
            let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
            let addr = server.addr.clone();
            std::thread::spawn(move || {
                runtime().block_on(async move {
                    let mut client = connect(&addr).await;
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let batches = query(&mut client, super::VERSION_QUERY).await;
                        seen.push([
                            first_i64(&batches, "c"),
                            first_i64(&batches, "t"),
                            first_i64(&batches, "m"),
                        ]);
                        if seen.len() == 1 {
                            answered.wait();
                        }
                    }
                    seen
                })
            })
        };
        // The reader has connected and answered once before the commits begin.
        answered.wait();
        deliveries.deliver_more();
        stop.store(true, Ordering::SeqCst);
        super::assert_whole_versions(&reader.join().unwrap());
    }
}

/// Rows per delivery of the snapshot tests.
const DELIVERY_ROWS: i64 = 20_000;

/// Counts what a reader sees of `enriched.nums`: rows, deliveries and the newest delivery.
const VERSION_QUERY: &str =
    "SELECT count(*) AS c, count(DISTINCT tag) AS t, max(tag) AS m FROM enriched.nums";

/// A warehouse whose `enriched.nums` is rebuilt by each run from every delivery so far.
struct Deliveries {
    dir: PathBuf,
    pipeline: PathBuf,
}

impl Deliveries {
    /// Writes the pipeline and builds the first delivery.
    fn new(name: &str) -> Self {
        let dir = workdir(name);
        std::fs::create_dir_all(dir.join("landing/nums")).unwrap();
        let pipeline = dir.join("pipeline.sql");
        std::fs::write(
            &pipeline,
            "CREATE EXTERNAL TABLE landing.nums (n BIGINT, tag BIGINT) STORED AS CSV LOCATION 'landing/nums/' OPTIONS ('format.has_header' 'true');\n\
             CREATE TABLE raw.nums AS SELECT * FROM landing.nums;\n\
             CREATE TABLE enriched.nums AS SELECT n, tag FROM raw.nums;\n",
        )
        .unwrap();
        let deliveries = Deliveries { dir, pipeline };
        deliveries.deliver_and_run(1);
        deliveries
    }

    fn deliver_and_run(&self, tag: i64) {
        let body: String = (0..DELIVERY_ROWS).map(|n| format!("{n},{tag}\n")).collect();
        let file = self.dir.join(format!("landing/nums/{tag}.csv"));
        std::fs::write(file, format!("n,tag\n{body}")).unwrap();
        let output = strata(&[
            "run",
            self.pipeline.to_str().unwrap(),
            "--warehouse",
            self.dir.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
    }

    /// Three more deliveries, each committed as a new version by its own run.
    fn deliver_more(&self) {
        for tag in 2..=4 {
            self.deliver_and_run(tag);
        }
    }
}

/// Every observation is one whole version, and the readers saw more than one.
fn assert_whole_versions(seen: &[[i64; 3]]) {
    for &[count, deliveries, newest] in seen {
        assert_eq!(
            count,
            deliveries * DELIVERY_ROWS,
            "a whole version: {seen:?}"
        );
        assert_eq!(newest, deliveries, "a whole version: {seen:?}");
    }
    let versions: std::collections::BTreeSet<i64> = seen.iter().map(|row| row[1]).collect();
    assert!(
        versions.len() >= 2,
        "queries ran across commits: {versions:?}"
    );
}

#[test]
fn an_adbc_query_during_a_commit_reads_one_whole_version() {
    let deliveries = Deliveries::new("flight-snapshot-adbc");
    let server = Server::start(&deliveries.dir, &[]);
    let stop = deliveries.dir.join("stop");
    let script = format!(
        r#"
import os, sys
import adbc_driver_flightsql.dbapi as flightsql
with flightsql.connect(sys.argv[1], autocommit=True) as conn:
    with conn.cursor() as cur:
        while True:
            last = os.path.exists(sys.argv[2])
            cur.execute("{VERSION_QUERY}")
            row = cur.fetch_arrow_table().to_pylist()[0]
            print(row["c"], row["t"], row["m"], flush=True)
            if last:
                break
os._exit(0)
"#
    );
    let mut reader = Command::new("python3")
        .args(["-c", &script, &server.uri(), stop.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut lines = BufReader::new(reader.stdout.take().unwrap()).lines();
    // The reader has connected and answered once before the commits begin.
    let mut seen_lines = vec![lines.next().expect("a first answer").unwrap()];
    deliveries.deliver_more();
    std::fs::write(&stop, "").unwrap();
    seen_lines.extend(lines.map(Result::unwrap));
    assert!(reader.wait().unwrap().success());
    let seen: Vec<[i64; 3]> = seen_lines
        .iter()
        .map(|line| {
            let numbers: Vec<i64> = line.split(' ').map(|n| n.parse().unwrap()).collect();
            [numbers[0], numbers[1], numbers[2]]
        })
        .collect();
    assert_whole_versions(&seen);
}

#[test]
fn the_readme_python_example_works_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = &readme[readme.find("## Query from Python").expect("the section")..];
    let start = section.find("```python\n").expect("a Python block") + "```python\n".len();
    let snippet = &section[start..start + section[start..].find("```").unwrap()];
    let server = Server::start(example_warehouse(), &["--users", "analyst:change-me"]);
    let snippet = snippet.replace("grpc://127.0.0.1:50051", &server.uri());
    let output = crate::support::python(&["-c", &snippet]);
    assert!(output.contains("candidate_id: string"), "{output}");
    assert!(output.contains("pos: [[1,2,3"), "{output}");
}

#[test]
fn tls_and_a_config_file_serve_the_adbc_driver() {
    let dir = workdir("flight-tls");
    std::fs::create_dir_all(&dir).unwrap();
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .current_dir(&dir)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", stderr(&made));
    std::fs::write(
        dir.join("serve.toml"),
        "show_quarantine = true\n[[users]]\nname = \"bob\"\npassword = \"tls-secret\"\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n",
    )
    .unwrap();
    let config = dir.join("serve.toml");
    let server = Server::start(example_warehouse(), &["--config", config.to_str().unwrap()]);
    // Each of the example's two runs quarantined the same rows, under its own run id.
    assert!(server.uri().starts_with("grpc+tls://"), "{}", server.uri());
    let script = r#"
import sys
import adbc_driver_flightsql.dbapi as flightsql
uri, cert = sys.argv[1], open(sys.argv[2]).read()
with flightsql.connect(uri, db_kwargs={"username": "bob", "password": "tls-secret",
        "adbc.flight.sql.client_option.tls_root_certs": cert}, autocommit=True) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT count(DISTINCT event_id) AS n FROM enriched.events__quarantine")
        print("quarantined", cur.fetch_arrow_table().column("n")[0].as_py())
        cur.execute("SELECT count(*) AS n FROM raw.events__rejects WHERE line IS NOT NULL")
        print("rejected", cur.fetch_arrow_table().column("n")[0].as_py())
"#;
    let uri = server.uri();
    let cert = dir.join("cert.pem");
    let output = crate::support::python(&["-c", script, &uri, cert.to_str().unwrap()]);
    let count = |label: &str| -> u64 {
        output
            .lines()
            .find_map(|line| line.strip_prefix(label))
            .unwrap_or_else(|| panic!("{label} in {output}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(
        count("quarantined "),
        manifest_count(example_warehouse(), "events_missing_job")
    );
    assert_eq!(
        count("rejected "),
        manifest_count(example_warehouse(), "events_unparsable"),
        "rejects tables are shown with quarantine tables, each bad row once over two runs"
    );
}

#[test]
fn serving_without_users_is_refused_beyond_loopback() {
    let output = strata(&[
        "serve",
        "--warehouse",
        example_warehouse().to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("refusing to serve 0.0.0.0:0 without credentials"),
        "{}",
        stderr(&output)
    );
    let bad = strata(&["serve", "--warehouse", ".", "--users", "nopassword"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("expected name:password pairs"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn serve_refuses_a_missing_warehouse_and_a_broken_config_file() {
    let dir = workdir("flight-bad-settings");
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("no-such-warehouse");
    let output = strata(&["serve", "--warehouse", missing.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no warehouse at"),
        "{}",
        stderr(&output)
    );

    // Each broken config fails with its path and what is wrong, before anything is served.
    let with_config = |config: &Path| {
        let output = strata(&[
            "serve",
            "--warehouse",
            example_warehouse().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ]);
        assert!(!output.status.success());
        stderr(&output)
    };
    let config = dir.join("serve.toml");
    std::fs::write(&config, "[[users]]\nname = \"bob\"\npasword = \"typo\"\n").unwrap();
    let message = with_config(&config);
    assert!(
        message.contains("serve.toml") && message.contains("pasword"),
        "{message}"
    );
    std::fs::write(&config, "[[users]]\nname = \"bob\"\npassword = \"\"\n").unwrap();
    let message = with_config(&config);
    assert!(
        message.contains("user bob has an empty password"),
        "{message}"
    );
    let message = with_config(&dir.join("absent.toml"));
    assert!(message.contains("absent.toml"), "{message}");
}

/// Runs `strata hash-password` with `input` on its standard input.
fn hash_password(input: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_hashed_password_logs_in_and_plain_text_is_accepted_with_a_warning() {
    let dir = workdir("flight-hashed-password");
    std::fs::create_dir_all(&dir).unwrap();
    let hashed = hash_password("correct horse\n");
    assert!(hashed.status.success(), "{}", stderr(&hashed));
    let hash = stdout(&hashed).trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));
    let empty = hash_password("");
    assert!(!empty.status.success());
    assert!(
        stderr(&empty).contains("no password on standard input"),
        "{}",
        stderr(&empty)
    );

    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        format!("[[users]]\nname = \"bob\"\npassword = \"{hash}\"\n[[users]]\nname = \"carol\"\npassword = \"plain-secret\"\n"),
    )
    .unwrap();
    // Plain text is accepted, with a warning that names the user and the file.
    let missing = dir.join("no-warehouse");
    let refused = strata(&[
        "serve",
        "--warehouse",
        missing.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let warned = stderr(&refused);
    assert!(
        warned.contains("the password of user carol in")
            && warned.contains("is plain text")
            && !warned.contains("user bob"),
        "{warned}"
    );
    assert!(!warned.contains("plain-secret"), "{warned}");

    let server = Server::start(example_warehouse(), &["--config", config.to_str().unwrap()]);
    let script = r#"
import sys
import adbc_driver_flightsql.dbapi as flightsql
def login(user, password):
    try:
        with flightsql.connect(sys.argv[1], db_kwargs={"username": user, "password": password}, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT 41 + 1 AS n")
                return str(cur.fetch_arrow_table().column("n")[0].as_py())
    except Exception as error:
        return "refused" if "wrong username or password" in str(error) else f"error: {error}"
print(login("bob", "correct horse"), login("bob", "correct hors"), login("carol", "plain-secret"), login("dave", "correct horse"))
"#;
    let output = crate::support::python(&["-c", script, &server.uri()]);
    assert_eq!(output.trim(), "42 refused 42 refused");

    // A hash that is not one is refused before anything is served.
    std::fs::write(
        &config,
        "[[users]]\nname = \"bob\"\npassword = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ\"\n",
    )
    .unwrap();
    let broken = strata(&[
        "serve",
        "--warehouse",
        example_warehouse().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!broken.status.success());
    assert!(
        stderr(&broken).contains("the password of user bob: not an argon2 hash"),
        "{}",
        stderr(&broken)
    );
}
