//! Recipient addresses: RFC 5321 syntax (as lettre parses it), at most 254
//! characters, and one spelling for the suppression list.

/// The longest address SMTP carries (RFC 5321 path limit less the brackets).
pub const MAX_ADDRESS: usize = 254;

/// A valid address, or why not.
pub fn check(raw: &str) -> Result<(), &'static str> {
    if raw.is_empty() {
        return Err("required");
    }
    if raw.len() > MAX_ADDRESS {
        return Err("must be at most 254 characters");
    }
    if raw.trim() != raw {
        return Err("must not have surrounding spaces");
    }
    raw.parse::<lettre::Address>()
        .map(|_| ())
        .map_err(|_| "must be an email address such as user@example.com")
}

/// The suppression list's key: the domain is case-insensitive, and so, in
/// practice, is every mailbox we send to.
pub fn normalize(raw: &str) -> String {
    raw.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        assert!(check("eve@example.com").is_ok());
        assert!(check("first.last+tag@sub.example.org").is_ok());
        for bad in [
            "",
            "eve",
            "eve@",
            "@example.com",
            " eve@example.com",
            "a b@example.com",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        assert!(check(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn one_spelling() {
        assert_eq!(normalize("Eve@Example.COM"), "eve@example.com");
    }
}
