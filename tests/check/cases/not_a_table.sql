-- expect: expected CREATE EXTERNAL TABLE or CREATE TABLE, found INSERT
-- at: 3:1
INSERT INTO enriched.jobs VALUES (1);
