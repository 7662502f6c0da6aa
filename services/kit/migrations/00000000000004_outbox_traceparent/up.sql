-- The W3C trace context of the change a row describes: the relay continues
-- that trace when it delivers the row.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
