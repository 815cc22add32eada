-- The bench's extra policy: its point query's table masked too, besides the example's.
CREATE MASK shortlist_candidate ON ranked.candidates_per_job (candidate_id) AS
  CASE WHEN current_role() = 'recruiter' THEN candidate_id ELSE hash_pii(candidate_id) END;
