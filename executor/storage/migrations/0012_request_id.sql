-- The id of the request that submitted an execution (X-Request-Id, docs/logs.md), kept with it
-- so that a job re-queued from PostgreSQL (Redis lost its entry) still carries it to the
-- worker's log lines. Not part of the record the API returns.
ALTER TABLE executions ADD COLUMN request_id text;
