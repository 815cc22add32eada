-- Raw: every landing file once, as Avro, partitioned by the day it was ingested.

CREATE TABLE raw.candidates PARTITIONED BY (ingest_date)
AS SELECT *, CURRENT_DATE AS ingest_date FROM landing.candidates;

CREATE TABLE raw.jobs PARTITIONED BY (ingest_date)
AS SELECT *, CURRENT_DATE AS ingest_date FROM landing.jobs;

CREATE TABLE raw.searches PARTITIONED BY (ingest_date)
AS SELECT *, CURRENT_DATE AS ingest_date FROM landing.searches;

CREATE TABLE raw.events PARTITIONED BY (ingest_date)
AS SELECT *, CURRENT_DATE AS ingest_date FROM landing.events;
