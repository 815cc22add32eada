//! What the integration tests share: running `strata` as a user would, and scratch space.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// Runs the `strata` binary, unaffected by any `STRATA_*` settings of the caller.
pub(crate) fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env_remove("STRATA_FORMAT")
        .env_remove("STRATA_WAREHOUSE")
        .output()
        .expect("the strata binary runs")
}

/// Runs `strata COMMAND PIPELINE --warehouse WAREHOUSE EXTRA…`, as it ends.
pub(crate) fn on_warehouse(
    command: &str,
    pipeline: &Path,
    warehouse: &Path,
    extra: &[&str],
) -> Output {
    let args = [
        &[
            command,
            pipeline.to_str().unwrap(),
            "--warehouse",
            warehouse.to_str().unwrap(),
        ],
        extra,
    ]
    .concat();
    strata(&args)
}

/// Runs `strata run PIPELINE --warehouse WAREHOUSE EXTRA…`, which must succeed; its output.
pub(crate) fn run_pipeline(pipeline: &Path, warehouse: &Path, extra: &[&str]) -> String {
    let output = on_warehouse("run", pipeline, warehouse, extra);
    assert!(
        output.status.success(),
        "strata run {extra:?} failed:\n{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// Every row of each Delta table (`layer/name` under `warehouse`) but the run ids, sorted,
/// one line per table: what two warehouses built from the same deliveries compare.
pub(crate) fn delta_rows(warehouse: &Path, tables: &[&str]) -> Vec<String> {
    const DUMP: &str = r#"
import json, os, sys
from deltalake import DeltaTable
wh, tables = sys.argv[1], sys.argv[2:]
for name in tables:
    rows = DeltaTable(os.path.join(wh, name)).to_pyarrow_table().to_pylist()
    for row in rows:
        row.pop("_run_id", None)
    print(name, json.dumps(sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)))
sys.stdout.flush()
os._exit(0)
"#;
    let mut args = vec!["-c", DUMP, warehouse.to_str().unwrap()];
    args.extend(tables);
    python(&args).lines().map(str::to_owned).collect()
}

/// Every row of the data files and of the rejects files a raw table's commits name (read
/// with `fastavro`, as another tool would), as JSON objects: `{"files": […], "rejects": […]}`.
pub(crate) fn raw_committed(table: &Path) -> Value {
    const READ: &str = r#"
import glob, json, os, sys
import fastavro
table = sys.argv[1]
commits = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(table, "_strata_log", "*.json")))]
def rows(kind):
    out = []
    for commit in commits:
        for f in commit.get(kind, []):
            with open(os.path.join(table, f["path"]), "rb") as handle:
                out.extend(fastavro.reader(handle))
    return out
print(json.dumps({"files": rows("files"), "rejects": rows("rejects")}, default=str))
"#;
    serde_json::from_str(&python(&["-c", READ, table.to_str().unwrap()])).unwrap()
}

/// A command's standard output as text.
pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A command's standard error as text.
pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Sends SIGTERM to a server and waits up to `within` for it to exit; whether it did.
pub(crate) fn terminate(child: &mut std::process::Child, within: Duration) -> bool {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A path under the target directory that does not exist yet, so each test starts clean.
pub(crate) fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The recruitment example pipeline directory.
pub(crate) fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/recruitment")
        .display()
        .to_string()
}

/// A count from the `landing/manifest.json` that `strata gen` writes.
pub(crate) fn manifest_count(dir: &Path, key: &str) -> u64 {
    let manifest = std::fs::read_to_string(dir.join("landing/manifest.json")).unwrap();
    let line = manifest
        .lines()
        .find(|line| line.trim_start().starts_with(&format!("\"{key}\"")))
        .unwrap_or_else(|| panic!("{key} in {manifest}"));
    line.split(':')
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(',')
        .parse()
        .unwrap()
}

/// Runs `python3` with `args` and returns its stdout, failing the test if it fails.
///
/// Scripts end with `os._exit(0)`: the `deltalake` and ADBC wheels can abort while the
/// interpreter tears down their thread pools ("terminate called without an active
/// exception") after all output is written, which would fail a correct check.
pub(crate) fn python(args: &[&str]) -> String {
    python_with(args, &[])
}

/// Runs `python3` as [`python`] does, with `env` set.
pub(crate) fn python_with(args: &[&str], env: &[(String, String)]) -> String {
    let output = Command::new("python3")
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "python failed: {}\n{}",
        stderr(&output),
        stdout(&output)
    );
    stdout(&output)
}

/// Runs a Python script file with `args`; see [`python`].
pub(crate) fn python_file(script: &Path, args: &[&str]) -> String {
    let mut all = vec![script.to_str().unwrap()];
    all.extend_from_slice(args);
    python(&all)
}

/// One table's entry in the JSON run report that `strata run` or `strata submit` named
/// on its standard output (`report: <path>`).
pub(crate) fn table_report(stdout: &str, table: &str) -> serde_json::Value {
    let path = stdout
        .lines()
        .find_map(|line| line.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("no report path in\n{stdout}"));
    let text = std::fs::read_to_string(path.trim())
        .unwrap_or_else(|error| panic!("reading the run report {path}: {error}"));
    let report: serde_json::Value = serde_json::from_str(&text).expect("the run report is JSON");
    report["tables"]
        .as_array()
        .expect("the run report lists its tables")
        .iter()
        .find(|entry| entry["table"] == table)
        .cloned()
        .unwrap_or_else(|| panic!("no {table} in the run report {path}"))
}

/// An HTTP endpoint on 127.0.0.1 (a webhook, an OpenLineage endpoint) that answers 200
/// to every POST and hands over its JSON body.
pub(crate) struct Receiver {
    pub url: String,
    bodies: mpsc::Receiver<Value>,
    patience: Duration,
}

impl Receiver {
    pub(crate) fn start(patience: Duration) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (send, bodies) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap();
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                let _ = send.send(serde_json::from_slice(&body).unwrap());
            }
        });
        Receiver {
            url,
            bodies,
            patience,
        }
    }

    /// The next body, waiting up to the receiver's patience.
    pub(crate) fn next(&self) -> Value {
        self.bodies
            .recv_timeout(self.patience)
            .expect("a POST came")
    }
}
