-- Scale-out workers (issue 8): how many times an execution was started. A worker that
-- died mid-run leaves its execution RUNNING; another worker puts it back to PENDING and
-- runs it again (a task is sealed: a cut-off run leaves nothing outside its container),
-- up to EXECUTOR_MAX_ATTEMPTS starts, then ends it as platform_error.
ALTER TABLE executions ADD COLUMN attempts integer NOT NULL DEFAULT 0;
