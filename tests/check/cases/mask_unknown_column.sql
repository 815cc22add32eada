-- expect: MASK kind_mask is on column knid, which raw.events does not have (did you mean kind?)
-- at: 6:1
CREATE EXTERNAL TABLE landing.events (event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, kind VARCHAR)
STORED AS CSV LOCATION 'landing/events/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.events AS SELECT event_id, kind FROM landing.events;
CREATE MASK kind_mask ON raw.events (knid) AS redact(kind);
