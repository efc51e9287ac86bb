-- Egress (issue 21, docs/egress.md): an agent version may declare the upstreams its tasks may
-- call through the egress gateway, fixed with the version (NULL: no egress, no socket at all).
ALTER TABLE agent_versions ADD COLUMN egress jsonb;

-- What a task with egress sent through the gateway: one entry per request, forwarded or refused
-- (method, upstream name, path, status, bytes each way, duration; never a body or a header).
-- NULL for an execution whose agent declared no egress. Written in the finishing transaction,
-- with its digest as the receipt binds it ({"sha256", "requests", "bytes_out", "bytes_in"}).
ALTER TABLE executions ADD COLUMN egress jsonb;
ALTER TABLE executions ADD COLUMN egress_digest jsonb;

-- An agent's secrets, written by its service and read only by the gateway to inject them.
-- `sealed` is a PyNaCl SecretBox (nonce + ciphertext) under the operator's key `key_id`;
-- `version` counts the writes of a name (1, 2, …). No value is ever stored in the clear.
CREATE TABLE agent_secrets (
    agent_id    uuid NOT NULL REFERENCES agents (id),
    name        text NOT NULL,
    version     integer NOT NULL,
    key_id      text NOT NULL,
    sealed      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, name)
);
