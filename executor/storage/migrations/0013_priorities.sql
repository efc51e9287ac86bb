-- Priority classes (queue/classes.py, docs/scaling.md). An execution keeps its class, so that a
-- job enqueued again from PostgreSQL goes back to its own stream; a service token may be granted
-- classes by an operator (NULL: its role's default).
ALTER TABLE executions ADD COLUMN priority text NOT NULL DEFAULT 'normal'
    CHECK (priority IN ('high', 'normal', 'low'));
ALTER TABLE tokens ADD COLUMN priorities text[]
    CHECK (priorities IS NULL OR priorities <@ ARRAY['high', 'normal', 'low']);
