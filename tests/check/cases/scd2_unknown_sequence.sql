-- expect: sequence column updated is not an output column of enriched.people — did you mean updated_at?
-- at: 3:14
CREATE TABLE enriched.people WRITE SCD2 KEY (id) SEQUENCE BY updated AS SELECT 1 AS id, TIMESTAMP '2026-01-01 00:00:00' AS updated_at;
