//! Two-factor sign-in: the TOTP_REQUIRED step counts toward the lockout,
//! and TOTP secrets are stored encrypted under a key outside the database
//! (envelope encryption, rotation by key id).

use steward_accounts::domain::totp;
use steward_integration_tests::{Options, TestApp, reason};
use steward_proto::accounts as pb;
use tonic::Code;

const PASSWORD: &str = "correct horse battery";
const THRESHOLD: u32 = 3;

async fn spawn_with(identity: steward_accounts::IdentityConfig) -> TestApp {
    TestApp::spawn_with(Options {
        identity: Some(identity),
        ..Options::default()
    })
    .await
}

fn lockout_rules() -> steward_accounts::IdentityConfig {
    steward_accounts::IdentityConfig {
        lockout_threshold: THRESHOLD,
        ..Default::default()
    }
}

async fn sign_in(
    app: &TestApp,
    email: &str,
    code: &str,
) -> Result<pb::SignInResponse, tonic::Status> {
    app.auth(None)
        .sign_in(pb::SignInRequest {
            email: email.into(),
            password: PASSWORD.into(),
            totp_code: code.into(),
            device: "two-factor test".into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// A user with a password and two-factor on; returns (id, TOTP secret).
async fn user_with_two_factor(app: &TestApp, email: &str) -> (String, String) {
    let user = app
        .admin()
        .create_user(pb::CreateUserRequest {
            email: email.into(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await
        .expect("create user")
        .into_inner()
        .user
        .expect("user");
    let signed_in = sign_in(app, email, "").await.expect("password alone");
    let mut auth = app.auth(Some(signed_in.tokens.expect("tokens").access_token));
    let enrolled = auth
        .enroll_totp(pb::EnrollTotpRequest {
            user_id: user.id.clone(),
        })
        .await
        .expect("enroll")
        .into_inner();
    let code = totp::current_code(&enrolled.secret, chrono::Utc::now().timestamp()).unwrap();
    auth.confirm_totp(pb::ConfirmTotpRequest {
        user_id: user.id.clone(),
        code,
    })
    .await
    .expect("confirm");
    (user.id, enrolled.secret)
}

/// A code for the next time step (one step of drift is accepted), so it
/// was not used to confirm.
fn next_code(secret: &str) -> String {
    totp::current_code(secret, chrono::Utc::now().timestamp() + 30).unwrap()
}

#[tokio::test]
async fn password_only_attempts_on_a_two_factor_account_lock_it() {
    let app = spawn_with(lockout_rules()).await;
    let (_, secret) = user_with_two_factor(&app, "otp@example.com").await;
    for attempt in 1..=THRESHOLD {
        let refused = sign_in(&app, "otp@example.com", "").await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::FailedPrecondition,
            "attempt {attempt}"
        );
        assert_eq!(reason(&refused), "TOTP_REQUIRED", "attempt {attempt}");
    }
    // The right password and a right code no longer get in.
    let locked = sign_in(&app, "otp@example.com", &next_code(&secret))
        .await
        .unwrap_err();
    assert_eq!(locked.code(), Code::FailedPrecondition);
    assert_eq!(reason(&locked), "ACCOUNT_LOCKED");
    app.stop().await;
}

#[tokio::test]
async fn fewer_password_only_attempts_than_the_threshold_do_not_lock() {
    let app = spawn_with(lockout_rules()).await;
    let (_, secret) = user_with_two_factor(&app, "otp@example.com").await;
    for _ in 1..THRESHOLD {
        let refused = sign_in(&app, "otp@example.com", "").await.unwrap_err();
        assert_eq!(reason(&refused), "TOTP_REQUIRED");
    }
    sign_in(&app, "otp@example.com", &next_code(&secret))
        .await
        .expect("password + code before the threshold");
    app.stop().await;
}

#[derive(diesel::QueryableByName)]
struct Stored {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    totp_secret: Option<String>,
}

/// The `totp_secret` column as stored.
async fn stored_secret(app: &TestApp, user_id: &str) -> String {
    use diesel_async::RunQueryDsl;
    diesel::sql_query("SELECT totp_secret FROM credentials WHERE user_id = $1::uuid")
        .bind::<diesel::sql_types::Text, _>(user_id)
        .get_result::<Stored>(&mut app.db.accounts().await)
        .await
        .expect("credentials row")
        .totp_secret
        .expect("a secret")
}

async fn overwrite_secret(app: &TestApp, user_id: &str, value: &str) {
    use diesel_async::RunQueryDsl;
    diesel::sql_query("UPDATE credentials SET totp_secret = $2 WHERE user_id = $1::uuid")
        .bind::<diesel::sql_types::Text, _>(user_id)
        .bind::<diesel::sql_types::Text, _>(value)
        .execute(&mut app.db.accounts().await)
        .await
        .expect("overwrite");
}

/// A fresh key file; returns its path and the key.
fn key_file(name: &str) -> (std::path::PathBuf, [u8; 32]) {
    use steward_accounts::identity::totp_keys;
    let path = std::env::temp_dir().join(format!("steward-totp-{name}-{}", uuid::Uuid::now_v7()));
    std::fs::write(&path, totp_keys::new_key_file_contents()).unwrap();
    let key = totp_keys::read_key_file(&path).unwrap();
    (path, key)
}

#[tokio::test]
async fn totp_secrets_are_stored_sealed_and_still_verify() {
    let (file, _) = key_file("current");
    let app = spawn_with(steward_accounts::IdentityConfig {
        totp_key_file: Some(file.clone()),
        ..lockout_rules()
    })
    .await;
    let (user_id, secret) = user_with_two_factor(&app, "sealed@example.com").await;
    let stored = stored_secret(&app, &user_id).await;
    assert_ne!(stored, secret);
    assert!(
        !stored.contains(&secret),
        "the base32 secret is not in the column"
    );
    assert!(stored.starts_with("v1."), "an envelope: {stored}");
    sign_in(&app, "sealed@example.com", &next_code(&secret))
        .await
        .expect("password + code with the sealed secret");
    app.stop().await;
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn secrets_under_a_retired_key_or_in_plain_text_verify_and_are_sealed_again() {
    use steward_accounts::identity::totp_keys::{Column, TotpKeys};
    let (old_file, old_key) = key_file("old");
    let (new_file, new_key) = key_file("new");
    let app = spawn_with(steward_accounts::IdentityConfig {
        totp_key_file: Some(new_file.clone()),
        totp_retired_key_files: vec![old_file.clone()],
        ..lockout_rules()
    })
    .await;
    let (user_id, secret) = user_with_two_factor(&app, "rotated@example.com").await;
    let uid: uuid::Uuid = user_id.parse().unwrap();
    let current = TotpKeys::new(new_key, []);
    let under_new = stored_secret(&app, &user_id).await;
    assert!(under_new.starts_with(&format!("v1.{}.", current.current_id())));

    // As if written before the rotation, under the old key.
    let old = TotpKeys::new(old_key, []);
    let under_old = old.seal(uid, Column::Secret, &secret);
    overwrite_secret(&app, &user_id, &under_old).await;
    let code = next_code(&secret);
    sign_in(&app, "rotated@example.com", &code)
        .await
        .expect("a secret sealed under the retired key still verifies");
    let resealed = stored_secret(&app, &user_id).await;
    assert_ne!(resealed, under_old);
    assert!(
        resealed.starts_with(&format!("v1.{}.", current.current_id())),
        "sealed again under the current key when used"
    );
    assert_eq!(
        current.open(uid, Column::Secret, &resealed).unwrap().secret,
        secret
    );

    // A secret stored in plain text before sealing existed.
    let (plain_id, plain) = user_with_two_factor(&app, "plain@example.com").await;
    overwrite_secret(&app, &plain_id, &plain).await;
    sign_in(&app, "plain@example.com", &next_code(&plain))
        .await
        .expect("a plain-text secret still verifies");
    let sealed = stored_secret(&app, &plain_id).await;
    assert!(
        sealed.starts_with("v1.") && !sealed.contains(&plain),
        "sealed when used"
    );
    app.stop().await;
    let _ = std::fs::remove_file(old_file);
    let _ = std::fs::remove_file(new_file);
}
