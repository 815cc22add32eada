-- expect: Strata's CSV reader does not support format.timestamp_format
-- at: 3:1
CREATE EXTERNAL TABLE landing.events (event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, kind VARCHAR)
STORED AS CSV LOCATION 'landing/events/' OPTIONS ('format.has_header' 'true', 'format.timestamp_format' '%d/%m/%Y');
