-- Signatures with the chain key (kept outside the database; see
-- domain::seal): each is an 8-byte key id followed by an Ed25519 signature.
-- The head is signed at every append (a checkpoint of the chain).
ALTER TABLE chain_head ADD COLUMN signed_at TIMESTAMPTZ, ADD COLUMN signature BYTEA;
-- A tombstone is genuine only if retention signed it.
ALTER TABLE chain_tombstones ADD COLUMN signature BYTEA;
-- An erased event is genuinely erased only if the service signed the erasure.
ALTER TABLE events ADD COLUMN erasure_signature BYTEA;

-- Checkpoints issued (periodically and by CreateCheckpoint). The copies that
-- count are the ones exported outside the database (files, the log); these
-- rows serve ListCheckpoints.
CREATE TABLE checkpoints (
    seq        BIGINT      NOT NULL,
    hash       BYTEA       NOT NULL,
    issued_at  TIMESTAMPTZ NOT NULL,
    signature  BYTEA       NOT NULL,
    PRIMARY KEY (issued_at, seq)
);
