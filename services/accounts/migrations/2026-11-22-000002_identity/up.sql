-- Identity: sign-in state, sessions (refresh token families), API tokens,
-- impersonation sessions. Secrets are stored as SHA-256 digests only: they
-- are 256-bit random values, so a slow hash adds nothing.

-- Per-user sign-in state kept apart from the profile row, so that failed
-- attempts do not bump the user's etag.
CREATE TABLE credentials (
    user_id              UUID PRIMARY KEY REFERENCES users (id),
    -- RFC 6238 secret (base32) once confirmed; the pending one while enrolling.
    totp_secret          TEXT,
    totp_pending_secret  TEXT,
    -- Last accepted time step: a code is accepted once.
    totp_last_step       BIGINT      NOT NULL DEFAULT 0,
    failed_attempts      INTEGER     NOT NULL DEFAULT 0,
    failure_window_start TIMESTAMPTZ,
    locked_until         TIMESTAMPTZ,
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE refresh_tokens (
    id          UUID PRIMARY KEY,
    -- Every token rotated from one sign-in shares the family: reuse of a
    -- rotated token revokes the family.
    family_id   UUID        NOT NULL,
    user_id     UUID        NOT NULL REFERENCES users (id),
    token_hash  BYTEA       NOT NULL UNIQUE,
    device      TEXT        NOT NULL DEFAULT '',
    client_ip   TEXT        NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    rotated_at  TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_live_by_user ON refresh_tokens (user_id) WHERE revoked_at IS NULL;
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

CREATE TABLE api_tokens (
    id            UUID PRIMARY KEY,
    user_id       UUID        NOT NULL REFERENCES users (id),
    name          TEXT        NOT NULL,
    secret_hash   BYTEA       NOT NULL UNIQUE,
    lifetime_secs BIGINT      NOT NULL CHECK (lifetime_secs > 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ,
    deleted_at    TIMESTAMPTZ
);

CREATE INDEX api_tokens_by_user ON api_tokens (user_id, id) WHERE deleted_at IS NULL;

CREATE TABLE impersonation_sessions (
    id         UUID PRIMARY KEY,
    -- Not a foreign key: administrators may hold tokens minted outside
    -- accounts (`steward token issue`).
    admin_id   TEXT        NOT NULL,
    user_id    UUID        NOT NULL REFERENCES users (id),
    reason     TEXT        NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    ended_at   TIMESTAMPTZ,
    ended_by   TEXT
);

CREATE INDEX impersonation_sessions_recent ON impersonation_sessions (id DESC);
CREATE INDEX impersonation_sessions_by_admin ON impersonation_sessions (admin_id, id DESC);
CREATE INDEX impersonation_sessions_by_user ON impersonation_sessions (user_id, id DESC);
