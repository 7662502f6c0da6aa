-- Users whose personal data was erased: their events arriving later are
-- stored already erased.
CREATE TABLE erased_subjects (
    user_id   TEXT PRIMARY KEY,
    erased_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
