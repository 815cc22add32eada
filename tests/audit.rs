//! The audit trail: every Flight SQL query, as it ends, in the warehouse's Delta table
//! `_strata.audit` (user, role, SQL, tables and columns read, rows, status), read
//! through ADBC by an admin and refused to everyone else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::console::{Served, http};
use crate::flight::Server;
use crate::support::{python, run_pipeline, workdir};

/// A warehouse with one small table, `enriched.people`, and a config of two users:
/// ana, a data scientist, and root, an admin.
fn people(name: &str) -> (PathBuf, PathBuf) {
    let dir = workdir(name);
    std::fs::create_dir_all(dir.join("landing/people")).unwrap();
    std::fs::write(
        dir.join("landing/people/a.csv"),
        "id,name,email\n1,Ana,ana@example.com\n2,Bo,bo@example.com\n3,Cy,cy@example.com\n",
    )
    .unwrap();
    let pipeline = dir.join("people.sql");
    std::fs::write(
        &pipeline,
        "CREATE EXTERNAL TABLE landing.people (id BIGINT NOT NULL, name VARCHAR, email VARCHAR)
         STORED AS CSV LOCATION 'landing/people/' OPTIONS ('format.has_header' 'true');
         CREATE TABLE raw.people AS SELECT * FROM landing.people;
         CREATE TABLE enriched.people AS SELECT * FROM raw.people;\n",
    )
    .unwrap();
    run_pipeline(&pipeline, &dir, &[]);
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        "[[users]]\nname = \"ana\"\npassword = \"ana-secret\"\nrole = \"data_scientist\"\n\
         [[users]]\nname = \"root\"\npassword = \"root-secret\"\nrole = \"admin\"\n",
    )
    .unwrap();
    (dir, config)
}

/// The audit table's rows, as the deltalake package reads them.
fn trail(dir: &Path) -> Vec<serde_json::Value> {
    let read = python(&[
        "-c",
        "import json, os, sys\nfrom deltalake import DeltaTable\n\
         rows = DeltaTable(sys.argv[1]).to_pyarrow_table().to_pylist()\n\
         print(json.dumps(sorted(rows, key=lambda row: row['started']), default=str))\n\
         sys.stdout.flush()\nos._exit(0)",
        dir.join("_strata/audit").to_str().unwrap(),
    ]);
    serde_json::from_str(&read).unwrap()
}

#[test]
fn every_query_is_audited_and_only_admins_read_the_trail() {
    let (dir, config) = people("audit-trail");
    let server = Server::start(&dir, &["--config", config.to_str().unwrap()]);
    let script = r#"
import json, os, sys, time
import adbc_driver_flightsql.dbapi as flightsql
def connect(user, password):
    return flightsql.connect(sys.argv[1], db_kwargs={"username": user, "password": password}, autocommit=True)
def attempt(cur, sql, parameters=None):
    try:
        cur.execute(sql, parameters)
        return cur.fetch_arrow_table().num_rows
    except Exception as error:
        return str(error)
with connect("ana", "ana-secret") as conn, conn.cursor() as cur:
    said = [
        attempt(cur, "SELECT name FROM enriched.people WHERE id < 3"),
        attempt(cur, "SELECT * FROM enriched.nobody"),
        attempt(cur, "SELECT email FROM people WHERE id = ?", (1,)),
        attempt(cur, "SELECT * FROM _strata.audit"),
    ]
# The trail is committed in the background, once a second at most.
rows = []
admin_queries = 0
deadline = time.time() + 30
while time.time() < deadline and len(rows) < 4:
    time.sleep(1)
    admin_queries += 1
    with connect("root", "root-secret") as conn, conn.cursor() as cur:
        try:
            cur.execute("SELECT user, role, client, sql, tables, columns, rows, status, error FROM _strata.audit WHERE user = 'ana' ORDER BY started")
            rows = cur.fetch_arrow_table().to_pylist()
        except Exception as error:
            rows = [str(error)]
            if "holds no queries yet" not in str(error):
                break
            rows = []
print(json.dumps({"said": said, "audit": rows, "admin_queries": admin_queries}))
sys.stdout.flush()
os._exit(0)
"#;
    let found: serde_json::Value =
        serde_json::from_str(&python(&["-c", script, &server.uri()])).unwrap();
    let said = &found["said"];
    assert_eq!((&said[0], &said[2]), (&2.into(), &1.into()), "{found:#}");
    assert!(
        said[3]
            .as_str()
            .unwrap()
            .contains("readable by the admin role only"),
        "{found:#}"
    );
    let audit = found["audit"].as_array().unwrap();
    assert_eq!(audit.len(), 4, "{found:#}");
    for row in audit {
        assert_eq!(
            (&row["user"], &row["role"], &row["client"]),
            (
                &"ana".into(),
                &"data_scientist".into(),
                &"flight-sql".into()
            ),
            "{row}"
        );
    }
    let first = &audit[0];
    assert_eq!(
        first["sql"],
        "SELECT name FROM enriched.people WHERE id < 3"
    );
    assert_eq!(
        (&first["status"], &first["rows"]),
        (&"ok".into(), &2.into()),
        "{first}"
    );
    assert_eq!(
        first["tables"],
        serde_json::json!(["enriched.people"]),
        "{first}"
    );
    assert_eq!(
        first["columns"],
        serde_json::json!(["enriched.people.id", "enriched.people.name"]),
        "the columns the plan reads, not the whole table: {first}"
    );
    assert_eq!(audit[1]["status"], "error", "{}", audit[1]);
    assert!(
        audit[1]["error"]
            .as_str()
            .unwrap()
            .contains("unknown table enriched.nobody"),
        "{}",
        audit[1]
    );
    assert_eq!(
        (&audit[2]["status"], &audit[2]["rows"]),
        (&"ok".into(), &1.into()),
        "a prepared statement: {}",
        audit[2]
    );
    assert!(
        audit[2]["columns"]
            .to_string()
            .contains("enriched.people.email"),
        "{}",
        audit[2]
    );
    assert_eq!(audit[3]["status"], "error", "{}", audit[3]);

    // A stopping server commits what it recorded last (the admin's own queries) before
    // it exits; the trail is a Delta table any Delta reader opens.
    let mut server = server;
    assert!(server.terminate(Duration::from_secs(20)));
    let trail = trail(&dir);
    let by_root = trail.iter().filter(|row| row["user"] == "root").count();
    assert_eq!(
        (by_root as u64, trail.len() as u64),
        (found["admin_queries"].as_u64().unwrap(), by_root as u64 + 4),
        "{trail:#?}"
    );
}

#[test]
fn the_console_s_table_pages_are_in_the_audit_trail() {
    let (dir, config) = people("audit-console");
    let (mut console, port, cookie) = Served::console_as(&dir, &config, "ana");
    let (status, page, _) = http(port, "GET", "/api/tables/enriched.people", &cookie, "");
    assert_eq!(
        (status, page["sample"].as_array().map(Vec::len)),
        (200, Some(3)),
        "{page}"
    );
    let (status, _, _) = http(port, "GET", "/api/tables/enriched.nobody", &cookie, "");
    assert_ne!(status, 200);
    // Not logged in: refused, and nobody's page to record.
    let (status, _, _) = http(port, "GET", "/api/tables/enriched.people", "", "");
    assert_eq!(status, 401);
    assert!(console.terminate(Duration::from_secs(20)));

    let trail = trail(&dir);
    assert_eq!(trail.len(), 2, "{trail:#?}");
    let (page, missing) = (&trail[0], &trail[1]);
    assert_eq!(
        (
            &page["user"],
            &page["role"],
            &page["client"],
            &page["status"],
            &page["rows"]
        ),
        (
            &"ana".into(),
            &"data_scientist".into(),
            &"console".into(),
            &"ok".into(),
            &3.into()
        ),
        "{page}"
    );
    assert_eq!(page["sql"], "SELECT * FROM enriched.people LIMIT 20");
    assert_eq!(
        page["columns"],
        serde_json::json!([
            "enriched.people.email",
            "enriched.people.id",
            "enriched.people.name"
        ])
    );
    assert_eq!(missing["status"], "error", "{missing}");
}
