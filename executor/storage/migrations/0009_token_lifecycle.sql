-- Token lifecycle (issue 17): who issued a token, when it stops working, when it was last used.

ALTER TABLE tokens
    ADD COLUMN created_by   text,         -- "role:subject" of the issuer; NULL: made on the host (bootstrap, CLI)
    ADD COLUMN expires_at   timestamptz,  -- NULL: never; refused from this instant on
    ADD COLUMN last_used_at timestamptz;  -- written at most about once a minute per token

-- Listing, newest first: every token (operators), or the user tokens one service issued.
CREATE INDEX tokens_page ON tokens (created_at DESC, id DESC);
CREATE INDEX tokens_by_issuer ON tokens (created_by, created_at DESC, id DESC) WHERE created_by IS NOT NULL;
