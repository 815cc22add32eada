"""What a data scientist does with the ADBC Flight SQL driver, against `strata serve`.

Usage: adbc_scenarios.py URI USER PASSWORD. Prints one JSON object of findings; the
Rust test asserts on them.
"""
import json
import os
import sys

import adbc_driver_flightsql.dbapi as flightsql

uri, user, password = sys.argv[1:4]
found = {}


def connect(username=None, secret=None):
    # Autocommit: the endpoint is read-only and has no transactions to turn off.
    if username is None:
        return flightsql.connect(uri, autocommit=True)
    return flightsql.connect(
        uri, db_kwargs={"username": username, "password": secret}, autocommit=True
    )


def error_of(action):
    try:
        action()
    except Exception as error:  # the driver raises its own DB-API error classes
        return f"{type(error).__name__}: {error}"
    return None


with connect(user, password) as conn:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT job_id, candidate_id, pos, score FROM ranked.candidates_per_job "
            "ORDER BY job_id, pos LIMIT 5"
        )
        top = cur.fetch_arrow_table()
        found["top_rows"] = top.num_rows
        found["top_columns"] = top.column_names
        first_job = top.column("job_id")[0].as_py()

        cur.execute(
            "SELECT count(*) AS n FROM ranked.candidates_per_job WHERE job_id = ?",
            parameters=(first_job,),
        )
        found["param_count"] = cur.fetch_arrow_table().column("n")[0].as_py()
        cur.execute(
            f"SELECT count(*) AS n FROM ranked.candidates_per_job WHERE job_id = {first_job}"
        )
        found["literal_count"] = cur.fetch_arrow_table().column("n")[0].as_py()

        cur.execute("SELECT count(*) AS n FROM enriched.events VERSION AS OF 0")
        found["events_v0"] = cur.fetch_arrow_table().column("n")[0].as_py()
        cur.execute("SELECT count(*) AS n FROM enriched.events")
        found["events_now"] = cur.fetch_arrow_table().column("n")[0].as_py()

        found["drop_error"] = error_of(lambda: cur.execute("DROP TABLE ranked.candidates_per_job"))
        found["insert_error"] = error_of(
            lambda: cur.execute("INSERT INTO enriched.jobs VALUES (1)")
        )
        found["unknown_table_error"] = error_of(lambda: cur.execute("SELECT * FROM enriched.jobz"))
        found["bad_sql_error"] = error_of(lambda: cur.execute("SELEC 1"))
        found["bad_column_error"] = error_of(
            lambda: cur.execute("SELECT no_such_column FROM enriched.jobs")
        )
        found["quarantine_hidden_error"] = error_of(
            lambda: cur.execute("SELECT * FROM enriched.events__quarantine")
        )

    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    catalogs = {entry["catalog_name"]: entry for entry in objects}
    found["catalogs"] = sorted(catalogs)
    strata = catalogs.get("strata", {"catalog_db_schemas": []})
    schemas = {s["db_schema_name"]: s for s in strata["catalog_db_schemas"]}
    found["schemas"] = sorted(schemas)
    ranked_tables = {t["table_name"]: t for t in (schemas.get("ranked") or {}).get("db_schema_tables") or []}
    found["ranked_tables"] = sorted(ranked_tables)
    columns = (ranked_tables.get("candidates_per_job") or {}).get("table_columns") or []
    found["ranked_columns"] = [c["column_name"] for c in columns]
    enriched_tables = [t["table_name"] for t in (schemas.get("enriched") or {}).get("db_schema_tables") or []]
    found["enriched_tables"] = sorted(enriched_tables)

    schema = conn.adbc_get_table_schema("candidates_per_job", db_schema_filter="ranked")
    found["table_schema"] = [f"{field.name}:{field.type}" for field in schema]
    found["table_types"] = conn.adbc_get_table_types()
    found["vendor"] = conn.adbc_get_info().get("vendor_name")

found["wrong_password_error"] = error_of(
    lambda: connect(user, password + "x").cursor().execute("SELECT 1")
)
found["no_credentials_error"] = error_of(lambda: connect().cursor().execute("SELECT 1"))

print(json.dumps(found))
sys.stdout.flush()
os._exit(0)
