-- Workflow milestones kept on the case (written in the same transaction as the step that reaches
-- them), so evaluation scans cases once instead of folding millions of history steps.
ALTER TABLE cases
    ADD COLUMN filed_at timestamptz,
    ADD COLUMN dispatch_due_at timestamptz,
    ADD COLUMN dispatched_at timestamptz,
    ADD COLUMN handled_at timestamptz,
    ADD COLUMN voided_at timestamptz,
    ADD COLUMN warn_at timestamptz,
    ADD COLUMN reworks integer NOT NULL DEFAULT 0;

-- Cases written before this migration get what their history says (the dispatch time limit and
-- the yellow-light instant need the working calendar and stay empty).
UPDATE cases c SET
    filed_at = s.filed_at, dispatched_at = s.dispatched_at, handled_at = s.handled_at,
    voided_at = s.voided_at, reworks = s.reworks
FROM (
    SELECT case_id,
        min(at) FILTER (WHERE action = 'file') AS filed_at,
        min(at) FILTER (WHERE action = 'dispatch') AS dispatched_at,
        max(at) FILTER (WHERE action = 'handle') AS handled_at,
        max(at) FILTER (WHERE action = 'void') AS voided_at,
        count(*) FILTER (WHERE action = 'check_fail') AS reworks
    FROM case_steps GROUP BY case_id
) s
WHERE s.case_id = c.id;
