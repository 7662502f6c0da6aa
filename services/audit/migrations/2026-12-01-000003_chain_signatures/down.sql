DROP TABLE checkpoints;
ALTER TABLE events DROP COLUMN erasure_signature;
ALTER TABLE chain_tombstones DROP COLUMN signature;
ALTER TABLE chain_head DROP COLUMN signed_at, DROP COLUMN signature;
