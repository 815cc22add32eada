-- A valid pipeline: statement order does not matter.
CREATE TABLE enriched.applications (
  CONSTRAINT known_job EXPECT (job_id IS NOT NULL) ON VIOLATION QUARANTINE,
  CONSTRAINT recent    EXPECT (ts >= TIMESTAMP '2015-01-01') ON VIOLATION DROP ROW
) PARTITIONED BY (event_date)
AS SELECT e.event_id, e.job_id, e.ts, CAST(e.ts AS DATE) AS event_date FROM raw.events e WHERE e.kind = 'apply';

CREATE EXTERNAL TABLE landing.events (event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, kind VARCHAR)
STORED AS CSV LOCATION 'landing/events/' OPTIONS ('format.has_header' 'true');

CREATE TABLE raw.events PARTITIONED BY (ingest_date)
AS SELECT *, CURRENT_DATE AS ingest_date FROM landing.events;

CREATE TABLE ranked.busy_jobs WRITE MERGE KEY (job_id)
AS WITH counts AS (SELECT job_id, count(*) AS applications FROM enriched.applications GROUP BY job_id)
SELECT job_id, applications FROM counts;

CREATE TABLE enriched.event_history WRITE SCD2 KEY (event_id) SEQUENCE BY ts
AS SELECT event_id, kind, ts FROM raw.events;
