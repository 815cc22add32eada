#!/usr/bin/env python3
"""A day of tiny batches (issue 26): what grows when a pipeline runs continuously.

A continuous run at a 1 s interval makes 86,400 batches a day. This script runs
`strata run --continuous` at a 20 ms interval, so the day passes faster: after each
batch one small CSV delivery lands, and the next batch ingests it into a raw table and
appends it to an enriched table through STREAM; each landing file is deleted once
ingested ('after_ingest' 'delete'), as a location delivered to forever must be. It reports each table's build time per window of batches (it must stay flat,
not grow with the batches before it) and, at the end, the files each part of the
warehouse holds (they must be bounded, not one per batch for ever). Every 100 batches
the run compacts the raw and enriched tables, vacuums the enriched one with its
retention, and removes the raw files compacted away and the run reports beyond the
newest 1,000 once older than the same retention (`--retention`, the run's own).

    cargo build --release -p strata
    python3 benches/continuous/day.py --strata target/release/strata --batches 86400

`--batches` makes a shorter day. Each batch's run report gives its tables' times.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PIPELINE = """
CREATE EXTERNAL TABLE landing.readings (sensor_id BIGINT, ts TIMESTAMP, value DOUBLE)
STORED AS CSV LOCATION 'landing/readings/'
OPTIONS ('format.has_header' 'true', 'after_ingest' 'delete');

CREATE TABLE raw.readings AS SELECT * FROM landing.readings;

CREATE TABLE enriched.readings WRITE APPEND
AS SELECT sensor_id, ts, value FROM STREAM(raw.readings);
"""


BATCH = re.compile(r"^batch (\d+): \d+ landing rows in ([\d.]+)s .*, run (\S+)$")


def count_files(root):
    """Files under each of a warehouse's parts that grow with batches."""
    parts = {
        "raw log": "raw/readings/_strata_log",
        "raw data": "raw/readings",
        "delta log": "enriched/readings/_delta_log",
        "delta data": "enriched/readings",
        "run reports": "_strata/runs",
        "landing": "landing/readings",
    }
    counts = {}
    for name, relative in parts.items():
        total = 0
        for directory, dirs, files in os.walk(os.path.join(root, relative)):
            if name.endswith("data"):
                dirs[:] = [d for d in dirs if not d.startswith("_")]
            total += len(files)
        counts[name] = total
    return counts


def retain(table, retention):
    """Sets how long the table keeps files no version reads, and log entries, as an
    operator would."""
    subprocess.run(
        [sys.executable, "-c",
         "import sys, os\nfrom deltalake import DeltaTable\n"
         "DeltaTable(sys.argv[1]).alter.set_table_properties("
         "{'delta.deletedFileRetentionDuration': sys.argv[2], "
         "'delta.logRetentionDuration': sys.argv[2]})\nos._exit(0)",
         table, retention],
        check=True,
    )


def deliver(landing, number):
    """One small delivery, written under a temporary name and renamed, as tools do."""
    path = os.path.join(landing, f"r-{number:06}.csv")
    with open(path + ".part", "w") as f:
        f.write("sensor_id,ts,value\n")
        for row in range(10):
            f.write(f"{row},2026-12-06T00:{number % 60:02}:{row:02},{number + row / 10}\n")
    os.rename(path + ".part", path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strata", default="target/release/strata")
    parser.add_argument("--batches", type=int, default=86_400)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="keep the warehouse")
    parser.add_argument(
        "--retention", type=int, default=60, metavar="SECONDS",
        help="the run's --retention (raw files compacted away, run reports) and the "
        "enriched table's delta.deletedFileRetentionDuration and "
        "delta.logRetentionDuration: a day passes in hours here, so the 7 and 30 days "
        "kept by default would keep every file",
    )
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="strata-day-")
    pipeline = os.path.join(root, "pipeline.sql")
    with open(pipeline, "w") as f:
        f.write(PIPELINE)
    warehouse = os.path.join(root, "wh")
    landing = os.path.join(warehouse, "landing/readings")
    os.makedirs(landing)
    deliver(landing, 0)
    run = subprocess.Popen(
        [args.strata, "run", pipeline, "--warehouse", warehouse, "--continuous", "--interval", "20ms",
         "--retention", f"{args.retention}s"],
        stdout=subprocess.PIPE, text=True,
    )
    times = {"batch": [], "raw.readings": [], "enriched.readings": []}
    print(f"{args.batches} batches in {warehouse}", flush=True)
    delivered = 1
    started = time.monotonic()
    for line in run.stdout:
        if line.startswith("tidied") or line.startswith("could not tidy"):
            print(line.rstrip(), flush=True)
        match = BATCH.match(line)
        if not match:
            continue
        number, seconds, run_id = int(match[1]), float(match[2]), match[3]
        # The next delivery lands while the run waits its interval.
        deliver(landing, delivered)
        delivered += 1
        times["batch"].append(seconds)
        if number == 1:
            retain(os.path.join(warehouse, "enriched/readings"), f"interval {args.retention} seconds")
        with open(os.path.join(warehouse, "_strata/runs", f"{run_id}.json")) as f:
            report = json.load(f)
        for table in report["tables"]:
            if table["table"] in times:
                times[table["table"]].append(table["duration_ms"] / 1000)
        if number % args.window == 0:
            means = ", ".join(
                f"{name} {statistics.mean(values[-args.window:]) * 1000:.0f} ms"
                for name, values in times.items()
            )
            print(f"batches {number + 1 - args.window}-{number}: mean {means}", flush=True)
        if number >= args.batches:
            run.send_signal(signal.SIGTERM)
    run.wait()
    took = time.monotonic() - started
    print(f"{len(times['batch'])} batches in {took:.0f} s; files at the end:",
          json.dumps(count_files(warehouse)))
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
