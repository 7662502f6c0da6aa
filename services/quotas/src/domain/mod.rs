//! Quota rules without I/O: value types and their grammar, the effective
//! value and its source, the check of a requested amount. Unit-tested here.

use std::fmt;

use rust_decimal::Decimal;

/// The type of a definition: how its values are written and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaType {
    Flag,
    Count,
    Money,
    Days,
    Gigabytes,
    Megabits,
    Enum,
}

impl QuotaType {
    pub const ALL: [QuotaType; 7] = [
        QuotaType::Flag,
        QuotaType::Count,
        QuotaType::Money,
        QuotaType::Days,
        QuotaType::Gigabytes,
        QuotaType::Megabits,
        QuotaType::Enum,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuotaType::Flag => "FLAG",
            QuotaType::Count => "COUNT",
            QuotaType::Money => "MONEY",
            QuotaType::Days => "DAYS",
            QuotaType::Gigabytes => "GIGABYTES",
            QuotaType::Megabits => "MEGABITS",
            QuotaType::Enum => "ENUM",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether "unlimited" is a value of this type (a flag is on or off, an
    /// enum one of its values).
    pub fn may_be_unlimited(self) -> bool {
        !matches!(self, QuotaType::Flag | QuotaType::Enum)
    }

    fn is_numeric(self) -> bool {
        self != QuotaType::Enum
    }
}

/// A quota value. `Unlimited` is a value of its own: an override of
/// `Unlimited` is not the same as no override.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Unlimited,
    Number(Decimal),
    Choice(String),
}

impl Value {
    /// The canonical text stored and returned (empty for unlimited).
    pub fn text(&self) -> String {
        match self {
            Value::Unlimited => String::new(),
            Value::Number(d) => d.normalize().to_string(),
            Value::Choice(c) => c.clone(),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        matches!(self, Value::Unlimited)
    }

    /// A stored value (written by [`parse`], so it parses); text that does
    /// not parse as a number is kept as it is.
    pub fn from_stored(kind: QuotaType, text: &str, unlimited: bool) -> Self {
        if unlimited {
            Value::Unlimited
        } else if kind.is_numeric() {
            text.parse::<Decimal>()
                .map(Value::Number)
                .unwrap_or_else(|_| Value::Choice(text.to_owned()))
        } else {
            Value::Choice(text.to_owned())
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Unlimited => f.write_str("unlimited"),
            other => f.write_str(&other.text()),
        }
    }
}

/// Largest number of digits a whole-number value may have.
const MAX_DIGITS: usize = 15;
/// Decimal places of money, gigabytes and megabits.
const MAX_SCALE: usize = 6;

/// Parses `raw` as a value of `kind`: one grammar per type, no spaces,
/// signs only for money. Returns a message for the field violation.
pub fn parse(kind: QuotaType, raw: &str, allowed: &[String]) -> Result<Value, String> {
    match kind {
        QuotaType::Flag => match raw {
            "0" => Ok(Value::Number(Decimal::ZERO)),
            "1" => Ok(Value::Number(Decimal::ONE)),
            _ => Err("a flag is 0 or 1".into()),
        },
        QuotaType::Count | QuotaType::Days => {
            if raw.starts_with('-') {
                return Err(format!("a {} must not be negative", noun(kind)));
            }
            if raw.is_empty() || raw.len() > MAX_DIGITS || !raw.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(format!(
                    "a {} is a whole number of at most {MAX_DIGITS} digits",
                    noun(kind)
                ));
            }
            Ok(Value::Number(raw.parse().map_err(|_| "not a number")?))
        }
        QuotaType::Money | QuotaType::Gigabytes | QuotaType::Megabits => {
            let signed = kind == QuotaType::Money;
            let digits = match raw.strip_prefix('-') {
                Some(_) if !signed => {
                    return Err(format!("{} must not be negative", noun(kind)));
                }
                Some(rest) => rest,
                None => raw,
            };
            let (whole, fraction) = match digits.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (digits, None),
            };
            let ok = !whole.is_empty()
                && whole.len() <= MAX_DIGITS
                && whole.bytes().all(|b| b.is_ascii_digit())
                && fraction.is_none_or(|f| {
                    !f.is_empty() && f.len() <= MAX_SCALE && f.bytes().all(|b| b.is_ascii_digit())
                });
            if !ok {
                return Err(format!(
                    "{} is a decimal such as 12.5 (digits, at most {MAX_SCALE} decimal places{})",
                    noun(kind),
                    if signed { ", may start with -" } else { "" }
                ));
            }
            Ok(Value::Number(raw.parse().map_err(|_| "not a number")?))
        }
        QuotaType::Enum => {
            if allowed.iter().any(|a| a == raw) {
                Ok(Value::Choice(raw.to_owned()))
            } else {
                Err(format!("must be one of: {}", allowed.join(", ")))
            }
        }
    }
}

fn noun(kind: QuotaType) -> &'static str {
    match kind {
        QuotaType::Count => "count",
        QuotaType::Days => "number of days",
        QuotaType::Money => "money",
        QuotaType::Gigabytes => "gigabytes",
        QuotaType::Megabits => "megabits",
        QuotaType::Flag => "flag",
        QuotaType::Enum => "enum value",
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Override,
    Group,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Override => "OVERRIDE",
            Source::Group => "GROUP",
            Source::Default => "DEFAULT",
        }
    }
}

/// A key's value for a user, with what it is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub value: Value,
    pub source: Source,
    /// The group's value, or the default the group inherits.
    pub group_value: Value,
    /// `Source::Group` when the group sets it, else `Source::Default`.
    pub group_source: Source,
    pub override_value: Option<Value>,
}

/// The effective value: the override, else the group's value, else the
/// definition's default.
pub fn effective(default: &Value, group: Option<&Value>, over: Option<&Value>) -> Effective {
    let (group_value, group_source) = match group {
        Some(g) => (g.clone(), Source::Group),
        None => (default.clone(), Source::Default),
    };
    let (value, source) = match over {
        Some(o) => (o.clone(), Source::Override),
        None => (group_value.clone(), group_source),
    };
    Effective {
        value,
        source,
        group_value,
        group_source,
        override_value: over.cloned(),
    }
}

/// Whether `value` is lower than `than` (numbers only; unlimited is above
/// every number).
pub fn is_below(value: &Value, than: &Value) -> bool {
    match (value, than) {
        (Value::Number(a), Value::Number(b)) => a < b,
        (Value::Number(_), Value::Unlimited) => true,
        _ => false,
    }
}

/// Whether a user whose effective value is `value` may have `amount` (the
/// total after the action; empty means 1). FLAG: the flag is on. ENUM: the
/// amount is empty or the value itself. Others: unlimited, or amount ≤ value.
pub fn allows(kind: QuotaType, value: &Value, amount: &str) -> Result<bool, String> {
    match kind {
        QuotaType::Flag => Ok(matches!(value, Value::Number(n) if *n == Decimal::ONE)),
        QuotaType::Enum => Ok(amount.is_empty() || *value == Value::Choice(amount.to_owned())),
        _ => {
            let wanted = if amount.is_empty() {
                Decimal::ONE
            } else {
                match parse(kind, amount, &[])? {
                    Value::Number(n) => n,
                    _ => return Err("not a number".into()),
                }
            };
            Ok(match value {
                Value::Unlimited => true,
                Value::Number(limit) => wanted <= *limit,
                Value::Choice(_) => false,
            })
        }
    }
}

/// A definition key: dotted lowercase words (`environment.maxcount`).
pub fn valid_key(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        })
}

/// A group name as accounts writes it: lowercase identifier.
pub fn valid_group(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Value {
        Value::Number(s.parse().unwrap())
    }

    #[test]
    fn one_grammar_per_type() {
        assert_eq!(parse(QuotaType::Flag, "1", &[]), Ok(n("1")));
        assert!(parse(QuotaType::Flag, "2", &[]).is_err());
        assert!(parse(QuotaType::Flag, "true", &[]).is_err());
        assert_eq!(parse(QuotaType::Count, "42", &[]), Ok(n("42")));
        for bad in ["-1", "1.5", " 1", "+1", "", "1_000", "1234567890123456"] {
            assert!(parse(QuotaType::Count, bad, &[]).is_err(), "{bad}");
        }
        assert!(
            parse(QuotaType::Count, "-3", &[])
                .unwrap_err()
                .contains("negative")
        );
        assert_eq!(parse(QuotaType::Money, "-12.5", &[]), Ok(n("-12.5")));
        for bad in [".5", "1.", "5_00", "1.1234567", "+1", "1e3"] {
            assert!(parse(QuotaType::Money, bad, &[]).is_err(), "{bad}");
        }
        assert!(parse(QuotaType::Gigabytes, "-1", &[]).is_err());
        assert_eq!(parse(QuotaType::Megabits, "0.25", &[]), Ok(n("0.25")));
        let allowed = vec!["bonus".to_owned(), "main".to_owned()];
        assert_eq!(
            parse(QuotaType::Enum, "main", &allowed),
            Ok(Value::Choice("main".into()))
        );
        assert!(parse(QuotaType::Enum, "MAIN", &allowed).is_err());
    }

    #[test]
    fn canonical_text() {
        assert_eq!(n("10.500").text(), "10.5");
        assert_eq!(n("7").text(), "7");
        assert_eq!(Value::Unlimited.text(), "");
        assert_eq!(
            Value::from_stored(QuotaType::Count, "", true),
            Value::Unlimited
        );
        assert_eq!(Value::from_stored(QuotaType::Count, "3", false), n("3"));
    }

    #[test]
    fn effective_value_comes_from_override_then_group_then_default() {
        let default = n("10");
        let group = n("2");
        let over = n("5");
        let e = effective(&default, None, None);
        assert_eq!((e.value.clone(), e.source), (n("10"), Source::Default));
        assert_eq!(e.group_source, Source::Default);
        let e = effective(&default, Some(&group), None);
        assert_eq!((e.value.clone(), e.source), (n("2"), Source::Group));
        let e = effective(&default, Some(&group), Some(&over));
        assert_eq!((e.value.clone(), e.source), (n("5"), Source::Override));
        assert_eq!(e.group_value, n("2"));
        // Unlimited as an override is kept apart from inheriting.
        let e = effective(&default, Some(&group), Some(&Value::Unlimited));
        assert_eq!(e.value, Value::Unlimited);
        assert_eq!(e.source, Source::Override);
        assert_eq!(e.override_value, Some(Value::Unlimited));
    }

    #[test]
    fn below_group_value() {
        assert!(is_below(&n("1"), &n("2")));
        assert!(!is_below(&n("2"), &n("2")));
        assert!(is_below(&n("100"), &Value::Unlimited));
        assert!(!is_below(&Value::Unlimited, &n("1")));
        assert!(!is_below(
            &Value::Choice("a".into()),
            &Value::Choice("b".into())
        ));
    }

    #[test]
    fn checks() {
        assert_eq!(allows(QuotaType::Count, &n("3"), "3"), Ok(true));
        assert_eq!(allows(QuotaType::Count, &n("3"), "4"), Ok(false));
        assert_eq!(allows(QuotaType::Count, &n("0"), ""), Ok(false));
        assert_eq!(allows(QuotaType::Count, &Value::Unlimited, "999"), Ok(true));
        assert!(allows(QuotaType::Count, &n("3"), "-1").is_err());
        assert_eq!(allows(QuotaType::Flag, &n("1"), ""), Ok(true));
        assert_eq!(allows(QuotaType::Flag, &n("0"), "1"), Ok(false));
        let main = Value::Choice("main".into());
        assert_eq!(allows(QuotaType::Enum, &main, "main"), Ok(true));
        assert_eq!(allows(QuotaType::Enum, &main, "bonus"), Ok(false));
        assert_eq!(allows(QuotaType::Gigabytes, &n("10"), "9.5"), Ok(true));
    }

    #[test]
    fn keys_and_groups() {
        assert!(valid_key("environment.externalip.maxcount.per.node"));
        assert!(!valid_key("Environment.max"));
        assert!(!valid_key("a..b"));
        assert!(!valid_key(""));
        assert!(valid_group("trial"));
        assert!(!valid_group("Trial"));
        assert!(!valid_group(""));
    }
}

/// A quota definition: a key of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub key: String,
    pub kind: QuotaType,
    pub unit: String,
    pub description: String,
    pub product: String,
    pub default: Value,
    /// ENUM only.
    pub allowed: Vec<String>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// One changed value, as answered and audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// None for a group's value.
    pub user: Option<uuid::Uuid>,
    pub group: String,
    pub key: String,
    pub old: Value,
    pub new: Value,
    pub source: Source,
    pub below_group_value: bool,
}

/// A key's value under the current and a target group (a preview).
pub fn group_change(
    key: &str,
    user: uuid::Uuid,
    target_group: &str,
    now: &Effective,
    then: &Effective,
) -> Option<Change> {
    (now.value != then.value).then(|| Change {
        user: Some(user),
        group: target_group.to_owned(),
        key: key.to_owned(),
        old: now.value.clone(),
        new: then.value.clone(),
        source: then.source,
        below_group_value: false,
    })
}
