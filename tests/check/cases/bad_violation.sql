-- expect: expected QUARANTINE, DROP ROW or FAIL after ON VIOLATION, found WARN
-- at: 4:56
CREATE TABLE enriched.jobs (
  CONSTRAINT positive EXPECT (job_id > 0) ON VIOLATION WARN
) AS SELECT 1 AS job_id;
