-- Workflow milestones kept on the case (written in the same transaction as the step that reaches
-- them), so evaluation scans cases once instead of folding millions of history steps.
ALTER TABLE cases ADD COLUMN filed_at DATETIME;
ALTER TABLE cases ADD COLUMN dispatch_due_at DATETIME;
ALTER TABLE cases ADD COLUMN dispatched_at DATETIME;
ALTER TABLE cases ADD COLUMN handled_at DATETIME;
ALTER TABLE cases ADD COLUMN voided_at DATETIME;
ALTER TABLE cases ADD COLUMN warn_at DATETIME;
ALTER TABLE cases ADD COLUMN reworks INTEGER NOT NULL DEFAULT 0;

-- Cases written before this migration get what their history says (the dispatch time limit and
-- the yellow-light instant need the working calendar and stay empty).
UPDATE cases SET
    filed_at = (SELECT min(at) FROM case_steps s WHERE s.case_id = cases.id AND s.action = 'file'),
    dispatched_at = (SELECT min(at) FROM case_steps s WHERE s.case_id = cases.id AND s.action = 'dispatch'),
    handled_at = (SELECT max(at) FROM case_steps s WHERE s.case_id = cases.id AND s.action = 'handle'),
    voided_at = (SELECT max(at) FROM case_steps s WHERE s.case_id = cases.id AND s.action = 'void'),
    reworks = (SELECT count(*) FROM case_steps s WHERE s.case_id = cases.id AND s.action = 'check_fail');
