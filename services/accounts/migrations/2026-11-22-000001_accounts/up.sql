-- Accounts: users, groups, erasure settings, collaborations.
-- Runs with search_path = accounts, public.

CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

CREATE TABLE groups (
    name         TEXT PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    display_name TEXT        NOT NULL,
    built_in     BOOLEAN     NOT NULL DEFAULT false,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO groups (name, display_name, built_in) VALUES
    ('trial', 'Trial', true),
    ('billing', 'Billing', true),
    ('beta', 'Beta', true),
    ('post', 'Post', true);

CREATE TABLE users (
    id                  UUID PRIMARY KEY,
    -- Lowercased login; for DELETED users the salted MD5 of the old one.
    email               TEXT        NOT NULL,
    status              TEXT        NOT NULL
        CHECK (status IN ('ACTIVE', 'INACTIVE', 'SUSPENDED', 'DESTROYED', 'DELETED')),
    group_name          TEXT        NOT NULL REFERENCES groups (name),
    roles               TEXT[]      NOT NULL DEFAULT '{USER}',
    phone               TEXT,
    signup_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    reseller            TEXT,
    notes               TEXT        NOT NULL DEFAULT '',
    ext_billing_id      TEXT,
    two_factor_enabled  BOOLEAN     NOT NULL DEFAULT false,
    upgrade_in_progress BOOLEAN     NOT NULL DEFAULT false,
    password_hash       TEXT,
    -- Bumped by every change: the etag, and the guard against lost updates.
    version             BIGINT      NOT NULL DEFAULT 1,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    destroyed_at        TIMESTAMPTZ,
    erased_at           TIMESTAMPTZ
);

-- One live account per email; erased accounts hold hashes instead.
CREATE UNIQUE INDEX users_live_email ON users (email) WHERE status <> 'DELETED';
-- ListUsers: each filter combination with each order has a matching index,
-- so a page is an index range scan however many users there are.
CREATE INDEX users_signup ON users (signup_at, id);
CREATE INDEX users_group_signup ON users (group_name, signup_at, id);
CREATE INDEX users_status_signup ON users (status, signup_at, id);
CREATE INDEX users_group_status_signup ON users (group_name, status, signup_at, id);
CREATE INDEX users_email_order ON users (email, id);
CREATE INDEX users_group_email ON users (group_name, email, id);
CREATE INDEX users_status_email ON users (status, email, id);
-- Case-insensitive substring search on email (emails are stored lowercased).
CREATE INDEX users_email_trgm ON users USING gin (email public.gin_trgm_ops);
-- The erasure job's scan.
CREATE INDEX users_destroyed ON users (destroyed_at) WHERE status = 'DESTROYED';

CREATE TABLE settings (
    id                    BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    erasure_mode          TEXT        NOT NULL DEFAULT 'ANONYMIZATION'
        CHECK (erasure_mode IN ('ANONYMIZATION', 'PSEUDOANONYMIZATION')),
    auto_erase_enabled    BOOLEAN     NOT NULL DEFAULT false,
    auto_erase_delay_days INTEGER     NOT NULL DEFAULT 0 CHECK (auto_erase_delay_days >= 0),
    -- The platform salt of PSEUDOANONYMIZATION; generated once, never shown.
    platform_salt         TEXT        NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO settings DEFAULT VALUES;

CREATE TABLE collaborations (
    id              UUID PRIMARY KEY,
    owner_id        UUID        NOT NULL REFERENCES users (id),
    collaborator_id UUID        NOT NULL REFERENCES users (id),
    status          TEXT        NOT NULL CHECK (status IN ('PENDING', 'ACTIVE', 'REVOKED')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (owner_id <> collaborator_id)
);

-- At most one open share between two accounts.
CREATE UNIQUE INDEX collaborations_open ON collaborations (owner_id, collaborator_id)
    WHERE status <> 'REVOKED';
CREATE INDEX collaborations_by_owner ON collaborations (owner_id, id);
CREATE INDEX collaborations_by_collaborator ON collaborations (collaborator_id, id);
