-- Products' service plans, subscriptions and their invoices.
CREATE TABLE plans (
    id          UUID PRIMARY KEY,
    product     TEXT           NOT NULL,
    name        TEXT           NOT NULL,
    price       NUMERIC(24, 6) NOT NULL CHECK (price >= 0),
    period_days INTEGER        NOT NULL CHECK (period_days > 0),
    created_at  TIMESTAMPTZ    NOT NULL DEFAULT now(),
    UNIQUE (product, name)
);

CREATE TABLE subscriptions (
    id                   UUID PRIMARY KEY,
    user_id              UUID        NOT NULL,
    plan_id              UUID        NOT NULL REFERENCES plans (id),
    status               TEXT        NOT NULL CHECK (status IN ('ACTIVE', 'CANCELLED', 'EXPIRED')),
    environments         TEXT[]      NOT NULL DEFAULT '{}',
    current_period_start TIMESTAMPTZ NOT NULL,
    current_period_end   TIMESTAMPTZ NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    cancelled_at         TIMESTAMPTZ
);

CREATE INDEX subscriptions_user ON subscriptions (user_id, created_at);
-- The renewal job's scan.
CREATE INDEX subscriptions_due ON subscriptions (current_period_end) WHERE status <> 'EXPIRED';

CREATE TABLE invoices (
    id              UUID PRIMARY KEY,
    subscription_id UUID           NOT NULL REFERENCES subscriptions (id),
    user_id         UUID           NOT NULL,
    period_start    TIMESTAMPTZ    NOT NULL,
    period_end      TIMESTAMPTZ    NOT NULL,
    amount          NUMERIC(24, 6) NOT NULL,
    created_at      TIMESTAMPTZ    NOT NULL DEFAULT now(),
    -- A period is invoiced once, however often the job runs.
    UNIQUE (subscription_id, period_start)
);
