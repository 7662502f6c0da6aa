-- Deduplication by event id alone. The partitioned events table can only
-- be unique on (event_id, occurred_at) (the partition key must be part of
-- it), so the same id with another time was stored twice. This small
-- unpartitioned table claims each id once, in the ingest transaction.
CREATE TABLE event_ids (
    event_id UUID PRIMARY KEY
);
INSERT INTO event_ids (event_id) SELECT event_id FROM events ON CONFLICT DO NOTHING;
