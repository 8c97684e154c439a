//! Subscription plans (reference 003): base credits each month, a rollover cap, billed
//! monthly or annually. The catalog is a deployment setting (`PLANS`, JSON), keyed by the
//! Stripe price each plan's subscription bills:
//!
//! ```json
//! {"price_team_monthly": {"name": "Team", "amount_usd": "50.00", "interval": "month",
//!                         "base_usd": "50.00", "rollover_cap_usd": "100.00"}}
//! ```
//!
//! `amount_usd` is what the price charges each interval (it must be the Stripe price's
//! amount: the page shows it, and an upgrade's credits are prorated by it); `interval` is
//! `month` (the default) or `year`. An annual plan still grants `base_usd` each month, 12
//! times a year.
//!
//! Changes within a period ([`change_rule`]):
//! - a monthly plan's upgrade (more base credits) takes effect at once: Stripe prorates
//!   the money and invoices it at once, and that invoice grants the difference in base
//!   credits for the part of the month left, in the same proportion
//!   ([`proration_grant`]);
//! - a downgrade, and any change of an annual plan, takes effect at the next period: the
//!   period was paid for in full, its credits stand, and nothing is prorated (so nobody
//!   spends a large plan's credits and then gets the unused part back as money);
//! - a change between monthly and annual is refused: cancel at period end and subscribe
//!   again.

use std::collections::BTreeMap;

use chrono::{DateTime, Months, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::money::Usd;

/// How often a plan's price is billed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    #[default]
    Month,
    Year,
}

impl Interval {
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Month => "month",
            Interval::Year => "year",
        }
    }

    /// The monthly grants one paid period carries: 1, or 12 for a year.
    pub fn months(self) -> u32 {
        match self {
            Interval::Month => 1,
            Interval::Year => 12,
        }
    }
}

/// One plan of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// What the page calls it; the price id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the Stripe price charges each interval.
    pub amount_usd: Usd,
    #[serde(default)]
    pub interval: Interval,
    /// Base credits granted each month.
    pub base_usd: Usd,
    /// Most rollover credits kept from month to month.
    pub rollover_cap_usd: Usd,
}

impl Plan {
    /// A monthly plan (tests and examples).
    pub fn monthly(amount_usd: Usd, base_usd: Usd, rollover_cap_usd: Usd) -> Plan {
        Plan {
            name: None,
            amount_usd,
            interval: Interval::Month,
            base_usd,
            rollover_cap_usd,
        }
    }

    pub fn annual(self) -> Plan {
        Plan {
            interval: Interval::Year,
            ..self
        }
    }
}

/// The plan catalog, by Stripe price id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plans(BTreeMap<String, Plan>);

impl Plans {
    /// Reads the `PLANS` setting; empty for none.
    pub fn parse(json: &str) -> Result<Plans, String> {
        if json.trim().is_empty() {
            return Ok(Plans::default());
        }
        let plans = serde_json::from_str::<BTreeMap<String, Plan>>(json)
            .map(Plans)
            .map_err(|e| {
                format!(
                    "PLANS is not a map of Stripe price id to {{name?, amount_usd, interval?, base_usd, \
                     rollover_cap_usd}}: {e}"
                )
            })?;
        for (price, plan) in &plans.0 {
            if price.trim().is_empty() || plan.amount_usd.to_cents().is_err() || plan.amount_usd.is_zero() {
                return Err(format!(
                    "PLANS: plan {price:?} needs a price id and an amount_usd of whole cents above zero"
                ));
            }
        }
        Ok(plans)
    }

    pub fn from_map(plans: impl IntoIterator<Item = (String, Plan)>) -> Plans {
        Plans(plans.into_iter().collect())
    }

    pub fn get(&self, price: &str) -> Option<&Plan> {
        self.0.get(price)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Plan)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How a change from one plan to another is made (see the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeRule {
    /// Nothing to change.
    Same,
    /// At once, prorated by Stripe and invoiced at once; the invoice grants the
    /// difference for the rest of the month.
    Now,
    /// From the next period on, nothing prorated.
    NextPeriod,
    /// Monthly ↔ annual: refused.
    IntervalChange,
}

pub fn change_rule(from: &Plan, to: &Plan) -> ChangeRule {
    if from == to {
        ChangeRule::Same
    } else if from.interval != to.interval {
        ChangeRule::IntervalChange
    } else if from.interval == Interval::Month && to.base_usd > from.base_usd {
        ChangeRule::Now
    } else {
        ChangeRule::NextPeriod
    }
}

/// One line of a plan change's invoice: the price it bills and what it charged, in
/// cents (negative for the old plan's unused time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProratedLine {
    pub price: String,
    pub amount_cents: i64,
}

/// Why a change's invoice grants nothing that can be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProrationError {
    #[error("price {0} is no configured plan")]
    UnknownPrice(String),
    #[error("the amounts overflow")]
    Overflow,
    /// The change gives money back (a prorated downgrade): never granted as credits, and
    /// not taken back either; left to an operator.
    #[error("a plan change that gives money back")]
    MoneyBack,
}

/// The base credits a plan change's invoice grants: each line's plan's monthly base, in
/// the proportion of that plan's price the line charged (so a line for half a month of
/// the new plan grants half its base, and the old plan's unused half takes half of its
/// base back). Rounded down to the cent. A change that gives money back (a prorated
/// downgrade, which this service never asks for) is refused: its credits are neither
/// granted nor taken, and an operator looks at it.
pub fn proration_grant(plans: &Plans, lines: &[ProratedLine]) -> Result<Usd, ProrationError> {
    let mut total = Decimal::ZERO;
    for line in lines {
        let plan = plans
            .get(&line.price)
            .ok_or_else(|| ProrationError::UnknownPrice(line.price.clone()))?;
        let price_cents = plan.amount_usd.to_cents().map_err(|_| ProrationError::Overflow)?;
        if price_cents == 0 {
            return Err(ProrationError::Overflow);
        }
        let share = plan
            .base_usd
            .as_decimal()
            .checked_mul(Decimal::from(line.amount_cents))
            .and_then(|d| d.checked_div(Decimal::from(price_cents)))
            .ok_or(ProrationError::Overflow)?;
        total = total.checked_add(share).ok_or(ProrationError::Overflow)?;
    }
    if total < Decimal::ZERO {
        return Err(ProrationError::MoneyBack);
    }
    let total = total.round_dp_with_strategy(2, RoundingStrategy::ToZero);
    Usd::try_from_decimal(total).map_err(|_| ProrationError::Overflow)
}

/// When the `month`-th monthly grant of a period that starts at `start` is due (the 0th
/// is the period's own invoice): the same day of the month, or the month's last day.
pub fn monthly_grant_due(start: DateTime<Utc>, month: u32) -> Option<DateTime<Utc>> {
    start.checked_add_months(Months::new(month))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        Usd::parse(s).unwrap()
    }

    fn catalog() -> Plans {
        Plans::parse(
            r#"{"price_team": {"amount_usd": "50.00", "base_usd": "50", "rollover_cap_usd": "100"},
                "price_scale": {"name": "Scale", "amount_usd": "200.00", "base_usd": "250", "rollover_cap_usd": "500"},
                "price_team_year": {"amount_usd": "500.00", "interval": "year", "base_usd": "50", "rollover_cap_usd": "100"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn plans_parse_from_the_setting_and_refuse_anything_else() {
        let plans = catalog();
        assert_eq!(plans.get("price_team").unwrap().base_usd, usd("50"));
        assert_eq!(plans.get("price_team_year").unwrap().interval, Interval::Year);
        assert_eq!(Plans::parse("").unwrap(), Plans::default());
        for bad in [
            r#"{"p": {"amount_usd": "5", "base_usd": 50, "rollover_cap_usd": "1"}}"#,
            r#"{"p": {"amount_usd": "5", "base_usd": "-5", "rollover_cap_usd": "1"}}"#,
            r#"{"p": {"amount_usd": "5", "base_usd": "5"}}"#,
            r#"{"p": {"base_usd": "5", "rollover_cap_usd": "1"}}"#,
            r#"{"p": {"amount_usd": "0", "base_usd": "5", "rollover_cap_usd": "1"}}"#,
            r#"{"p": {"amount_usd": "5.001", "base_usd": "5", "rollover_cap_usd": "1"}}"#,
            r#"{"p": {"amount_usd": "5", "interval": "week", "base_usd": "5", "rollover_cap_usd": "1"}}"#,
            r#"["p"]"#,
        ] {
            assert!(Plans::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upgrades_of_monthly_plans_apply_now_and_everything_else_next_period() {
        let p = catalog();
        let (team, scale, year) = (
            p.get("price_team").unwrap(),
            p.get("price_scale").unwrap(),
            p.get("price_team_year").unwrap(),
        );
        assert_eq!(change_rule(team, scale), ChangeRule::Now);
        assert_eq!(change_rule(scale, team), ChangeRule::NextPeriod);
        assert_eq!(change_rule(team, team), ChangeRule::Same);
        assert_eq!(change_rule(team, year), ChangeRule::IntervalChange);
        let bigger_year = Plan {
            base_usd: usd("80"),
            ..year.clone()
        };
        assert_eq!(change_rule(year, &bigger_year), ChangeRule::NextPeriod);
    }

    #[test]
    fn an_upgrade_halfway_grants_half_the_difference_in_base() {
        let p = catalog();
        // Half a month: Stripe credits half of $50 and charges half of $200.
        let lines = [
            ProratedLine {
                price: "price_team".into(),
                amount_cents: -2500,
            },
            ProratedLine {
                price: "price_scale".into(),
                amount_cents: 10000,
            },
        ];
        assert_eq!(proration_grant(&p, &lines).unwrap(), usd("100.00")); // (250 - 50) / 2
        // A third of a month left, Stripe's cents rounded: rounded down to the cent.
        let lines = [
            ProratedLine {
                price: "price_team".into(),
                amount_cents: -1667,
            },
            ProratedLine {
                price: "price_scale".into(),
                amount_cents: 6667,
            },
        ];
        assert_eq!(proration_grant(&p, &lines).unwrap(), usd("66.66"));
        // A change that gives money back is refused, and so is an unknown price.
        let back = [ProratedLine {
            price: "price_scale".into(),
            amount_cents: -10000,
        }];
        assert_eq!(proration_grant(&p, &back), Err(ProrationError::MoneyBack));
        let unknown = [ProratedLine {
            price: "price_x".into(),
            amount_cents: 1,
        }];
        assert!(proration_grant(&p, &unknown).is_err());
    }

    #[test]
    fn monthly_grants_fall_on_the_same_day_or_the_months_last() {
        let start = "2026-01-31T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            monthly_grant_due(start, 1).unwrap().to_rfc3339(),
            "2026-02-28T10:00:00+00:00"
        );
        assert_eq!(
            monthly_grant_due(start, 11).unwrap().to_rfc3339(),
            "2026-12-31T10:00:00+00:00"
        );
    }
}
