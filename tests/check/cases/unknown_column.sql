-- expect: No field named kidn. Did you mean 'raw.events.kind'?
-- at: 8:27
CREATE EXTERNAL TABLE landing.events (event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, kind VARCHAR)
STORED AS CSV LOCATION 'landing/events/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.events AS SELECT *, CURRENT_DATE AS ingest_date FROM landing.events;

CREATE TABLE enriched.kinds AS
SELECT DISTINCT event_id, kidn FROM raw.events;
