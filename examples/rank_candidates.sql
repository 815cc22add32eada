-- Rank three candidates for a Paris job that wants Rust, SQL and Kafka:
-- 60% skills, 30% recent activity (30-day half-life), 10% distance (within 100 km).
SELECT name,
       round(0.6 * skill_match(skills, ['rust', 'sql', 'kafka'])
           + 0.3 * recency_decay(last_active, TIMESTAMP '2026-11-21 00:00:00', INTERVAL '30 days')
           + 0.1 * (1 - least(geo_distance_km(lat, lon, 48.8566, 2.3522) / 100, 1)), 3) AS score,
       round(geo_distance_km(lat, lon, 48.8566, 2.3522), 1) AS km,
       round(jaro_winkler(lower(title), 'data engineer'), 3) AS title_match
FROM (VALUES
    ('ana',  ['Rust', 'SQL', 'Kafka'], TIMESTAMP '2026-11-19 09:00:00', 48.86, 2.34, 'Data Engineer'),
    ('bo',   ['python', 'sql'],        TIMESTAMP '2026-08-01 12:00:00', 45.76, 4.84, 'data analyst'),
    ('chen', ['rust', 'kafka'],        TIMESTAMP '2026-11-02 18:30:00', 48.90, 2.25, 'data engineering lead')
) AS candidates(name, skills, last_active, lat, lon, title)
ORDER BY score DESC;
