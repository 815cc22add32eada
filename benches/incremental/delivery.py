#!/usr/bin/env python3
"""A 10,000-row delivery onto a 4,000,000-row history (issue 16): the incremental
build (`FROM STREAM(raw.readings)`) against rebuilding the same tables from the whole
history, in the same rounds, and a `--full-refresh` of everything; and (issue 27) the
same tables written without STREAM, which Strata builds from the added rows itself.

    cargo build --release -p strata
    python3 benches/incremental/delivery.py --strata target/release/strata --rows 4000000 --rounds 3

Three warehouses start from the same 4,000,000 readings (gzip CSV). Each round delivers
10,000 rows to each (8,000 new readings and 2,000 corrections of old ones, spread over
the whole history), then runs each pipeline once, in alternating order:

- incremental: `enriched.reading_log` appends and `enriched.readings` merges (on the
  reading id, corrections ordered by version) the rows raw.readings added;
- rebuild: the same tables computed from all of raw.readings and replaced, as a dbt
  table model does: the log, and each reading's latest version picked with a window.
- whole: the incremental pipeline's tables without `STREAM`. Before issue 27 its merge
  table merged every raw row into itself at each run (killed by the kernel for lack of
  memory at 4,000,000 rows); now each run builds both tables from the added rows.

Both warehouses must hold the same rows at the end (the script checks it with the\n`deltalake` package).
"""

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

from strata_run import run, write_csv_gz

SOURCES = """
CREATE EXTERNAL TABLE landing.readings (
  reading_id BIGINT NOT NULL, sensor_id VARCHAR NOT NULL, ts TIMESTAMP NOT NULL,
  value DOUBLE, version BIGINT NOT NULL
) STORED AS CSV LOCATION 'landing/readings/'
  OPTIONS ('format.has_header' 'true', 'format.compression' 'gzip');

CREATE TABLE raw.readings PARTITIONED BY (ingest_date)
AS SELECT *, CURRENT_DATE AS ingest_date FROM landing.readings;
"""

INCREMENTAL = SOURCES + """
CREATE TABLE enriched.reading_log (
  CONSTRAINT plausible EXPECT (value BETWEEN -60 AND 60) ON VIOLATION QUARANTINE
) WRITE APPEND
AS SELECT reading_id, sensor_id, ts, value, version FROM STREAM(raw.readings);

CREATE TABLE enriched.readings WRITE MERGE KEY (reading_id) SEQUENCE BY version
AS SELECT reading_id, sensor_id, ts, value, version FROM STREAM(raw.readings);
"""

# The same tables rebuilt from the whole history, as a dbt table model would: the log
# replaced, and each reading's latest version picked with a window.
REBUILD = SOURCES + """
CREATE TABLE enriched.reading_log (
  CONSTRAINT plausible EXPECT (value BETWEEN -60 AND 60) ON VIOLATION QUARANTINE
)
AS SELECT reading_id, sensor_id, ts, value, version FROM raw.readings;

CREATE TABLE enriched.readings
AS SELECT reading_id, sensor_id, ts, value, version FROM (
     SELECT *, row_number() OVER (PARTITION BY reading_id ORDER BY version DESC) AS latest
     FROM raw.readings)
   WHERE latest = 1;
"""

# The incremental pipeline's tables written without STREAM, as a user who does not know
# it would: Strata builds them from the rows raw.readings added (issue 27), appending to
# the log and merging into the readings, as the incremental pipeline does.
WHOLE = SOURCES + """
CREATE TABLE enriched.reading_log (
  CONSTRAINT plausible EXPECT (value BETWEEN -60 AND 60) ON VIOLATION QUARANTINE
)
AS SELECT reading_id, sensor_id, ts, value, version FROM raw.readings;

CREATE TABLE enriched.readings WRITE MERGE KEY (reading_id) SEQUENCE BY version
AS SELECT reading_id, sensor_id, ts, value, version FROM raw.readings;
"""

SENSORS = 500
HEADER = "reading_id,sensor_id,ts,value,version\n"


def line(reading_id, version, rng):
    minute = reading_id // SENSORS
    stamp = time.strftime("%Y-%m-%dT%H:%M:00", time.gmtime(1767225600 + minute * 60))
    value = round(rng.uniform(-20, 40), 2)
    if reading_id % 9973 == 0:
        value = 999.0
    return f"{reading_id},s{reading_id % SENSORS},{stamp},{value},{version}\n"


def write_file(path, lines):
    write_csv_gz(path, HEADER, lines)


def history(landing, rows, files):
    rng = random.Random(16)
    per_file = rows // files
    for index in range(files):
        first = index * per_file
        write_file(
            os.path.join(landing, f"history-{index:02}.csv.gz"),
            (line(reading_id, 1, rng) for reading_id in range(first, first + per_file)),
        )


def delivery(landing, number, history_rows, new_rows, corrections):
    rng = random.Random(number)
    first = history_rows + (number - 1) * new_rows
    lines = [line(reading_id, 1, rng) for reading_id in range(first, first + new_rows)]
    # Distinct readings: two corrections of one reading in one delivery would share a version.
    lines += [line(reading_id, number + 1, rng) for reading_id in rng.sample(range(history_rows), corrections)]
    write_file(os.path.join(landing, f"delivery-{number:03}.csv.gz"), lines)


def table_seconds(tables, name):
    return tables[name]["duration_ms"] / 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strata", default="target/release/strata")
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    strata = os.path.abspath(args.strata)
    scratch = tempfile.mkdtemp(prefix="strata-incremental-bench-")
    texts = {"incremental": INCREMENTAL, "whole": WHOLE, "rebuild": REBUILD}
    warehouses = {kind: os.path.join(scratch, kind) for kind in texts}
    pipelines = {}
    for kind, text in texts.items():
        pipelines[kind] = os.path.join(scratch, f"{kind}.sql")
        open(pipelines[kind], "w").write(text)
    try:
        print(f"generating {args.rows:,} readings …", file=sys.stderr)
        first_landing = os.path.join(warehouses["incremental"], "landing", "readings")
        os.makedirs(first_landing)
        history(first_landing, args.rows, 8)
        for kind in ("whole", "rebuild"):
            shutil.copytree(first_landing, os.path.join(warehouses[kind], "landing", "readings"))
        first = {}
        for kind in warehouses:
            first[kind], _ = run(strata, pipelines[kind], warehouses[kind])
            print(f"first build ({kind}): {first[kind]:.2f} s", file=sys.stderr)

        results = {kind: [] for kind in warehouses}
        for number in range(1, args.rounds + 1):
            for kind in warehouses:
                delivery(os.path.join(warehouses[kind], "landing", "readings"), number, args.rows, 8_000, 2_000)
            order = list(warehouses) if number % 2 else list(reversed(list(warehouses)))
            for kind in order:
                seconds, tables = run(strata, pipelines[kind], warehouses[kind])
                results[kind].append((seconds, tables))
                print(
                    f"round {number} {kind}: {seconds:.2f} s (raw {table_seconds(tables, 'raw.readings'):.2f}, "
                    f"log {table_seconds(tables, 'enriched.reading_log'):.2f}, readings {table_seconds(tables, 'enriched.readings'):.2f}; "
                    f"readings read {tables['enriched.readings']['rows_read']:,} rows"
                    f"{'; ' + tables['enriched.readings']['strategy'] if 'strategy' in tables['enriched.readings'] else ''})",
                    file=sys.stderr,
                )

        refresh, _ = run(strata, pipelines["incremental"], warehouses["incremental"], "--full-refresh")

        from deltalake import DeltaTable

        def rows(kind, table):
            path = os.path.join(warehouses[kind], "enriched", table)
            read = DeltaTable(path).to_pyarrow_table(columns=["reading_id", "value", "version"])
            return read.sort_by([("reading_id", "ascending"), ("version", "ascending")])

        for table in ("reading_log", "readings", "reading_log__quarantine"):
            for kind in ("whole", "rebuild"):
                assert rows("incremental", table).equals(rows(kind, table)), (kind, table)

        def median(kind, pick):
            return statistics.median(pick(entry) for entry in results[kind])

        print("| run | wall (median) | raw.readings | enriched.reading_log | enriched.readings | rows enriched.readings read |")
        print("|---|---:|---:|---:|---:|---:|")
        for kind in warehouses:
            print(
                f"| {kind} | {median(kind, lambda e: e[0]):.2f} s "
                f"| {median(kind, lambda e: table_seconds(e[1], 'raw.readings')):.2f} s "
                f"| {median(kind, lambda e: table_seconds(e[1], 'enriched.reading_log')):.2f} s "
                f"| {median(kind, lambda e: table_seconds(e[1], 'enriched.readings')):.2f} s "
                f"| {median(kind, lambda e: e[1]['enriched.readings']['rows_read']):,.0f} |"
            )
        incremental = median("incremental", lambda e: e[0])
        rebuild = median("rebuild", lambda e: e[0])
        print(f"\nfirst build: incremental pipeline {first['incremental']:.2f} s, rebuild pipeline {first['rebuild']:.2f} s")
        print(f"--full-refresh of the incremental pipeline: {refresh:.2f} s")
        whole = median("whole", lambda e: e[0])
        print(f"incremental / rebuild: {incremental / rebuild:.1%}; incremental / full refresh: {incremental / refresh:.1%}")
        print(f"whole reads / first build: {whole / first['whole']:.1%}; whole reads / rebuild: {whole / rebuild:.1%}")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
