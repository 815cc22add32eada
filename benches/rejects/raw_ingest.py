#!/usr/bin/env python3
"""Raw ingest of the example's tracking events, clean and with 0.1 % bad rows, in one
run (issue 17): what row-by-row rejection costs, and DuckDB's `store_rejects` on the
same files for comparison.

    cargo bench -p strata -p strata-storage --no-run      # builds target/release/strata
    python3 benches/rejects/raw_ingest.py --strata target/release/strata --scale 4 --runs 3
"""

import argparse
import glob
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# The example's events source and raw table (examples/recruitment), alone.
PIPELINE = """
CREATE EXTERNAL TABLE landing.events (
  event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, candidate_id VARCHAR,
  kind VARCHAR, publisher VARCHAR, campaign VARCHAR
) STORED AS CSV LOCATION 'landing/events/'
  OPTIONS ('format.has_header' 'true', 'format.compression' 'gzip');

CREATE TABLE raw.events PARTITIONED BY (ingest_date)
AS SELECT *, CURRENT_DATE AS ingest_date FROM landing.events;
"""

# The same events as NDJSON (gzip), for the JSON reader.
NDJSON_PIPELINE = """
CREATE EXTERNAL TABLE landing.events (
  event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, candidate_id VARCHAR,
  kind VARCHAR, publisher VARCHAR, campaign VARCHAR
) STORED AS JSON LOCATION 'landing/events/' OPTIONS ('format.compression' 'gzip');

CREATE TABLE raw.events PARTITIONED BY (ingest_date)
AS SELECT *, CURRENT_DATE AS ingest_date FROM landing.events;
"""

COLUMNS = ["event_id", "ts", "job_id", "candidate_id", "kind", "publisher", "campaign"]

# One bad row in a thousand, of four kinds in turn.
EVERY = 1000


def corrupt(line, kind):
    fields = line.split(",")
    if kind == 0:
        fields[2] = "n/a"  # a job id that is not a number
    elif kind == 1:
        fields = fields[:-1]  # a field short
    elif kind == 2:
        fields[1] = "yesterday"  # a timestamp that is not one
    else:
        fields[3] = '"' + fields[3]  # a quote never closed
    return ",".join(fields)


def corrupt_json(line, kind):
    if kind == 0:
        return line.replace('"job_id": ', '"job_id": "n/a", "was": ', 1)  # not a number
    if kind == 1:
        return line[: len(line) // 2]  # cut off: malformed JSON
    if kind == 2:
        return line.replace('"ts": "', '"ts": "yesterday', 1)  # not a timestamp
    return "[" + line + "]"  # JSON, but not an object


def to_ndjson(csv_line):
    values = csv_line.split(",")
    row = dict(zip(COLUMNS, values))
    row["job_id"] = int(row["job_id"]) if row["job_id"] else None
    return json.dumps(row)


def copy(clean, target_dir, ndjson, bad):
    """Copies the clean events (as CSV or NDJSON), every EVERY-th row made bad when
    `bad`; returns how many were."""
    os.makedirs(os.path.join(target_dir, "landing", "events"))
    count = 0
    for path in sorted(glob.glob(os.path.join(clean, "landing", "events", "*.csv.gz"))):
        with gzip.open(path, "rt") as source:
            lines = source.read().split("\n")
        if ndjson:
            lines = [to_ndjson(line) for line in lines[1:] if line]
        first = 0 if ndjson else 1
        for index in range(first, len(lines)):
            if bad and lines[index] and index % EVERY == EVERY // 2:
                fix = corrupt_json if ndjson else corrupt
                lines[index] = fix(lines[index], count % 4)
                count += 1
        name = os.path.basename(path).replace(".csv.gz", ".ndjson.gz" if ndjson else ".csv.gz")
        with gzip.open(os.path.join(target_dir, "landing", "events", name), "wt", compresslevel=6) as out:
            out.write("\n".join(lines))
    return count


def uncompressed_bytes(warehouse):
    total = 0
    for path in glob.glob(os.path.join(warehouse, "landing", "events", "*.gz")):
        with gzip.open(path, "rb") as source:
            while chunk := source.read(1 << 20):
                total += len(chunk)
    return total


def run_strata(strata, warehouse, pipeline):
    for stale in ("raw", "_strata"):
        shutil.rmtree(os.path.join(warehouse, stale), ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(
        [strata, "run", pipeline, "--warehouse", warehouse],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"strata failed:\n{done.stdout}\n{done.stderr}")
    report_path = next(
        line[len("report: "):] for line in done.stdout.splitlines() if line.startswith("report: ")
    )
    with open(report_path.strip()) as handle:
        report = json.load(handle)
    table = next(t for t in report["tables"] if t["table"] == "raw.events")
    return wall, table


def run_duckdb(warehouse, out):
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    files = os.path.join(warehouse, "landing", "events", "*.csv.gz")
    started = time.perf_counter()
    con.execute(
        f"""COPY (SELECT *, current_date AS ingest_date FROM read_csv('{files}', header = true,
              columns = {{'event_id': 'VARCHAR', 'ts': 'TIMESTAMP', 'job_id': 'BIGINT',
                         'candidate_id': 'VARCHAR', 'kind': 'VARCHAR', 'publisher': 'VARCHAR',
                         'campaign': 'VARCHAR'}},
              store_rejects = true))
           TO '{out}' (FORMAT parquet)"""
    )
    wall = time.perf_counter() - started
    rejected = con.execute("SELECT count(*) FROM reject_errors").fetchone()[0]
    os.remove(out)
    return wall, rejected


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strata", required=True)
    parser.add_argument("--scale", default="4")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-duckdb", action="store_true")
    parser.add_argument("--format", choices=["csv", "ndjson"], default="csv")
    args = parser.parse_args()
    ndjson = args.format == "ndjson"
    strata = os.path.abspath(args.strata)

    work = tempfile.mkdtemp(prefix="strata-rejects-bench-")
    generated = os.path.join(work, "generated")
    clean = os.path.join(work, "clean")
    bad = os.path.join(work, "bad")
    subprocess.run(
        [strata, "gen", "--scale", args.scale, "--no-bad-data", "--out", generated],
        check=True,
        capture_output=True,
    )
    copy(generated, clean, ndjson, bad=False)
    injected = copy(generated, bad, ndjson, bad=True)
    pipeline = os.path.join(work, "events.sql")
    with open(pipeline, "w") as handle:
        handle.write(NDJSON_PIPELINE if ndjson else PIPELINE)
    megabytes = uncompressed_bytes(clean) / 1e6
    print(f"scale {args.scale}: {megabytes:.0f} MB of gzip {args.format} events uncompressed, "
          f"{injected} bad rows injected (1 in {EVERY})")

    walls = {"clean": [], "bad": [], "duckdb clean": [], "duckdb bad": []}
    counts = {}
    run_strata(strata, clean, pipeline)  # warm-up: page cache and binary
    for round_ in range(args.runs):
        order = ["clean", "bad"] if round_ % 2 == 0 else ["bad", "clean"]
        for mode in order:
            warehouse = clean if mode == "clean" else bad
            wall, table = run_strata(strata, warehouse, pipeline)
            walls[mode].append(wall)
            counts[mode] = (table["rows_read"], table["rows_written"], table["rows_rejected"])
        if not args.no_duckdb and not ndjson:
            for mode, warehouse in (("duckdb clean", clean), ("duckdb bad", bad)):
                wall, rejected = run_duckdb(warehouse, os.path.join(work, "out.parquet"))
                walls[mode].append(wall)
                counts[mode] = (None, None, rejected)

    read, written, rejected = counts["bad"]
    assert rejected == injected, f"Strata rejected {rejected}, {injected} were injected"
    assert read == written + rejected, counts["bad"]
    assert counts["clean"][2] == 0, counts["clean"]
    print("| run | median | min–max | MB/s (uncompressed) | rows rejected |")
    print("|---|---:|---:|---:|---:|")
    for mode, times in walls.items():
        if not times:
            continue
        median = statistics.median(times)
        print(f"| {mode} | {median:.2f} s | {min(times):.2f}–{max(times):.2f} s | "
              f"{megabytes / median:.0f} | {counts[mode][2]} |")
    ratio = statistics.median(walls["bad"]) / statistics.median(walls["clean"])
    print(f"Strata with bad rows / clean: {ratio:.3f}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
