-- expect: partition column event_dt is not an output column of enriched.events — did you mean event_date?
-- at: 3:14
CREATE TABLE enriched.events PARTITIONED BY (event_dt) AS SELECT 1 AS id, DATE '2026-11-21' AS event_date;
