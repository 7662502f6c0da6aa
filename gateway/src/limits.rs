//! Rate limits at the edge (GCRA via governor): per client IP, per
//! principal (the token's subject), and a strict one per IP for sign-in so
//! passwords cannot be guessed at line rate.

use std::{net::IpAddr, num::NonZeroU32};

use governor::{DefaultKeyedRateLimiter, Quota};
use serde::{Deserialize, Serialize};

/// Methods under the strict sign-in limit.
pub const STRICT_METHODS: &[&str] = &["/steward.accounts.v1.AuthService/SignIn"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    pub per_ip_per_second: u32,
    pub per_ip_burst: u32,
    pub per_principal_per_second: u32,
    pub per_principal_burst: u32,
    pub sign_in_per_minute: u32,
    pub sign_in_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_ip_per_second: 200,
            per_ip_burst: 400,
            per_principal_per_second: 100,
            per_principal_burst: 200,
            sign_in_per_minute: 10,
            sign_in_burst: 5,
        }
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("at least one")
}

/// Which limit a call exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Ip,
    SignIn,
    Principal,
}

pub struct Limits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    sign_in: DefaultKeyedRateLimiter<IpAddr>,
    per_principal: DefaultKeyedRateLimiter<String>,
}

impl Limits {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            per_ip: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(nz(config.per_ip_per_second))
                    .allow_burst(nz(config.per_ip_burst)),
            ),
            sign_in: DefaultKeyedRateLimiter::keyed(
                Quota::per_minute(nz(config.sign_in_per_minute))
                    .allow_burst(nz(config.sign_in_burst)),
            ),
            per_principal: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(nz(config.per_principal_per_second))
                    .allow_burst(nz(config.per_principal_burst)),
            ),
        }
    }

    /// Before authentication: the client's address.
    pub fn check_client(&self, ip: Option<IpAddr>, method: &str) -> Result<(), Exceeded> {
        let Some(ip) = ip else { return Ok(()) };
        self.per_ip.check_key(&ip).map_err(|_| Exceeded::Ip)?;
        if STRICT_METHODS.contains(&method) {
            self.sign_in.check_key(&ip).map_err(|_| Exceeded::SignIn)?;
        }
        Ok(())
    }

    /// After authentication: the principal, whichever address it calls from.
    pub fn check_principal(&self, principal: &str) -> Result<(), Exceeded> {
        self.per_principal
            .check_key(&principal.to_owned())
            .map_err(|_| Exceeded::Principal)
    }

    /// Forgets keys whose state is back to idle (bounded memory).
    pub fn housekeep(&self) {
        self.per_ip.retain_recent();
        self.sign_in.retain_recent();
        self.per_principal.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_is_stricter_than_other_calls() {
        let limits = Limits::new(&RateLimitConfig {
            sign_in_burst: 2,
            ..RateLimitConfig::default()
        });
        let ip = Some("10.0.0.1".parse().unwrap());
        let sign_in = STRICT_METHODS[0];
        assert!(limits.check_client(ip, sign_in).is_ok());
        assert!(limits.check_client(ip, sign_in).is_ok());
        assert_eq!(limits.check_client(ip, sign_in), Err(Exceeded::SignIn));
        assert!(limits.check_client(ip, "/x.Y/Z").is_ok());
        let other = Some("10.0.0.2".parse().unwrap());
        assert!(limits.check_client(other, sign_in).is_ok());
    }

    #[test]
    fn principals_are_limited_apart() {
        let limits = Limits::new(&RateLimitConfig {
            per_principal_burst: 1,
            per_principal_per_second: 1,
            ..RateLimitConfig::default()
        });
        assert!(limits.check_principal("a").is_ok());
        assert_eq!(limits.check_principal("a"), Err(Exceeded::Principal));
        assert!(limits.check_principal("b").is_ok());
    }
}
