-- expect: 'bad_rows.limit' is 'most'; it must be a count of rows (100) or a share of a file's rows (5%)
-- at: 3:1
CREATE EXTERNAL TABLE landing.events (event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, kind VARCHAR)
STORED AS CSV LOCATION 'landing/events/' OPTIONS ('format.has_header' 'true', 'bad_rows.limit' 'most');
