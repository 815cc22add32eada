-- expect: landing/nowhere/ of landing.events does not exist
-- at: 3:1
CREATE EXTERNAL TABLE landing.events (event_id VARCHAR) STORED AS CSV LOCATION 'landing/nowhere/';
