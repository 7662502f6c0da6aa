-- The revocation list accounts streams to every token checker
-- (AuthService/WatchRevocations): tokens of `subject` (a user id, an
-- impersonation session id or an API token id, by `kind`) issued before
-- `not_before` are refused until `expires_at`, past which no such token
-- can be valid. Rows are written in the transaction of the change that
-- causes them, with a NOTIFY on `accounts_revocations` carrying the row.
CREATE TABLE revocations (
    id         BIGSERIAL   PRIMARY KEY,
    kind       TEXT        NOT NULL CHECK (kind IN ('user', 'session', 'api_token')),
    subject    TEXT        NOT NULL,
    not_before TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The snapshot reads live rows; the purge deletes expired ones.
CREATE INDEX revocations_expiry ON revocations (expires_at);
