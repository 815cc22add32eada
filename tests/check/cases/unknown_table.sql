-- expect: unknown table enriched.job — did you mean enriched.jobs?
-- at: 12:35
CREATE EXTERNAL TABLE landing.events (event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, kind VARCHAR)
STORED AS CSV LOCATION 'landing/events/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.events AS SELECT *, CURRENT_DATE AS ingest_date FROM landing.events;

CREATE TABLE enriched.jobs AS SELECT DISTINCT job_id FROM raw.events;

CREATE TABLE ranked.top
AS SELECT job_id
   FROM raw.events
   JOIN (SELECT job_id AS id FROM enriched.job) j ON j.id = job_id;
