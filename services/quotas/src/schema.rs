//! Diesel's view of the quotas schema (`migrations/`).

diesel::table! {
    definitions (key) {
        key -> Text,
        value_type -> Text,
        unit -> Text,
        description -> Text,
        product -> Text,
        default_value -> Text,
        default_unlimited -> Bool,
        allowed_values -> Array<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    group_values (group_name, key) {
        group_name -> Text,
        key -> Text,
        value -> Text,
        unlimited -> Bool,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    memberships (user_id) {
        user_id -> Uuid,
        group_name -> Text,
        erased -> Bool,
        last_event_id -> Nullable<Uuid>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    overrides (user_id, key) {
        user_id -> Uuid,
        key -> Text,
        value -> Text,
        unlimited -> Bool,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    applied_events (event_id) {
        event_id -> Uuid,
        applied_at -> Timestamptz,
    }
}

diesel::table! {
    cache_replicas (replica_id) {
        replica_id -> Uuid,
        acked_seq -> BigInt,
        heartbeat_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(definitions, group_values, memberships, overrides);
