-- App tracking events from a Kafka topic, into raw exactly once, then followed by the
-- tables downstream: run with `strata run examples/kafka --continuous`.

CREATE EXTERNAL TABLE landing.events (
  event_id BIGINT NOT NULL,
  job_id BIGINT,
  candidate_id BIGINT,
  kind VARCHAR,
  ts TIMESTAMP,
  _kafka_partition INT,
  _kafka_offset BIGINT
) STORED AS KAFKA LOCATION 'kafka://localhost:9092/tracking-events'
  OPTIONS ('format' 'json', 'starting_offsets' 'earliest',
           'max_messages_per_partition' '500000', 'group.id' 'strata-tracking');

CREATE TABLE raw.events PARTITIONED BY (day)
AS SELECT *, CAST(ts AS DATE) AS day FROM landing.events;

-- Every view once, as it arrives.
CREATE TABLE enriched.job_views WRITE APPEND
AS SELECT event_id, job_id, candidate_id, ts FROM STREAM(raw.events) WHERE kind = 'view';

-- Views per job and day, refreshed from the views that arrived.
CREATE TABLE ranked.views_per_job
AS SELECT job_id, CAST(ts AS DATE) AS day, count(*) AS views
FROM enriched.job_views GROUP BY job_id, CAST(ts AS DATE);
