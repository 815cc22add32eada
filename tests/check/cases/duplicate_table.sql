-- expect: table enriched.jobs is declared twice
-- at: 4:14
CREATE TABLE enriched.jobs AS SELECT 1 AS job_id;
CREATE TABLE enriched.jobs AS SELECT 2 AS job_id;
