-- Retention of execution bodies (EXECUTOR_RETENTION_S, docs/retention.md): past it, a final
-- execution's input, output, stdin, stdout, log and output violations are set to NULL and
-- bodies_deleted_at says when. The record's other fields, its receipt (which holds the
-- hashes of stdin and stdout) and its log leaf are never touched.
ALTER TABLE executions ADD COLUMN bodies_deleted_at timestamptz;
ALTER TABLE executions ALTER COLUMN input DROP NOT NULL;  -- NULL once deleted

-- What each sweep asks for: final executions, oldest finished first, whose bodies are still
-- there. Partial, so it holds only rows not yet swept; its predicate is repeated verbatim in
-- storage/retention.py so that the planner can use it.
CREATE INDEX executions_bodies_due ON executions (finished_at)
    WHERE bodies_deleted_at IS NULL AND status IN ('COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED');
