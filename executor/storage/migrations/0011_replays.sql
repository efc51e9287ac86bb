-- Idempotency-Key on every creating POST but POST /v1/executions and its batch, which keep
-- theirs in idempotency_keys, bound to the execution inside its own transaction
-- (docs/idempotency.md). Per caller and key: the first request's fingerprint and, once it
-- succeeded, its answer to replay. A row lives EXECUTOR_IDEMPOTENCY_TTL_S from its claim; a
-- row still without an answer (its request running, or its process gone) may be claimed
-- again after a lease. The answer may hold a secret shown once (an issued token): it is
-- kept no longer than the TTL (storage/replays.py deletes expired rows).
CREATE TABLE replays (
    caller          text NOT NULL,         -- "role:subject" of the token that sent it
    key             text NOT NULL,
    request_sha256  bytea NOT NULL,        -- method, path and canonical JSON body
    claim_id        uuid NOT NULL,         -- the request that holds the key
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    status          smallint,              -- NULL until the request succeeded
    headers         jsonb,                 -- the answer's headers, Content-Type included
    body            bytea,
    PRIMARY KEY (caller, key)
);

-- The sweep of expired rows, oldest first.
CREATE INDEX replays_by_age ON replays (claimed_at);
