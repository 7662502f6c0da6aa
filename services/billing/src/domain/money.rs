//! Exact money: decimal strings in, `rust_decimal` inside, NUMERIC(24, 6)
//! in PostgreSQL. Never a float.
//!
//! The one accepted grammar is `-?[0-9]+(\.[0-9]+)?`: ASCII digits, an
//! optional fraction after a dot. No sign `+`, no spaces, no `_` separators,
//! no exponent, no `.5` or `1.`.

use rust_decimal::{Decimal, RoundingStrategy};

/// Decimal places kept everywhere (the NUMERIC scale).
pub const SCALE: u32 = 6;
/// Largest single amount accepted.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("a decimal number such as 12.50 (digits, an optional dot and digits)")]
    NotDecimal,
    #[error("must be greater than zero")]
    NotPositive,
    #[error("must not be negative")]
    Negative,
    #[error("at most 6 decimal places")]
    TooPrecise,
    #[error("too large")]
    TooLarge,
}

/// Whether `raw` is `-?[0-9]+(\.[0-9]+)?`.
fn well_formed(raw: &str) -> bool {
    let unsigned = raw.strip_prefix('-').unwrap_or(raw);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(digits)
}

fn parse(raw: &str) -> Result<Decimal, MoneyError> {
    if !well_formed(raw) {
        return Err(MoneyError::NotDecimal);
    }
    let value = Decimal::from_str_exact(raw).map_err(|_| MoneyError::NotDecimal)?;
    if value.normalize().scale() > SCALE {
        return Err(MoneyError::TooPrecise);
    }
    if value.abs() > Decimal::from(MAX_AMOUNT) {
        return Err(MoneyError::TooLarge);
    }
    Ok(value)
}

/// A positive amount with at most 6 decimals.
pub fn amount(raw: &str) -> Result<Decimal, MoneyError> {
    let value = parse(raw)?;
    if value <= Decimal::ZERO {
        return Err(MoneyError::NotPositive);
    }
    Ok(value)
}

/// A quantity (usage): zero or more, at most 6 decimals.
pub fn quantity(raw: &str) -> Result<Decimal, MoneyError> {
    if raw.is_empty() {
        return Ok(Decimal::ZERO);
    }
    let value = parse(raw)?;
    if value < Decimal::ZERO {
        return Err(MoneyError::Negative);
    }
    Ok(value)
}

/// Rounds a computed amount to the stored scale, half to even.
pub fn round(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(SCALE, RoundingStrategy::MidpointNearestEven)
}

/// The canonical text of an amount: no trailing zeros ("12.5", "0").
pub fn text(value: Decimal) -> String {
    value.normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_and_bounded() {
        assert_eq!(amount("12.50").unwrap(), Decimal::new(1250, 2));
        assert_eq!(text(amount("12.50").unwrap()), "12.5");
        assert_eq!(amount("0"), Err(MoneyError::NotPositive));
        assert_eq!(amount("-1"), Err(MoneyError::NotPositive));
        assert_eq!(amount("1e3"), Err(MoneyError::NotDecimal));
        assert_eq!(amount("abc"), Err(MoneyError::NotDecimal));
        assert_eq!(amount("0.0000001"), Err(MoneyError::TooPrecise));
        assert_eq!(
            amount("0.1000000"),
            Ok(Decimal::new(1, 1)),
            "trailing zeros are fine"
        );
        assert_eq!(amount("1000000000001"), Err(MoneyError::TooLarge));
        assert_eq!(quantity(""), Ok(Decimal::ZERO));
        assert_eq!(quantity("-0.5"), Err(MoneyError::Negative));
    }

    #[test]
    fn one_grammar() {
        for bad in [
            "5_00", "1_0.5", " 5", "5 ", "+1", ".5", "1.", "1\u{a0}", "\u{a0}1", "1,5", "0x10",
            "--1", "-", "", "１",
        ] {
            assert_eq!(amount(bad), Err(MoneyError::NotDecimal), "{bad:?}");
        }
        assert_eq!(amount("007.50"), Ok(Decimal::new(750, 2)));
        assert_eq!(quantity("-0.5"), Err(MoneyError::Negative));
    }

    #[test]
    fn rounding_is_half_even_at_six_places() {
        assert_eq!(round(Decimal::new(12345665, 7)), Decimal::new(1234566, 6));
        assert_eq!(round(Decimal::new(12345675, 7)), Decimal::new(1234568, 6));
        // 0.1 + 0.2 is 0.3, exactly.
        assert_eq!(
            amount("0.1").unwrap() + amount("0.2").unwrap(),
            amount("0.3").unwrap()
        );
    }
}
