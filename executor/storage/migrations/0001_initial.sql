-- Tokens are stored as the SHA-256 of a 256-bit random secret: the secret itself
-- is shown once and never stored or logged.
CREATE TABLE tokens (
    id          uuid PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('user', 'service', 'operator')),
    subject     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE agents (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    kind        text NOT NULL CHECK (kind IN ('container', 'wasm')),
    owner       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A version is immutable once written: every execution pins one.
CREATE TABLE agent_versions (
    agent_id      uuid NOT NULL REFERENCES agents (id),
    version       integer NOT NULL,
    image         text NOT NULL,
    image_digest  text NOT NULL,
    command       jsonb,
    input_schema  jsonb NOT NULL,
    output_schema jsonb NOT NULL,
    limits        jsonb NOT NULL,
    description   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, version)
);

CREATE TABLE executions (
    id                uuid PRIMARY KEY,
    agent_id          uuid NOT NULL,
    agent_version     integer NOT NULL,
    owner             text NOT NULL,
    status            text NOT NULL
                      CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED')),
    input             jsonb NOT NULL,
    limits            jsonb NOT NULL,
    output            jsonb,
    raw_output        bytea,        -- stdout as read (up to the cap) when it is not a valid output
    log               bytea,        -- stderr as read, up to the cap
    error_type        text,
    error_detail      text,
    error_violations  jsonb,
    exit_code         integer,
    worker            text,         -- instance id of the worker that claimed it
    cancel_requested  boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    wall_ms           bigint,
    cpu_ms            bigint,
    peak_memory_bytes bigint,
    FOREIGN KEY (agent_id, agent_version) REFERENCES agent_versions (agent_id, version)
);

CREATE INDEX executions_owner_page ON executions (owner, created_at DESC, id DESC);
CREATE INDEX executions_live ON executions (status, worker) WHERE status IN ('PENDING', 'RUNNING');
