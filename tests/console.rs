//! The web console: driven in a real headless Chromium against `strata console` on the
//! example's warehouse (log in, open a run, follow a table to its lineage, checked
//! against the run report and `strata lineage`; screenshots kept under
//! `target/tmp/console-screenshots/`), and served by a scheduler with its cluster and
//! runs, through its JSON API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::cluster::{Cluster, free_port, generated};
use crate::support::{example, python_file, stderr, stdout, strata, workdir};

pub(crate) const USER: &str = "ana";
pub(crate) const PASSWORD: &str = "console-pass-7";

/// A `strata` server whose first line of output says where it serves.
pub(crate) struct Served {
    child: Child,
    pub(crate) line: String,
}

impl Served {
    pub(crate) fn start(args: &[&str]) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("strata starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Served { child, line }
    }

    /// `strata console` on `warehouse` with the users of `config`, logged in as `user`
    /// (whose password is `<user>-secret`): the console, its port and the session cookie.
    pub(crate) fn console_as(warehouse: &Path, config: &Path, user: &str) -> (Served, u16, String) {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let console = Served::start(&[
            "console",
            "--warehouse",
            warehouse.to_str().unwrap(),
            "--listen",
            &listen,
            "--config",
            config.to_str().unwrap(),
        ]);
        let login = format!(r#"{{"user":"{user}","password":"{user}-secret"}}"#);
        let (status, _, cookie) = http(port, "POST", "/api/login", "", &login);
        assert_eq!(status, 200, "{user} logs in");
        (console, port, cookie)
    }

    /// Sends SIGTERM and waits up to `within` for it to exit; whether it did.
    pub(crate) fn terminate(&mut self, within: std::time::Duration) -> bool {
        crate::support::terminate(&mut self.child, within)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; the status and the JSON body.
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    cookie: &str,
    body: &str,
) -> (u16, Value, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncookie: {cookie}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let set_cookie = head
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: "))
        .map(|cookie| cookie.split(';').next().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::Null),
        set_cookie,
    )
}

fn log_in(port: u16) -> String {
    let body = format!(r#"{{"user":"{USER}","password":"{PASSWORD}"}}"#);
    let (status, _, cookie) = http(port, "POST", "/api/login", "", &body);
    assert_eq!(status, 200);
    assert!(cookie.starts_with("strata_session="), "{cookie}");
    cookie
}

#[test]
fn a_browser_logs_in_opens_a_run_and_follows_a_table_to_its_lineage() {
    let warehouse = generated("console", "0.01");
    let wh = warehouse.to_str().unwrap();
    let run = strata(&["run", &example(), "--warehouse", wh]);
    assert!(run.status.success(), "{}", stderr(&run));
    let report = stdout(&run)
        .lines()
        .find_map(|line| line.strip_prefix("report: "))
        .expect("a report line")
        .to_owned();
    let lineage = strata(&["lineage", &example(), "--warehouse", wh, "--json"]);
    assert!(lineage.status.success(), "{}", stderr(&lineage));
    let lineage_file = warehouse.join("lineage.json");
    std::fs::write(&lineage_file, stdout(&lineage)).unwrap();

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let users = format!("{USER}:{PASSWORD}");
    let console = Served::start(&[
        "console",
        "--warehouse",
        wh,
        "--pipeline",
        &example(),
        "--listen",
        &listen,
        "--users",
        &users,
    ]);
    assert!(
        console
            .line
            .contains(&format!("on http://{listen}/ (1 user(s); 1 pipeline(s))")),
        "{}",
        console.line
    );
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let said = python_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/console/drive.py"),
        &[
            &format!("http://{listen}/"),
            USER,
            PASSWORD,
            &report,
            lineage_file.to_str().unwrap(),
            shots.to_str().unwrap(),
        ],
    );
    assert!(said.contains("console checked"), "{said}");
    for step in ["01-login-refused", "03-run", "05-lineage", "07-dag"] {
        let shot = shots.join(format!("{step}.png"));
        let bytes = std::fs::read(&shot).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            shot.display()
        );
    }

    // Without a session, the API says to log in; unknown things are 404s.
    assert_eq!(http(port, "GET", "/api/runs", "", "").0, 401);
    assert_eq!(
        http(port, "GET", "/api/runs", "strata_session=forged", "").0,
        401
    );
    let cookie = log_in(port);
    let (status, body, _) = http(port, "GET", "/api/tables/ranked.nope", &cookie, "");
    assert_eq!(status, 404);
    assert_eq!(body["error"], "no table ranked.nope in the warehouse");
    let (status, body, _) = http(port, "GET", "/api/runs/run-0-nope", &cookie, "");
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no run run-0-nope in the warehouse's history"))
    );
    // The raw zone's table page: commits with rows, partitions and rejected rows.
    let (status, raw, _) = http(port, "GET", "/api/tables/raw.events", &cookie, "");
    assert_eq!(status, 200, "{raw}");
    assert_eq!(raw["history"][0]["operation"], "APPEND");
    assert!(
        raw["partitions"][0]
            .as_str()
            .unwrap()
            .starts_with("ingest_date="),
        "{raw}"
    );
    assert!(
        raw["set_aside"]["rejected"]["rows"].as_u64().unwrap() > 0,
        "{raw}"
    );
    // A Delta table's history counts the rows each version wrote.
    let (_, ranked, _) = http(
        port,
        "GET",
        "/api/tables/ranked.candidates_per_job",
        &cookie,
        "",
    );
    assert_eq!(ranked["history"][0]["rows"], ranked["rows"], "{ranked}");
    assert_eq!(ranked["sample"].as_array().unwrap().len(), 20);
}

#[test]
fn the_scheduler_serves_the_console_with_its_cluster_and_refuses_an_open_one() {
    let warehouse = workdir("console-scheduler");
    let wh = warehouse.to_str().unwrap().to_owned();
    let landing = generated("console-scheduler-landing", "0.01");
    crate::cluster::copy_dir(&landing, &warehouse);
    let console_port = free_port();
    let users = format!("{USER}:{PASSWORD}");
    let cluster = Cluster::start_with(
        "console",
        1,
        &[
            "--warehouse",
            &wh,
            "--console-port",
            &console_port.to_string(),
            "--users",
            &users,
            "--metrics-port",
            &free_port().to_string(),
        ],
    );
    let submitted = cluster.submit(&example(), &warehouse);
    assert!(submitted.status.success(), "{}", stderr(&submitted));
    let cookie = log_in(console_port);
    let (_, me, _) = http(console_port, "GET", "/api/me", &cookie, "");
    assert_eq!(me["served_by"], "scheduler");
    let (_, runs, _) = http(console_port, "GET", "/api/runs", &cookie, "");
    assert_eq!(runs["runs"][0]["state"], "succeeded", "{runs}");
    assert_eq!(runs["live"], serde_json::json!([]));
    let (_, cluster_view, _) = http(console_port, "GET", "/api/cluster", &cookie, "");
    let executors = cluster_view["executors"].as_array().unwrap();
    assert_eq!(executors.len(), 1, "{cluster_view}");
    assert_eq!(executors[0]["slots"], 2);
    assert!(!cluster_view["history"].as_array().unwrap().is_empty());
    let (status, page, _) = http(console_port, "GET", "/", "", "");
    assert_eq!(status, 200);
    assert_eq!(page, Value::Null, "the page is HTML");

    // An open console (no users) on an address others reach is refused, as Flight SQL is.
    let open = strata(&["console", "--warehouse", &wh, "--listen", "0.0.0.0:0"]);
    assert!(!open.status.success());
    assert!(
        stderr(&open).contains("would show the warehouse to anyone who reaches it"),
        "{}",
        stderr(&open)
    );
    let missing = strata(&["console", "--warehouse", "/nonexistent/strata-warehouse"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("/nonexistent/strata-warehouse"),
        "{}",
        stderr(&missing)
    );
}
