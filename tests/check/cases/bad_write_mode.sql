-- expect: expected REPLACE, APPEND, MERGE KEY (…) [SEQUENCE BY …] or SCD2 KEY (…) SEQUENCE BY … after WRITE, found UPSERT
-- at: 3:34
CREATE TABLE enriched.jobs WRITE UPSERT KEY (job_id) AS SELECT 1 AS job_id;
