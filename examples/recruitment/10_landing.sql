-- Landing: the files the apps deliver, as `strata gen` writes them.
-- Relative locations are resolved against the warehouse root.

CREATE EXTERNAL TABLE landing.candidates (
  candidate_id VARCHAR NOT NULL,
  name VARCHAR,
  title VARCHAR,
  skills VARCHAR,            -- pipe-separated, spelled as candidates typed them
  city VARCHAR,
  country VARCHAR,
  lat DOUBLE,
  lon DOUBLE,
  years_experience INT,
  last_active TIMESTAMP,
  updated_at TIMESTAMP,
  email VARCHAR
) STORED AS CSV LOCATION 'landing/candidates/'
  OPTIONS ('format.has_header' 'true', 'format.compression' 'gzip');

CREATE EXTERNAL TABLE landing.jobs STORED AS PARQUET LOCATION 'landing/jobs/';

CREATE EXTERNAL TABLE landing.searches (
  search_id BIGINT, recruiter_id VARCHAR, tier VARCHAR, keywords VARCHAR, job_id BIGINT, ts TIMESTAMP
) STORED AS JSON LOCATION 'landing/searches/';

CREATE EXTERNAL TABLE landing.events (
  event_id VARCHAR NOT NULL, ts TIMESTAMP, job_id BIGINT, candidate_id VARCHAR,
  kind VARCHAR, publisher VARCHAR, campaign VARCHAR
) STORED AS CSV LOCATION 'landing/events/'
  OPTIONS ('format.has_header' 'true', 'format.compression' 'gzip');
