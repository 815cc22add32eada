-- expect: raw table raw.events is append-only
-- at: 5:14
CREATE EXTERNAL TABLE landing.events (event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, kind VARCHAR)
STORED AS CSV LOCATION 'landing/events/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.events WRITE MERGE KEY (event_id) AS SELECT * FROM landing.events;
