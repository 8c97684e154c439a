//! Expiring credits by date: each grant with an expiry date is a lot, and the wallet's
//! `expiring` bucket is the sum of what its lots have left.
//!
//! Debits draw the soonest lot first. On its date a lot's remainder expires, by the
//! scheduled sweep ([`crate::Movement::Expire`]), never below what open holds reserve. A
//! lot drawn to nothing is gone.
//!
//! Credits given back to the expiring bucket (a refund that failed at the bank gives back
//! what its take-back took) cannot know which lot they came from: they go back as one lot
//! with the latest date the wallet still has, or, with no lot left, with the day they are
//! given back, so that the next sweep expires them (every lot they could have come from
//! had either passed its date or been drawn to nothing).

use chrono::{DateTime, Utc};

use crate::money::{MoneyError, Usd};

/// What is left of one dated grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lot {
    /// The wallet version (ledger entry) that made it: unique within the wallet.
    pub seq: u64,
    pub expires_at: DateTime<Utc>,
    pub left: Usd,
}

/// The most lots a wallet keeps: a change touches every lot it draws or expires in one
/// transaction, which DynamoDB caps at 100 items. Grants of the same date share a lot.
pub const MAX_LOTS: usize = 25;

/// A wallet's lots, soonest date first (then oldest first). None is ever empty, and no
/// two have the same date.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lots(Vec<Lot>);

impl Lots {
    /// From what was stored; drops empty lots and puts them in order.
    pub fn from_stored(mut lots: Vec<Lot>) -> Lots {
        lots.retain(|l| !l.left.is_zero());
        lots.sort_by_key(|l| (l.expires_at, l.seq));
        Lots(lots)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lot> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn total(&self) -> Result<Usd, MoneyError> {
        self.0
            .iter()
            .try_fold(Usd::ZERO, |sum, l| sum.checked_add(l.left))
    }

    /// What has reached its date by `now`.
    pub fn due(&self, now: DateTime<Utc>) -> Result<Usd, MoneyError> {
        self.0
            .iter()
            .filter(|l| l.expires_at <= now)
            .try_fold(Usd::ZERO, |sum, l| sum.checked_add(l.left))
    }

    /// The soonest date of a lot, if any.
    pub fn next_expiry(&self) -> Option<DateTime<Utc>> {
        self.0.first().map(|l| l.expires_at)
    }

    /// Draws `amount`, soonest lot first. The caller draws no more than the total (the
    /// bucket's condition); what could not be drawn is an error.
    pub fn take(&self, amount: Usd) -> Result<Lots, MoneyError> {
        let mut left = amount;
        let mut out = Vec::with_capacity(self.0.len());
        for lot in &self.0 {
            let take = left.min(lot.left);
            left = left.checked_sub(take)?;
            let rest = lot.left.checked_sub(take)?;
            if !rest.is_zero() {
                out.push(Lot { left: rest, ..*lot });
            }
        }
        if !left.is_zero() {
            return Err(MoneyError::Negative);
        }
        Ok(Lots(out))
    }

    /// Adds a lot, or adds to the lot of the same date.
    pub fn with(&self, lot: Lot) -> Result<Lots, MoneyError> {
        let mut lots = self.0.clone();
        match lots.iter_mut().find(|l| l.expires_at == lot.expires_at) {
            Some(same) => same.left = same.left.checked_add(lot.left)?,
            None => lots.push(lot),
        }
        Ok(Lots::from_stored(lots))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds credits given back without a lot of their own: see the module.
    pub fn given_back(&self, seq: u64, amount: Usd, now: DateTime<Utc>) -> Result<Lots, MoneyError> {
        let expires_at = self.0.iter().map(|l| l.expires_at).max().unwrap_or(now);
        self.with(Lot {
            seq,
            expires_at,
            left: amount,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, 0, 0, 0).unwrap()
    }

    fn usd(s: &str) -> Usd {
        Usd::parse(s).unwrap()
    }

    #[test]
    fn the_soonest_lot_is_drawn_first_and_an_empty_one_is_gone() {
        let lots = Lots::from_stored(vec![
            Lot {
                seq: 2,
                expires_at: at(20),
                left: usd("5"),
            },
            Lot {
                seq: 1,
                expires_at: at(10),
                left: usd("3"),
            },
        ]);
        let after = lots.take(usd("4")).unwrap();
        assert_eq!(
            after.iter().copied().collect::<Vec<_>>(),
            vec![Lot {
                seq: 2,
                expires_at: at(20),
                left: usd("4")
            }]
        );
        assert_eq!(lots.due(at(10)).unwrap(), usd("3"));
        assert_eq!(lots.due(at(9)).unwrap(), Usd::ZERO);
        assert!(lots.take(usd("8.01")).is_err());
    }

    #[test]
    fn credits_given_back_keep_the_latest_date_or_expire_at_the_next_sweep() {
        let lots = Lots::from_stored(vec![Lot {
            seq: 1,
            expires_at: at(10),
            left: usd("3"),
        }]);
        let back = lots.given_back(5, usd("2"), at(2)).unwrap();
        assert_eq!(back.total().unwrap(), usd("5"));
        assert_eq!(back.len(), 1, "the same date: the same lot");
        assert_eq!(back.due(at(10)).unwrap(), usd("5"));
        let none = Lots::default().given_back(5, usd("2"), at(2)).unwrap();
        assert_eq!(none.due(at(2)).unwrap(), usd("2"));
    }

    proptest! {
        #[test]
        fn drawing_takes_exactly_the_amount_soonest_first(
            lefts in proptest::collection::vec((1i64..10_000_000, 1u32..28), 0..6),
            amount in 0i64..60_000_000,
        ) {
            let lots = Lots::from_stored(
                lefts.iter().enumerate().map(|(i, (m, d))| Lot {
                    seq: i as u64,
                    expires_at: at(*d),
                    left: Usd::try_from_decimal(Decimal::new(*m, 6)).unwrap(),
                }).collect(),
            );
            let total = lots.total().unwrap();
            let amount = Usd::try_from_decimal(Decimal::new(amount, 6)).unwrap();
            match lots.take(amount) {
                Err(_) => prop_assert!(amount > total),
                Ok(after) => {
                    prop_assert_eq!(after.total().unwrap().checked_add(amount).unwrap(), total);
                    // A later lot is drawn only once every sooner one is gone.
                    let kept: Vec<_> = after.iter().collect();
                    if let Some(first) = kept.first() {
                        for l in lots.iter().filter(|l| (l.expires_at, l.seq) < (first.expires_at, first.seq)) {
                            prop_assert!(!after.iter().any(|a| a.seq == l.seq));
                        }
                    }
                }
            }
        }
    }
}
