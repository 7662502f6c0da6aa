-- Billing: balances, their ledger, usage. Runs with search_path = billing, public.
-- Amounts are NUMERIC(24, 6): exact, six decimal places.

CREATE TABLE balances (
    user_id          UUID PRIMARY KEY,
    -- Main may go below zero only by CHARGE (usage already consumed);
    -- withdrawals are guarded in their statement.
    main             NUMERIC(24, 6) NOT NULL DEFAULT 0,
    bonus            NUMERIC(24, 6) NOT NULL DEFAULT 0 CHECK (bonus >= 0),
    -- The bonus part of the last charge: PostgreSQL 15 cannot RETURN old
    -- values, so the charging UPDATE records what it took here.
    last_bonus_debit NUMERIC(24, 6) NOT NULL DEFAULT 0,
    updated_at       TIMESTAMPTZ    NOT NULL DEFAULT now()
);

CREATE TABLE ledger (
    id            BIGSERIAL PRIMARY KEY,
    entry_id      UUID           NOT NULL UNIQUE,
    user_id       UUID           NOT NULL,
    operation     TEXT           NOT NULL CHECK (operation IN ('FUNDING', 'BONUS_FUNDING',
                      'REGISTRATION_BONUS', 'EXTRA_BONUS', 'WITHDRAWAL', 'BONUS_WITHDRAWAL', 'CHARGE')),
    balance_type  TEXT           NOT NULL CHECK (balance_type IN ('MAIN', 'BONUS')),
    -- Signed: credits positive, debits negative.
    amount        NUMERIC(24, 6) NOT NULL,
    balance_after NUMERIC(24, 6) NOT NULL,
    actor_user_id TEXT           NOT NULL DEFAULT '',
    notes         TEXT           NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ    NOT NULL DEFAULT now()
);

-- Funding history: a user's entries by time, newest first.
CREATE INDEX ledger_user_time ON ledger (user_id, created_at DESC, id DESC);

CREATE TABLE usage_records (
    usage_id           TEXT PRIMARY KEY,
    user_id            UUID           NOT NULL,
    group_name         TEXT           NOT NULL,
    environment        TEXT           NOT NULL,
    node_id            TEXT           NOT NULL,
    layer              TEXT           NOT NULL,
    slot_start         TIMESTAMPTZ    NOT NULL,
    slot_end           TIMESTAMPTZ    NOT NULL CHECK (slot_end > slot_start),
    reserved_cloudlets NUMERIC(24, 6) NOT NULL,
    dynamic_cloudlets  NUMERIC(24, 6) NOT NULL,
    storage            NUMERIC(24, 6) NOT NULL,
    traffic            NUMERIC(24, 6) NOT NULL,
    cost               NUMERIC(24, 6) NOT NULL,
    created_at         TIMESTAMPTZ    NOT NULL DEFAULT now()
);

-- Billing history and environments: a user's usage by time.
CREATE INDEX usage_user_slot ON usage_records (user_id, slot_start);
