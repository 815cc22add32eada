-- expect: enriched.events cannot read landing table landing.events directly
-- at: 5:47
CREATE EXTERNAL TABLE landing.events (event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, kind VARCHAR)
STORED AS CSV LOCATION 'landing/events/' OPTIONS ('format.has_header' 'true');
CREATE TABLE enriched.events AS SELECT * FROM landing.events;
