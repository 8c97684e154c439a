//! Change requests: what one change of one wallet asks for, made once under its key.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::buckets::{Bucket, BucketDelta};
use crate::ids::{HoldId, IdempotencyKey, OrgId};
use crate::ledger::{Attribution, Direction, EntryKind, ExternalRefs};
use crate::money::{PositiveUsd, Usd};
use crate::state::{NotificationKind, PauseReason};

/// What a change does to the buckets and holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    /// Take the amount from the buckets in debit order, all or nothing.
    Debit(PositiveUsd),
    /// A call already made: take what is available up to the amount and record the rest
    /// as the entry's shortfall. Never below zero.
    DebitUpTo(PositiveUsd),
    /// Add the amount to one bucket (never the expiring one: see `CreditUntil`).
    Credit { bucket: Bucket, amount: PositiveUsd },
    /// Add the amount as a lot of expiring credits that expires at `expires_at`.
    CreditUntil {
        amount: PositiveUsd,
        expires_at: DateTime<Utc>,
    },
    /// Expire what the lots that reached their date have left, never what open holds
    /// reserve (see [`crate::lots`]).
    Expire,
    /// Earned credits leave for a payout: all or nothing, only from the earned bucket and
    /// only what holds do not reserve.
    Withdraw(PositiveUsd),
    /// Give back exactly what an earlier entry took, into the buckets it took it from (a
    /// refund that failed at the bank).
    Restore(BucketDelta),
    /// Money that went back to the card (a refund, a lost dispute): taken from the
    /// balance, held credits included, `first` bucket first (the one the payment filled).
    /// What is not there is recorded as shortfall; never below zero. Holds shrink to what
    /// is left.
    TakeBack { amount: PositiveUsd, first: Bucket },
    /// Reserve an estimate before a call, all or nothing; it expires at `expires_at`.
    Hold {
        amount: PositiveUsd,
        expires_at: DateTime<Utc>,
    },
    /// Close the request's hold with the actual cost: the hold is released and the actual
    /// taken up to what is then available, the rest recorded as shortfall.
    Capture { actual: Usd },
    /// Close the request's hold without a charge (cancelled, or expired).
    Release,
    /// Stop the org's agents for `reason` (e.g. a dispute): no money moves.
    Pause(PauseReason),
    /// Lift a pause for `reason`; any other pause stands. No money moves.
    Lift(PauseReason),
    /// Nothing moves: the ledger records that something happened (a refund that failed
    /// before it was taken), and the key says it did.
    Note,
    /// A plan's new period: unused base moves to rollover while rollover stays within
    /// `rollover_cap`, the rest of it expires, and base becomes `grant`.
    Renew { grant: Usd, rollover_cap: Usd },
}

impl fmt::Display for Movement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Movement::Debit(a) => write!(f, "debit:{a}"),
            Movement::DebitUpTo(a) => write!(f, "debit_up_to:{a}"),
            Movement::Credit { bucket, amount } => write!(f, "credit:{}:{amount}", bucket.as_str()),
            Movement::Restore(d) => {
                write!(
                    f,
                    "restore:{}:{}:{}",
                    d.base.magnitude(),
                    d.rollover.magnitude(),
                    d.purchased.magnitude()
                )?;
                // Written only when there is something, so the keys of restores made
                // before these buckets existed still promise what they promised.
                if !(d.expiring.is_zero() && d.earned.is_zero()) {
                    write!(f, ":{}:{}", d.expiring.magnitude(), d.earned.magnitude())?;
                }
                Ok(())
            }
            Movement::CreditUntil { amount, expires_at } => {
                write!(f, "credit_until:{amount}:{}", expires_at.timestamp_millis())
            }
            Movement::Expire => write!(f, "expire"),
            Movement::Withdraw(a) => write!(f, "withdraw:{a}"),
            Movement::TakeBack { amount, first } => write!(f, "take_back:{}:{amount}", first.as_str()),
            Movement::Hold { amount, .. } => write!(f, "hold:{amount}"),
            Movement::Capture { actual } => write!(f, "capture:{actual}"),
            Movement::Release => write!(f, "release"),
            Movement::Pause(reason) => write!(f, "pause:{}", reason.as_str()),
            Movement::Lift(reason) => write!(f, "lift:{}", reason.as_str()),
            Movement::Note => write!(f, "note"),
            Movement::Renew { grant, rollover_cap } => write!(f, "renew:{grant}:{rollover_cap}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an entry of kind {kind} cannot {action}")]
pub struct KindMismatch {
    pub kind: EntryKind,
    pub action: &'static str,
}

/// A request to change one wallet, once. Built only through its constructors, which
/// refuse a kind that cannot move money that way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRequest {
    org: OrgId,
    kind: EntryKind,
    movement: Movement,
    key: IdempotencyKey,
    attribution: Attribution,
    external: ExternalRefs,
    hold: Option<HoldId>,
    note: Option<String>,
    payout: Option<crate::withdrawals::PayoutStep>,
    fingerprint: Option<String>,
    notify: Option<NotificationKind>,
    ends_recharge_due: bool,
    unless: Option<IdempotencyKey>,
}

impl ChangeRequest {
    pub fn debit(
        org: OrgId,
        kind: EntryKind,
        amount: PositiveUsd,
        key: IdempotencyKey,
    ) -> Result<ChangeRequest, KindMismatch> {
        if !matches!(kind.direction(), Direction::Out | Direction::Either) {
            return Err(KindMismatch {
                kind,
                action: "take credits out",
            });
        }
        Ok(ChangeRequest::new(org, kind, Movement::Debit(amount), key))
    }

    pub fn credit(
        org: OrgId,
        kind: EntryKind,
        bucket: Bucket,
        amount: PositiveUsd,
        key: IdempotencyKey,
    ) -> Result<ChangeRequest, KindMismatch> {
        if bucket == Bucket::Expiring {
            return Err(KindMismatch {
                kind,
                action: "add expiring credits without a date",
            });
        }
        if !matches!(kind.direction(), Direction::In | Direction::Either) {
            return Err(KindMismatch {
                kind,
                action: "add credits",
            });
        }
        Ok(ChangeRequest::new(
            org,
            kind,
            Movement::Credit { bucket, amount },
            key,
        ))
    }

    /// Takes back up to `amount` (a refund, a lost dispute) from the balance, held
    /// credits included, `first` bucket first: see [`Movement::TakeBack`].
    pub fn take_back(
        org: OrgId,
        kind: EntryKind,
        amount: PositiveUsd,
        first: Bucket,
        key: IdempotencyKey,
    ) -> Result<ChangeRequest, KindMismatch> {
        if kind.direction() != Direction::Out || kind.counts_as_spent() {
            return Err(KindMismatch {
                kind,
                action: "take credits back",
            });
        }
        Ok(ChangeRequest::new(
            org,
            kind,
            Movement::TakeBack { amount, first },
            key,
        ))
    }

    /// Gives back what an entry took (`taken`, that entry's bucket change), into the same
    /// buckets: an `adjustment`. `None` when the entry took nothing.
    pub fn restore(org: OrgId, taken: &BucketDelta, key: IdempotencyKey) -> Option<ChangeRequest> {
        let back = taken.reversed();
        let nothing = back.total().map_or(true, |t| t.is_zero());
        (back.only_adds() && !nothing)
            .then(|| ChangeRequest::new(org, EntryKind::Adjustment, Movement::Restore(back), key))
    }

    /// A grant of `kind` (see [`crate::grants`]): earned credits to the earned bucket,
    /// dated ones as a lot that expires, the rest beside purchased credits.
    pub fn grant(
        org: OrgId,
        kind: crate::grants::GrantKind,
        amount: PositiveUsd,
        expires_at: Option<DateTime<Utc>>,
        key: IdempotencyKey,
    ) -> Result<ChangeRequest, crate::grants::GrantRefused> {
        let movement = match (expires_at, kind.earned()) {
            (Some(_), true) => return Err(crate::grants::GrantRefused::EarnedCreditsDoNotExpire),
            (Some(expires_at), false) => Movement::CreditUntil { amount, expires_at },
            (None, _) => Movement::Credit {
                bucket: kind.bucket(),
                amount,
            },
        };
        Ok(ChangeRequest::new(org, kind.entry_kind(), movement, key))
    }

    /// Expires what dated grants have left past their date (see [`Movement::Expire`]).
    pub fn expire(org: OrgId, key: IdempotencyKey) -> ChangeRequest {
        ChangeRequest::new(org, EntryKind::Expired, Movement::Expire, key)
    }

    /// Earned credits leave the wallet for a payout (see [`Movement::Withdraw`]).
    pub fn withdraw(org: OrgId, amount: PositiveUsd, key: IdempotencyKey) -> ChangeRequest {
        ChangeRequest::new(org, EntryKind::Withdrawal, Movement::Withdraw(amount), key)
    }

    /// A failed payout's credits come back to the earned bucket.
    pub fn withdrawal_returned(org: OrgId, amount: PositiveUsd, key: IdempotencyKey) -> ChangeRequest {
        ChangeRequest::new(
            org,
            EntryKind::WithdrawalReturned,
            Movement::Credit {
                bucket: Bucket::Earned,
                amount,
            },
            key,
        )
    }

    /// Records under `key` that something happened, moving nothing.
    pub fn note(org: OrgId, kind: EntryKind, key: IdempotencyKey) -> ChangeRequest {
        ChangeRequest::new(org, kind, Movement::Note, key)
    }

    /// Pauses the org for `reason`, recorded as an entry of `kind` that moves no money.
    pub fn pause(org: OrgId, kind: EntryKind, reason: PauseReason, key: IdempotencyKey) -> ChangeRequest {
        ChangeRequest::new(org, kind, Movement::Pause(reason), key)
    }

    /// Lifts a pause for `reason`, recorded as an entry of `kind` that moves no money.
    pub fn lift(org: OrgId, kind: EntryKind, reason: PauseReason, key: IdempotencyKey) -> ChangeRequest {
        ChangeRequest::new(org, kind, Movement::Lift(reason), key)
    }

    /// A plan period's base grant (see [`Movement::Renew`]).
    pub fn renew_plan(org: OrgId, grant: Usd, rollover_cap: Usd, key: IdempotencyKey) -> ChangeRequest {
        ChangeRequest::new(
            org,
            EntryKind::PlanGrant,
            Movement::Renew { grant, rollover_cap },
            key,
        )
    }

    /// Usage of a call already made: charged up to what is available (see
    /// [`Movement::DebitUpTo`]).
    pub fn usage(org: OrgId, amount: PositiveUsd, key: IdempotencyKey) -> ChangeRequest {
        ChangeRequest::new(org, EntryKind::Usage, Movement::DebitUpTo(amount), key)
    }

    pub fn hold(
        org: OrgId,
        hold: HoldId,
        amount: PositiveUsd,
        expires_at: DateTime<Utc>,
        key: IdempotencyKey,
    ) -> ChangeRequest {
        let mut req = ChangeRequest::new(org, EntryKind::Hold, Movement::Hold { amount, expires_at }, key);
        req.hold = Some(hold);
        req
    }

    pub fn capture(org: OrgId, hold: HoldId, actual: Usd, key: IdempotencyKey) -> ChangeRequest {
        let mut req = ChangeRequest::new(org, EntryKind::Capture, Movement::Capture { actual }, key);
        req.hold = Some(hold);
        req
    }

    pub fn release(org: OrgId, hold: HoldId, key: IdempotencyKey) -> ChangeRequest {
        let mut req = ChangeRequest::new(org, EntryKind::Release, Movement::Release, key);
        req.hold = Some(hold);
        req
    }

    fn new(org: OrgId, kind: EntryKind, movement: Movement, key: IdempotencyKey) -> ChangeRequest {
        ChangeRequest {
            org,
            kind,
            movement,
            key,
            attribution: Attribution::default(),
            external: ExternalRefs::default(),
            hold: None,
            note: None,
            payout: None,
            fingerprint: None,
            notify: None,
            ends_recharge_due: false,
            unless: None,
        }
    }

    /// Emits `kind` with the change, in the same write: once per change.
    pub fn notifying(mut self, kind: NotificationKind) -> ChangeRequest {
        self.notify = Some(kind);
        self
    }

    pub fn notification(&self) -> Option<NotificationKind> {
        self.notify
    }

    /// Ends the org's recharge-due mark with the change (a top-up's credit), unless the
    /// org is still below its threshold after it.
    pub fn ending_recharge_due(mut self) -> ChangeRequest {
        self.ends_recharge_due = true;
        self
    }

    pub fn ends_recharge_due(&self) -> bool {
        self.ends_recharge_due
    }

    /// Makes the change only if nothing was ever made under `key`, decided in the same
    /// write (a dispute's opening yields to its closing, a refund's take-back to its
    /// failure): whichever of two events commits first, the other sees it.
    pub fn unless(mut self, key: IdempotencyKey) -> ChangeRequest {
        self.unless = Some(key);
        self
    }

    pub fn unless_key(&self) -> Option<&IdempotencyKey> {
        self.unless.as_ref()
    }

    pub fn attributed_to(mut self, attribution: Attribution) -> ChangeRequest {
        self.attribution = attribution;
        self
    }

    /// Writes the payout's record with the change, under the step's condition (see
    /// [`crate::withdrawals`]).
    pub fn with_payout(mut self, step: crate::withdrawals::PayoutStep) -> ChangeRequest {
        self.payout = Some(step);
        self
    }

    pub fn payout(&self) -> Option<&crate::withdrawals::PayoutStep> {
        self.payout.as_ref()
    }

    /// What an operator wrote about the change, kept on its entry.
    pub fn with_note(mut self, note: String) -> ChangeRequest {
        self.note = Some(note);
        self
    }

    pub fn note_text(&self) -> Option<&str> {
        self.note.as_deref()
    }

    pub fn with_external(mut self, external: ExternalRefs) -> ChangeRequest {
        self.external = external;
        self
    }

    pub fn org(&self) -> &OrgId {
        &self.org
    }
    pub fn kind(&self) -> EntryKind {
        self.kind
    }
    pub fn movement(&self) -> Movement {
        self.movement
    }
    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }
    pub fn attribution(&self) -> &Attribution {
        &self.attribution
    }
    pub fn external(&self) -> &ExternalRefs {
        &self.external
    }
    pub fn hold_id(&self) -> Option<&HoldId> {
        self.hold.as_ref()
    }

    /// Whether this change takes credits for consumption (and so counts toward the
    /// member's month).
    pub fn is_consumption(&self) -> bool {
        matches!(
            self.movement,
            Movement::Debit(_) | Movement::DebitUpTo(_) | Movement::Capture { .. }
        ) && self.kind.counts_as_spent()
    }

    /// Names what the key promises by the caller's own request (e.g. the reported cost or
    /// tokens and model) rather than by the amount priced from it, so that a retry priced
    /// on another day or after a markup change is still recognised as the same request.
    pub fn with_fingerprint(mut self, fingerprint: String) -> ChangeRequest {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// What the idempotency key promises: a replay must ask for the same thing.
    pub fn fingerprint(&self) -> String {
        if let Some(f) = &self.fingerprint {
            return format!("{}|{f}", self.kind);
        }
        match &self.hold {
            Some(hold) => format!("{}|{}|{hold}", self.kind, self.movement),
            None => format!("{}|{}", self.kind, self.movement),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_only_move_money_their_way() {
        let org = OrgId::parse("o").unwrap();
        let key = IdempotencyKey::parse("k").unwrap();
        let one = PositiveUsd::parse("1").unwrap();
        assert!(ChangeRequest::debit(org.clone(), EntryKind::Purchase, one, key.clone()).is_err());
        assert!(
            ChangeRequest::credit(org.clone(), EntryKind::Usage, Bucket::Purchased, one, key.clone())
                .is_err()
        );
        assert!(ChangeRequest::debit(org.clone(), EntryKind::Adjustment, one, key.clone()).is_ok());
        assert!(
            ChangeRequest::credit(
                org.clone(),
                EntryKind::Adjustment,
                Bucket::Purchased,
                one,
                key.clone()
            )
            .is_ok()
        );
        assert!(
            ChangeRequest::take_back(org.clone(), EntryKind::Usage, one, Bucket::Purchased, key.clone())
                .is_err()
        );
        assert!(ChangeRequest::restore(org, &BucketDelta::default(), key).is_none());
    }
}
