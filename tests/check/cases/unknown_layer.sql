-- expect: unknown layer staging in staging.jobs
-- at: 3:14
CREATE TABLE staging.jobs AS SELECT 1 AS job_id;
