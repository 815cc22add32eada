-- expect: ROW FILTER own is on raw.event, which this pipeline does not build
-- at: 6:26
CREATE EXTERNAL TABLE landing.events (event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, kind VARCHAR)
STORED AS CSV LOCATION 'landing/events/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.events AS SELECT event_id, kind FROM landing.events;
CREATE ROW FILTER own ON raw.event AS kind = 'x';
