-- expect: sequence column versoin is not an output column of enriched.readings — did you mean version?
-- at: 3:14
CREATE TABLE enriched.readings WRITE MERGE KEY (id) SEQUENCE BY versoin AS SELECT 1 AS id, 2 AS version;
