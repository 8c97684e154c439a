//! Where credits live: the three buckets of reference 003 (base, rollover, purchased),
//! granted credits that expire on a date, and earned credits (referrals, creator
//! earnings), with the signed change of each bucket one ledger entry makes.
//!
//! Debits draw expiring grants (soonest date first), then base, rollover and purchased as
//! reference 003 orders them, and earned credits last:
//! - a dated grant is lost on its date, so it goes before anything that lasts longer;
//!   base is lost at the period's end only beyond the rollover cap;
//! - earned credits are the only ones an owner can withdraw, so they are kept for last.
//!
//! Grants without a date that nobody earned (support, promotional) sit with purchased
//! credits: they last and cannot be withdrawn, like bought ones.
//!
//! A take-back (a refund, a lost dispute) draws first the bucket the payment filled, then
//! the others in debit order, expiring grants last: a refunded purchase takes purchased
//! credits, a refunded plan invoice base.

use serde::{Deserialize, Serialize};

use crate::money::{MoneyError, SignedUsd, Usd};

/// Where credits live. The order of the variants is the order debits draw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// Granted with an expiry date; spent soonest date first (see [`crate::lots`]).
    Expiring,
    /// Included with the org's plan each month.
    Base,
    /// Unused base credits carried over, up to the plan's cap.
    Rollover,
    /// Bought (checkout, auto-recharge), or granted without a date (support, promotional).
    Purchased,
    /// Earned (referrals, creator earnings): the only credits an owner may withdraw.
    Earned,
}

impl Bucket {
    pub const DEBIT_ORDER: [Bucket; 5] = [
        Bucket::Expiring,
        Bucket::Base,
        Bucket::Rollover,
        Bucket::Purchased,
        Bucket::Earned,
    ];

    /// After the bucket a payment filled, the order a take-back draws: expiring grants
    /// last, since nobody paid for them.
    const TAKE_ORDER: [Bucket; 5] = [
        Bucket::Base,
        Bucket::Rollover,
        Bucket::Purchased,
        Bucket::Earned,
        Bucket::Expiring,
    ];

    /// `first`, then the others in take order: the order a take-back draws.
    pub fn take_order(first: Bucket) -> [Bucket; 5] {
        let mut order = [first; 5];
        let mut i = 1;
        for b in Bucket::TAKE_ORDER {
            if b != first {
                order[i] = b;
                i += 1;
            }
        }
        order
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Expiring => "expiring",
            Bucket::Base => "base",
            Bucket::Rollover => "rollover",
            Bucket::Purchased => "purchased",
            Bucket::Earned => "earned",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Buckets {
    pub base: Usd,
    pub rollover: Usd,
    pub purchased: Usd,
    #[serde(default)]
    pub expiring: Usd,
    #[serde(default)]
    pub earned: Usd,
}

impl Buckets {
    pub fn get(&self, bucket: Bucket) -> Usd {
        match bucket {
            Bucket::Expiring => self.expiring,
            Bucket::Base => self.base,
            Bucket::Rollover => self.rollover,
            Bucket::Purchased => self.purchased,
            Bucket::Earned => self.earned,
        }
    }

    fn slot(&mut self, bucket: Bucket) -> &mut Usd {
        match bucket {
            Bucket::Expiring => &mut self.expiring,
            Bucket::Base => &mut self.base,
            Bucket::Rollover => &mut self.rollover,
            Bucket::Purchased => &mut self.purchased,
            Bucket::Earned => &mut self.earned,
        }
    }

    pub fn total(&self) -> Result<Usd, MoneyError> {
        Bucket::DEBIT_ORDER
            .iter()
            .try_fold(Usd::ZERO, |sum, b| sum.checked_add(self.get(*b)))
    }

    /// Splits a debit across the buckets in [`Bucket::DEBIT_ORDER`]. `None` when the
    /// buckets together hold less than `amount`.
    pub fn split_debit(&self, amount: Usd) -> Option<BucketDelta> {
        let (delta, left) = self.split_in(amount, Bucket::DEBIT_ORDER);
        left.is_zero().then_some(delta)
    }

    /// Takes up to `amount`, `first` bucket first, then the others in debit order: what
    /// was taken, and what was not there.
    pub fn split_take(&self, amount: Usd, first: Bucket) -> (BucketDelta, Usd) {
        self.split_in(amount, Bucket::take_order(first))
    }

    fn split_in(&self, amount: Usd, order: [Bucket; 5]) -> (BucketDelta, Usd) {
        let mut left = amount;
        let mut delta = BucketDelta::default();
        for bucket in order {
            let take = left.min(self.get(bucket));
            *delta.slot(bucket) = SignedUsd::debit(take);
            left = left.saturating_sub(take);
        }
        (delta, left)
    }

    /// A plan's new period: unused base moves to rollover as far as `rollover_cap` leaves
    /// room, the rest of it expires, and base becomes `grant`. Never below `held`: base
    /// that would expire is kept while open holds need it.
    pub fn renewal(&self, grant: Usd, rollover_cap: Usd, held: Usd) -> Result<BucketDelta, MoneyError> {
        let moved = self.base.min(rollover_cap.saturating_sub(self.rollover));
        let expired = self.base.checked_sub(moved)?;
        let after = self
            .total()?
            .checked_sub(self.base)?
            .checked_add(grant)?
            .checked_add(moved)?;
        let kept = held.saturating_sub(after).min(expired);
        Ok(BucketDelta {
            base: self.base.delta_to(grant.checked_add(kept)?),
            rollover: SignedUsd::credit(moved),
            ..BucketDelta::default()
        })
    }

    pub fn apply(&self, delta: &BucketDelta) -> Result<Buckets, MoneyError> {
        let mut out = *self;
        for bucket in Bucket::DEBIT_ORDER {
            let slot = out.slot(bucket);
            *slot = delta.get(bucket).apply_to(*slot)?;
        }
        Ok(out)
    }
}

/// Signed change of each bucket made by one ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BucketDelta {
    pub base: SignedUsd,
    pub rollover: SignedUsd,
    pub purchased: SignedUsd,
    #[serde(default)]
    pub expiring: SignedUsd,
    #[serde(default)]
    pub earned: SignedUsd,
}

impl BucketDelta {
    pub fn get(&self, bucket: Bucket) -> SignedUsd {
        match bucket {
            Bucket::Expiring => self.expiring,
            Bucket::Base => self.base,
            Bucket::Rollover => self.rollover,
            Bucket::Purchased => self.purchased,
            Bucket::Earned => self.earned,
        }
    }

    fn slot(&mut self, bucket: Bucket) -> &mut SignedUsd {
        match bucket {
            Bucket::Expiring => &mut self.expiring,
            Bucket::Base => &mut self.base,
            Bucket::Rollover => &mut self.rollover,
            Bucket::Purchased => &mut self.purchased,
            Bucket::Earned => &mut self.earned,
        }
    }

    /// The change that undoes this one: what it took goes back where it came from.
    pub fn reversed(&self) -> BucketDelta {
        let flip = |d: SignedUsd| {
            if d.is_negative() {
                SignedUsd::credit(d.magnitude())
            } else {
                SignedUsd::debit(d.magnitude())
            }
        };
        BucketDelta {
            base: flip(self.base),
            rollover: flip(self.rollover),
            purchased: flip(self.purchased),
            expiring: flip(self.expiring),
            earned: flip(self.earned),
        }
    }

    /// Whether no bucket goes down.
    pub fn only_adds(&self) -> bool {
        Bucket::DEBIT_ORDER.iter().all(|b| !self.get(*b).is_negative())
    }

    pub fn credit(bucket: Bucket, amount: Usd) -> BucketDelta {
        let mut delta = BucketDelta::default();
        *delta.slot(bucket) = SignedUsd::credit(amount);
        delta
    }

    /// The change of the balance: the sum over the buckets.
    pub fn total(&self) -> Result<SignedUsd, MoneyError> {
        Bucket::DEBIT_ORDER
            .iter()
            .try_fold(SignedUsd::ZERO, |sum, b| sum.checked_add(self.get(*b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn micros(max: i64) -> impl Strategy<Value = Usd> {
        (0..=max).prop_map(|m| Usd::try_from_decimal(Decimal::new(m, 6)).unwrap())
    }

    fn bucket() -> impl Strategy<Value = Bucket> {
        prop_oneof![
            Just(Bucket::Expiring),
            Just(Bucket::Base),
            Just(Bucket::Rollover),
            Just(Bucket::Purchased),
            Just(Bucket::Earned)
        ]
    }

    #[test]
    fn a_take_back_starts_with_the_bucket_the_payment_filled() {
        assert_eq!(
            Bucket::take_order(Bucket::Purchased),
            [
                Bucket::Purchased,
                Bucket::Base,
                Bucket::Rollover,
                Bucket::Earned,
                Bucket::Expiring
            ]
        );
        assert_eq!(
            Bucket::take_order(Bucket::Base),
            [
                Bucket::Base,
                Bucket::Rollover,
                Bucket::Purchased,
                Bucket::Earned,
                Bucket::Expiring
            ]
        );
        let usd = |s: &str| Usd::parse(s).unwrap();
        let b = Buckets {
            base: usd("50"),
            rollover: usd("10"),
            purchased: usd("30"),
            ..Buckets::default()
        };
        let (delta, left) = b.split_take(usd("40"), Bucket::Purchased);
        assert_eq!(delta.purchased, SignedUsd::debit(usd("30")));
        assert_eq!(delta.base, SignedUsd::debit(usd("10")));
        assert!(delta.rollover.is_zero());
        assert!(left.is_zero());
        assert_eq!(b.apply(&delta).unwrap().apply(&delta.reversed()).unwrap(), b);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn split_creates_or_loses_nothing_and_respects_the_order(
            base in micros(50_000_000), rollover in micros(50_000_000), purchased in micros(50_000_000),
            expiring in micros(50_000_000), earned in micros(50_000_000),
            amount in micros(300_000_000),
        ) {
            let buckets = Buckets { base, rollover, purchased, expiring, earned };
            let total = buckets.total().unwrap();
            match buckets.split_debit(amount) {
                None => prop_assert!(amount > total),
                Some(delta) => {
                    prop_assert!(amount <= total);
                    // Exactly the amount leaves, no more, no less.
                    prop_assert_eq!(delta.total().unwrap(), SignedUsd::debit(amount));
                    let after = buckets.apply(&delta).unwrap();
                    prop_assert_eq!(after.total().unwrap().checked_add(amount).unwrap(), total);
                    // No bucket negative (apply would have refused) and none grows.
                    for b in Bucket::DEBIT_ORDER {
                        prop_assert!(after.get(b) <= buckets.get(b));
                    }
                    // A later bucket is touched only once every earlier one is empty.
                    for (i, b) in Bucket::DEBIT_ORDER.iter().enumerate() {
                        if !delta.get(*b).is_zero() {
                            for earlier in &Bucket::DEBIT_ORDER[..i] {
                                prop_assert!(after.get(*earlier).is_zero());
                            }
                        }
                    }
                }
            }
        }

        #[test]
        fn a_take_back_takes_what_is_there_first_bucket_first_and_reverses_exactly(
            base in micros(50_000_000), rollover in micros(50_000_000), purchased in micros(50_000_000),
            expiring in micros(50_000_000), earned in micros(50_000_000),
            amount in micros(300_000_000), first in bucket(),
        ) {
            let buckets = Buckets { base, rollover, purchased, expiring, earned };
            let total = buckets.total().unwrap();
            let (delta, left) = buckets.split_take(amount, first);
            let taken = delta.total().unwrap().magnitude();
            prop_assert_eq!(taken.checked_add(left).unwrap(), amount);
            prop_assert_eq!(taken, amount.min(total));
            let after = buckets.apply(&delta).unwrap();
            // Another bucket gives only once the first is empty.
            if taken > buckets.get(first) { prop_assert!(after.get(first).is_zero()); }
            prop_assert!(delta.reversed().only_adds());
            prop_assert_eq!(after.apply(&delta.reversed()).unwrap(), buckets);
        }
    }
}
