#!/usr/bin/env python3
"""The comparison's work in DuckDB: landing files in, five Parquet outputs out.

    python3 duckdb_job.py LANDING_DIR OUT_DIR [--steps]

Prints one JSON line with the seconds spent inside DuckDB. Plain SQL stands in for
Strata's functions: skill_match, recency_decay and geo_distance_km are written out
with the same arithmetic, and the top 50 come from row_number() instead of top_k.
"""

import json
import sys
import time

import duckdb

landing, out = sys.argv[1], sys.argv[2]
# With --steps, each statement's time goes to stderr, to see where DuckDB spends it.
steps = "--steps" in sys.argv[3:]
started = time.monotonic()
db = duckdb.connect()
db.execute("SET threads TO 2")
script = (
    f"""
CREATE VIEW candidates_landing AS SELECT * FROM read_csv('{landing}/candidates/*.csv.gz', header = true,
  columns = {{'candidate_id': 'VARCHAR', 'name': 'VARCHAR', 'title': 'VARCHAR', 'skills': 'VARCHAR',
             'city': 'VARCHAR', 'country': 'VARCHAR', 'lat': 'DOUBLE', 'lon': 'DOUBLE',
             'years_experience': 'INTEGER', 'last_active': 'TIMESTAMP', 'updated_at': 'TIMESTAMP',
             'email': 'VARCHAR'}});
CREATE VIEW events_landing AS SELECT * FROM read_csv('{landing}/events/*.csv.gz', header = true,
  columns = {{'event_id': 'VARCHAR', 'ts': 'TIMESTAMP', 'job_id': 'BIGINT', 'candidate_id': 'VARCHAR',
             'kind': 'VARCHAR', 'publisher': 'VARCHAR', 'campaign': 'VARCHAR'}});
CREATE VIEW searches_landing AS SELECT * FROM read_json('{landing}/searches/*.json', format = 'newline_delimited',
  columns = {{'search_id': 'BIGINT', 'recruiter_id': 'VARCHAR', 'tier': 'VARCHAR', 'keywords': 'VARCHAR',
             'job_id': 'BIGINT', 'ts': 'TIMESTAMP'}});
CREATE VIEW jobs_landing AS SELECT * FROM read_parquet('{landing}/jobs/*.parquet');

CREATE TABLE candidates AS
SELECT candidate_id, name, title, string_split(lower(replace(skills, ' ', '')), '|') AS skills,
       city, country, lat, lon, years_experience, last_active, updated_at
FROM candidates_landing
WHERE lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180
QUALIFY row_number() OVER (PARTITION BY candidate_id ORDER BY updated_at DESC) = 1;

CREATE TABLE open_jobs AS
SELECT job_id, company, title, required_skills, city, country, lat, lon, posted_at
FROM jobs_landing WHERE status = 'open' AND len(required_skills) > 0;

COPY candidates TO '{out}/candidates.parquet' (FORMAT parquet);
COPY open_jobs TO '{out}/open_jobs.parquet' (FORMAT parquet);

COPY (SELECT job_id, count(*) AS searches, count(*) FILTER (WHERE tier = 'gold') AS gold_searches
      FROM searches_landing GROUP BY job_id) TO '{out}/job_searches.parquet' (FORMAT parquet);

COPY (SELECT job_id, CAST(ts AS DATE) AS event_date, publisher, campaign,
             count(*) FILTER (WHERE kind = 'click')       AS clicks,
             count(*) FILTER (WHERE kind = 'apply')       AS applications,
             count(*) FILTER (WHERE kind = 'conversion')  AS conversions,
             count(*) FILTER (WHERE kind = 'qualified')   AS qualified,
             count(*) FILTER (WHERE kind = 'unqualified') AS unqualified
      FROM events_landing
      WHERE job_id IS NOT NULL AND ts >= TIMESTAMP '2015-01-01 00:00:00'
      GROUP BY ALL) TO '{out}/job_events_daily.parquet' (FORMAT parquet);

COPY (
  SELECT job_id, candidate_id, score FROM (
    SELECT j.job_id, c.candidate_id,
             0.6 * coalesce(
               len(list_filter(list_distinct(list_transform(j.required_skills, lambda s: lower(trim(s)))),
                               lambda w: list_contains(list_transform(c.skills, lambda s: lower(trim(s))), w)))::DOUBLE
               / nullif(len(list_distinct(list_transform(j.required_skills, lambda s: lower(trim(s))))), 0), 0)
           + 0.2 * coalesce(power(0.5, greatest(epoch_us(TIMESTAMP '2026-11-21 00:00:00') - epoch_us(c.last_active), 0)
                                  / (30 * 86400 * 1e6)), 0)
           + 0.2 * (1 - least(2 * 6371.0088 * asin(least(sqrt(
                   power(sin((radians(j.lat) - radians(c.lat)) / 2), 2)
                 + cos(radians(c.lat)) * cos(radians(j.lat)) * power(sin(radians(j.lon - c.lon) / 2), 2)), 1)) / 50, 1))
             AS score
    FROM open_jobs j JOIN candidates c ON c.city = j.city)
  QUALIFY row_number() OVER (PARTITION BY job_id ORDER BY score DESC, candidate_id) <= 50
) TO '{out}/candidates_per_job.parquet' (FORMAT parquet);
"""
)
for statement in filter(str.strip, script.split(";\n")):
    begun = time.monotonic()
    db.execute(statement)
    if steps:
        first = " ".join(statement.split())[:60]
        print(f"{time.monotonic() - begun:8.2f} s  {first}", file=sys.stderr)
print(json.dumps({"seconds": time.monotonic() - started}))
