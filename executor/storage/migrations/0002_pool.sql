-- Per-agent bounds on pre-started containers ({"min": n, "max": n}; null: the operator's defaults),
-- and whether an execution ran in a pre-started container.
ALTER TABLE agent_versions ADD COLUMN pool jsonb;
ALTER TABLE executions ADD COLUMN pooled boolean;
