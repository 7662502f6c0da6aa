//! Billing rules without I/O: money parsing, operations, tariffs, bonuses.

pub mod money;
pub mod subscription;
pub mod tariff;

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BalanceType {
    Main,
    Bonus,
}

impl BalanceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Main => "MAIN",
            Self::Bonus => "BONUS",
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Bonus => "bonus",
        }
    }
}

impl FromStr for BalanceType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "MAIN" => Ok(Self::Main),
            "BONUS" => Ok(Self::Bonus),
            _ => Err(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Funding,
    BonusFunding,
    RegistrationBonus,
    ExtraBonus,
    Withdrawal,
    BonusWithdrawal,
    Charge,
}

impl Operation {
    pub const ALL: [Operation; 7] = [
        Self::Funding,
        Self::BonusFunding,
        Self::RegistrationBonus,
        Self::ExtraBonus,
        Self::Withdrawal,
        Self::BonusWithdrawal,
        Self::Charge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Funding => "FUNDING",
            Self::BonusFunding => "BONUS_FUNDING",
            Self::RegistrationBonus => "REGISTRATION_BONUS",
            Self::ExtraBonus => "EXTRA_BONUS",
            Self::Withdrawal => "WITHDRAWAL",
            Self::BonusWithdrawal => "BONUS_WITHDRAWAL",
            Self::Charge => "CHARGE",
        }
    }

    /// The operation of a manual refill or withdrawal of `balance`.
    pub fn refill(balance: BalanceType) -> Self {
        match balance {
            BalanceType::Main => Self::Funding,
            BalanceType::Bonus => Self::BonusFunding,
        }
    }

    pub fn withdrawal(balance: BalanceType) -> Self {
        match balance {
            BalanceType::Main => Self::Withdrawal,
            BalanceType::Bonus => Self::BonusWithdrawal,
        }
    }
}

impl FromStr for Operation {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|o| o.as_str() == s).ok_or(())
    }
}
