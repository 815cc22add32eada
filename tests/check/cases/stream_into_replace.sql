-- expect: enriched.events reads a STREAM, so it must add to what it built, but it is written REPLACE
-- at: 7:10
CREATE EXTERNAL TABLE landing.events (event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, kind VARCHAR)
STORED AS CSV LOCATION 'landing/events/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.events AS SELECT * FROM landing.events;
CREATE TABLE enriched.events AS SELECT * FROM
  STREAM(raw.events);
