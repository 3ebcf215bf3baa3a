-- The department a case is dispatched to (the one responsible party of 先属主后属地).
ALTER TABLE cases ADD COLUMN dept_code text;
CREATE INDEX cases_dept ON cases (dept_code);
