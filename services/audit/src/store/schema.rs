//! Diesel schema of the `audit` schema (see migrations/).

diesel::table! {
    events (event_id, occurred_at) {
        seq -> Int8,
        event_id -> Uuid,
        occurred_at -> Timestamptz,
        received_at -> Timestamptz,
        product -> Text,
        action -> Text,
        category -> Int2,
        actor_user_id -> Text,
        subject_user_id -> Text,
        modified_user_id -> Text,
        impersonator_user_id -> Text,
        impersonation_session_id -> Text,
        token_id -> Text,
        project -> Text,
        comments -> Jsonb,
        pii_comments -> Jsonb,
        client_ip -> Text,
        user_agent -> Text,
        result -> Int2,
        error_message -> Text,
        duration_us -> Int8,
        request_id -> Text,
        trace_id -> Text,
        source -> Text,
        pii_salt -> Nullable<Bytea>,
        pii_digest -> Bytea,
        pii_erased -> Bool,
        prev_hash -> Bytea,
        hash -> Bytea,
        erasure_signature -> Nullable<Bytea>,
    }
}

diesel::table! {
    chain_head (id) {
        id -> Bool,
        seq -> Int8,
        hash -> Bytea,
        signed_at -> Nullable<Timestamptz>,
        signature -> Nullable<Bytea>,
    }
}

diesel::table! {
    chain_tombstones (seq) {
        seq -> Int8,
        prev_hash -> Bytea,
        hash -> Bytea,
        signature -> Nullable<Bytea>,
    }
}

diesel::table! {
    checkpoints (issued_at, seq) {
        seq -> Int8,
        hash -> Bytea,
        issued_at -> Timestamptz,
        signature -> Bytea,
    }
}

diesel::table! {
    activity_daily (day, subject_user_id, action) {
        subject_user_id -> Text,
        day -> Date,
        action -> Text,
        count -> Int8,
    }
}

diesel::table! {
    products (product) {
        product -> Text,
        title -> Text,
        built_in -> Bool,
    }
}

diesel::table! {
    action_types (product, action) {
        product -> Text,
        action -> Text,
        title -> Text,
        listed -> Bool,
    }
}

diesel::table! {
    retention_policies (product, category) {
        product -> Text,
        category -> Int2,
        retention_days -> Int4,
    }
}
