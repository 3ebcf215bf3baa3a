-- Evaluation and the case lists read cases by report time. A BRIN index only covers the page
-- ranges summarised so far (new cases land in unsummarised ranges until a vacuum), so a month's
-- query could scan the whole table; a B-tree is always complete. Report times never change, so
-- the index does not stand in the way of HOT updates by workflow steps.
DROP INDEX IF EXISTS cases_reported_at;
CREATE INDEX cases_reported_at ON cases (reported_at);
