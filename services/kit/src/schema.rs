//! Diesel schema of kit's own tables (present in every service schema).

diesel::table! {
    outbox (id) {
        id -> Int8,
        destination -> Text,
        event_id -> Uuid,
        payload -> Bytea,
        created_at -> Timestamptz,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_error -> Nullable<Text>,
        parked_at -> Nullable<Timestamptz>,
        traceparent -> Nullable<Text>,
    }
}

diesel::table! {
    idempotency_keys (scope, key) {
        scope -> Text,
        key -> Text,
        fingerprint -> Bytea,
        response -> Nullable<Bytea>,
        created_at -> Timestamptz,
    }
}
