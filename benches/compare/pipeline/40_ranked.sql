-- Ranked: each open job's 50 best candidates in its city. The score uses the three
-- native functions every other engine can match exactly in plain SQL:
--   60% skills, 20% recent activity, 20% distance.

CREATE TABLE ranked.candidates_per_job AS
SELECT job_id, best['item'] AS candidate_id, best['score'] AS score
FROM (
  SELECT job_id, unnest(top_k(candidate_id, score, 50)) AS best
  FROM (
    SELECT j.job_id, c.candidate_id,
             0.6 * coalesce(skill_match(c.skills, j.required_skills), 0)
           + 0.2 * coalesce(recency_decay(c.last_active, TIMESTAMP '2026-11-21 00:00:00', INTERVAL '30 days'), 0)
           + 0.2 * (1 - least(geo_distance_km(c.lat, c.lon, j.lat, j.lon) / 50, 1)) AS score
    FROM enriched.open_jobs j
    JOIN enriched.candidates c ON c.city = j.city)
  GROUP BY job_id);
