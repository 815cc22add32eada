-- Enriched: the cleaning every engine in the comparison does, in the same SQL.

-- Each candidate's latest row, with valid coordinates and normalised skills.
CREATE TABLE enriched.candidates AS
SELECT candidate_id, name, title,
       string_to_array(lower(replace(skills, ' ', '')), '|') AS skills,
       city, country, lat, lon, years_experience, last_active, updated_at
FROM (SELECT *, row_number() OVER (PARTITION BY candidate_id ORDER BY updated_at DESC) AS version
      FROM raw.candidates
      WHERE lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180)
WHERE version = 1;

CREATE TABLE enriched.open_jobs AS
SELECT job_id, company, title, required_skills, city, country, lat, lon, posted_at
FROM raw.jobs
WHERE status = 'open' AND cardinality(required_skills) > 0;

-- Read from the NDJSON landing files.
CREATE TABLE enriched.job_searches AS
SELECT job_id, count(*) AS searches, count(*) FILTER (WHERE tier = 'gold') AS gold_searches
FROM raw.searches
GROUP BY job_id;

-- The per-job daily funnel, over the clean events.
CREATE TABLE enriched.job_events_daily AS
SELECT job_id, CAST(ts AS DATE) AS event_date, publisher, campaign,
       count(*) FILTER (WHERE kind = 'click')       AS clicks,
       count(*) FILTER (WHERE kind = 'apply')       AS applications,
       count(*) FILTER (WHERE kind = 'conversion')  AS conversions,
       count(*) FILTER (WHERE kind = 'qualified')   AS qualified,
       count(*) FILTER (WHERE kind = 'unqualified') AS unqualified
FROM raw.events
WHERE job_id IS NOT NULL AND ts >= TIMESTAMP '2015-01-01 00:00:00'
GROUP BY job_id, CAST(ts AS DATE), publisher, campaign;
