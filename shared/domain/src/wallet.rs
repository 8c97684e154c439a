//! The wallet: three buckets, open holds, lifetime totals and the pause state.
//!
//! Balance = base + rollover + purchased. Available = balance − held, never below zero.
//! Debits draw base first, then rollover, then purchased (reference 003); a credit lands
//! in the bucket its source names. The wallet plans a change and the store commits it
//! under a condition on the version it was planned from, so what is planned here is what
//! the database holds.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::OrgId;
use crate::ledger::{ChangeRequest, LedgerEntry, Movement};
use crate::money::{MoneyError, SignedUsd, Usd};
use crate::settings::WalletSettings;

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
    /// The disputes that paused the org and have not closed (their Stripe ids): a
    /// `disputed` pause is lifted only when the last of them closes.
    pub open_disputes: BTreeSet<String>,
    pub version: u64,
    pub settings: WalletSettings,
}

/// Why a change was not made. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("insufficient credits: {available} available")]
    InsufficientFunds { available: Usd },
    #[error("no such hold")]
    HoldNotFound,
    #[error("the hold is already closed")]
    HoldClosed,
    /// Paused for a reason a credit does not lift (dispute, failed recharge): nothing may
    /// be reserved or spent ahead; calls already made are still charged.
    #[error("the org is paused: {}", .0.as_str())]
    Paused(PauseReason),
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// A hold as the store found it, for a change that names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldState {
    pub amount: Usd,
    pub open: bool,
}

/// What the plan needs besides the wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanContext {
    pub now: DateTime<Utc>,
    /// The request's hold, if it names one and the store found it.
    pub hold: Option<HoldState>,
}

impl PlanContext {
    pub fn at(now: DateTime<Utc>) -> PlanContext {
        PlanContext { now, hold: None }
    }
}

/// The durable notifications of reference 002, each emitted once per occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    CreditBalanceLow,
    CreditBalanceDepleted,
    CreditAutoRechargeTriggered,
    CreditPurchaseFailed,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::CreditBalanceLow => "credit_balance_low",
            NotificationKind::CreditBalanceDepleted => "credit_balance_depleted",
            NotificationKind::CreditAutoRechargeTriggered => "credit_auto_recharge_triggered",
            NotificationKind::CreditPurchaseFailed => "credit_purchase_failed",
        }
    }
}

/// A change the wallet agreed to: the wallet after it, its ledger entry, and what it
/// sets off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub before: Wallet,
    pub after: Wallet,
    pub entry: LedgerEntry,
    /// Emitted in the same transaction as the change, so exactly once per crossing.
    pub notifications: Vec<NotificationKind>,
    /// Available fell below the auto-recharge threshold (or to zero) with auto-recharge
    /// on: the org is due for a recharge.
    pub recharge_due: bool,
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
            open_disputes: BTreeSet::new(),
            version: 0,
            settings: WalletSettings::default(),
        }
    }

    pub fn balance(&self) -> Result<Usd, MoneyError> {
        self.buckets.total()
    }

    /// Balance less open holds, never below zero.
    pub fn available(&self) -> Result<Usd, MoneyError> {
        Ok(self.balance()?.saturating_sub(self.held))
    }

    /// At or below the low-balance threshold: the dashboard's Low Balance badge.
    pub fn is_low(&self) -> Result<bool, MoneyError> {
        Ok(self.available()? <= self.settings.low_threshold())
    }

    /// Plans `req` against this wallet. Pure: the store commits the result only if the
    /// wallet is still at this version.
    pub fn plan(&self, req: &ChangeRequest, ctx: &PlanContext) -> Result<Planned, Refusal> {
        let available = self.available()?;
        let balance = self.balance()?;
        let mut held = self.held;
        let mut shortfall = Usd::ZERO;
        // Takes up to `amount` from what is available once `held` is settled.
        let mut take_up_to = |amount: Usd, held: Usd| -> Result<BucketDelta, Refusal> {
            let take = amount.min(balance.saturating_sub(held));
            shortfall = amount.saturating_sub(take);
            self.buckets
                .split_debit(take)
                .ok_or(Refusal::InsufficientFunds { available })
        };
        if let (WalletState::Paused(reason), Movement::Debit(_) | Movement::Hold { .. }) =
            (self.state, req.movement())
            && reason != PauseReason::CreditsExhausted
        {
            return Err(Refusal::Paused(reason));
        }
        let delta = match req.movement() {
            Movement::Debit(amount) => {
                if amount.usd() > available {
                    return Err(Refusal::InsufficientFunds { available });
                }
                take_up_to(amount.usd(), held)?
            }
            Movement::DebitUpTo(amount) => take_up_to(amount.usd(), held)?,
            Movement::Credit { bucket, amount } => BucketDelta::credit(bucket, amount.usd()),
            Movement::Hold { amount, .. } => {
                if amount.usd() > available {
                    return Err(Refusal::InsufficientFunds { available });
                }
                held = held.checked_add(amount.usd())?;
                BucketDelta::default()
            }
            Movement::Capture { actual } => match ctx.hold {
                None => return Err(Refusal::HoldNotFound),
                // The hold expired or was released first: the call still happened, so
                // charge it like any call already made.
                Some(HoldState { open: false, .. }) => take_up_to(actual, held)?,
                Some(HoldState { amount, open: true }) => {
                    held = held.checked_sub(amount)?;
                    take_up_to(actual, held)?
                }
            },
            Movement::Release => match ctx.hold {
                None => return Err(Refusal::HoldNotFound),
                Some(HoldState { open: false, .. }) => return Err(Refusal::HoldClosed),
                Some(HoldState { amount, open: true }) => {
                    held = held.checked_sub(amount)?;
                    BucketDelta::default()
                }
            },
            Movement::Pause(_) | Movement::Lift(_) => BucketDelta::default(),
            Movement::Renew { grant, rollover_cap } => self.buckets.renewal(grant, rollover_cap, held)?,
        };
        let amount = delta.total()?;
        let buckets = self.buckets.apply(&delta)?;
        let after_balance = buckets.total()?;
        let after_available = after_balance.saturating_sub(held);
        let (added, spent) = match (amount.is_negative(), req.kind().counts_as_spent()) {
            (false, _) => (amount.magnitude(), Usd::ZERO),
            (true, true) => (Usd::ZERO, amount.magnitude()),
            (true, false) => (Usd::ZERO, Usd::ZERO),
        };
        // Pauses, notifications and the recharge mark follow the balance, not holds: a
        // hold that reserves everything is answered by may-I-run, and its capture or
        // release must not pause, notify or mark anything twice.
        let moved_out = amount.is_negative() || !shortfall.is_zero();
        let ran_dry = moved_out && after_balance.saturating_sub(held).is_zero();
        // Disputes pause by id: one that closes lifts the pause only if no other is open.
        let mut open_disputes = self.open_disputes.clone();
        let dispute = req.external().dispute.as_deref();
        match (req.movement(), dispute) {
            (Movement::Pause(PauseReason::Disputed), Some(id)) => {
                open_disputes.insert(id.to_owned());
            }
            (Movement::Lift(PauseReason::Disputed), Some(id)) => {
                open_disputes.remove(id);
            }
            _ => {}
        }
        let state = match (req.movement(), self.state) {
            (Movement::Pause(reason), _) => WalletState::Paused(reason),
            (Movement::Lift(PauseReason::Disputed), WalletState::Paused(PauseReason::Disputed))
                if !open_disputes.is_empty() =>
            {
                WalletState::Paused(PauseReason::Disputed)
            }
            (Movement::Lift(reason), WalletState::Paused(paused)) if paused == reason => {
                if after_available.is_zero() {
                    WalletState::Paused(PauseReason::CreditsExhausted)
                } else {
                    WalletState::Active
                }
            }
            (_, WalletState::Active) if ran_dry => WalletState::Paused(PauseReason::CreditsExhausted),
            (_, WalletState::Paused(PauseReason::CreditsExhausted)) if !after_available.is_zero() => {
                WalletState::Active
            }
            (_, state) => state,
        };
        let mut notifications = vec![];
        let threshold = self.settings.low_threshold();
        let crossed_low = balance >= threshold && after_balance < threshold;
        if crossed_low {
            notifications.push(NotificationKind::CreditBalanceLow);
        }
        let depleted =
            ran_dry && state != self.state && state == WalletState::Paused(PauseReason::CreditsExhausted);
        if depleted {
            notifications.push(NotificationKind::CreditBalanceDepleted);
        }
        notifications.extend(req.notification());
        let after = Wallet {
            org: self.org.clone(),
            buckets,
            held,
            lifetime_added: self.lifetime_added.checked_add(added)?,
            lifetime_spent: self.lifetime_spent.checked_add(spent)?,
            state,
            open_disputes,
            version: self.version + 1,
            settings: self.settings,
        };
        let entry = LedgerEntry {
            org: self.org.clone(),
            seq: after.version,
            kind: req.kind(),
            amount,
            buckets: delta,
            held_change: self.held.delta_to(held),
            shortfall,
            hold: req.hold_id().cloned(),
            balance_after: after_balance,
            available_after: after_available,
            attribution: req.attribution().clone(),
            idempotency_key: req.key().clone(),
            external: req.external().clone(),
            created_at: ctx.now,
        };
        Ok(Planned {
            before: self.clone(),
            after,
            entry,
            notifications,
            recharge_due: self.settings.recharge.enabled
                && (crossed_low || depleted)
                && !req.ends_recharge_due(),
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
            .plan(&debit("2.50"), &PlanContext::at(Utc::now()))
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
            w.plan(&debit("1.01"), &PlanContext::at(Utc::now())),
            Err(Refusal::InsufficientFunds {
                available: usd("1.00")
            })
        );
        assert!(w.plan(&debit("1.00"), &PlanContext::at(Utc::now())).is_ok());
    }

    #[test]
    fn reaching_zero_pauses_and_a_credit_resumes() {
        let p = wallet("0", "0", "0.07")
            .plan(&debit("0.07"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(p.after.state, WalletState::Paused(PauseReason::CreditsExhausted));
        let p2 = p
            .after
            .plan(&credit(Bucket::Purchased, "100"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(p2.after.state, WalletState::Active);
        assert_eq!(p2.after.lifetime_added, usd("100"));
    }

    #[test]
    fn a_dispute_pause_survives_a_credit() {
        let mut w = wallet("0", "0", "0");
        w.state = WalletState::Paused(PauseReason::Disputed);
        let p = w
            .plan(&credit(Bucket::Purchased, "10"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(p.after.state, WalletState::Paused(PauseReason::Disputed));
    }

    #[test]
    fn credits_land_in_the_named_bucket() {
        let p = wallet("0", "0", "0")
            .plan(&credit(Bucket::Base, "5"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(p.after.buckets.base, usd("5"));
        assert_eq!(p.entry.buckets.base, SignedUsd::credit(usd("5")));
    }

    fn hold_ctx(amount: &str, open: bool) -> PlanContext {
        PlanContext {
            now: Utc::now(),
            hold: Some(HoldState {
                amount: usd(amount),
                open,
            }),
        }
    }

    fn hold_id() -> crate::ids::HoldId {
        crate::ids::HoldId::parse("h1").unwrap()
    }

    #[test]
    fn a_post_call_debit_takes_what_is_there_and_records_the_shortfall() {
        let req = ChangeRequest::usage(
            OrgId::parse("org_1").unwrap(),
            PositiveUsd::parse("0.50").unwrap(),
            IdempotencyKey::parse("u").unwrap(),
        );
        let p = wallet("0", "0", "0.30")
            .plan(&req, &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(p.entry.amount, SignedUsd::debit(usd("0.30")));
        assert_eq!(p.entry.shortfall, usd("0.20"));
        assert_eq!(p.after.balance().unwrap(), Usd::ZERO);
        assert_eq!(p.after.state, WalletState::Paused(PauseReason::CreditsExhausted));
        assert!(p.notifications.contains(&NotificationKind::CreditBalanceDepleted));
    }

    #[test]
    fn a_hold_reserves_and_a_smaller_capture_releases_the_rest() {
        let org = OrgId::parse("org_1").unwrap();
        let w = wallet("0", "0", "5.00");
        let hold = ChangeRequest::hold(
            org.clone(),
            hold_id(),
            PositiveUsd::parse("2.00").unwrap(),
            Utc::now(),
            IdempotencyKey::parse("hold:h1").unwrap(),
        );
        let p = w.plan(&hold, &PlanContext::at(Utc::now())).unwrap();
        assert_eq!(p.after.held, usd("2.00"));
        assert_eq!(p.after.available().unwrap(), usd("3.00"));
        assert!(p.entry.amount.is_zero());
        assert_eq!(p.entry.held_change, SignedUsd::credit(usd("2.00")));

        let capture = ChangeRequest::capture(
            org,
            hold_id(),
            usd("1.25"),
            IdempotencyKey::parse("capture:h1").unwrap(),
        );
        let c = p.after.plan(&capture, &hold_ctx("2.00", true)).unwrap();
        assert_eq!(c.after.held, Usd::ZERO);
        assert_eq!(c.after.balance().unwrap(), usd("3.75"));
        assert_eq!(c.entry.held_change, SignedUsd::debit(usd("2.00")));
        assert!(c.entry.shortfall.is_zero());
    }

    #[test]
    fn a_capture_beyond_the_hold_takes_only_what_is_available() {
        let org = OrgId::parse("org_1").unwrap();
        let mut w = wallet("0", "0", "3.00");
        w.held = usd("2.00");
        let capture =
            ChangeRequest::capture(org, hold_id(), usd("4.00"), IdempotencyKey::parse("c").unwrap());
        let c = w.plan(&capture, &hold_ctx("2.00", true)).unwrap();
        assert_eq!(c.entry.amount, SignedUsd::debit(usd("3.00")));
        assert_eq!(c.entry.shortfall, usd("1.00"));
        assert_eq!(c.after.balance().unwrap(), Usd::ZERO);
        assert_eq!(c.after.held, Usd::ZERO);
    }

    #[test]
    fn a_hold_beyond_available_is_refused_and_releasing_a_closed_hold_too() {
        let org = OrgId::parse("org_1").unwrap();
        let w = wallet("0", "0", "1.00");
        let hold = ChangeRequest::hold(
            org.clone(),
            hold_id(),
            PositiveUsd::parse("1.01").unwrap(),
            Utc::now(),
            IdempotencyKey::parse("h").unwrap(),
        );
        assert_eq!(
            w.plan(&hold, &PlanContext::at(Utc::now())),
            Err(Refusal::InsufficientFunds {
                available: usd("1.00")
            })
        );
        let release = ChangeRequest::release(org, hold_id(), IdempotencyKey::parse("r").unwrap());
        assert_eq!(w.plan(&release, &hold_ctx("1", false)), Err(Refusal::HoldClosed));
        assert_eq!(
            w.plan(&release, &PlanContext::at(Utc::now())),
            Err(Refusal::HoldNotFound)
        );
    }

    #[test]
    fn falling_below_the_threshold_notifies_once_and_marks_recharge_due() {
        let mut w = wallet("0", "0", "20.05");
        w.settings.recharge = crate::settings::RechargeTrigger {
            enabled: true,
            threshold: usd("20"),
        };
        let first = w.plan(&debit("0.07"), &PlanContext::at(Utc::now())).unwrap();
        assert_eq!(first.notifications, vec![NotificationKind::CreditBalanceLow]);
        assert!(first.recharge_due);
        let second = first
            .after
            .plan(&debit("0.07"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert!(second.notifications.is_empty(), "once per crossing");
        assert!(!second.recharge_due);
    }

    #[test]
    fn a_new_plan_period_rolls_unused_base_over_up_to_the_cap() {
        let renew = |grant: &str, cap: &str| {
            ChangeRequest::renew_plan(
                OrgId::parse("org_1").unwrap(),
                usd(grant),
                usd(cap),
                IdempotencyKey::parse("stripe:invoice:in_1").unwrap(),
            )
        };
        // $30 of base unused, $80 already rolled over, cap $100: $20 rolls, $10 expires.
        let p = wallet("30", "80", "5")
            .plan(&renew("50", "100"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(
            p.after.buckets,
            Buckets {
                base: usd("50"),
                rollover: usd("100"),
                purchased: usd("5")
            }
        );
        assert_eq!(p.entry.amount, SignedUsd::credit(usd("40")));
        assert_eq!(p.entry.kind, EntryKind::PlanGrant);
        // Base never expires below what open holds need.
        let mut w = wallet("30", "100", "0");
        w.held = usd("140");
        let p = w.plan(&renew("20", "100"), &PlanContext::at(Utc::now())).unwrap();
        assert_eq!(p.after.balance().unwrap(), usd("140"));
        assert_eq!(p.after.buckets.base, usd("40"));
    }

    #[test]
    fn a_disputed_org_resumes_only_when_its_last_open_dispute_closes() {
        let org = OrgId::parse("org_1").unwrap();
        let step = |w: &Wallet, pause: bool, dispute: &str, k: &str| -> Wallet {
            let key = IdempotencyKey::parse(k).unwrap();
            let req = if pause {
                ChangeRequest::pause(org.clone(), EntryKind::Dispute, PauseReason::Disputed, key)
            } else {
                ChangeRequest::lift(org.clone(), EntryKind::Dispute, PauseReason::Disputed, key)
            }
            .with_external(crate::ledger::ExternalRefs {
                dispute: Some(dispute.to_owned()),
                ..Default::default()
            });
            w.plan(&req, &PlanContext::at(Utc::now())).unwrap().after
        };
        let disputed = WalletState::Paused(PauseReason::Disputed);
        let w = wallet("0", "0", "10");
        let w = step(&w, true, "dp_a", "a");
        let w = step(&w, true, "dp_b", "b");
        assert_eq!(w.open_disputes.len(), 2);
        // One closes: the other still holds the pause.
        let w = step(&w, false, "dp_a", "a:closed");
        assert_eq!(w.state, disputed, "dp_b is still open");
        // A dispute closing that never paused (its opening came late) lifts nothing.
        let w = step(&w, false, "dp_c", "c:closed");
        assert_eq!(w.state, disputed);
        let w = step(&w, false, "dp_b", "b:closed");
        assert_eq!(w.state, WalletState::Active);
        assert!(w.open_disputes.is_empty());
    }

    #[test]
    fn a_dispute_pause_holds_until_lifted_and_lifting_at_zero_leaves_it_exhausted() {
        let org = OrgId::parse("org_1").unwrap();
        let key = |k: &str| IdempotencyKey::parse(k).unwrap();
        let w = wallet("0", "0", "10");
        let paused = w
            .plan(
                &ChangeRequest::pause(org.clone(), EntryKind::Dispute, PauseReason::Disputed, key("p")),
                &PlanContext::at(Utc::now()),
            )
            .unwrap();
        assert_eq!(paused.after.state, WalletState::Paused(PauseReason::Disputed));
        assert!(paused.entry.amount.is_zero());
        assert_eq!(
            paused.after.plan(&debit("1"), &PlanContext::at(Utc::now())),
            Err(Refusal::Paused(PauseReason::Disputed))
        );
        // Lifting another reason changes nothing; lifting this one resumes.
        let other = paused
            .after
            .plan(
                &ChangeRequest::lift(
                    org.clone(),
                    EntryKind::Adjustment,
                    PauseReason::RechargeFailed,
                    key("l0"),
                ),
                &PlanContext::at(Utc::now()),
            )
            .unwrap();
        assert_eq!(other.after.state, WalletState::Paused(PauseReason::Disputed));
        let lifted = paused
            .after
            .plan(
                &ChangeRequest::lift(org.clone(), EntryKind::Dispute, PauseReason::Disputed, key("l")),
                &PlanContext::at(Utc::now()),
            )
            .unwrap();
        assert_eq!(lifted.after.state, WalletState::Active);
        let mut empty = wallet("0", "0", "0");
        empty.state = WalletState::Paused(PauseReason::Disputed);
        let lifted = empty
            .plan(
                &ChangeRequest::lift(org, EntryKind::Dispute, PauseReason::Disputed, key("l")),
                &PlanContext::at(Utc::now()),
            )
            .unwrap();
        assert_eq!(
            lifted.after.state,
            WalletState::Paused(PauseReason::CreditsExhausted)
        );
        assert!(lifted.notifications.is_empty());
    }

    #[test]
    fn a_refund_takes_back_what_is_there_and_records_the_rest() {
        let req = ChangeRequest::take_back(
            OrgId::parse("org_1").unwrap(),
            EntryKind::Refund,
            PositiveUsd::parse("100").unwrap(),
            IdempotencyKey::parse("stripe:refund:re_1").unwrap(),
        )
        .unwrap();
        let p = wallet("0", "0", "60")
            .plan(&req, &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(p.entry.amount, SignedUsd::debit(usd("60")));
        assert_eq!(p.entry.shortfall, usd("40"));
        assert_eq!(p.after.lifetime_spent, Usd::ZERO, "a refund is not spending");
        assert!(
            ChangeRequest::take_back(
                OrgId::parse("org_1").unwrap(),
                EntryKind::Usage,
                PositiveUsd::parse("1").unwrap(),
                IdempotencyKey::parse("k").unwrap(),
            )
            .is_err()
        );
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
            match w.plan(&req, &PlanContext::at(Utc::now())) {
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
