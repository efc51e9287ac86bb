-- Webhooks (executor/webhooks): Standard Webhooks, delivered from an outbox. A delivery row is
-- written in the transaction that makes an execution final, so it exists exactly when that
-- final state is committed; dispatchers then send it, at least once, recording every attempt.

-- One row per caller (an owner string such as 'service:market'): its default URL and the
-- secret that signs what it receives.
-- The secret is stored IN CLEAR, unlike tokens: HMAC-SHA256 signing needs the key itself, so a
-- hash would be useless. Whoever can read this table can forge webhooks to these callers.
CREATE TABLE webhook_endpoints (
    owner       text PRIMARY KEY,
    url         text,                   -- NULL: no default URL configured
    secret      text NOT NULL,          -- whsec_<base64 of 32 random bytes>
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,   -- also the webhook-id header: the same on every attempt
    execution_id    uuid NOT NULL REFERENCES executions (id),
    event_type      text NOT NULL,
    url             text NOT NULL,
    endpoint_owner  text NOT NULL REFERENCES webhook_endpoints (owner),  -- whose secret signs it
    payload         bytea NOT NULL,     -- the exact body sent on every attempt
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A dispatcher's lease while it sends: another may claim the row only once it has expired,
    -- so a dispatcher that dies mid-attempt delays the delivery but never loses it.
    locked_until    timestamptz,
    locked_by       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_error      text,
    UNIQUE (execution_id, url)          -- a final state can never enqueue the same webhook twice
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (id),
    attempt      integer NOT NULL,      -- 1, 2, ...
    started_at   timestamptz NOT NULL,
    duration_ms  integer NOT NULL,
    status_code  integer,               -- NULL: no HTTP answer (refused, unreachable, timed out)
    error        text,                  -- NULL: a 2xx answer
    PRIMARY KEY (delivery_id, attempt)
);
