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
