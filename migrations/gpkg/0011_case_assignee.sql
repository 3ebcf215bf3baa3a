-- The supervisor sent to do a case's field task (verify a public report, check a handled case),
-- written with the workflow columns; every step clears it.
ALTER TABLE cases ADD COLUMN assignee TEXT;
ALTER TABLE cases ADD COLUMN assigned_at DATETIME;
CREATE INDEX cases_assignee ON cases (assignee) WHERE assignee IS NOT NULL;
