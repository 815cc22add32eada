-- Policies: what each Flight SQL and console user sees of the candidates.
-- Recruiters contact candidates, so they see names and e-mails whole. Everyone else,
-- the `data_scientist` role among them, sees a pseudonym for each name (stable, so
-- counts and joins by name still work) and only the domain of each e-mail. The raw
-- table holds the same columns as delivered, so it is masked the same way.

CREATE MASK candidate_name ON enriched.candidates (name) AS
  CASE WHEN current_role() = 'recruiter' THEN name ELSE hash_pii(name) END;
CREATE MASK candidate_email ON enriched.candidates (email) AS
  CASE WHEN current_role() = 'recruiter' THEN email ELSE mask_email(email) END;

CREATE MASK raw_candidate_name ON raw.candidates (name) AS
  CASE WHEN current_role() = 'recruiter' THEN name ELSE hash_pii(name) END;
CREATE MASK raw_candidate_email ON raw.candidates (email) AS
  CASE WHEN current_role() = 'recruiter' THEN email ELSE mask_email(email) END;
