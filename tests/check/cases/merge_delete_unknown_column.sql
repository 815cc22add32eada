-- expect: DELETE WHEN column opp is not an output column of enriched.orders — did you mean op?
-- at: 3:14
CREATE TABLE enriched.orders WRITE MERGE KEY (id) SEQUENCE BY lsn DELETE WHEN opp = 'd' AS SELECT 1 AS id, 2 AS lsn, 'u' AS op;
