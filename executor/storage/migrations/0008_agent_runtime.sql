-- Isolation chosen per agent (issue 15): the OCI runtime an agent version asks for
-- ("runsc", …), fixed with the version; NULL runs under the operator's default
-- (EXECUTOR_OCI_RUNTIME, else the engine's). Every version before this one is NULL.
ALTER TABLE agent_versions ADD COLUMN runtime text;
