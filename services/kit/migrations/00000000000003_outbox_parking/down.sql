DROP INDEX outbox_parked;
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (destination, next_attempt_at, id);
UPDATE outbox SET attempts = 50 WHERE parked_at IS NOT NULL;
ALTER TABLE outbox DROP COLUMN parked_at;
