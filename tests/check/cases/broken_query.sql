-- expect: Expected: a data type name, found: )
-- at: 4:22
CREATE TABLE enriched.jobs AS
SELECT CAST(job_id AS) FROM (VALUES (1)) t(job_id);
