-- expect: column "count(Int64(1))" of enriched.counts needs a plain name to be stored
-- at: 3:33
CREATE TABLE enriched.counts AS SELECT count(1) FROM (VALUES (1)) t(x);
