//! What an org can buy: fixed bulks ($100 by default, reference 000), credit packages with
//! optional bonus credits (reference 001), and a custom amount within a configured range
//! (reference 002). Prices are whole cents, because that is what a card is charged in.

use serde::{Deserialize, Serialize};

use crate::money::{MoneyError, Usd};

/// A package: pay `price`, get `credits` (more than the price when it carries a bonus).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub price: Usd,
    pub credits: Usd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    pub bulk: Usd,
    pub packages: Vec<Package>,
    pub custom_min: Usd,
    pub custom_max: Usd,
}

/// What the buyer picked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Choice {
    /// `quantity` bulks of the deployment's bulk size.
    Bulk {
        quantity: u32,
    },
    Package {
        id: String,
    },
    Custom {
        amount: Usd,
    },
}

/// A priced purchase, ready for checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offer {
    pub price: Usd,
    pub credits: Usd,
    pub label: String,
    /// `bulk`, `package:<id>` or `custom`: recorded on the payment's metadata.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("no package {0}")]
    UnknownPackage(String),
    #[error("the amount must be between {min} and {max}")]
    OutOfRange { min: Usd, max: Usd },
    #[error("a price is charged in whole cents")]
    FractionOfACent,
    #[error("buy 1 to 100 bulks")]
    BadQuantity,
    #[error(transparent)]
    Money(#[from] MoneyError),
}

impl Offer {
    /// The price in cents, as Stripe takes it.
    pub fn price_cents(&self) -> Result<i64, OfferError> {
        cents(self.price)
    }
}

fn cents(usd: Usd) -> Result<i64, OfferError> {
    usd.to_cents().map_err(|e| match e {
        MoneyError::FractionOfACent => OfferError::FractionOfACent,
        other => OfferError::Money(other),
    })
}

impl Catalog {
    pub fn offer(&self, choice: &Choice) -> Result<Offer, OfferError> {
        let offer = match choice {
            Choice::Bulk { quantity } => {
                if !(1..=100).contains(quantity) {
                    return Err(OfferError::BadQuantity);
                }
                let mut price = Usd::ZERO;
                for _ in 0..*quantity {
                    price = price.checked_add(self.bulk)?;
                }
                Offer {
                    price,
                    credits: price,
                    label: format!("Agent credits: {quantity} × ${}", self.bulk),
                    kind: "bulk".into(),
                }
            }
            Choice::Package { id } => {
                let p = self
                    .packages
                    .iter()
                    .find(|p| &p.id == id)
                    .ok_or_else(|| OfferError::UnknownPackage(id.clone()))?;
                Offer {
                    price: p.price,
                    credits: p.credits,
                    label: p.name.clone(),
                    kind: format!("package:{}", p.id),
                }
            }
            Choice::Custom { amount } => {
                if *amount < self.custom_min || *amount > self.custom_max {
                    return Err(OfferError::OutOfRange {
                        min: self.custom_min,
                        max: self.custom_max,
                    });
                }
                Offer {
                    price: *amount,
                    credits: *amount,
                    label: format!("Agent credits: ${amount}"),
                    kind: "custom".into(),
                }
            }
        };
        cents(offer.price)?;
        Ok(offer)
    }
}

/// The packages a deployment sells when it names none (`CHECKOUT_PACKAGES` unset):
/// reference 001's examples. 001 counts 4,500 credits for $50, 10,000 for $100 and 100,000
/// for $800, at a lower rate than reference 003's 200 credits = $1. At 003's rate each
/// package keeps 001's value relative to the Starter (90 credits a dollar there): the
/// Starter is at par, the Professional gives 100/90 of its price, the 800 Club 125/90, and
/// the bonus carries the difference.
pub fn default_packages() -> Vec<Package> {
    let package = |id: &str, name: &str, price: u32, credits_cents: i64| Package {
        id: id.to_owned(),
        name: name.to_owned(),
        price: Usd::from_whole_dollars(price),
        credits: Usd::from_cents(credits_cents).unwrap_or(Usd::from_whole_dollars(price)),
    };
    vec![
        package("starter", "Starter", 50, 5_000),
        package("professional", "Professional", 100, 11_111),
        package("club_800", "800 Club", 800, 111_111),
    ]
}

/// `usd` of credits as the page counts them: whole credits at `per_usd` (003: 200 a
/// dollar), rounded down.
pub fn shown_credits(usd: Usd, per_usd: u32) -> u64 {
    use rust_decimal::prelude::ToPrimitive;
    (usd.as_decimal() * rust_decimal::Decimal::from(per_usd))
        .floor()
        .to_u64()
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {

    #[test]
    fn reference_001s_packages_at_reference_003s_rate_carry_their_value_as_bonus() {
        let packages = super::default_packages();
        let shown: Vec<(String, u64, u64)> = packages
            .iter()
            .map(|p| {
                (
                    p.id.clone(),
                    super::shown_credits(p.price, 200),
                    super::shown_credits(p.credits, 200),
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("starter".to_owned(), 10_000, 10_000),
                ("professional".to_owned(), 20_000, 22_222),
                ("club_800".to_owned(), 160_000, 222_222),
            ]
        );
        // 001's proportions: 4,500 : 10,000 : 100,000 is 10,000 : 22,222 : 222,222.
        assert_eq!(
            (4_500u64 * 22_222 / 10_000, 4_500u64 * 222_222 / 10_000),
            (9_999, 99_999)
        );
        // Every package is a real offer: bought for its whole-cent price.
        let catalog = super::Catalog {
            bulk: Usd::from_whole_dollars(100),
            packages,
            custom_min: Usd::from_whole_dollars(10),
            custom_max: Usd::from_whole_dollars(10_000),
        };
        let club = catalog
            .offer(&super::Choice::Package {
                id: "club_800".into(),
            })
            .unwrap();
        assert_eq!(
            (club.price_cents().unwrap(), club.credits),
            (80_000, Usd::parse("1111.11").unwrap())
        );
    }

    use super::*;

    fn catalog() -> Catalog {
        Catalog {
            bulk: Usd::parse("100").unwrap(),
            packages: vec![Package {
                id: "pro".into(),
                name: "Professional".into(),
                price: Usd::parse("100").unwrap(),
                credits: Usd::parse("110").unwrap(),
            }],
            custom_min: Usd::parse("10").unwrap(),
            custom_max: Usd::parse("10000").unwrap(),
        }
    }

    #[test]
    fn offers_are_priced_in_cents_with_their_credits() {
        let c = catalog();
        let bulk = c.offer(&Choice::Bulk { quantity: 2 }).unwrap();
        assert_eq!(
            (bulk.price_cents().unwrap(), bulk.credits.to_string()),
            (20_000, "200.00".into())
        );
        let pro = c.offer(&Choice::Package { id: "pro".into() }).unwrap();
        assert_eq!(
            (pro.price.to_string(), pro.credits.to_string()),
            ("100.00".into(), "110.00".into())
        );
        let custom = c
            .offer(&Choice::Custom {
                amount: Usd::parse("12.34").unwrap(),
            })
            .unwrap();
        assert_eq!(custom.price_cents().unwrap(), 1234);
    }

    #[test]
    fn bad_choices_are_refused() {
        let c = catalog();
        assert!(matches!(
            c.offer(&Choice::Package { id: "gold".into() }),
            Err(OfferError::UnknownPackage(_))
        ));
        assert!(matches!(
            c.offer(&Choice::Custom {
                amount: Usd::parse("9.99").unwrap()
            }),
            Err(OfferError::OutOfRange { .. })
        ));
        assert!(matches!(
            c.offer(&Choice::Custom {
                amount: Usd::parse("10000.01").unwrap()
            }),
            Err(OfferError::OutOfRange { .. })
        ));
        assert_eq!(
            c.offer(&Choice::Custom {
                amount: Usd::parse("12.345").unwrap()
            }),
            Err(OfferError::FractionOfACent)
        );
        assert_eq!(
            c.offer(&Choice::Bulk { quantity: 0 }),
            Err(OfferError::BadQuantity)
        );
    }
}
