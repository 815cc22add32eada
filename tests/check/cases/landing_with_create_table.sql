-- expect: landing.jobs is in layer landing, but this statement declares a table of layer raw, enriched, ranked
-- at: 3:14
CREATE TABLE landing.jobs AS SELECT 1 AS job_id;
