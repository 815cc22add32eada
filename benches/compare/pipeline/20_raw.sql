-- Raw: the landing files as Avro, as in the recruitment example. The other engines
-- cannot write Avro here, so the comparison times this layer apart.

CREATE TABLE raw.candidates AS SELECT * FROM landing.candidates;

CREATE TABLE raw.jobs AS SELECT * FROM landing.jobs;

CREATE TABLE raw.searches AS SELECT * FROM landing.searches;

CREATE TABLE raw.events AS SELECT * FROM landing.events;
