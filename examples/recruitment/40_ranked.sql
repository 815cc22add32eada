-- Ranked: the point of it all. Scores use Strata's native functions:
--   45% skills, 20% recent activity, 15% distance, 10% title, 10% recruiter keywords.

-- `top_k` keeps the 50 best candidates of each job in a bounded heap as the scored
-- pairs stream by, so no job's whole candidate list is ever sorted or held in memory.
CREATE TABLE ranked.candidates_per_job AS
SELECT job_id, candidate_id, score,
       row_number() OVER (PARTITION BY job_id ORDER BY score DESC, candidate_id) AS pos
FROM (
  SELECT job_id, best['item'] AS candidate_id, best['score'] AS score
  FROM (
    SELECT job_id, unnest(top_k(candidate_id, score, 50)) AS best
    FROM (
      SELECT j.job_id, c.candidate_id,
               0.45 * coalesce(skill_match(c.skills, j.required_skills), 0)
             + 0.20 * recency_decay(c.last_active, TIMESTAMP '2026-11-21 00:00:00', INTERVAL '30 days')
             + 0.15 * (1 - least(geo_distance_km(c.lat, c.lon, j.lat, j.lon) / 50, 1))
             + 0.10 * jaro_winkler(lower(c.title), lower(j.title))
             + 0.10 * least(coalesce(bm25(array_to_string(c.skills, ' ') || ' ' || c.title, j.keywords, 8.0), 0) / 3, 1)
               AS score
      -- Keywords join the (few) open jobs before the jobs meet the candidates, so the
      -- large stream of scored pairs is never the side a join has to hold in memory.
      FROM (SELECT j.*, k.keywords
            FROM enriched.jobs j LEFT JOIN enriched.job_keywords k ON k.job_id = j.job_id
            WHERE j.status = 'open') j
      JOIN enriched.candidates c ON c.city = j.city AND c.is_current)
    GROUP BY job_id));

-- The reverse view: the 20 best open jobs for each candidate, one list per candidate.
CREATE TABLE ranked.jobs_per_candidate AS
SELECT candidate_id, top_k(job_id, score, 20) AS best_jobs
FROM (
  SELECT c.candidate_id, j.job_id,
           0.6 * coalesce(skill_match(c.skills, j.required_skills), 0)
         + 0.4 * (1 - least(geo_distance_km(c.lat, c.lon, j.lat, j.lon) / 50, 1)) AS score
  FROM enriched.candidates c
  JOIN enriched.jobs j ON j.city = c.city AND j.status = 'open'
  WHERE c.is_current)
GROUP BY candidate_id;
