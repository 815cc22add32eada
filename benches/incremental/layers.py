#!/usr/bin/env python3
"""Issue 27's sensor pipeline, four layers after raw, each refreshed from what changed:

    cargo build --release -p strata
    python3 benches/incremental/layers.py --strata target/release/strata --rows 10000000 --rounds 2

raw.readings (Avro) → enriched.readings (`MERGE KEY … SEQUENCE BY` over
`STREAM(raw.readings)`) → enriched.readings_by_site (a join with a 500-row sensor
dimension) → ranked.hourly (an hourly aggregate per sensor) → ranked.hourly_change (the
change from each sensor's previous hour, `lag`). The history is `--rows` readings; each
round delivers 10,000 new readings, then (a second run) 10,000 corrections of readings
spread over the whole history. Each run's time is set against the first build, table by
table, with the strategy each table's build used. At the end a copy of the warehouse is
rebuilt with `--full-refresh`, and every table must hold the same rows (checked with the
`deltalake` package).
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

from strata_run import run, write_csv_gz

PIPELINE = """
CREATE EXTERNAL TABLE landing.readings (
  reading_id BIGINT NOT NULL, sensor_id VARCHAR NOT NULL, ts TIMESTAMP NOT NULL,
  value DOUBLE, version BIGINT NOT NULL
) STORED AS CSV LOCATION 'landing/readings/'
  OPTIONS ('format.has_header' 'true', 'format.compression' 'gzip');
CREATE EXTERNAL TABLE landing.sensors (sensor_id VARCHAR NOT NULL, site VARCHAR NOT NULL)
STORED AS CSV LOCATION 'landing/sensors/' OPTIONS ('format.has_header' 'true');

CREATE TABLE raw.readings PARTITIONED BY (ingest_date)
AS SELECT *, CURRENT_DATE AS ingest_date FROM landing.readings;
CREATE TABLE raw.sensors AS SELECT * FROM landing.sensors;

-- Each reading as last corrected.
CREATE TABLE enriched.readings WRITE MERGE KEY (reading_id) SEQUENCE BY version
AS SELECT reading_id, sensor_id, ts, value, version FROM STREAM(raw.readings);

-- Each reading with its sensor's site, and its hour.
CREATE TABLE enriched.readings_by_site
AS SELECT r.reading_id, r.sensor_id, s.site, date_trunc('hour', r.ts) AS hour, r.value
   FROM enriched.readings r JOIN raw.sensors s ON r.sensor_id = s.sensor_id;

-- Each sensor's hours.
CREATE TABLE ranked.hourly
AS SELECT sensor_id, hour, count(*) AS readings, avg(value) AS mean, min(value) AS low,
          max(value) AS high
   FROM enriched.readings_by_site GROUP BY sensor_id, hour;

-- Each hour against the sensor's hour before.
CREATE TABLE ranked.hourly_change
AS SELECT sensor_id, hour, mean,
          mean - lag(mean) OVER (PARTITION BY sensor_id ORDER BY hour) AS change
   FROM ranked.hourly;
"""

TABLES = [
    "raw.readings",
    "enriched.readings",
    "enriched.readings_by_site",
    "ranked.hourly",
    "ranked.hourly_change",
]
SENSORS = 500
HEADER = "reading_id,sensor_id,ts,value,version\n"
PER_DELIVERY = 10_000


def line(reading_id, version, rng):
    minute = reading_id // SENSORS
    stamp = time.strftime("%Y-%m-%dT%H:%M:00", time.gmtime(1767225600 + minute * 60))
    return f"{reading_id},s{reading_id % SENSORS},{stamp},{round(rng.uniform(-20, 40), 2)},{version}\n"


def write_file(path, lines):
    write_csv_gz(path, HEADER, lines)


def rows(warehouse, table):
    from deltalake import DeltaTable

    read = DeltaTable(os.path.join(warehouse, *table.split("."))).to_pyarrow_table()
    return read.sort_by([(name, "ascending") for name in read.column_names])


def same(built, rebuilt):
    """Whether two sorted tables are equal, doubles within 1e-9: a sum of doubles depends
    on the order it adds them in, which differs between a refresh and a rebuild."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if built.schema != rebuilt.schema or built.num_rows != rebuilt.num_rows:
        return False
    for name in built.column_names:
        a, b = built[name], rebuilt[name]
        if not pa.types.is_floating(a.type):
            if not a.equals(b):
                return False
            continue
        if not pc.all(pc.equal(pc.is_null(a), pc.is_null(b))).as_py():
            return False
        tolerance = pc.add(pc.multiply(pc.abs(b), 1e-9), 1e-9)
        if pc.all(pc.less_equal(pc.abs(pc.subtract(a, b)), tolerance)).as_py() is False:
            return False
    return True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strata", default="target/release/strata")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    strata = os.path.abspath(args.strata)
    scratch = tempfile.mkdtemp(prefix="strata-layers-bench-")
    warehouse = os.path.join(scratch, "incremental")
    landing = os.path.join(warehouse, "landing", "readings")
    os.makedirs(landing)
    os.makedirs(os.path.join(warehouse, "landing", "sensors"))
    open(os.path.join(warehouse, "pipeline.sql"), "w").write(PIPELINE)
    with open(os.path.join(warehouse, "landing", "sensors", "sensors.csv"), "w") as out:
        out.write("sensor_id,site\n")
        out.writelines(f"s{n},site-{n % 37}\n" for n in range(SENSORS))
    try:
        print(f"generating {args.rows:,} readings …", file=sys.stderr)
        rng = random.Random(27)
        files = 10
        per_file = args.rows // files
        for index in range(files):
            first = index * per_file
            write_file(
                os.path.join(landing, f"history-{index:02}.csv.gz"),
                (line(reading_id, 1, rng) for reading_id in range(first, first + per_file)),
            )
        first_build, first_tables = run(strata, os.path.join(warehouse, "pipeline.sql"), warehouse)
        print(f"first build: {first_build:.2f} s", file=sys.stderr)
        runs = []
        next_id = args.rows
        for number in range(1, args.rounds + 1):
            rng = random.Random(number)
            new = [line(reading_id, 1, rng) for reading_id in range(next_id, next_id + PER_DELIVERY)]
            next_id += PER_DELIVERY
            write_file(os.path.join(landing, f"new-{number:03}.csv.gz"), new)
            runs.append((f"{PER_DELIVERY:,} new readings", *run(strata, os.path.join(warehouse, "pipeline.sql"), warehouse)))
            corrected = rng.sample(range(args.rows), PER_DELIVERY)
            write_file(
                os.path.join(landing, f"corrections-{number:03}.csv.gz"),
                [line(reading_id, number + 1, rng) for reading_id in corrected],
            )
            runs.append((f"{PER_DELIVERY:,} corrections", *run(strata, os.path.join(warehouse, "pipeline.sql"), warehouse)))
            for kind, seconds, _ in runs[-2:]:
                print(f"round {number}, {kind}: {seconds:.2f} s ({seconds / first_build:.1%})", file=sys.stderr)

        rebuilt = os.path.join(scratch, "rebuilt")
        shutil.copytree(warehouse, rebuilt)
        refresh, _ = run(strata, os.path.join(rebuilt, "pipeline.sql"), rebuilt, "--full-refresh")
        for table in TABLES[1:]:
            assert same(rows(warehouse, table), rows(rebuilt, table)), f"{table} differs from a full refresh"

        print(f"first build {first_build:.2f} s; --full-refresh {refresh:.2f} s; {args.rows:,} readings\n")
        print("| run | wall | share of first build | " + " | ".join(TABLES) + " |")
        print("|---|---:|---:|" + "---:|" * len(TABLES))
        cells = [f"{first_tables[t]['duration_ms'] / 1000:.2f} s" for t in TABLES]
        print(f"| first build | {first_build:.2f} s | 100 % | " + " | ".join(cells) + " |")
        for kind, seconds, tables in runs:
            cells = [
                f"{tables[t]['duration_ms'] / 1000:.2f} s ({tables[t]['duration_ms'] / max(first_tables[t]['duration_ms'], 1):.0%})"
                for t in TABLES
            ]
            print(f"| {kind} | {seconds:.2f} s | {seconds / first_build:.1%} | " + " | ".join(cells) + " |")
        print("\nstrategies and rows read:")
        for kind, _, tables in runs:
            print(f"- {kind}:")
            for table in TABLES[1:]:
                said = tables[table].get("strategy") or tables[table].get("status", "")
                print(f"  - {table}: {said}; {tables[table].get('rows_read', 0):,} rows read")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
