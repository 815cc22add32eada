//! Masks and row filters: two ADBC users of different roles read one table, one through
//! its policies; the predicates, statistics, partition values, limits, sorts and error
//! messages of their queries never show a stored value the policy hides; the console
//! shows the same; and a policy that does not plan fails `strata check`.

use std::path::PathBuf;
use std::time::Duration;

use crate::console::{Served, http};
use crate::flight::Server;
use crate::support::{python, run_pipeline, stderr, strata, workdir};

/// The pipeline: people with names, e-mails, cities, regions (the partitions) and
/// birth dates, masked for everyone but `recruiter_admin`, who alone sees every city;
/// others see the cities `enriched.user_cities` maps their user name to.
const PIPELINE: &str = "
CREATE EXTERNAL TABLE landing.people (
  id BIGINT NOT NULL, name VARCHAR, email VARCHAR, city VARCHAR, region VARCHAR, born DATE
) STORED AS CSV LOCATION 'landing/people/'
  OPTIONS ('format.has_header' 'true', 'bad_rows.limit' '50%');
CREATE EXTERNAL TABLE landing.user_cities (username VARCHAR NOT NULL, city VARCHAR NOT NULL)
  STORED AS CSV LOCATION 'landing/user_cities/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.people AS SELECT * FROM landing.people;
CREATE TABLE raw.user_cities AS SELECT * FROM landing.user_cities;
CREATE TABLE enriched.user_cities AS SELECT username, city FROM raw.user_cities;
CREATE TABLE enriched.people PARTITIONED BY (region) AS
  SELECT id, name, email, city, born, region FROM raw.people;

CREATE MASK email_mask ON enriched.people (email) AS
  CASE WHEN current_role() = 'recruiter_admin' THEN email ELSE mask_email(email) END;
CREATE MASK name_mask ON enriched.people (name) AS
  CASE WHEN current_role() = 'recruiter_admin' THEN name ELSE hash_pii(name) END;
CREATE MASK region_mask ON enriched.people (region) AS
  CASE WHEN current_role() = 'recruiter_admin' THEN region ELSE redact(region) END;
CREATE MASK born_mask ON enriched.people (born) AS
  CASE WHEN current_role() = 'recruiter_admin' THEN born ELSE year_only(born) END;
CREATE MASK raw_email ON raw.people (email) AS mask_email(email);
CREATE ROW FILTER own_cities ON enriched.people AS
  current_role() = 'recruiter_admin'
  OR city IN (SELECT city FROM enriched.user_cities WHERE username = current_user());
";

/// The stored values the data scientist must never see.
const HIDDEN: [&str; 9] = [
    "ana.lopez",
    "Barcelona",
    "Sevilla",
    "este",
    "centro",
    "Dan",
    "dan.ruiz",
    "1990-05-17",
    "Ana",
];

fn warehouse(name: &str) -> (PathBuf, PathBuf) {
    let dir = workdir(name);
    std::fs::create_dir_all(dir.join("landing/people")).unwrap();
    std::fs::create_dir_all(dir.join("landing/user_cities")).unwrap();
    std::fs::write(
        dir.join("landing/people/a.csv"),
        "id,name,email,city,region,born\n\
         1,Ana,ana.lopez@example.com,Madrid,centro,1990-05-17\n\
         2,Bo,bo.diaz@example.com,Madrid,centro,1985-01-02\n\
         3,Cy,cy.gil@example.com,Madrid,centro,2001-12-31\n\
         4,Dan,dan.ruiz@example.com,Barcelona,este,1979-07-07\n\
         5,Eve,eve.sanz@example.com,Barcelona,este,1995-03-03\n\
         6,Fay,fay.mora@example.com,Sevilla,sur,1988-08-08\n\
         seven,Gil,gil.vega@example.com,Madrid,centro,1999-09-09\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("landing/user_cities/a.csv"),
        "username,city\nana,Madrid\n",
    )
    .unwrap();
    let pipeline = dir.join("people.sql");
    std::fs::write(&pipeline, PIPELINE).unwrap();
    run_pipeline(&pipeline, &dir, &[]);
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        "show_quarantine = true\n\
         [[users]]\nname = \"ana\"\npassword = \"ana-secret\"\nrole = \"data_scientist\"\n\
         [[users]]\nname = \"root\"\npassword = \"root-secret\"\nrole = \"recruiter_admin\"\n\
         [[users]]\nname = \"noone\"\npassword = \"noone-secret\"\n",
    )
    .unwrap();
    (dir, config)
}

/// Each query's rows (as lists) or its error, for one user.
const ASK: &str = r#"
import json, os, sys
import adbc_driver_flightsql.dbapi as flightsql
uri, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
queries = json.loads(sys.argv[4])
said = {}
with flightsql.connect(uri, db_kwargs={"username": user, "password": password}, autocommit=True) as conn:
    with conn.cursor() as cur:
        for name, (sql, parameters) in queries.items():
            try:
                cur.execute(sql, parameters)
                table = cur.fetch_arrow_table()
                said[name] = [list(row.values()) for row in table.to_pylist()]
            except Exception as error:
                said[name] = {"error": str(error)}
    try:
        schema = conn.adbc_get_table_schema("people", db_schema_filter="enriched")
        said["schema"] = {field.name: str(field.type) for field in schema}
    except Exception as error:
        said["schema"] = {"error": str(error)}
    try:
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        tables = [table["table_name"] for catalog in objects for schema in catalog["catalog_db_schemas"] or []
                  for table in schema["db_schema_tables"] or []]
        said["tables"] = sorted(tables)
    except Exception as error:
        said["tables"] = {"error": str(error)}
print(json.dumps(said, default=str))
sys.stdout.flush()
os._exit(0)
"#;

fn ask(uri: &str, user: &str, queries: &serde_json::Value) -> serde_json::Value {
    let password = format!("{user}-secret");
    let said = python(&["-c", ASK, uri, user, &password, &queries.to_string()]);
    serde_json::from_str(&said).unwrap()
}

#[test]
fn masks_and_row_filters_hold_against_every_way_a_query_could_look_past_them() {
    let (dir, config) = warehouse("policies-flight");
    let server = Server::start(&dir, &["--config", config.to_str().unwrap()]);
    let queries = serde_json::json!({
        "rows": ["SELECT id, name, email, city, region, born FROM enriched.people ORDER BY id", null],
        "by_email": ["SELECT count(*) FROM enriched.people WHERE email = 'ana.lopez@example.com'", null],
        "by_name": ["SELECT count(*) FROM people WHERE name = 'Ana' OR name LIKE 'A%'", null],
        "hidden_city": ["SELECT count(*) FROM enriched.people WHERE city = 'Barcelona'", null],
        "count": ["SELECT count(*) FROM enriched.people", null],
        "statistics": ["SELECT min(email), max(email), min(id), max(id), min(born), max(region) FROM enriched.people", null],
        "partition": ["SELECT count(*) FROM enriched.people WHERE region = 'este'", null],
        "regions": ["SELECT DISTINCT region FROM enriched.people", null],
        "top_email": ["SELECT email FROM enriched.people ORDER BY email DESC LIMIT 1", null],
        "top_id": ["SELECT id FROM enriched.people ORDER BY id DESC LIMIT 1", null],
        "limit": ["SELECT id FROM enriched.people LIMIT 10", null],
        "cast_error": ["SELECT CAST(email AS BIGINT) FROM enriched.people", null],
        "filter_error": ["SELECT id FROM enriched.people WHERE CAST(city AS BIGINT) = 1", null],
        "divide_probe": ["SELECT count(*) FROM enriched.people WHERE 10 / (id - 5) <> 0", null],
        "prepared_hidden": ["SELECT email FROM enriched.people WHERE id = ?", [5]],
        "prepared_seen": ["SELECT email FROM enriched.people WHERE id = ?", [1]],
        "time_travel": ["SELECT id, email FROM enriched.people VERSION AS OF 0 ORDER BY id", null],
        "join": ["SELECT count(*) FROM enriched.people a JOIN enriched.people b ON a.name = b.name", null],
        "explain": ["EXPLAIN SELECT name FROM enriched.people", null],
        "mapping": ["SELECT count(*) FROM enriched.user_cities", null],
        "rejects": ["SELECT * FROM raw.people__rejects", null],
        "raw": ["SELECT email FROM raw.people WHERE id = 4", null],
    });
    let ana = ask(&server.uri(), "ana", &queries);
    let root = ask(&server.uri(), "root", &queries);
    let noone = ask(&server.uri(), "noone", &queries);

    // The data scientist sees Madrid's three people, masked.
    let rows = ana["rows"].as_array().unwrap_or_else(|| panic!("{ana:#}"));
    assert_eq!(rows.len(), 3, "{ana:#}");
    assert_eq!(rows[0][0], 1);
    let pseudonym = rows[0][1].as_str().unwrap();
    assert!(
        pseudonym.len() == 32 && pseudonym.chars().all(|c| c.is_ascii_hexdigit()),
        "{pseudonym}"
    );
    assert_eq!(rows[0][2], "a***@example.com");
    assert_eq!(
        (&rows[0][3], &rows[0][4]),
        (&"Madrid".into(), &"***".into())
    );
    assert_eq!(rows[0][5], "1990-01-01");
    assert_eq!(ana["schema"]["born"], "date32[day]", "{ana:#}");

    // Predicates compare masked values; hidden rows match nothing.
    for probe in ["by_email", "by_name", "hidden_city", "partition"] {
        assert_eq!(ana[probe], serde_json::json!([[0]]), "{probe}: {ana:#}");
    }
    // Counts and min/max are over the permitted rows' masked values, not statistics.
    assert_eq!(ana["count"], serde_json::json!([[3]]), "{ana:#}");
    assert_eq!(
        ana["statistics"],
        serde_json::json!([[
            "a***@example.com",
            "c***@example.com",
            1,
            3,
            "1985-01-01",
            "***"
        ]]),
        "{ana:#}"
    );
    assert_eq!(ana["regions"], serde_json::json!([["***"]]));
    assert_eq!(ana["top_email"], serde_json::json!([["c***@example.com"]]));
    assert_eq!(ana["top_id"], serde_json::json!([[3]]));
    assert_eq!(ana["limit"].as_array().unwrap().len(), 3, "{ana:#}");
    // Errors are raised on what the policy lets through, or say nothing of values.
    for probe in ["cast_error", "filter_error"] {
        let error = ana[probe]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{probe}: {ana:#}"));
        for hidden in HIDDEN {
            assert!(!error.contains(hidden), "{probe} shows {hidden}: {error}");
        }
    }
    // A predicate that fails on a hidden row (id 5) never runs on it.
    assert_eq!(ana["divide_probe"], serde_json::json!([[3]]), "{ana:#}");
    assert_eq!(ana["prepared_hidden"], serde_json::json!([]));
    assert_eq!(
        ana["prepared_seen"],
        serde_json::json!([["a***@example.com"]])
    );
    assert_eq!(
        ana["time_travel"],
        serde_json::json!([
            [1, "a***@example.com"],
            [2, "b***@example.com"],
            [3, "c***@example.com"]
        ])
    );
    // Pseudonyms are stable: a masked column still joins with itself.
    assert_eq!(ana["join"], serde_json::json!([[3]]));
    // Nothing ana reads shows a hidden value, and her plans do not show the key.
    let key = std::fs::read_to_string(dir.join("_strata/pii.key")).unwrap();
    let everything = ana.to_string();
    for hidden in HIDDEN {
        assert!(!everything.contains(hidden), "ana saw {hidden}: {ana:#}");
    }
    assert!(!everything.contains(key.trim()), "the key was shown");
    assert!(
        ana["explain"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("EXPLAIN is refused")),
        "{:#}",
        ana["explain"]
    );
    // Tables without a policy read as stored.
    assert_eq!(ana["mapping"], serde_json::json!([[1]]));
    // Raw rows are masked too, and their rejected lines (stored text) are refused, but
    // still listed, so a client's catalog listing works.
    assert_eq!(ana["raw"], serde_json::json!([["d***@example.com"]]));
    assert!(
        ana["rejects"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("not readable while raw.people has masks")),
        "{:#}",
        ana["rejects"]
    );
    assert!(
        ana["tables"]
            .as_array()
            .is_some_and(|tables| tables.contains(&"people__rejects".into())),
        "{:#}",
        ana["tables"]
    );

    // The admin role sees stored values and every row.
    assert_eq!(root["count"], serde_json::json!([[6]]), "{root:#}");
    assert_eq!(root["by_email"], serde_json::json!([[1]]));
    assert_eq!(root["rows"][3][1], "Dan");
    assert_eq!(root["rows"][0][5], "1990-05-17");
    // A user with no role and no mapped city sees nothing, masked.
    assert_eq!(noone["count"], serde_json::json!([[0]]), "{noone:#}");
    assert_eq!(noone["rows"], serde_json::json!([]));

    // The console shows the data scientist what Flight SQL does.
    drop(server);
    let (mut console, port, cookie) = Served::console_as(&dir, &config, "ana");
    let (status, page, _) = http(port, "GET", "/api/tables/enriched.people", &cookie, "");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["rows"], 3, "{page}");
    assert_eq!(page["sample"].as_array().unwrap().len(), 3, "{page}");
    assert_eq!(page["partitions"], serde_json::json!([]), "{page}");
    let shown = page.to_string();
    for hidden in HIDDEN {
        assert!(
            !shown.contains(hidden),
            "the console showed {hidden}: {page:#}"
        );
    }
    assert!(shown.contains("a***@example.com"), "{page:#}");
    assert!(console.terminate(Duration::from_secs(20)));
}

#[test]
fn a_policy_that_does_not_plan_fails_check_and_one_on_an_unbuilt_table_is_refused() {
    let dir = workdir("policies-check");
    std::fs::create_dir_all(dir.join("landing/people")).unwrap();
    std::fs::write(dir.join("landing/people/a.csv"), "id,email\n1,a@b.c\n").unwrap();
    let pipeline = dir.join("bad.sql");
    let sources = "CREATE EXTERNAL TABLE landing.people (id BIGINT, email VARCHAR)
           STORED AS CSV LOCATION 'landing/people/' OPTIONS ('format.has_header' 'true');
         CREATE TABLE raw.people AS SELECT * FROM landing.people;
         CREATE MASK m ON raw.people (phone) AS redact(phone);
         CREATE MASK n ON raw.people (email) AS no_such_function(email);
         CREATE ROW FILTER f ON raw.people AS email;\n";
    // What `strata check` says of the pipeline with `more` at its end; it must fail.
    let check = |more: &str| {
        std::fs::write(&pipeline, format!("{sources}{more}")).unwrap();
        let checked = strata(&[
            "check",
            pipeline.to_str().unwrap(),
            "--warehouse",
            dir.to_str().unwrap(),
        ]);
        assert!(!checked.status.success());
        stderr(&checked)
    };
    // A policy on a table the pipeline does not build stops it before planning.
    let said = check("CREATE ROW FILTER g ON enriched.people AS true;\n");
    assert!(
        said.contains("ROW FILTER g is on enriched.people, which this pipeline does not build"),
        "{said}"
    );
    let said = check("");
    for expected in ["phone", "no_such_function", "3 problem(s)"] {
        assert!(said.contains(expected), "{expected} in {said}");
    }
}

#[test]
fn executors_of_a_cluster_apply_the_same_policies() {
    use crate::cluster::Cluster;

    let (dir, config) = warehouse("policies-cluster");
    let mut cluster = Cluster::start_with(
        "policies",
        2,
        &[
            "--flight-sql-port",
            "0",
            "--warehouse",
            dir.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let uri = cluster.flight_sql_uri();
    let before = cluster.executor_jobs();
    let queries = serde_json::json!({
        "emails": ["SELECT email FROM enriched.people ORDER BY id", null],
        "join": ["SELECT count(*) FROM enriched.people a JOIN enriched.people b ON a.name = b.name", null],
        "divide_probe": ["SELECT count(*) FROM enriched.people WHERE 10 / (id - 5) <> 0", null],
        "names": ["SELECT name FROM enriched.people ORDER BY id", null],
    });
    let ana = ask(&uri, "ana", &queries);
    assert_eq!(
        ana["emails"],
        serde_json::json!([
            ["a***@example.com"],
            ["b***@example.com"],
            ["c***@example.com"]
        ]),
        "{ana:#}"
    );
    assert_eq!(ana["join"], serde_json::json!([[3]]), "{ana:#}");
    assert_eq!(ana["divide_probe"], serde_json::json!([[3]]), "{ana:#}");
    // The executors hash with the warehouse's key: the pseudonyms equal the embedded ones.
    let server = Server::start(&dir, &["--config", config.to_str().unwrap()]);
    let embedded = ask(&server.uri(), "ana", &queries);
    assert_eq!(ana["names"], embedded["names"], "{ana:#} {embedded:#}");
    let after = cluster.executor_jobs();
    assert!(
        after.iter().filter(|job| !before.contains(job)).count() >= 4,
        "the queries ran on the executors: {before:?} then {after:?}"
    );
}

#[test]
fn the_example_masks_candidates_names_and_e_mails_for_data_scientists() {
    use crate::flight::example_warehouse;

    let dir = workdir("policies-example");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        "[[users]]\nname = \"dana\"\npassword = \"dana-secret\"\nrole = \"data_scientist\"\n\
         [[users]]\nname = \"rick\"\npassword = \"rick-secret\"\nrole = \"recruiter\"\n",
    )
    .unwrap();
    let server = Server::start(example_warehouse(), &["--config", config.to_str().unwrap()]);
    let queries = serde_json::json!({
        "enriched": ["SELECT name, email FROM enriched.candidates WHERE candidate_id = 'c0000001' AND is_current", null],
        "raw": ["SELECT DISTINCT name, email FROM raw.candidates WHERE candidate_id = 'c0000001'", null],
        "ranked": ["SELECT count(*) FROM ranked.candidates_per_job", null],
    });
    let dana = ask(&server.uri(), "dana", &queries);
    let rick = ask(&server.uri(), "rick", &queries);
    let [name, email] = [&rick["enriched"][0][0], &rick["enriched"][0][1]];
    let email = email.as_str().unwrap_or_else(|| panic!("{rick:#}"));
    assert!(email.ends_with(".1@example.com"), "{rick:#}");
    assert_eq!(rick["raw"], serde_json::json!([[name, email]]), "{rick:#}");
    let seen = &dana["enriched"][0];
    assert_eq!(seen[0].as_str().map(str::len), Some(32), "{dana:#}");
    assert_ne!(&seen[0], name);
    assert_eq!(&seen[1], &format!("{}***@example.com", &email[..1]));
    assert_eq!(dana["raw"], serde_json::json!([seen]), "{dana:#}");
    assert_eq!(
        dana["ranked"], rick["ranked"],
        "ranked tables hold no names"
    );
}

#[test]
fn strata_query_as_a_user_reads_through_the_policies() {
    let (dir, config) = warehouse("policies-query-as");
    let wh = dir.to_str().unwrap();
    let config = config.to_str().unwrap();
    let sql = "SELECT id, email FROM enriched.people ORDER BY id";
    let query = |extra: &[&str]| {
        let mut args = vec!["query", sql, "--warehouse", wh, "--format", "csv"];
        args.extend(extra);
        strata(&args)
    };
    let ana = query(&["--as", "ana", "--config", config]);
    assert!(ana.status.success(), "{}", stderr(&ana));
    assert_eq!(
        crate::support::stdout(&ana),
        "id,email\n1,a***@example.com\n2,b***@example.com\n3,c***@example.com\n"
    );
    // The warehouse's owner reads what is stored.
    let owner = query(&[]);
    assert!(owner.status.success(), "{}", stderr(&owner));
    assert!(crate::support::stdout(&owner).contains("6,fay.mora@example.com"));
    let stranger = query(&["--as", "mallory", "--config", config]);
    assert!(!stranger.status.success());
    assert!(
        stderr(&stranger).contains(
            "--as mallory: no such user in the config file (its users: ana, root, noone)"
        ),
        "{}",
        stderr(&stranger)
    );
    let without_config = query(&["--as", "ana"]);
    assert!(!without_config.status.success());
    assert!(
        stderr(&without_config).contains("--config"),
        "{}",
        stderr(&without_config)
    );
    let unknown = strata(&["query", "SELECT * FROM enriched.nobody", "--warehouse", wh]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("enriched.nobody"),
        "{}",
        stderr(&unknown)
    );
}
