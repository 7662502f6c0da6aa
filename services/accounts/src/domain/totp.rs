//! RFC 6238 time-based one-time passwords: HMAC-SHA1, 6 digits, 30-second
//! steps, one step of clock drift either way. What authenticator apps speak.

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const DIGITS: u32 = 6;
pub const STEP_SECS: i64 = 30;
/// Steps of drift accepted either side of now.
const DRIFT: i64 = 1;

/// A new 160-bit secret, base32 (how apps take it).
pub fn generate_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    BASE32_NOPAD.encode(&bytes)
}

/// The code of `secret` (raw bytes) at time step `step`.
pub fn code_at(secret: &[u8], step: i64) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    // Dynamic truncation (RFC 4226 section 5.3).
    let offset = (digest[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 10u32.pow(DIGITS)
}

pub fn step_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// The step `code` is valid for at `unix_secs`, if any, and only if it is
/// later than `last_step` (a code works once).
pub fn verify(secret_b32: &str, code: &str, unix_secs: i64, last_step: i64) -> Option<i64> {
    let secret = BASE32_NOPAD.decode(secret_b32.as_bytes()).ok()?;
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wanted: u32 = code.parse().ok()?;
    let now = step_of(unix_secs);
    (now - DRIFT..=now + DRIFT)
        .filter(|step| *step > last_step)
        .find(|step| code_at(&secret, *step) == wanted)
}

/// The `otpauth://` URI authenticator apps read from a QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

/// The current code of a base32 secret (tests and tools).
pub fn current_code(secret_b32: &str, unix_secs: i64) -> Option<String> {
    let secret = BASE32_NOPAD.decode(secret_b32.as_bytes()).ok()?;
    Some(format!(
        "{:0width$}",
        code_at(&secret, step_of(unix_secs)),
        width = DIGITS as usize
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors() {
        // Appendix B, truncated from 8 to 6 digits.
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, step_of(59)), 94287082 % 1_000_000);
        assert_eq!(code_at(secret, step_of(1111111109)), 7081804 % 1_000_000);
        assert_eq!(code_at(secret, step_of(1234567890)), 89005924 % 1_000_000);
        assert_eq!(code_at(secret, step_of(20000000000)), 65353130 % 1_000_000);
    }

    #[test]
    fn accepts_drift_once_and_refuses_garbage() {
        let secret = generate_secret();
        let now = 1_700_000_000;
        let code = current_code(&secret, now - STEP_SECS).unwrap();
        let step = verify(&secret, &code, now, 0).expect("one step of drift is fine");
        assert_eq!(verify(&secret, &code, now, step), None, "a code works once");
        let old = current_code(&secret, now - 3 * STEP_SECS).unwrap();
        assert_eq!(verify(&secret, &old, now, 0), None);
        assert_eq!(verify(&secret, "12345", now, 0), None);
        assert_eq!(verify(&secret, "abcdef", now, 0), None);
    }

    #[test]
    fn uri_names_issuer_and_account() {
        let uri = otpauth_uri("Steward", "a@b.c", "ABC");
        assert_eq!(
            uri,
            "otpauth://totp/Steward:a%40b.c?secret=ABC&issuer=Steward&algorithm=SHA1&digits=6&period=30"
        );
    }
}
