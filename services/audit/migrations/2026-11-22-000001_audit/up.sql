-- The audit store. Runs with search_path = audit, public.

-- Append-only, range-partitioned by month (partitions are created ahead by
-- the service, see store::partitions). Personal data (client_ip,
-- user_agent, personal comment values) is outside the chained bytes: the
-- chain covers pii_digest = SHA-256(pii_salt || personal data) instead, so
-- erasure can blank it without breaking verification.
CREATE TABLE events (
    seq                      BIGINT      NOT NULL,
    event_id                 UUID        NOT NULL,
    occurred_at              TIMESTAMPTZ NOT NULL,
    received_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    product                  TEXT        NOT NULL,
    action                   TEXT        NOT NULL,
    category                 SMALLINT    NOT NULL,
    actor_user_id            TEXT        NOT NULL DEFAULT '',
    subject_user_id          TEXT        NOT NULL DEFAULT '',
    modified_user_id         TEXT        NOT NULL DEFAULT '',
    impersonator_user_id     TEXT        NOT NULL DEFAULT '',
    impersonation_session_id TEXT        NOT NULL DEFAULT '',
    token_id                 TEXT        NOT NULL DEFAULT '',
    project                  TEXT        NOT NULL DEFAULT '',
    -- Non-personal parameters (chained).
    comments                 JSONB       NOT NULL DEFAULT '{}',
    -- Personal parameters (not chained; covered by pii_digest).
    pii_comments             JSONB       NOT NULL DEFAULT '{}',
    client_ip                TEXT        NOT NULL DEFAULT '',
    user_agent               TEXT        NOT NULL DEFAULT '',
    result                   SMALLINT    NOT NULL,
    error_message            TEXT        NOT NULL DEFAULT '',
    duration_us              BIGINT      NOT NULL DEFAULT 0,
    request_id               TEXT        NOT NULL DEFAULT '',
    trace_id                 TEXT        NOT NULL DEFAULT '',
    source                   TEXT        NOT NULL DEFAULT '',
    pii_salt                 BYTEA,
    pii_digest               BYTEA       NOT NULL,
    pii_erased               BOOLEAN     NOT NULL DEFAULT false,
    prev_hash                BYTEA       NOT NULL,
    hash                     BYTEA       NOT NULL,
    -- Redelivered events carry the same id and time: stored once.
    UNIQUE (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

-- Time is the leading dimension of every query: BRIN is tiny and enough.
CREATE INDEX events_time_brin ON events USING brin (occurred_at);
-- One btree per filter the API serves, each ending in the keyset order.
CREATE INDEX events_seq ON events (seq);
CREATE INDEX events_subject ON events (subject_user_id, occurred_at DESC, seq DESC) WHERE subject_user_id <> '';
CREATE INDEX events_actor ON events (actor_user_id, occurred_at DESC, seq DESC) WHERE actor_user_id <> '';
CREATE INDEX events_modified ON events (modified_user_id, occurred_at DESC, seq DESC) WHERE modified_user_id <> '';
CREATE INDEX events_impersonator ON events (impersonator_user_id, occurred_at DESC, seq DESC) WHERE impersonator_user_id <> '';
CREATE INDEX events_session ON events (impersonation_session_id, occurred_at DESC, seq DESC) WHERE impersonation_session_id <> '';
CREATE INDEX events_token ON events (token_id, occurred_at DESC, seq DESC) WHERE token_id <> '';
CREATE INDEX events_project ON events (project, occurred_at DESC, seq DESC) WHERE project <> '';
CREATE INDEX events_action ON events (action, occurred_at DESC, seq DESC);
CREATE INDEX events_time ON events (occurred_at DESC, seq DESC);

-- The chain's head: one row, locked by every append.
CREATE TABLE chain_head (
    id       BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    seq      BIGINT NOT NULL,
    hash     BYTEA  NOT NULL
);
INSERT INTO chain_head (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- Links of events removed by retention, so the chain verifies across them:
-- the hash each removed event had (its successor's prev_hash).
CREATE TABLE chain_tombstones (
    seq       BIGINT PRIMARY KEY,
    prev_hash BYTEA  NOT NULL,
    hash      BYTEA  NOT NULL
);

-- Actions per subject user and UTC day, maintained with each ingest batch.
CREATE TABLE activity_daily (
    subject_user_id TEXT   NOT NULL,
    day             DATE   NOT NULL,
    action          TEXT   NOT NULL,
    count           BIGINT NOT NULL,
    PRIMARY KEY (day, subject_user_id, action)
);

CREATE TABLE products (
    product    TEXT PRIMARY KEY,
    title      TEXT NOT NULL,
    built_in   BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE action_types (
    product TEXT NOT NULL REFERENCES products (product),
    action  TEXT NOT NULL,
    title   TEXT NOT NULL,
    PRIMARY KEY (product, action)
);

-- '' product and category 0 mean "any".
CREATE TABLE retention_policies (
    product        TEXT     NOT NULL,
    category       SMALLINT NOT NULL,
    retention_days INTEGER  NOT NULL CHECK (retention_days > 0),
    PRIMARY KEY (product, category)
);
INSERT INTO retention_policies VALUES ('', 0, 1095);
