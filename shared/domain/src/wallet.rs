//! The wallet: three buckets, open holds, lifetime totals and the pause state.
//!
//! Balance = base + rollover + purchased. Available = balance − held, never below zero.
//! Debits draw base first, then rollover, then purchased (reference 003); a credit lands
//! in the bucket its source names. The wallet plans a change and the store commits it
//! under a condition on the version it was planned from, so what is planned here is what
//! the database holds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::OrgId;
use crate::ledger::{ChangeRequest, LedgerEntry, Movement};
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
        let mut left = amount;
        let mut delta = BucketDelta::default();
        for bucket in Bucket::DEBIT_ORDER {
            let take = left.min(self.get(bucket));
            *delta.slot(bucket) = SignedUsd::debit(take);
            left = left.saturating_sub(take);
        }
        left.is_zero().then_some(delta)
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

/// Why an org's agents may not run on credits right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    CreditsExhausted,
    MemberLimitReached,
    NoKeyConfigured,
    RechargeFailed,
    Disputed,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::CreditsExhausted => "credits_exhausted",
            PauseReason::MemberLimitReached => "member_limit_reached",
            PauseReason::NoKeyConfigured => "no_key_configured",
            PauseReason::RechargeFailed => "recharge_failed",
            PauseReason::Disputed => "disputed",
        }
    }

    pub fn parse(s: &str) -> Option<PauseReason> {
        [
            PauseReason::CreditsExhausted,
            PauseReason::MemberLimitReached,
            PauseReason::NoKeyConfigured,
            PauseReason::RechargeFailed,
            PauseReason::Disputed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum WalletState {
    Active,
    Paused(PauseReason),
}

/// One org's wallet as last committed. `version` counts committed changes: each change
/// writes exactly one ledger entry whose sequence number is the new version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub org: OrgId,
    pub buckets: Buckets,
    pub held: Usd,
    pub lifetime_added: Usd,
    pub lifetime_spent: Usd,
    pub state: WalletState,
    pub version: u64,
}

/// Why a change was not made. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("insufficient credits: {available} available")]
    InsufficientFunds { available: Usd },
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// A change the wallet agreed to: the wallet after it and its ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub before: Wallet,
    pub after: Wallet,
    pub entry: LedgerEntry,
}

impl Wallet {
    /// The wallet of an org that has never had a change: nothing in it, version 0.
    pub fn empty(org: OrgId) -> Wallet {
        Wallet {
            org,
            buckets: Buckets::default(),
            held: Usd::ZERO,
            lifetime_added: Usd::ZERO,
            lifetime_spent: Usd::ZERO,
            state: WalletState::Active,
            version: 0,
        }
    }

    pub fn balance(&self) -> Result<Usd, MoneyError> {
        self.buckets.total()
    }

    /// Balance less open holds, never below zero.
    pub fn available(&self) -> Result<Usd, MoneyError> {
        Ok(self.balance()?.saturating_sub(self.held))
    }

    /// Plans `req` against this wallet at `now`. Pure: the store commits the result only
    /// if the wallet is still at this version.
    pub fn plan(&self, req: &ChangeRequest, now: DateTime<Utc>) -> Result<Planned, Refusal> {
        let available = self.available()?;
        let (delta, added, spent) = match req.movement() {
            Movement::Debit(amount) => {
                let amount = amount.usd();
                if amount > available {
                    return Err(Refusal::InsufficientFunds { available });
                }
                let delta = self
                    .buckets
                    .split_debit(amount)
                    .ok_or(Refusal::InsufficientFunds { available })?;
                let spent = if req.kind().counts_as_spent() {
                    amount
                } else {
                    Usd::ZERO
                };
                (delta, Usd::ZERO, spent)
            }
            Movement::Credit { bucket, amount } => {
                (BucketDelta::credit(bucket, amount.usd()), amount.usd(), Usd::ZERO)
            }
        };
        let buckets = self.buckets.apply(&delta)?;
        let after_available = buckets.total()?.saturating_sub(self.held);
        let state = match (self.state, req.movement()) {
            (WalletState::Active, Movement::Debit(_)) if after_available.is_zero() => {
                WalletState::Paused(PauseReason::CreditsExhausted)
            }
            (WalletState::Paused(PauseReason::CreditsExhausted), Movement::Credit { .. })
                if !after_available.is_zero() =>
            {
                WalletState::Active
            }
            (state, _) => state,
        };
        let after = Wallet {
            org: self.org.clone(),
            buckets,
            held: self.held,
            lifetime_added: self.lifetime_added.checked_add(added)?,
            lifetime_spent: self.lifetime_spent.checked_add(spent)?,
            state,
            version: self.version + 1,
        };
        let entry = LedgerEntry {
            org: self.org.clone(),
            seq: after.version,
            kind: req.kind(),
            amount: delta.total()?,
            buckets: delta,
            held_change: SignedUsd::ZERO,
            balance_after: after.balance()?,
            available_after: after_available,
            attribution: req.attribution().clone(),
            idempotency_key: req.key().clone(),
            external: req.external().clone(),
            created_at: now,
        };
        Ok(Planned {
            before: self.clone(),
            after,
            entry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdempotencyKey;
    use crate::ledger::EntryKind;
    use crate::money::PositiveUsd;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn usd(s: &str) -> Usd {
        Usd::parse(s).unwrap()
    }

    fn wallet(base: &str, rollover: &str, purchased: &str) -> Wallet {
        let mut w = Wallet::empty(OrgId::parse("org_1").unwrap());
        w.buckets = Buckets {
            base: usd(base),
            rollover: usd(rollover),
            purchased: usd(purchased),
        };
        w.version = 7;
        w
    }

    fn debit(amount: &str) -> ChangeRequest {
        ChangeRequest::debit(
            OrgId::parse("org_1").unwrap(),
            EntryKind::Usage,
            PositiveUsd::parse(amount).unwrap(),
            IdempotencyKey::parse("usage:r1").unwrap(),
        )
        .unwrap()
    }

    fn credit(bucket: Bucket, amount: &str) -> ChangeRequest {
        let kind = if bucket == Bucket::Base {
            EntryKind::PlanGrant
        } else {
            EntryKind::Purchase
        };
        ChangeRequest::credit(
            OrgId::parse("org_1").unwrap(),
            kind,
            bucket,
            PositiveUsd::parse(amount).unwrap(),
            IdempotencyKey::parse("k").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn debit_draws_base_then_rollover_then_purchased() {
        let p = wallet("1.00", "2.00", "3.00")
            .plan(&debit("2.50"), Utc::now())
            .unwrap();
        assert_eq!(
            p.after.buckets,
            Buckets {
                base: usd("0"),
                rollover: usd("0.50"),
                purchased: usd("3.00")
            }
        );
        assert_eq!(p.entry.amount, SignedUsd::debit(usd("2.50")));
        assert_eq!(p.entry.balance_after, usd("3.50"));
        assert_eq!(p.entry.seq, 8);
        assert_eq!(p.after.lifetime_spent, usd("2.50"));
    }

    #[test]
    fn debit_beyond_available_is_refused_with_the_available_amount() {
        let mut w = wallet("0", "0", "5.00");
        w.held = usd("4.00");
        assert_eq!(
            w.plan(&debit("1.01"), Utc::now()),
            Err(Refusal::InsufficientFunds {
                available: usd("1.00")
            })
        );
        assert!(w.plan(&debit("1.00"), Utc::now()).is_ok());
    }

    #[test]
    fn reaching_zero_pauses_and_a_credit_resumes() {
        let p = wallet("0", "0", "0.07").plan(&debit("0.07"), Utc::now()).unwrap();
        assert_eq!(p.after.state, WalletState::Paused(PauseReason::CreditsExhausted));
        let p2 = p
            .after
            .plan(&credit(Bucket::Purchased, "100"), Utc::now())
            .unwrap();
        assert_eq!(p2.after.state, WalletState::Active);
        assert_eq!(p2.after.lifetime_added, usd("100"));
    }

    #[test]
    fn a_dispute_pause_survives_a_credit() {
        let mut w = wallet("0", "0", "0");
        w.state = WalletState::Paused(PauseReason::Disputed);
        let p = w.plan(&credit(Bucket::Purchased, "10"), Utc::now()).unwrap();
        assert_eq!(p.after.state, WalletState::Paused(PauseReason::Disputed));
    }

    #[test]
    fn credits_land_in_the_named_bucket() {
        let p = wallet("0", "0", "0")
            .plan(&credit(Bucket::Base, "5"), Utc::now())
            .unwrap();
        assert_eq!(p.after.buckets.base, usd("5"));
        assert_eq!(p.entry.buckets.base, SignedUsd::credit(usd("5")));
    }

    fn micros(max: i64) -> impl Strategy<Value = Usd> {
        (0..=max).prop_map(|m| Usd::try_from_decimal(Decimal::new(m, 6)).unwrap())
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
        fn a_planned_change_moves_the_balance_by_exactly_its_amount(
            purchased in micros(10_000_000), held in micros(10_000_000), amount in micros(10_000_000),
            is_debit in any::<bool>(),
        ) {
            prop_assume!(!amount.is_zero());
            let mut w = wallet("0", "0", "0");
            w.buckets.purchased = purchased;
            w.held = held.min(purchased);
            let req = if is_debit { debit(&amount.to_string()) } else { credit(Bucket::Purchased, &amount.to_string()) };
            match w.plan(&req, Utc::now()) {
                Err(Refusal::InsufficientFunds { available }) => {
                    prop_assert!(is_debit && amount > available);
                    prop_assert_eq!(available, w.available().unwrap());
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
                Ok(p) => {
                    let before = w.balance().unwrap();
                    prop_assert_eq!(p.entry.amount.apply_to(before).unwrap(), p.after.balance().unwrap());
                    prop_assert_eq!(p.entry.balance_after, p.after.balance().unwrap());
                    prop_assert!(p.after.balance().unwrap() >= p.after.held);
                    prop_assert_eq!(p.after.version, w.version + 1);
                }
            }
        }
    }
}
