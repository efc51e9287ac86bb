-- Metering, cost and signed receipts (issue 6).

-- An agent version's pricing (executor/pricing.py), immutable like the rest of the version.
ALTER TABLE agent_versions ADD COLUMN pricing jsonb;

ALTER TABLE executions
    ADD COLUMN stdin          bytea,   -- the exact bytes the task reads on stdin (a receipt hashes them)
    ADD COLUMN input_bytes    bigint,
    ADD COLUMN output_bytes   bigint,
    ADD COLUMN fuel_consumed  bigint,
    ADD COLUMN oci_runtime    text,    -- the OCI runtime the task ran under (runc, runsc, ...)
    ADD COLUMN cost           jsonb;   -- {"currency", "decimals", "amount", "capped"}, integers only

-- Public halves of the signing keys, published as a JWK set (GET /v1/keys) until retired.
-- The private halves never reach the database: they stay in each host's key ring file.
CREATE TABLE signing_keys (
    kid         text PRIMARY KEY,          -- RFC 7638 thumbprint of the public key
    public_key  bytea NOT NULL CHECK (length(public_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);

-- The transparency log: one RFC 9162 Merkle tree over every receipt. Its one state row
-- is locked by each append (in the transaction that finishes the execution), which
-- gives every receipt the next index: no gap (a rolled-back append gives its index
-- back) and no duplicate, whichever worker finishes first.
CREATE TABLE log_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    log_id     uuid NOT NULL,
    size       bigint NOT NULL,
    frontier   bytea[] NOT NULL        -- hashes of the complete subtrees making up the tree, largest first
);
INSERT INTO log_state (log_id, size, frontier) VALUES (gen_random_uuid(), 0, '{}');

-- Every complete, aligned subtree: (0, i) is leaf i, (L, i) covers leaves [i·2^L, (i+1)·2^L).
-- Written once when complete, never changed: any proof for any size is a fold of these.
CREATE TABLE log_nodes (
    level  smallint NOT NULL,
    idx    bigint NOT NULL,
    hash   bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

CREATE TABLE receipts (
    execution_id  uuid PRIMARY KEY REFERENCES executions (id),
    log_index     bigint NOT NULL UNIQUE,
    payload       bytea NOT NULL,      -- RFC 8785 canonical JSON: the DSSE payload, and the log leaf
    keyid         text NOT NULL REFERENCES signing_keys (kid),
    sig           bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Countersignatures by witnesses (e.g. the marketplace) over the same DSSE PAE bytes.
CREATE TABLE receipt_attestations (
    execution_id  uuid NOT NULL REFERENCES receipts (execution_id),
    keyid         text NOT NULL,
    sig           bytea NOT NULL,
    public_key    jsonb NOT NULL,      -- the witness's JWK, as it was checked
    attested_by   text NOT NULL,       -- the caller that sent it
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, keyid)
);

-- Signed tree heads: one per tree size, each a DSSE envelope over its canonical payload.
CREATE TABLE tree_heads (
    tree_size   bigint PRIMARY KEY,
    root_hash   bytea NOT NULL,
    payload     bytea NOT NULL,
    keyid       text NOT NULL REFERENCES signing_keys (kid),
    sig         bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
