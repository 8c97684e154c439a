//! What a model call costs the org: provider cost × markup, rounded once.
//!
//! Provider cost is the runtime's reported exact cost when it sends one, else token usage
//! × the model's rate in force on the day of the call. Rates are USD per million tokens,
//! each with the date it takes effect, so a rate change applies from its date on.

use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::money::{MoneyError, Usd};

/// Decimal places accepted in a provider cost or a rate: providers price in fractions
/// of a cent per token, so these carry more precision than a charge.
pub const COST_SCALE: u32 = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("{0} must be a non-negative decimal string with at most 12 decimals")]
    BadDecimal(&'static str),
    #[error("markup must be a decimal string between 0 (exclusive) and 100")]
    BadMarkup,
    #[error("model name must be 1 to 128 characters of A-Z a-z 0-9 _ - . : /")]
    BadModel,
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// Parses a non-negative plain decimal with at most `COST_SCALE` decimals.
fn parse_cost_decimal(s: &str, what: &'static str) -> Result<Decimal, PricingError> {
    let ok = !s.is_empty()
        && s.split_once('.').map_or(s.len(), |(i, _)| i.len()) <= 12
        && s.split_once('.')
            .is_none_or(|(i, f)| !i.is_empty() && !f.is_empty() && f.len() <= COST_SCALE as usize)
        && s.bytes().filter(|b| *b == b'.').count() <= 1
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !ok {
        return Err(PricingError::BadDecimal(what));
    }
    Decimal::from_str_exact(s).map_err(|_| PricingError::BadDecimal(what))
}

macro_rules! decimal_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(Decimal);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, PricingError> {
                parse_cost_decimal(s, $what).map(Self)
            }
            pub fn from_decimal(d: Decimal) -> Result<Self, PricingError> {
                let d = d.normalize();
                if d.is_sign_negative() || d.scale() > COST_SCALE {
                    return Err(PricingError::BadDecimal($what));
                }
                Ok(Self(d))
            }
            pub fn as_decimal(self) -> Decimal {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0.normalize())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = crate::money::deserialize_amount_string(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

decimal_newtype!(
    /// The exact cost a runtime reported for one call, before markup.
    ProviderCost, "cost"
);
decimal_newtype!(
    /// USD per million tokens.
    RatePerMillion, "rate"
);
decimal_newtype!(
    /// How much of a consumable one use took: calls, emails, messages, minutes, GB-days.
    Quantity, "quantity"
);
decimal_newtype!(
    /// USD per unit of a consumable, on the rate card.
    UnitPrice, "unit_price"
);

impl ProviderCost {
    /// `a × b` exactly, at whatever scale it reaches: the markup rounds it once.
    pub(crate) fn product(a: Decimal, b: Decimal) -> Result<ProviderCost, PricingError> {
        a.checked_mul(b)
            .map(|p| ProviderCost(p.normalize()))
            .ok_or(PricingError::Money(MoneyError::Overflow))
    }
}

/// Billable = provider cost × markup. Configurable per org; the deployment default is 1.5.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Markup(Decimal);

impl Markup {
    pub const DEFAULT: Markup = Markup(Decimal::from_parts(15, 0, 0, false, 1));

    pub fn parse(s: &str) -> Result<Markup, PricingError> {
        let d = parse_cost_decimal(s, "markup").map_err(|_| PricingError::BadMarkup)?;
        Markup::from_decimal(d)
    }

    pub fn from_decimal(d: Decimal) -> Result<Markup, PricingError> {
        let d = d.normalize();
        if d <= Decimal::ZERO || d > Decimal::ONE_HUNDRED || d.scale() > 6 {
            return Err(PricingError::BadMarkup);
        }
        Ok(Markup(d))
    }

    pub fn as_decimal(self) -> Decimal {
        self.0
    }

    /// The one place a charge is made: exact product, rounded once (see `money`). A
    /// charge beyond [`crate::money::MAX_AMOUNT`] is refused before anything is written,
    /// like any amount from outside.
    pub fn bill(self, cost: ProviderCost) -> Result<Usd, MoneyError> {
        let exact = cost
            .as_decimal()
            .checked_mul(self.0)
            .ok_or(MoneyError::Overflow)?;
        let charge = Usd::round_charge(exact)?;
        if charge.as_decimal() > crate::money::MAX_AMOUNT {
            return Err(MoneyError::TooLarge);
        }
        Ok(charge)
    }
}

impl Default for Markup {
    fn default() -> Self {
        Markup::DEFAULT
    }
}

impl fmt::Display for Markup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Markup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Markup({self})")
    }
}

impl Serialize for Markup {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Markup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = crate::money::deserialize_amount_string(d)?;
        Markup::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A model name as the runtime reports it ("claude-sonnet-4", "openai/gpt-5").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ModelId(String);

impl ModelId {
    pub fn parse(s: impl Into<String>) -> Result<ModelId, PricingError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b));
        if ok {
            Ok(ModelId(s))
        } else {
            Err(PricingError::BadModel)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ModelId {
    type Err = PricingError;

    fn from_str(s: &str) -> Result<ModelId, PricingError> {
        ModelId::parse(s)
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ModelId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ModelId::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Tokens one call used, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenUsage {
    #[serde(default)]
    pub input: u64,
    #[serde(default)]
    pub output: u64,
    #[serde(default)]
    pub cache_read: u64,
    #[serde(default)]
    pub cache_write: u64,
}

/// One model's prices from a date on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRate {
    pub model: ModelId,
    pub effective_from: NaiveDate,
    pub input: RatePerMillion,
    pub output: RatePerMillion,
    #[serde(default)]
    pub cache_read: RatePerMillion,
    #[serde(default)]
    pub cache_write: RatePerMillion,
}

impl ModelRate {
    /// Exact provider cost of `usage` at this rate.
    pub fn cost(&self, usage: &TokenUsage) -> Result<ProviderCost, PricingError> {
        let million = Decimal::from(1_000_000u32);
        let mut total = Decimal::ZERO;
        for (tokens, rate) in [
            (usage.input, self.input),
            (usage.output, self.output),
            (usage.cache_read, self.cache_read),
            (usage.cache_write, self.cache_write),
        ] {
            let part = Decimal::from(tokens)
                .checked_mul(rate.as_decimal())
                .and_then(|p| p.checked_div(million))
                .ok_or(PricingError::Money(MoneyError::Overflow))?;
            total = total
                .checked_add(part)
                .ok_or(PricingError::Money(MoneyError::Overflow))?;
        }
        // Exact, at whatever scale tokens × rate ÷ a million reaches (a rate of 12
        // decimals gives 18): the charge is rounded once, by the markup.
        Ok(ProviderCost(total.normalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_cost_is_billed_at_the_markup() {
        let billed = Markup::DEFAULT
            .bill(ProviderCost::parse("0.0123").unwrap())
            .unwrap();
        assert_eq!(billed.to_string(), "0.01845");
    }

    #[test]
    fn tokens_are_priced_per_million_then_marked_up() {
        let rate = ModelRate {
            model: ModelId::parse("claude-sonnet").unwrap(),
            effective_from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            input: RatePerMillion::parse("3").unwrap(),
            output: RatePerMillion::parse("15").unwrap(),
            cache_read: RatePerMillion::default(),
            cache_write: RatePerMillion::default(),
        };
        let cost = rate
            .cost(&TokenUsage {
                input: 1_000,
                output: 500,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(cost.to_string(), "0.0105");
        assert_eq!(Markup::DEFAULT.bill(cost).unwrap().to_string(), "0.01575");
    }

    #[test]
    fn a_rate_of_twelve_decimals_still_bills_and_an_absurd_charge_is_refused() {
        let rate = ModelRate {
            model: ModelId::parse("m").unwrap(),
            effective_from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            input: RatePerMillion::parse("0.000000000001").unwrap(),
            output: RatePerMillion::parse("3.123456789012").unwrap(),
            cache_read: RatePerMillion::default(),
            cache_write: RatePerMillion::default(),
        };
        let cost = rate
            .cost(&TokenUsage {
                input: 7,
                output: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(Markup::DEFAULT.bill(cost).unwrap().to_string(), "0.000005");
        // Beyond the $1,000,000,000 bound, whether from a cost or from tokens.
        let huge = ProviderCost::parse("999999999999").unwrap();
        assert_eq!(Markup::DEFAULT.bill(huge), Err(MoneyError::TooLarge));
        let many = rate.cost(&TokenUsage {
            output: u64::MAX,
            ..Default::default()
        });
        assert!(many.map_or(true, |c| Markup::DEFAULT.bill(c).is_err()));
    }

    #[test]
    fn markups_and_costs_refuse_nonsense() {
        for bad in ["0", "-1", "101", "1e2", "abc", ""] {
            assert!(Markup::parse(bad).is_err(), "{bad}");
        }
        for bad in ["-0.1", "1e-3", "0.0000000000001", "NaN", ".5"] {
            assert!(ProviderCost::parse(bad).is_err(), "{bad}");
        }
        assert!(
            serde_json::from_str::<ProviderCost>("0.5").is_err(),
            "a JSON number is refused"
        );
        assert!(ModelId::parse("a b").is_err());
    }
}
