-- expect: enriched.orders deletes keys (DELETE WHEN) but says no order of their rows
-- at: 3:14
CREATE TABLE enriched.orders WRITE MERGE KEY (id) DELETE WHEN op = 'd' AS SELECT 1 AS id, 'u' AS op;
