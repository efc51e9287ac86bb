-- The marketplace (issue 7): versions' lifecycle, entitlements, service access, idempotency.

-- A version is immutable once published; only its lifecycle moves, one way:
-- published → deprecated → withdrawn (or published → withdrawn).
ALTER TABLE agent_versions
    ADD COLUMN status            text NOT NULL DEFAULT 'published'
                                 CHECK (status IN ('published', 'deprecated', 'withdrawn')),
    ADD COLUMN status_changed_at timestamptz;

-- A user's right to run an agent, granted by the marketplace service. At most one live
-- (unrevoked) entitlement per user and agent: granting again updates it. `uses_remaining`
-- is decremented in the transaction that accepts an execution (its row lock orders racing
-- submissions), and given back in the one that finishes it when the use was not charged.
CREATE TABLE entitlements (
    id              uuid PRIMARY KEY,
    user_subject    text NOT NULL,
    agent_id        uuid NOT NULL REFERENCES agents (id),
    granted_by      text NOT NULL,          -- "service:<subject>" or "operator:<subject>"
    expires_at      timestamptz,            -- NULL: no end
    uses            integer CHECK (uses >= 0),            -- granted; NULL: unlimited
    uses_remaining  integer CHECK (uses_remaining >= 0),  -- NULL exactly when uses is NULL
    uses_consumed   integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    revoked_by      text,
    CHECK ((uses IS NULL) = (uses_remaining IS NULL))
);
CREATE UNIQUE INDEX entitlements_live ON entitlements (user_subject, agent_id) WHERE revoked_at IS NULL;
CREATE INDEX entitlements_by_user ON entitlements (user_subject, created_at DESC);

ALTER TABLE executions
    ADD COLUMN service         text,    -- the marketplace service it belongs to: it may read it, its webhook gets it
    ADD COLUMN submitted_by    text,    -- the caller that sent it (a service acting on behalf of a user)
    ADD COLUMN entitlement_id  uuid REFERENCES entitlements (id),  -- the entitlement one use was taken from
    ADD COLUMN use_returned    boolean NOT NULL DEFAULT false,
    ADD COLUMN webhook_url     text;

CREATE INDEX executions_service_page ON executions (service, created_at DESC, id DESC) WHERE service IS NOT NULL;
CREATE INDEX executions_owner_live ON executions (owner) WHERE status IN ('PENDING', 'RUNNING');
CREATE INDEX executions_by_version ON executions (agent_id, agent_version);

-- Idempotency-Key per caller: the first request's fingerprint and the execution it created.
-- The primary key orders racing replays: the first insert wins, the others wait for its
-- commit and then read its execution (or take over if it rolled back).
CREATE TABLE idempotency_keys (
    caller          text NOT NULL,
    key             text NOT NULL,
    request_sha256  bytea NOT NULL,
    execution_id    uuid REFERENCES executions (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, key)
);
