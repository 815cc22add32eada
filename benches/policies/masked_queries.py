#!/usr/bin/env python3
"""What masks cost a Flight SQL query (issue 30): the point and scan queries of the
Flight SQL bench, from one ADBC client, on the example's warehouse read through its
policies as a `data_scientist`, and on a copy of the same files without policies.

    cargo build --release -p strata
    python3 benches/policies/masked_queries.py --strata target/release/strata --scale 1

The two servers answer the same queries in turn, so both see the same machine.
The point query reads one job's shortlist (`ranked.candidates_per_job`, whose
candidate ids this bench masks with `hash_pii`); the scan reads every current
candidate's name and e-mail (`enriched.candidates`, masked by the example's policies).
Before timing, the script checks that both answer with the same number of rows and
that the masked answers differ from the stored values.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "examples", "recruitment")

QUERIES = {
    "point": "SELECT job_id, candidate_id, score, pos FROM ranked.candidates_per_job WHERE job_id = 42",
    "scan": "SELECT candidate_id, name, email, city FROM enriched.candidates WHERE is_current",
}


def serve(strata, warehouse, config):
    server = subprocess.Popen(
        [strata, "serve", "--warehouse", warehouse, "--listen", "127.0.0.1:0", "--config", config],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    for line in server.stdout:
        if line.startswith("serving Flight SQL on "):
            return server, line.split()[4]
    raise SystemExit(f"strata serve on {warehouse} did not start")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strata", default="target/release/strata")
    parser.add_argument("--scale", default="1")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--snapshot-refresh-ms", type=int, default=0,
                        help="the servers' snapshot_refresh_ms (0, the default: look at each table's log at every query)")
    args = parser.parse_args()
    import adbc_driver_flightsql.dbapi as flightsql

    strata = os.path.abspath(args.strata)
    root = tempfile.mkdtemp(prefix="strata-masked-bench-")
    masked = os.path.join(root, "masked")
    subprocess.run([strata, "gen", "--scale", args.scale, "--out", masked], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([strata, "run", EXAMPLE, os.path.join(HERE, "bench_policies.sql"),
                    "--warehouse", masked], check=True, stdout=subprocess.DEVNULL)
    plain = os.path.join(root, "plain")
    shutil.copytree(masked, plain)
    shutil.rmtree(os.path.join(plain, "_strata", "policies"))
    config = os.path.join(root, "serve.toml")
    with open(config, "w") as f:
        f.write(f"snapshot_refresh_ms = {args.snapshot_refresh_ms}\n")
        f.write('[[users]]\nname = "dana"\npassword = "dana-bench-secret"\nrole = "data_scientist"\n')

    servers = {}
    for name, warehouse in [("plain", plain), ("masked", masked)]:
        servers[name] = serve(strata, warehouse, config)
    connections = {
        name: flightsql.connect(uri, db_kwargs={"username": "dana", "password": "dana-bench-secret"},
                                autocommit=True)
        for name, (_, uri) in servers.items()
    }
    cursors = {name: conn.cursor() for name, conn in connections.items()}

    def timed(name, sql):
        started = time.perf_counter()
        cursors[name].execute(sql)
        table = cursors[name].fetch_arrow_table()
        return time.perf_counter() - started, table

    for query, sql in QUERIES.items():
        _, plain_rows = timed("plain", sql)
        _, masked_rows = timed("masked", sql)
        if plain_rows.num_rows != masked_rows.num_rows or plain_rows.num_rows == 0:
            raise SystemExit(f"{query}: {plain_rows.num_rows} rows plain, {masked_rows.num_rows} masked")
        column = "candidate_id" if query == "point" else "email"
        if plain_rows.column(column).to_pylist() == masked_rows.column(column).to_pylist():
            raise SystemExit(f"{query}: the masked server showed stored {column}s")

    times = {(query, name): [] for query in QUERIES for name in servers}
    for run in range(args.runs):
        order = ["plain", "masked"] if run % 2 == 0 else ["masked", "plain"]
        for query, sql in QUERIES.items():
            for name in order:
                seconds, _ = timed(name, sql)
                if run >= args.runs // 10:
                    times[(query, name)].append(seconds * 1000)

    print(f"scale {args.scale}, {args.runs} runs of each query on each server "
          f"(the first tenth are warm-up), one ADBC client")
    print("| query | rows | plain p50 | masked p50 | plain mean | masked mean | masked / plain (p50) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for query, sql in QUERIES.items():
        rows = timed("plain", sql)[1].num_rows
        plain_p50 = statistics.median(times[(query, "plain")])
        masked_p50 = statistics.median(times[(query, "masked")])
        print(f"| {query} | {rows:,} | {plain_p50:.2f} ms | {masked_p50:.2f} ms | "
              f"{statistics.mean(times[(query, 'plain')]):.2f} ms | "
              f"{statistics.mean(times[(query, 'masked')]):.2f} ms | {masked_p50 / plain_p50:.3f} |")
    for cursor in cursors.values():
        cursor.close()
    for server, _ in servers.values():
        server.terminate()
        server.wait()
    shutil.rmtree(root, ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
