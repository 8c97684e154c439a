//! Everything credits pay for (references 001, 002): model calls, and the other
//! consumables an agent uses (API calls, MCP calls, email, SMS, voice, storage), each
//! reported with its `kind` and, optionally, the product `feature` it served.
//!
//! A model call is priced by its provider cost or its tokens; any other kind by the
//! quantity used × its unit price on the rate card in force that day. Either way the
//! org's markup applies once, on the same debit path.
//!
//! Who pays differs by kind (002: "Other consumables fail until you top up"): a provider
//! key the org brought pays for its model calls only; every other kind is always paid
//! from credits.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::pricing::{PricingError, ProviderCost, Quantity, UnitPrice};

/// What one reported use consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consumable {
    /// A model call: tokens, or the provider's exact cost.
    #[default]
    Llm,
    ApiCall,
    McpCall,
    Email,
    Sms,
    VoiceMinute,
    StorageGbDay,
}

impl Consumable {
    pub const ALL: [Consumable; 7] = [
        Consumable::Llm,
        Consumable::ApiCall,
        Consumable::McpCall,
        Consumable::Email,
        Consumable::Sms,
        Consumable::VoiceMinute,
        Consumable::StorageGbDay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Consumable::Llm => "llm",
            Consumable::ApiCall => "api_call",
            Consumable::McpCall => "mcp_call",
            Consumable::Email => "email",
            Consumable::Sms => "sms",
            Consumable::VoiceMinute => "voice_minute",
            Consumable::StorageGbDay => "storage_gb_day",
        }
    }

    pub fn parse(s: &str) -> Option<Consumable> {
        Consumable::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A model call, which an org's own provider key may pay for.
    pub fn is_model_call(self) -> bool {
        self == Consumable::Llm
    }

    /// Priced from the rate card by quantity (every kind but model calls).
    pub fn priced_by_unit(self) -> bool {
        !self.is_model_call()
    }

    /// Counted in whole units (calls, emails, messages); minutes and GB-days may be
    /// fractions.
    pub fn whole_units(self) -> bool {
        matches!(
            self,
            Consumable::ApiCall | Consumable::McpCall | Consumable::Email | Consumable::Sms
        )
    }
}

impl std::str::FromStr for Consumable {
    type Err = String;

    fn from_str(s: &str) -> Result<Consumable, String> {
        Consumable::parse(s).ok_or_else(|| {
            let known: Vec<&str> = Consumable::ALL.iter().map(|k| k.as_str()).collect();
            format!("no kind {s:?}: one of {}", known.join(", "))
        })
    }
}

impl std::str::FromStr for Feature {
    type Err = String;

    fn from_str(s: &str) -> Result<Feature, String> {
        Feature::parse(s).ok_or_else(|| {
            let known: Vec<&str> = Feature::ALL.iter().map(|f| f.as_str()).collect();
            format!("no feature {s:?}: one of {}", known.join(", "))
        })
    }
}

impl fmt::Display for Consumable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The product feature a use served (reference 001), for the usage summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    MultitaskProject,
    AgentConversation,
    Upskilling,
    Continuation,
    Rag,
}

impl Feature {
    pub const ALL: [Feature; 5] = [
        Feature::MultitaskProject,
        Feature::AgentConversation,
        Feature::Upskilling,
        Feature::Continuation,
        Feature::Rag,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Feature::MultitaskProject => "multitask_project",
            Feature::AgentConversation => "agent_conversation",
            Feature::Upskilling => "upskilling",
            Feature::Continuation => "continuation",
            Feature::Rag => "rag",
        }
    }

    pub fn parse(s: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One kind's unit price (USD per unit: per call, email, message, minute or GB-day) from
/// a date on: the rate card, set by operators like the model rates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitRate {
    pub kind: Consumable,
    pub effective_from: NaiveDate,
    pub unit_price: UnitPrice,
}

impl UnitRate {
    /// Exact provider cost of `quantity` units at this price; the markup rounds it once.
    pub fn cost(&self, quantity: Quantity) -> Result<ProviderCost, PricingError> {
        ProviderCost::product(quantity.as_decimal(), self.unit_price.as_decimal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::Markup;

    #[test]
    fn every_kind_and_feature_reads_back_from_its_wire_name() {
        for k in Consumable::ALL {
            assert_eq!(Consumable::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
        }
        for f in Feature::ALL {
            assert_eq!(Feature::parse(f.as_str()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), serde_json::json!(f.as_str()));
        }
        assert_eq!(Consumable::parse("fax"), None);
        assert_eq!(Consumable::parse("LLM"), None);
        assert_eq!(Consumable::default(), Consumable::Llm);
    }

    #[test]
    fn units_are_priced_exactly_then_marked_up_once() {
        let rate = UnitRate {
            kind: Consumable::Sms,
            effective_from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            unit_price: UnitPrice::parse("0.0079").unwrap(),
        };
        let cost = rate.cost(Quantity::parse("3").unwrap()).unwrap();
        assert_eq!(cost.to_string(), "0.0237");
        assert_eq!(Markup::DEFAULT.bill(cost).unwrap().to_string(), "0.03555");
        // A fraction of a unit (minutes, GB-days) at a price of 12 decimals stays exact
        // until the one rounding.
        let tiny = UnitRate {
            unit_price: UnitPrice::parse("0.000001234567").unwrap(),
            ..rate
        };
        let cost = tiny.cost(Quantity::parse("0.5").unwrap()).unwrap();
        assert_eq!(cost.to_string(), "0.0000006172835");
        assert_eq!(Markup::DEFAULT.bill(cost).unwrap().to_string(), "0.000001");
    }
}
