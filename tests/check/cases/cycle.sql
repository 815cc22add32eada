-- expect: cycle: enriched.a → enriched.b → enriched.c → enriched.a
-- at: 3:14
CREATE TABLE enriched.a AS SELECT x FROM enriched.c;
CREATE TABLE enriched.b AS SELECT x FROM enriched.a;
CREATE TABLE enriched.c AS SELECT x FROM enriched.b;
