-- expect: STREAM(enriched.events) needs a table that only grows, but enriched.events is written REPLACE
-- at: 7:72
CREATE EXTERNAL TABLE landing.events (event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, kind VARCHAR)
STORED AS CSV LOCATION 'landing/events/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.events AS SELECT * FROM landing.events;
CREATE TABLE enriched.events AS SELECT * FROM raw.events;
CREATE TABLE ranked.recent WRITE APPEND AS SELECT event_id FROM STREAM(enriched.events);
