//! Diesel schema of the `accounts` schema (see migrations/).

diesel::table! {
    groups (name) {
        name -> Text,
        display_name -> Text,
        built_in -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        status -> Text,
        group_name -> Text,
        roles -> Array<Text>,
        phone -> Nullable<Text>,
        signup_at -> Timestamptz,
        reseller -> Nullable<Text>,
        notes -> Text,
        ext_billing_id -> Nullable<Text>,
        two_factor_enabled -> Bool,
        upgrade_in_progress -> Bool,
        password_hash -> Nullable<Text>,
        version -> Int8,
        updated_at -> Timestamptz,
        destroyed_at -> Nullable<Timestamptz>,
        erased_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    settings (id) {
        id -> Bool,
        erasure_mode -> Text,
        auto_erase_enabled -> Bool,
        auto_erase_delay_days -> Int4,
        platform_salt -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    collaborations (id) {
        id -> Uuid,
        owner_id -> Uuid,
        collaborator_id -> Uuid,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    credentials (user_id) {
        user_id -> Uuid,
        totp_secret -> Nullable<Text>,
        totp_pending_secret -> Nullable<Text>,
        totp_last_step -> Int8,
        failed_attempts -> Int4,
        failure_window_start -> Nullable<Timestamptz>,
        locked_until -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        family_id -> Uuid,
        user_id -> Uuid,
        token_hash -> Bytea,
        device -> Text,
        client_ip -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        secret_hash -> Bytea,
        lifetime_secs -> Int8,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    impersonation_sessions (id) {
        id -> Uuid,
        admin_id -> Text,
        user_id -> Uuid,
        reason -> Text,
        started_at -> Timestamptz,
        expires_at -> Timestamptz,
        ended_at -> Nullable<Timestamptz>,
        ended_by -> Nullable<Text>,
    }
}

diesel::table! {
    revocations (id) {
        id -> Int8,
        kind -> Text,
        subject -> Text,
        not_before -> Timestamptz,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    users,
    credentials,
    refresh_tokens,
    api_tokens,
    impersonation_sessions
);
