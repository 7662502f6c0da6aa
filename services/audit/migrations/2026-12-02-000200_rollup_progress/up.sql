-- The activity rollup (activity_daily, activity_window) follows the chain
-- instead of being written by each ingest transaction: this row says up to
-- which chain sequence it has counted. Everything up to the current head
-- was counted by ingest itself until now.
CREATE TABLE rollup_progress (
    id  BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    seq BIGINT NOT NULL
);
INSERT INTO rollup_progress (seq) SELECT seq FROM chain_head;
