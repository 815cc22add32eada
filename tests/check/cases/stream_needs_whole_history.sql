-- expect: a window function over STREAM(raw.events) would see only the rows added since the last build
-- at: 7:10
CREATE EXTERNAL TABLE landing.events (event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, kind VARCHAR)
STORED AS CSV LOCATION 'landing/events/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.events AS SELECT * FROM landing.events;
CREATE TABLE enriched.first_events WRITE APPEND AS SELECT event_id, row_number() OVER (PARTITION BY job_id ORDER BY ts) AS n FROM
  STREAM(raw.events);
