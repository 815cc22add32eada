//! `strata serve` against real Flight SQL clients: the Python ADBC driver (installed by
//! `scripts/test`) over the recruitment example's warehouse.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::support::{example, python_file, stderr, strata, workdir};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-for-tests";

/// A `strata serve` process, stopped when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    /// Starts `strata serve` on a free loopback port with `args` and waits until it listens.
    pub fn start(warehouse: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args([
                "serve",
                "--warehouse",
                warehouse.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
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
        let addr = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("grpc://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Server { child, addr }
    }

    pub fn uri(&self) -> String {
        format!("grpc://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The recruitment example, generated and run once for every test here.
pub fn example_warehouse() -> &'static Path {
    static WAREHOUSE: OnceLock<PathBuf> = OnceLock::new();
    WAREHOUSE.get_or_init(|| {
        let dir = workdir("flight-example");
        let wh = dir.to_str().unwrap();
        let generated = strata(&["gen", "--scale", "0.002", "--out", wh]);
        assert!(generated.status.success(), "{}", stderr(&generated));
        let run = strata(&["run", &example(), "--warehouse", wh]);
        assert!(run.status.success(), "{}", stderr(&run));
        // A second run gives enriched.events a version 1 to travel back from.
        let again = strata(&["run", &example(), "--warehouse", wh]);
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
    let output = python_file(&scenarios(), &[&server.uri(), USER, PASSWORD]);
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
