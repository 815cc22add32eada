//! Warehouses and landing zones in object stores, against real APIs on 127.0.0.1 that
//! these tests start: S3 from `moto` in server mode and Azure Blob Storage from
//! `azurite` (both installed by `scripts/test`). The recruitment example built in a
//! store, embedded and on a cluster, equals the local-disk run, as the Python
//! `deltalake` package and `fastavro` read it from the store; two runs racing on one raw
//! table ingest each landing file once; a missing bucket, wrong credentials and an
//! endpoint that does not answer each fail with one clear error and commit nothing.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, free_port};
use crate::flight::Server;
use crate::support::{example, python_with, stderr, stdout, strata, table_report, workdir};

/// Reads every table of a warehouse with independent readers; see the script.
const DUMP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/stores/dump.py");

/// The example's tables, and the tables of what they set aside.
const TABLES: [&str; 17] = [
    "raw.candidates",
    "raw.jobs",
    "raw.searches",
    "raw.events",
    "raw.events__rejects",
    "raw.candidates__rejects",
    "enriched.candidates",
    "enriched.jobs",
    "enriched.events",
    "enriched.job_events_daily",
    "enriched.job_keywords",
    "enriched.events__quarantine",
    "enriched.candidates__quarantine",
    "enriched.jobs__quarantine",
    "ranked.candidates_per_job",
    "ranked.jobs_per_candidate",
    "ranked.candidates_per_job__quarantine",
];

/// The S3 credentials the tests give moto; the secret must never be printed.
const S3_SECRET: &str = "strata-test-secret-key";

/// A store's API served on 127.0.0.1, stopped when dropped.
struct StoreServer {
    child: Child,
    /// What a client needs to reach it: endpoint and credentials.
    env: Vec<(String, String)>,
}

impl StoreServer {
    /// `moto` in server mode: the S3 API.
    fn moto() -> Self {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto's server starts (pip install 'moto[server]')");
        let server = Self {
            child,
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), "strata-test".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET.into()),
                ("AWS_REGION".into(), "us-east-1".into()),
                (
                    "AWS_ENDPOINT_URL".into(),
                    format!("http://127.0.0.1:{port}"),
                ),
            ],
        };
        wait_for_port(port, "moto");
        server
    }

    /// `azurite`: the Azure Blob Storage API, with the emulator's well-known account.
    fn azurite(name: &str) -> Self {
        let port = free_port();
        let data = workdir(&format!("azurite-{name}"));
        std::fs::create_dir_all(&data).unwrap();
        let child = Command::new("azurite-blob")
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--location", data.to_str().unwrap()])
            .args(["--silent", "--skipApiVersionCheck", "--loose"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite starts (npm install -g azurite@3.35.0)");
        let server = Self {
            child,
            env: vec![
                ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
                (
                    "AZURITE_BLOB_STORAGE_URL".into(),
                    format!("http://127.0.0.1:{port}"),
                ),
            ],
        };
        wait_for_port(port, "azurite");
        server
    }

    /// Runs `strata` with the store's endpoint and credentials.
    fn strata(&self, args: &[&str]) -> Output {
        self.strata_with(args, &[])
    }

    /// Runs `strata` with the store's settings, some of them replaced.
    fn strata_with(&self, args: &[&str], overrides: &[(&str, &str)]) -> Output {
        let mut command = self.command(env!("CARGO_BIN_EXE_strata"), overrides);
        command
            .args(args)
            .env_remove("STRATA_FORMAT")
            .env_remove("STRATA_WAREHOUSE");
        command.output().expect("the strata binary runs")
    }

    fn command(&self, program: &str, overrides: &[(&str, &str)]) -> Command {
        let mut command = Command::new(program);
        command.envs(self.env.iter().cloned());
        for (key, value) in overrides {
            command.env(key, value);
        }
        command
    }

    /// Runs Python with the store's settings; fails the test if it fails.
    fn python(&self, args: &[&str]) -> String {
        python_with(args, &self.env)
    }

    /// Creates a bucket (S3) or a container (Azure).
    fn create(&self, name: &str) {
        self.python(&["-c", CREATE, name]);
    }

    /// Every key in a bucket or container, under `prefix`.
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let listed = self.python(&["-c", LIST, bucket, prefix]);
        serde_json::from_str(&listed).unwrap()
    }

    /// Tables of a warehouse in this store, as `tests/stores/dump.py` reads them.
    fn dump(&self, warehouse: &str, tables: &[&str]) -> serde_json::Value {
        let mut args = vec![DUMP, warehouse];
        args.extend(tables);
        serde_json::from_str(&self.python(&args)).expect("the dump is JSON")
    }
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a bucket or container with the service's own Python SDK.
const CREATE: &str = r#"
import os, sys
if "AWS_ENDPOINT_URL" in os.environ:
    import boto3
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=sys.argv[1])
else:
    from azure.storage.blob import BlobServiceClient
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    url = os.environ["AZURITE_BLOB_STORAGE_URL"] + "/devstoreaccount1"
    connection = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint={url};"
    BlobServiceClient.from_connection_string(connection).create_container(sys.argv[1])
"#;

/// Lists the keys of an S3 bucket under a prefix, as JSON.
const LIST: &str = r#"
import json, os, sys
import boto3
pages = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).get_paginator("list_objects_v2")
print(json.dumps([item["Key"] for page in pages.paginate(Bucket=sys.argv[1], Prefix=sys.argv[2]) for item in page.get("Contents", [])]))
"#;

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The example generated and run on the local disk: the reference every store must equal.
fn local_reference(name: &str) -> PathBuf {
    let dir = workdir(name);
    let generated = strata(&["gen", "--scale", "0.01", "--out", dir.to_str().unwrap()]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let run = strata(&["run", &example(), "--warehouse", dir.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    dir
}

/// The same tables, row for row, in the local warehouse and the stored one.
fn assert_same_tables(store: &StoreServer, local: &Path, stored: &str) {
    let expected = store.dump(local.to_str().unwrap(), &TABLES);
    let found = store.dump(stored, &TABLES);
    let names = |dump: &serde_json::Value| {
        dump.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(names(&expected).len() >= 12, "{:?}", names(&expected));
    assert_eq!(names(&expected), names(&found));
    for table in names(&expected) {
        assert!(
            expected[&table] == found[&table],
            "{table} differs between the local warehouse and {stored}"
        );
    }
}

/// Generates the example's landing data into a store and runs the example there.
fn run_example_in(store: &StoreServer, warehouse: &str, scheduler: Option<&str>) -> String {
    let generated = store.strata(&["gen", "--scale", "0.01", "--out", warehouse]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    assert!(
        stdout(&generated).contains(&format!("{warehouse}/landing")),
        "{}",
        stdout(&generated)
    );
    let example = example();
    let mut args = vec!["run", example.as_str(), "--warehouse", warehouse];
    if let Some(address) = scheduler {
        args.extend(["--scheduler", address]);
    }
    let run = store.strata(&args);
    assert!(run.status.success(), "{}", stderr(&run));
    stdout(&run)
}

#[test]
fn the_example_in_s3_equals_the_local_run_as_deltalake_and_fastavro_read_it() {
    let local = local_reference("stores-s3-local");
    let s3 = StoreServer::moto();
    s3.create("lake");
    let warehouse = "s3://lake/wh";
    let out = run_example_in(&s3, warehouse, None);
    assert!(
        out.contains("report: s3://lake/wh/_strata/runs/"),
        "the run report is kept in the store: {out}"
    );
    assert_same_tables(&s3, &local, warehouse);

    // A second run finds every landing file ingested: nothing is read twice.
    let again = s3.strata(&["run", &example(), "--warehouse", warehouse]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_same_tables(&s3, &local, warehouse);
    let keys = s3.keys("lake", "wh/");
    assert!(
        !keys.iter().any(|key| key.contains("_strata_staging")),
        "no staging file is left: {keys:?}"
    );

    // Flight SQL serves the warehouse from the store, to the ADBC driver.
    let server = Server::start_in(warehouse, &[], &s3.env);
    let counted = s3.python(&["-c", COUNT_OVER_FLIGHT, &server.uri()]);
    let expected = s3.dump(warehouse, &["ranked.candidates_per_job"]);
    assert_eq!(
        counted.trim(),
        expected["ranked.candidates_per_job"]
            .as_array()
            .unwrap()
            .len()
            .to_string()
    );
}

/// Counts a ranked table's rows through Flight SQL with the ADBC driver.
const COUNT_OVER_FLIGHT: &str = r#"
import os, sys
import adbc_driver_flightsql.dbapi as flight_sql
with flight_sql.connect(sys.argv[1]) as connection, connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM ranked.candidates_per_job")
    print(cursor.fetchone()[0])
sys.stdout.flush()
os._exit(0)
"#;

#[test]
fn the_example_on_a_cluster_reads_and_writes_s3_directly() {
    let local = local_reference("stores-cluster-local");
    let s3 = StoreServer::moto();
    s3.create("lake");
    let cluster = Cluster::start_in("stores", 2, &[], &s3.env);
    let warehouse = "s3://lake/cluster";
    run_example_in(&s3, warehouse, Some(&cluster.address));
    assert_same_tables(&s3, &local, warehouse);

    // `submit` hands the whole run to the scheduler, which reaches the store itself.
    let submitted = s3.strata(&[
        "submit",
        &example(),
        "--warehouse",
        warehouse,
        "--scheduler",
        &cluster.address,
    ]);
    assert!(submitted.status.success(), "{}", stderr(&submitted));
    assert_same_tables(&s3, &local, warehouse);
}

#[test]
fn the_demo_runs_in_a_bucket() {
    let s3 = StoreServer::moto();
    s3.create("demo");
    let demo = s3.strata(&["demo", "--scale", "0.002", "--warehouse", "s3://demo/wh"]);
    assert!(demo.status.success(), "{}", stderr(&demo));
    let said = stdout(&demo);
    assert!(said.contains("3/3 the best candidates"), "{said}");
    assert!(said.contains("tables are under s3://demo/wh"), "{said}");
    let again = s3.strata(&["demo", "--warehouse", "s3://demo/wh"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("1/3 delivering 1000 new tracking events to s3://demo/wh/landing"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn the_example_in_azure_equals_the_local_run() {
    let local = local_reference("stores-azure-local");
    let azure = StoreServer::azurite("example");
    azure.create("lake");
    let warehouse = "az://lake/wh";
    run_example_in(&azure, warehouse, None);
    assert_same_tables(&azure, &local, warehouse);
}

/// One raw table over many small landing files, for runs that race.
const RACE: &str = "\
CREATE EXTERNAL TABLE landing.readings (id BIGINT NOT NULL, value DOUBLE)
STORED AS CSV LOCATION 's3://race/landing/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.readings AS SELECT * FROM landing.readings;
";

#[test]
fn two_runs_racing_on_one_raw_table_ingest_each_landing_file_once() {
    let s3 = StoreServer::moto();
    s3.create("race");
    let dir = workdir("stores-race");
    std::fs::create_dir_all(dir.join("landing")).unwrap();
    const FILES: u64 = 48;
    const ROWS: u64 = 200;
    for file in 0..FILES {
        let mut text = String::from("id,value\n");
        for row in 0..ROWS {
            text.push_str(&format!("{},{row}.5\n", file * ROWS + row));
        }
        std::fs::write(dir.join(format!("landing/r{file:03}.csv")), text).unwrap();
    }
    let upload = s3.python(&["-c", UPLOAD, dir.join("landing").to_str().unwrap(), "race"]);
    assert_eq!(upload.trim(), FILES.to_string());
    std::fs::write(dir.join("race.sql"), RACE).unwrap();

    let run = || {
        s3.command(env!("CARGO_BIN_EXE_strata"), &[])
            .args(["run", dir.join("race.sql").to_str().unwrap()])
            .args(["--warehouse", "s3://race/wh"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (run(), run());
    for child in [first, second] {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let dump = s3.dump("s3://race/wh", &["raw.readings"]);
    let rows = dump["raw.readings"].as_array().unwrap();
    let mut ids: Vec<u64> = rows
        .iter()
        .map(|row| {
            let row: serde_json::Value = serde_json::from_str(row.as_str().unwrap()).unwrap();
            row["id"].as_u64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        rows.len() as u64,
        FILES * ROWS,
        "every landing file's rows, each once"
    );
    assert_eq!(ids.len() as u64, FILES * ROWS, "no row twice");

    // Each landing file is in exactly one run's report; the run that lost the commit
    // race says which files it dropped.
    let reports: Vec<serde_json::Value> =
        serde_json::from_str(&s3.python(&["-c", REPORTS, "race", "wh/_strata/runs/"])).unwrap();
    assert_eq!(reports.len(), 2);
    let count = |key: &str| -> u64 {
        reports
            .iter()
            .map(|report| report["tables"][1][key].as_u64().unwrap())
            .sum()
    };
    assert_eq!(count("files_ingested"), FILES);
    assert!(
        count("files_raced") > 0,
        "both runs read the log before either committed, so one of them lost the race: {reports:?}"
    );
}

/// Every run report under a prefix of an S3 bucket, as a JSON list.
const REPORTS: &str = r#"
import json, os, sys
import boto3
client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
keys = [item["Key"] for item in client.list_objects_v2(Bucket=sys.argv[1], Prefix=sys.argv[2]).get("Contents", [])]
print(json.dumps([json.loads(client.get_object(Bucket=sys.argv[1], Key=key)["Body"].read()) for key in keys]))
"#;

/// Uploads a directory's files to an S3 bucket under a prefix (`landing/` unless
/// given); prints how many.
const UPLOAD: &str = r#"
import os, sys
import boto3
client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
prefix = sys.argv[3] if len(sys.argv) > 3 else "landing/"
names = sorted(os.listdir(sys.argv[1]))
for name in names:
    client.upload_file(os.path.join(sys.argv[1], name), sys.argv[2], prefix + name)
print(len(names))
"#;

/// A landing zone in another store than the warehouse, reached with its own OPTIONS.
const OWN_OPTIONS: &str = "\
CREATE EXTERNAL TABLE landing.readings (id BIGINT NOT NULL, value DOUBLE)
STORED AS CSV LOCATION 's3://deliveries/readings/'
OPTIONS ('format.has_header' 'true', 'bad_rows.limit' '5', @STORE@);
CREATE EXTERNAL TABLE landing.jobs STORED AS PARQUET LOCATION 's3://deliveries/jobs/' OPTIONS (@STORE@);
CREATE TABLE raw.readings AS SELECT * FROM landing.readings;
CREATE TABLE raw.jobs AS SELECT * FROM landing.jobs;
";

#[test]
fn a_landing_zone_in_another_store_is_read_with_its_own_options_and_no_secret_is_shown() {
    let s3 = StoreServer::moto();
    s3.create("deliveries");
    let dir = workdir("stores-own-options");
    let generated = strata(&["gen", "--scale", "0.002", "--out", dir.to_str().unwrap()]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let jobs = dir.join("landing/jobs");
    let uploaded = s3.python(&["-c", UPLOAD, jobs.to_str().unwrap(), "deliveries", "jobs/"]);
    let readings = dir.join("readings");
    std::fs::create_dir_all(&readings).unwrap();
    std::fs::write(readings.join("r.csv"), "id,value\n1,0.5\n2,1.5\n3,oops\n").unwrap();
    s3.python(&[
        "-c",
        UPLOAD,
        readings.to_str().unwrap(),
        "deliveries",
        "readings/",
    ]);

    // The store's settings are the source's own: this process has none in its environment.
    let endpoint = &s3.env[3].1;
    let store = format!(
        "'aws.endpoint' '{endpoint}', 'aws.access_key_id' 'strata-test', \
         'aws.secret_access_key' '{S3_SECRET}', 'aws.region' 'us-east-1'"
    );
    let pipeline = dir.join("pipeline.sql");
    std::fs::write(&pipeline, OWN_OPTIONS.replace("@STORE@", &store)).unwrap();
    let warehouse = dir.join("wh");
    let run = strata(&[
        "run",
        pipeline.to_str().unwrap(),
        "--warehouse",
        warehouse.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let report = table_report(&stdout(&run), "raw.readings");
    assert_eq!(report["rows_written"], 2, "{report}");
    assert_eq!(report["rows_rejected"], 1, "{report}");
    let jobs_report = table_report(&stdout(&run), "raw.jobs");
    assert_eq!(
        jobs_report["files_ingested"].as_u64().unwrap(),
        uploaded.trim().parse::<u64>().unwrap(),
        "{jobs_report}"
    );
    let history = std::fs::read_dir(warehouse.join("_strata/runs")).unwrap();
    for entry in history {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains(S3_SECRET), "the run report holds no secret");
    }
    assert!(!stdout(&run).contains(S3_SECRET) && !stderr(&run).contains(S3_SECRET));

    // A misspelt store option is a located error of `strata check`.
    std::fs::write(
        &pipeline,
        OWN_OPTIONS.replace("@STORE@", "'aws.acess_key_id' 'x'"),
    )
    .unwrap();
    let check = strata(&[
        "check",
        pipeline.to_str().unwrap(),
        "--warehouse",
        warehouse.to_str().unwrap(),
    ]);
    assert!(!check.status.success());
    let said = format!("{}{}", stdout(&check), stderr(&check));
    assert!(
        said.contains("unknown store option 'acess_key_id'"),
        "{said}"
    );
    assert!(said.contains("pipeline.sql:1"), "{said}");
}

#[test]
fn a_missing_bucket_or_an_endpoint_that_does_not_answer_is_one_clear_error() {
    let s3 = StoreServer::moto();
    s3.create("lake");
    let generated = s3.strata(&["gen", "--scale", "0.01", "--out", "s3://lake/errors"]);
    assert!(generated.status.success(), "{}", stderr(&generated));

    let missing = s3.strata(&["run", &example(), "--warehouse", "s3://no-such-bucket/wh"]);
    assert!(!missing.status.success());
    let said = stderr(&missing);
    assert!(said.contains("s3://no-such-bucket/wh"), "{said}");
    assert_eq!(
        said.lines().filter(|l| l.starts_with("Error")).count(),
        1,
        "{said}"
    );
    assert!(!said.contains(S3_SECRET), "{said}");

    let closed = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let unreachable = s3.strata_with(
        &["run", &example(), "--warehouse", "s3://lake/errors"],
        &[("AWS_ENDPOINT_URL", &closed)],
    );
    assert!(!unreachable.status.success());
    let said = stderr(&unreachable);
    assert!(said.contains("s3://lake/errors"), "{said}");
    assert!(!said.contains(S3_SECRET), "{said}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "an endpoint that does not answer fails, it does not hang"
    );
    let committed: Vec<String> = s3
        .keys("lake", "errors/")
        .into_iter()
        .filter(|key| !key.starts_with("errors/landing/"))
        .collect();
    assert!(committed.is_empty(), "nothing was written: {committed:?}");

    // A warehouse in this process's memory cannot be shared with a cluster.
    let submitted = strata(&[
        "submit",
        &example(),
        "--warehouse",
        "memory://wh",
        "--scheduler",
        "127.0.0.1:1",
    ]);
    assert!(!submitted.status.success());
    assert!(
        stderr(&submitted).contains("memory://wh/ lives in this process's memory"),
        "{}",
        stderr(&submitted)
    );
}

#[test]
fn wrong_credentials_are_one_clear_error_that_shows_no_key() {
    let azure = StoreServer::azurite("credentials");
    azure.create("lake");
    let wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==";
    let refused = azure.strata_with(
        &["run", &example(), "--warehouse", "az://lake/wh"],
        &[("AZURE_STORAGE_ACCOUNT_KEY", wrong_key)],
    );
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(said.contains("az://lake/wh"), "{said}");
    assert!(said.contains("credentials"), "{said}");
    assert!(!said.contains(wrong_key), "{said}");
}
