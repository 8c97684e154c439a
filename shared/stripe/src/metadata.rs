//! The metadata contract: what the checkout and recharge functions write on the payments
//! they ask Stripe for, and what the webhooks function reads back from Stripe's signed
//! events. Written and read here only, so the keys cannot drift apart.
//!
//! | key | written by | meaning |
//! |---|---|---|
//! | `org` | both | the org credited |
//! | `member` | checkout | the buyer |
//! | `offer` | checkout | `bulk`, `package:<id>` or `custom` |
//! | `purpose` | recharge | `auto_recharge` |
//! | `attempt` | recharge | the recharge attempt (also the idempotency key) |
//! | `credits_usd` | both | the credits the payment adds |
//! | `price_usd` | both | what the buyer pays, checked against what Stripe charged |

use std::collections::HashMap;

use agent_credits_domain::recharge::RECHARGE_PURPOSE;
use agent_credits_domain::{MemberId, Offer, OrgId, PositiveUsd, Usd};

const ORG: &str = "org";
const MEMBER: &str = "member";
const OFFER: &str = "offer";
const PURPOSE: &str = "purpose";
const ATTEMPT: &str = "attempt";
const CREDITS: &str = "credits_usd";
const PRICE: &str = "price_usd";

/// What a payment of ours says it bought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMetadata {
    pub org: OrgId,
    pub credits: PositiveUsd,
    /// What the buyer pays: a payment is credited only when Stripe charged exactly this.
    pub price: Usd,
    pub bought: Bought,
}

/// Who asked for the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bought {
    /// A Checkout purchase by a member.
    Purchase { member: Option<MemberId>, offer: String },
    /// An auto-recharge attempt (always named by the recharge function; an event that
    /// does not name it still credits, and ends no attempt).
    AutoRecharge { attempt: Option<String> },
}

/// Why a payment's metadata is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("no valid org")]
    Org,
    #[error("no valid credits_usd")]
    Credits,
    #[error("no valid price_usd")]
    Price,
}

impl PaymentMetadata {
    /// A Checkout purchase of `offer` by `member`.
    pub fn purchase(org: &OrgId, member: &MemberId, offer: &Offer) -> Result<PaymentMetadata, MetadataError> {
        Ok(PaymentMetadata {
            org: org.clone(),
            credits: PositiveUsd::new(offer.credits).map_err(|_| MetadataError::Credits)?,
            price: offer.price,
            bought: Bought::Purchase {
                member: Some(member.clone()),
                offer: offer.kind.clone(),
            },
        })
    }

    /// An auto-recharge attempt of `amount`, charged at its face value.
    pub fn auto_recharge(org: &OrgId, attempt: &str, amount: Usd) -> Result<PaymentMetadata, MetadataError> {
        Ok(PaymentMetadata {
            org: org.clone(),
            credits: PositiveUsd::new(amount).map_err(|_| MetadataError::Credits)?,
            price: amount,
            bought: Bought::AutoRecharge {
                attempt: Some(attempt.to_owned()),
            },
        })
    }

    /// As Stripe stores it.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            (ORG.to_owned(), self.org.to_string()),
            (CREDITS.to_owned(), self.credits.usd().to_string()),
            (PRICE.to_owned(), self.price.to_string()),
        ]);
        match &self.bought {
            Bought::Purchase { member, offer } => {
                if let Some(member) = member {
                    map.insert(MEMBER.to_owned(), member.to_string());
                }
                map.insert(OFFER.to_owned(), offer.clone());
            }
            Bought::AutoRecharge { attempt } => {
                map.insert(PURPOSE.to_owned(), RECHARGE_PURPOSE.to_owned());
                if let Some(attempt) = attempt {
                    map.insert(ATTEMPT.to_owned(), attempt.clone());
                }
            }
        }
        map
    }

    /// Read back from a payment: an auto-recharge when its purpose says so, else a
    /// purchase (whose buyer is optional: a member id that does not parse is left out).
    pub fn read(map: &HashMap<String, String>) -> Result<PaymentMetadata, MetadataError> {
        let org = org_of(map).ok_or(MetadataError::Org)?;
        let credits = map
            .get(CREDITS)
            .and_then(|a| PositiveUsd::parse(a).ok())
            .ok_or(MetadataError::Credits)?;
        let price = map
            .get(PRICE)
            .and_then(|p| Usd::parse(p).ok())
            .ok_or(MetadataError::Price)?;
        let bought = if is_auto_recharge(map) {
            Bought::AutoRecharge {
                attempt: attempt_of(map).map(str::to_owned),
            }
        } else {
            Bought::Purchase {
                member: map.get(MEMBER).and_then(|m| MemberId::parse(m.as_str()).ok()),
                offer: map.get(OFFER).cloned().unwrap_or_default(),
            }
        };
        Ok(PaymentMetadata {
            org,
            credits,
            price,
            bought,
        })
    }

    /// The buyer, for a purchase.
    pub fn member(&self) -> Option<&MemberId> {
        match &self.bought {
            Bought::Purchase { member, .. } => member.as_ref(),
            Bought::AutoRecharge { .. } => None,
        }
    }
}

/// Whether a payment is an auto-recharge's.
pub fn is_auto_recharge(map: &HashMap<String, String>) -> bool {
    map.get(PURPOSE).map(String::as_str) == Some(RECHARGE_PURPOSE)
}

/// The org a payment names, if it names a valid one.
pub fn org_of(map: &HashMap<String, String>) -> Option<OrgId> {
    map.get(ORG).and_then(|o| OrgId::parse(o.as_str()).ok())
}

/// The auto-recharge attempt a payment names.
pub fn attempt_of(map: &HashMap<String, String>) -> Option<&str> {
    map.get(ATTEMPT).map(String::as_str)
}

/// Metadata naming the org alone (an invoice of a purchase or an auto top-up).
pub fn org_only(org: &OrgId) -> HashMap<String, String> {
    HashMap::from([(ORG.to_owned(), org.to_string())])
}

/// The metadata of a buyer's customer.
pub fn customer(org: &OrgId, member: &MemberId) -> HashMap<String, String> {
    HashMap::from([
        (ORG.to_owned(), org.to_string()),
        (MEMBER.to_owned(), member.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        Usd::parse(s).unwrap()
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        let org = OrgId::parse("org_1").unwrap();
        let offer = Offer {
            price: usd("90"),
            credits: usd("100"),
            label: "Starter".into(),
            kind: "package:starter".into(),
        };
        let bought = PaymentMetadata::purchase(&org, &MemberId::parse("u_1").unwrap(), &offer).unwrap();
        let recharge = PaymentMetadata::auto_recharge(&org, "ra_1", usd("25")).unwrap();
        for written in [bought, recharge] {
            assert_eq!(PaymentMetadata::read(&written.to_map()), Ok(written));
        }
    }

    #[test]
    fn the_wire_keys_stay_as_stripe_has_them() {
        let org = OrgId::parse("org_1").unwrap();
        let map = PaymentMetadata::auto_recharge(&org, "ra_1", usd("25"))
            .unwrap()
            .to_map();
        let mut keys: Vec<_> = map.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["attempt", "credits_usd", "org", "price_usd", "purpose"]);
        assert_eq!(map["purpose"], "auto_recharge");
        assert!(is_auto_recharge(&map));
    }

    #[test]
    fn metadata_that_is_not_ours_says_what_is_missing() {
        let good = PaymentMetadata::auto_recharge(&OrgId::parse("org_1").unwrap(), "ra_1", usd("25"))
            .unwrap()
            .to_map();
        let without = |key: &str| {
            let mut m = good.clone();
            m.remove(key);
            PaymentMetadata::read(&m)
        };
        assert_eq!(without("org"), Err(MetadataError::Org));
        assert_eq!(without("credits_usd"), Err(MetadataError::Credits));
        assert_eq!(without("price_usd"), Err(MetadataError::Price));
        assert_eq!(
            without("attempt").map(|m| m.bought),
            Ok(Bought::AutoRecharge { attempt: None })
        );
        let mut zero = good.clone();
        zero.insert("credits_usd".into(), "0".into());
        assert_eq!(PaymentMetadata::read(&zero), Err(MetadataError::Credits));
        // Without a purpose it is a purchase, and its buyer is optional.
        let mut plain = good;
        plain.remove("purpose");
        assert!(PaymentMetadata::read(&plain).unwrap().member().is_none());
    }
}
