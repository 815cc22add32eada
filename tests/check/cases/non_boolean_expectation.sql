-- expect: expectation positive of enriched.jobs must be a boolean condition, but it is Int64
-- at: 3:29
CREATE TABLE enriched.jobs (CONSTRAINT positive EXPECT (job_id + 1)) AS SELECT 1 AS job_id;
