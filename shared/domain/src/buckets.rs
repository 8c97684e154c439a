//! Where credits live: the three buckets of reference 003 and the signed change of each
//! bucket one ledger entry makes.
//!
//! Debits draw base, then rollover, then purchased (reference 003). A take-back (a refund,
//! a lost dispute) draws first the bucket the payment filled, then the others in debit
//! order: a refunded purchase takes purchased credits, a refunded plan invoice base.

use serde::{Deserialize, Serialize};

use crate::money::{MoneyError, SignedUsd, Usd};

/// Where credits live. The order of the variants is the order debits draw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// Included with the org's plan each month.
    Base,
    /// Unused base credits carried over, up to the plan's cap.
    Rollover,
    /// Bought (checkout, auto-recharge) or granted.
    Purchased,
}

impl Bucket {
    pub const DEBIT_ORDER: [Bucket; 3] = [Bucket::Base, Bucket::Rollover, Bucket::Purchased];

    /// `first`, then the others in debit order: the order a take-back draws.
    pub fn take_order(first: Bucket) -> [Bucket; 3] {
        let mut order = [first; 3];
        let mut i = 1;
        for b in Bucket::DEBIT_ORDER {
            if b != first {
                order[i] = b;
                i += 1;
            }
        }
        order
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Base => "base",
            Bucket::Rollover => "rollover",
            Bucket::Purchased => "purchased",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Buckets {
    pub base: Usd,
    pub rollover: Usd,
    pub purchased: Usd,
}

impl Buckets {
    pub fn get(&self, bucket: Bucket) -> Usd {
        match bucket {
            Bucket::Base => self.base,
            Bucket::Rollover => self.rollover,
            Bucket::Purchased => self.purchased,
        }
    }

    fn slot(&mut self, bucket: Bucket) -> &mut Usd {
        match bucket {
            Bucket::Base => &mut self.base,
            Bucket::Rollover => &mut self.rollover,
            Bucket::Purchased => &mut self.purchased,
        }
    }

    pub fn total(&self) -> Result<Usd, MoneyError> {
        self.base.checked_add(self.rollover)?.checked_add(self.purchased)
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

    fn split_in(&self, amount: Usd, order: [Bucket; 3]) -> (BucketDelta, Usd) {
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
        let after = grant
            .checked_add(self.rollover)?
            .checked_add(moved)?
            .checked_add(self.purchased)?;
        let kept = held.saturating_sub(after).min(expired);
        Ok(BucketDelta {
            base: self.base.delta_to(grant.checked_add(kept)?),
            rollover: SignedUsd::credit(moved),
            purchased: SignedUsd::ZERO,
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
}

impl BucketDelta {
    pub fn get(&self, bucket: Bucket) -> SignedUsd {
        match bucket {
            Bucket::Base => self.base,
            Bucket::Rollover => self.rollover,
            Bucket::Purchased => self.purchased,
        }
    }

    fn slot(&mut self, bucket: Bucket) -> &mut SignedUsd {
        match bucket {
            Bucket::Base => &mut self.base,
            Bucket::Rollover => &mut self.rollover,
            Bucket::Purchased => &mut self.purchased,
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
        self.base.checked_add(self.rollover)?.checked_add(self.purchased)
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
            Just(Bucket::Base),
            Just(Bucket::Rollover),
            Just(Bucket::Purchased)
        ]
    }

    #[test]
    fn a_take_back_starts_with_the_bucket_the_payment_filled() {
        assert_eq!(
            Bucket::take_order(Bucket::Purchased),
            [Bucket::Purchased, Bucket::Base, Bucket::Rollover]
        );
        assert_eq!(Bucket::take_order(Bucket::Base), Bucket::DEBIT_ORDER);
        let usd = |s: &str| Usd::parse(s).unwrap();
        let b = Buckets {
            base: usd("50"),
            rollover: usd("10"),
            purchased: usd("30"),
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
            amount in micros(200_000_000),
        ) {
            let buckets = Buckets { base, rollover, purchased };
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
                    if !delta.rollover.is_zero() { prop_assert!(after.base.is_zero()); }
                    if !delta.purchased.is_zero() { prop_assert!(after.base.is_zero() && after.rollover.is_zero()); }
                }
            }
        }

        #[test]
        fn a_take_back_takes_what_is_there_first_bucket_first_and_reverses_exactly(
            base in micros(50_000_000), rollover in micros(50_000_000), purchased in micros(50_000_000),
            amount in micros(200_000_000), first in bucket(),
        ) {
            let buckets = Buckets { base, rollover, purchased };
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
