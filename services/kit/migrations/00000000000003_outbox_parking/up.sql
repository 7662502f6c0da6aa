-- Only a permanent refusal parks a row (parked_at set); unavailability is
-- retried forever. Rows the old rule parked after 50 failures of any kind
-- are due again: those refused for their content will park once more.
ALTER TABLE outbox ADD COLUMN parked_at TIMESTAMPTZ;
UPDATE outbox SET next_attempt_at = now();
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (destination, next_attempt_at, id) WHERE parked_at IS NULL;
CREATE INDEX outbox_parked ON outbox (id) WHERE parked_at IS NOT NULL;
