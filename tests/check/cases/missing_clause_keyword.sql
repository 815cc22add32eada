-- expect: expected AS SELECT …, or one of (expectations), PARTITIONED BY, STORED AS, WRITE; found PARTITION
-- at: 3:28
CREATE TABLE enriched.jobs PARTITION BY (job_id) AS SELECT 1 AS job_id;
