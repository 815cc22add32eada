#!/usr/bin/env python3
"""Sustained continuous ingest (issue 16): gzip NDJSON tracking events dropped into
the landing zone at a fixed rate while `strata run --continuous` ingests them into a
raw table and appends them to one enriched table. Reports the throughput held, in MB/s
of uncompressed input, and the lag (how long the oldest file not yet ingested waited).

    cargo build --release -p strata
    python3 benches/incremental/continuous_ingest.py --strata target/release/strata --rate 100 --seconds 60

The events are generated once, as a pool of files; the feeder drops copies of them
under new names (written under a temporary name, then renamed, as a delivery tool
does). When feeding stops, the run is left to catch up, then stopped with SIGTERM;
the script checks that every row dropped was published exactly once.
"""

import argparse
import gzip
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

PIPELINE = """
CREATE EXTERNAL TABLE landing.events (
  event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, candidate_id VARCHAR,
  kind VARCHAR, publisher VARCHAR, campaign VARCHAR
) STORED AS JSON LOCATION 'landing/events/' OPTIONS ('format.compression' 'gzip');

CREATE TABLE raw.events PARTITIONED BY (ingest_date)
AS SELECT *, CURRENT_DATE AS ingest_date FROM landing.events;

CREATE TABLE enriched.events (
  CONSTRAINT known_job EXPECT (job_id IS NOT NULL) ON VIOLATION QUARANTINE
) WRITE APPEND
AS SELECT event_id, ts, job_id, candidate_id, kind, publisher, campaign
   FROM STREAM(raw.events);
"""

KINDS = ["impression", "click", "apply", "conversion", "qualified", "unqualified"]
BATCH = re.compile(r"^batch (\d+): (\d+) landing rows in ([\d.]+)s .* lag ([\d.]+)s")


def pool(directory, files, rows):
    rng = random.Random(16)
    sizes = []
    for index in range(files):
        path = os.path.join(directory, f"pool-{index}.json.gz")
        raw = 0
        with gzip.open(path, "wt", compresslevel=6) as out:
            for row in range(rows):
                text = json.dumps({
                    "event_id": f"e{index}-{row}",
                    "ts": f"2026-11-{1 + row % 28:02}T{row % 24:02}:{row % 60:02}:{(row * 7) % 60:02}",
                    "job_id": None if row % 997 == 0 else rng.randrange(1, 50_000),
                    "candidate_id": f"c{rng.randrange(1, 2_000_000)}",
                    "kind": KINDS[row % len(KINDS)],
                    "publisher": f"publisher-{row % 40}",
                    "campaign": f"campaign-{row % 400}",
                }) + "\n"
                raw += len(text)
                out.write(text)
        sizes.append((path, raw))
    return sizes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strata", default="target/release/strata")
    parser.add_argument("--rate", type=float, default=100.0, help="MB/s of uncompressed input to drop")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--pool-files", type=int, default=4)
    parser.add_argument("--rows-per-file", type=int, default=100_000)
    args = parser.parse_args()
    strata = os.path.abspath(args.strata)
    scratch = tempfile.mkdtemp(prefix="strata-continuous-bench-")
    warehouse = os.path.join(scratch, "wh")
    landing = os.path.join(warehouse, "landing", "events")
    os.makedirs(landing)
    pipeline = os.path.join(scratch, "events.sql")
    open(pipeline, "w").write(PIPELINE)
    try:
        print("generating the pool …", file=sys.stderr)
        files = pool(scratch, args.pool_files, args.rows_per_file)
        file_mb = files[0][1] / 1e6
        print(f"{len(files)} files of {args.rows_per_file:,} events, {file_mb:.1f} MB each uncompressed", file=sys.stderr)

        run = subprocess.Popen(
            [strata, "run", pipeline, "--warehouse", warehouse, "--continuous", "--interval", args.interval],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        batches = []
        committed = {"rows": 0, "at": None}

        def read_batches():
            for line in run.stdout:
                found = BATCH.match(line)
                if found:
                    rows = int(found.group(2))
                    batches.append((time.perf_counter(), rows, float(found.group(3)), float(found.group(4))))
                    committed["rows"] += rows
                    if rows:
                        committed["at"] = time.perf_counter()

        reader = threading.Thread(target=read_batches, daemon=True)
        reader.start()
        time.sleep(3)  # the first (empty) batch: planning, an empty listing

        dropped_rows, dropped_bytes, number = 0, 0, 0
        every = file_mb / args.rate
        started = time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            source, size = files[number % len(files)]
            target = os.path.join(landing, f"drop-{number:05}.json.gz")
            shutil.copyfile(source, target + ".part")
            os.rename(target + ".part", target)
            dropped_rows += args.rows_per_file
            dropped_bytes += size
            number += 1
            pause = started + number * every - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        fed = time.perf_counter() - started
        while committed["rows"] < dropped_rows and run.poll() is None:
            time.sleep(0.5)
        caught_up = committed["at"] - started
        run.send_signal(signal.SIGTERM)
        status = run.wait(timeout=600)
        reader.join(timeout=5)

        from deltalake import DeltaTable

        published = DeltaTable(os.path.join(warehouse, "enriched", "events")).to_pyarrow_table(columns=["event_id"]).num_rows
        quarantined = DeltaTable(os.path.join(warehouse, "enriched", "events__quarantine")).to_pyarrow_table(columns=["event_id"]).num_rows
        assert status == 0, status
        assert committed["rows"] == dropped_rows, (committed["rows"], dropped_rows)
        assert published + quarantined == dropped_rows, (published, quarantined, dropped_rows)

        spent = {}
        runs = os.path.join(warehouse, "_strata", "runs")
        for name in os.listdir(runs):
            for table in json.load(open(os.path.join(runs, name)))["tables"]:
                spent[table["table"]] = spent.get(table["table"], 0) + table["duration_ms"] / 1000

        lags = [lag for _, rows, _, lag in batches if rows]
        busy = [entry for entry in batches if entry[1]]
        print(f"dropped {number} files, {dropped_rows:,} rows, {dropped_bytes / 1e6:,.0f} MB uncompressed in {fed:.1f} s "
              f"(offered {dropped_bytes / 1e6 / fed:.1f} MB/s)")
        print(f"all committed {caught_up:.1f} s after the first drop: {dropped_bytes / 1e6 / caught_up:.1f} MB/s held, "
              f"{dropped_rows / caught_up:,.0f} rows/s")
        print(f"batches with rows: {len(busy)}; rows per batch median {sorted(b[1] for b in busy)[len(busy) // 2]:,}; "
              f"lag median {sorted(lags)[len(lags) // 2]:.1f} s, max {max(lags):.1f} s")
        print(f"published {published:,}, quarantined {quarantined:,}; SIGTERM exit status {status}")
        print("seconds spent per table over the run: " + ", ".join(
            f"{table} {seconds:.1f}" for table, seconds in sorted(spent.items()) if seconds >= 0.05))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
