-- expect: raw.jobs cannot read ranked.jobs: layer ranked comes after layer raw
-- at: 4:45
CREATE TABLE ranked.jobs AS SELECT 1 AS job_id;
CREATE TABLE raw.jobs AS SELECT job_id FROM ranked.jobs;
