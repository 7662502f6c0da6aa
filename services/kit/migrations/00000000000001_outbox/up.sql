-- Transactional outbox: rows are written in the same transaction as the state
-- change they describe and deleted once their destination acknowledged them.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    destination     TEXT        NOT NULL,
    event_id        UUID        NOT NULL UNIQUE,
    payload         BYTEA       NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT
);

CREATE INDEX outbox_due ON outbox (destination, next_attempt_at, id);
