//! Prices (per group) and the extra-bonus rules.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::money::round;

/// Prices per unit; cloudlets and storage per hour, traffic per GB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Prices {
    pub reserved_cloudlet_hour: Decimal,
    pub dynamic_cloudlet_hour: Decimal,
    pub storage_gb_hour: Decimal,
    pub traffic_gb: Decimal,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            reserved_cloudlet_hour: Decimal::new(4, 3),
            dynamic_cloudlet_hour: Decimal::new(6, 3),
            storage_gb_hour: Decimal::new(2, 4),
            traffic_gb: Decimal::new(5, 2),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Tariffs {
    /// Prices for groups without their own.
    pub default: Prices,
    /// Prices per user group (e.g. trial at zero).
    pub groups: BTreeMap<String, Prices>,
}

impl Tariffs {
    pub fn for_group(&self, group: &str) -> &Prices {
        self.groups.get(group).unwrap_or(&self.default)
    }
}

/// One node's usage in one time slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub slot_start: DateTime<Utc>,
    pub slot_end: DateTime<Utc>,
    pub reserved_cloudlets: Decimal,
    pub dynamic_cloudlets: Decimal,
    pub storage: Decimal,
    pub traffic: Decimal,
}

/// The exact cost of a slot, rounded once (half even) at the stored scale.
pub fn cost(prices: &Prices, usage: &Usage) -> Decimal {
    let seconds = Decimal::from((usage.slot_end - usage.slot_start).num_seconds());
    let hourly = usage.reserved_cloudlets * prices.reserved_cloudlet_hour
        + usage.dynamic_cloudlets * prices.dynamic_cloudlet_hour
        + usage.storage * prices.storage_gb_hour;
    round(hourly * seconds / Decimal::from(3600) + usage.traffic * prices.traffic_gb)
}

/// Refills of at least `min_amount` earn `percent` of the amount as bonus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraBonusRule {
    pub min_amount: Decimal,
    pub percent: Decimal,
}

/// The extra bonus a main refill earns: the best rule it qualifies for.
pub fn extra_bonus(rules: &[ExtraBonusRule], refill: Decimal) -> Option<Decimal> {
    rules
        .iter()
        .filter(|r| refill >= r.min_amount)
        .max_by_key(|r| r.min_amount)
        .map(|r| round(refill * r.percent / Decimal::from(100)))
        .filter(|b| *b > Decimal::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn cost_of_an_hour_and_a_partial_slot() {
        let prices = Prices::default();
        let start = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let usage = Usage {
            slot_start: start,
            slot_end: start + chrono::Duration::hours(1),
            reserved_cloudlets: d("4"),
            dynamic_cloudlets: d("2.5"),
            storage: d("10"),
            traffic: d("1.2"),
        };
        // 4*0.004 + 2.5*0.006 + 10*0.0002 + 1.2*0.05 = 0.016 + 0.015 + 0.002 + 0.06
        assert_eq!(cost(&prices, &usage), d("0.093"));
        let third = Usage {
            slot_end: start + chrono::Duration::minutes(20),
            traffic: Decimal::ZERO,
            ..usage
        };
        // (0.016 + 0.015 + 0.002) / 3 = 0.011 exactly
        assert_eq!(cost(&prices, &third), d("0.011"));
    }

    #[test]
    fn best_extra_bonus_rule_applies() {
        let rules = vec![
            ExtraBonusRule {
                min_amount: d("100"),
                percent: d("5"),
            },
            ExtraBonusRule {
                min_amount: d("500"),
                percent: d("10"),
            },
        ];
        assert_eq!(extra_bonus(&rules, d("50")), None);
        assert_eq!(extra_bonus(&rules, d("100")), Some(d("5")));
        assert_eq!(extra_bonus(&rules, d("750")), Some(d("75")));
    }
}
