-- Enriched: clean, typed, deduplicated tables (Delta Lake).

-- Candidates with their history: a correction closes the current row and opens a new one.
CREATE TABLE enriched.candidates (
  CONSTRAINT valid_coordinates EXPECT (lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180)
    ON VIOLATION QUARANTINE
) WRITE SCD2 KEY (candidate_id) SEQUENCE BY updated_at
AS SELECT candidate_id, name, email, title,
          string_to_array(lower(replace(skills, ' ', '')), '|') AS skills,
          city, country, lat, lon, years_experience, last_active, updated_at
   FROM raw.candidates;

CREATE TABLE enriched.jobs (
  CONSTRAINT has_skills EXPECT (cardinality(required_skills) > 0) ON VIOLATION DROP ROW
) WRITE MERGE KEY (job_id)
AS SELECT job_id, company, title, required_skills, city, country, lat, lon, posted_at, status, description
   FROM raw.jobs;

-- Tracking events, one row each; bad rows are set aside or dropped, and counted.
CREATE TABLE enriched.events (
  CONSTRAINT known_job EXPECT (job_id IS NOT NULL) ON VIOLATION QUARANTINE,
  CONSTRAINT recent    EXPECT (ts >= TIMESTAMP '2015-01-01 00:00:00') ON VIOLATION DROP ROW
) PARTITIONED BY (event_date)
AS SELECT event_id, ts, CAST(ts AS DATE) AS event_date, job_id, candidate_id, kind, publisher, campaign
   FROM raw.events;

-- Per job, day, publisher and campaign: the funnel.
CREATE TABLE enriched.job_events_daily PARTITIONED BY (event_date)
AS SELECT job_id, event_date, publisher, campaign,
          count(*) FILTER (WHERE kind = 'click')       AS clicks,
          count(*) FILTER (WHERE kind = 'apply')       AS applications,
          count(*) FILTER (WHERE kind = 'conversion')  AS conversions,
          count(*) FILTER (WHERE kind = 'qualified')   AS qualified,
          count(*) FILTER (WHERE kind = 'unqualified') AS unqualified
   FROM enriched.events
   GROUP BY job_id, event_date, publisher, campaign;

-- What recruiters search for each job, as one keyword string.
CREATE TABLE enriched.job_keywords
AS SELECT job_id, string_agg(keywords, ' ') AS keywords, count(*) AS searches,
          count(*) FILTER (WHERE tier = 'gold') AS gold_searches
   FROM raw.searches
   GROUP BY job_id;
