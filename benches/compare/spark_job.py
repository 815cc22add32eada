#!/usr/bin/env python3
"""The comparison's work in PySpark (local[2]): landing files in, five Parquet outputs out.

    python3 spark_job.py LANDING_DIR OUT_DIR

Prints one JSON line with the seconds spent after the session started. Plain Spark SQL
stands in for Strata's functions: skill_match, recency_decay and geo_distance_km are
written out with the same arithmetic, and the top 50 come from row_number() instead
of top_k.
"""

import json
import sys
import time

from pyspark.sql import SparkSession

landing, out = sys.argv[1], sys.argv[2]
spark = (
    SparkSession.builder.master("local[2]")
    .appName("strata-compare")
    .config("spark.driver.memory", "6g")
    .config("spark.sql.session.timeZone", "UTC")
    .config("spark.sql.shuffle.partitions", "4")
    .config("spark.ui.enabled", "false")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
started = time.monotonic()

csv = spark.read.option("header", "true")
csv.schema(
    "candidate_id STRING, name STRING, title STRING, skills STRING, city STRING, country STRING, "
    "lat DOUBLE, lon DOUBLE, years_experience INT, last_active TIMESTAMP, updated_at TIMESTAMP, "
    "email STRING"
).csv(f"{landing}/candidates/*.csv.gz").createOrReplaceTempView("candidates_landing")
csv.schema(
    "event_id STRING, ts TIMESTAMP, job_id BIGINT, candidate_id STRING, kind STRING, "
    "publisher STRING, campaign STRING"
).csv(f"{landing}/events/*.csv.gz").createOrReplaceTempView("events_landing")
spark.read.schema(
    "search_id BIGINT, recruiter_id STRING, tier STRING, keywords STRING, job_id BIGINT, ts TIMESTAMP"
).json(f"{landing}/searches/*.json").createOrReplaceTempView("searches_landing")
spark.read.parquet(f"{landing}/jobs").createOrReplaceTempView("jobs_landing")

candidates = spark.sql(
    """
SELECT candidate_id, name, title, split(lower(replace(skills, ' ', '')), '[|]') AS skills,
       city, country, lat, lon, years_experience, last_active, updated_at
FROM (SELECT *, row_number() OVER (PARTITION BY candidate_id ORDER BY updated_at DESC) AS version
      FROM candidates_landing
      WHERE lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180)
WHERE version = 1
"""
).cache()
candidates.createOrReplaceTempView("candidates")
open_jobs = spark.sql(
    """
SELECT job_id, company, title, required_skills, city, country, lat, lon, posted_at
FROM jobs_landing WHERE status = 'open' AND size(required_skills) > 0
"""
).cache()
open_jobs.createOrReplaceTempView("open_jobs")
candidates.write.mode("overwrite").parquet(f"{out}/candidates")
open_jobs.write.mode("overwrite").parquet(f"{out}/open_jobs")

spark.sql(
    """
SELECT job_id, count(*) AS searches, count_if(tier = 'gold') AS gold_searches
FROM searches_landing GROUP BY job_id
"""
).write.mode("overwrite").parquet(f"{out}/job_searches")

spark.sql(
    """
SELECT job_id, CAST(ts AS DATE) AS event_date, publisher, campaign,
       count_if(kind = 'click')       AS clicks,
       count_if(kind = 'apply')       AS applications,
       count_if(kind = 'conversion')  AS conversions,
       count_if(kind = 'qualified')   AS qualified,
       count_if(kind = 'unqualified') AS unqualified
FROM events_landing
WHERE job_id IS NOT NULL AND ts >= TIMESTAMP '2015-01-01 00:00:00'
GROUP BY job_id, CAST(ts AS DATE), publisher, campaign
"""
).write.mode("overwrite").parquet(f"{out}/job_events_daily")

spark.sql(
    """
SELECT job_id, candidate_id, score FROM (
  SELECT *, row_number() OVER (PARTITION BY job_id ORDER BY score DESC, candidate_id) AS pos
  FROM (
    SELECT j.job_id, c.candidate_id,
             0.6 * coalesce(
               size(filter(array_distinct(transform(j.required_skills, s -> lower(trim(s)))),
                           w -> array_contains(transform(c.skills, s -> lower(trim(s))), w)))
               / nullif(size(array_distinct(transform(j.required_skills, s -> lower(trim(s))))), 0), 0)
           + 0.2 * coalesce(power(0.5, greatest(unix_micros(TIMESTAMP '2026-11-21 00:00:00') - unix_micros(c.last_active), 0)
                                  / (30 * 86400 * 1e6)), 0)
           + 0.2 * (1 - least(2 * 6371.0088 * asin(least(sqrt(
                   power(sin((radians(j.lat) - radians(c.lat)) / 2), 2)
                 + cos(radians(c.lat)) * cos(radians(j.lat)) * power(sin(radians(j.lon - c.lon) / 2), 2)), 1)) / 50, 1))
             AS score
    FROM open_jobs j JOIN candidates c ON c.city = j.city))
WHERE pos <= 50
"""
).write.mode("overwrite").parquet(f"{out}/candidates_per_job")

seconds = time.monotonic() - started


def jvm_peak_mb():
    """Peak memory of the JVM that did the work (a child of this Python process)."""
    gateway = getattr(spark.sparkContext, "_gateway", None)
    process = getattr(gateway, "proc", None)
    try:
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (AttributeError, OSError):
        pass
    return None


print(json.dumps({"seconds": seconds, "peak_mb": jvm_peak_mb()}))
spark.stop()
