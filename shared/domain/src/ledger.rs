//! Ledger entries and the change requests that produce them.
//!
//! Every change of a wallet writes exactly one entry, in the same transaction, carrying
//! the signed amount, the balance after it (the running balance) and where the change
//! came from. The entries of a wallet sum to its balance.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ApiKeyId, HoldId, IdempotencyKey, MemberId, OrgId};
use crate::money::{PositiveUsd, SignedUsd, Usd};
use crate::wallet::{Bucket, BucketDelta, NotificationKind, PauseReason};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Purchase,
    AutoTopUp,
    Usage,
    Hold,
    Capture,
    Release,
    Grant,
    PlanGrant,
    Rollover,
    Refund,
    Dispute,
    Adjustment,
}

/// Which way a kind may move the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
    Either,
    /// Moves money between buckets or into holds, not in or out of the wallet.
    Neither,
}

impl EntryKind {
    pub const ALL: [EntryKind; 12] = [
        EntryKind::Purchase,
        EntryKind::AutoTopUp,
        EntryKind::Usage,
        EntryKind::Hold,
        EntryKind::Capture,
        EntryKind::Release,
        EntryKind::Grant,
        EntryKind::PlanGrant,
        EntryKind::Rollover,
        EntryKind::Refund,
        EntryKind::Dispute,
        EntryKind::Adjustment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Purchase => "purchase",
            EntryKind::AutoTopUp => "auto_top_up",
            EntryKind::Usage => "usage",
            EntryKind::Hold => "hold",
            EntryKind::Capture => "capture",
            EntryKind::Release => "release",
            EntryKind::Grant => "grant",
            EntryKind::PlanGrant => "plan_grant",
            EntryKind::Rollover => "rollover",
            EntryKind::Refund => "refund",
            EntryKind::Dispute => "dispute",
            EntryKind::Adjustment => "adjustment",
        }
    }

    pub fn parse(s: &str) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn direction(self) -> Direction {
        match self {
            EntryKind::Purchase | EntryKind::AutoTopUp | EntryKind::Grant | EntryKind::PlanGrant => {
                Direction::In
            }
            EntryKind::Usage | EntryKind::Capture | EntryKind::Refund | EntryKind::Dispute => Direction::Out,
            EntryKind::Adjustment => Direction::Either,
            EntryKind::Hold | EntryKind::Release | EntryKind::Rollover => Direction::Neither,
        }
    }

    /// Lifetime spent counts consumption only; refunds and disputes take credits back but
    /// were never spent.
    pub fn counts_as_spent(self) -> bool {
        matches!(self, EntryKind::Usage | EntryKind::Capture)
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made the change: every usage entry names the member, API key and agent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Attribution {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<MemberId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentId>,
}

/// Ids of the outside objects a change came from, kept on the entry for reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExternalRefs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe_event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkout_session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispute: Option<String>,
}

impl ExternalRefs {
    /// (name, value) of every id present, in a fixed order.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("stripe_event", &self.stripe_event),
            ("checkout_session", &self.checkout_session),
            ("payment_intent", &self.payment_intent),
            ("charge", &self.charge),
            ("invoice", &self.invoice),
            ("refund", &self.refund),
            ("dispute", &self.dispute),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }

    /// Sets the id named `name`; `false` for an unknown name.
    pub fn set(&mut self, name: &str, value: String) -> bool {
        let slot = match name {
            "stripe_event" => &mut self.stripe_event,
            "checkout_session" => &mut self.checkout_session,
            "payment_intent" => &mut self.payment_intent,
            "charge" => &mut self.charge,
            "invoice" => &mut self.invoice,
            "refund" => &mut self.refund,
            "dispute" => &mut self.dispute,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// What a change does to the buckets and holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    /// Take the amount from the buckets in debit order, all or nothing.
    Debit(PositiveUsd),
    /// A call already made: take what is available up to the amount and record the rest
    /// as the entry's shortfall. Never below zero.
    DebitUpTo(PositiveUsd),
    /// Add the amount to one bucket.
    Credit { bucket: Bucket, amount: PositiveUsd },
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
            Movement::Hold { amount, .. } => write!(f, "hold:{amount}"),
            Movement::Capture { actual } => write!(f, "capture:{actual}"),
            Movement::Release => write!(f, "release"),
            Movement::Pause(reason) => write!(f, "pause:{}", reason.as_str()),
            Movement::Lift(reason) => write!(f, "lift:{}", reason.as_str()),
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

/// A request to change one wallet, once. Built only through [`ChangeRequest::debit`] and
/// [`ChangeRequest::credit`], which refuse a kind that cannot move money that way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRequest {
    org: OrgId,
    kind: EntryKind,
    movement: Movement,
    key: IdempotencyKey,
    attribution: Attribution,
    external: ExternalRefs,
    member_limit: Option<Usd>,
    hold: Option<HoldId>,
    fingerprint: Option<String>,
    notify: Option<NotificationKind>,
    ends_recharge_due: bool,
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

    /// Takes back up to `amount` (a refund, a lost dispute): never below zero, what was
    /// not there recorded as the entry's shortfall.
    pub fn take_back(
        org: OrgId,
        kind: EntryKind,
        amount: PositiveUsd,
        key: IdempotencyKey,
    ) -> Result<ChangeRequest, KindMismatch> {
        if kind.direction() != Direction::Out || kind.counts_as_spent() {
            return Err(KindMismatch {
                kind,
                action: "take credits back",
            });
        }
        Ok(ChangeRequest::new(org, kind, Movement::DebitUpTo(amount), key))
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
            member_limit: None,
            hold: None,
            fingerprint: None,
            notify: None,
            ends_recharge_due: false,
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

    /// Ends the org's recharge-due mark with the change (a top-up's credit).
    pub fn ending_recharge_due(mut self) -> ChangeRequest {
        self.ends_recharge_due = true;
        self
    }

    pub fn ends_recharge_due(&self) -> bool {
        self.ends_recharge_due
    }

    pub fn attributed_to(mut self, attribution: Attribution) -> ChangeRequest {
        self.attribution = attribution;
        self
    }

    pub fn with_external(mut self, external: ExternalRefs) -> ChangeRequest {
        self.external = external;
        self
    }

    /// Caps what the attributed member may spend in the calendar month (UTC) of the
    /// change, checked in the same transaction as the wallet. Needs a member.
    pub fn with_member_limit(mut self, limit: Usd) -> ChangeRequest {
        self.member_limit = Some(limit);
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
    pub fn member_limit(&self) -> Option<Usd> {
        self.member_limit
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

/// One committed change. `seq` is the wallet version it produced: entries of a wallet are
/// numbered 1, 2, 3, ... in commit order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    #[serde(skip)]
    pub org: OrgId,
    pub seq: u64,
    pub kind: EntryKind,
    /// Change of the balance: positive in, negative out.
    pub amount: SignedUsd,
    pub buckets: BucketDelta,
    /// Change of the amount held by open holds.
    pub held_change: SignedUsd,
    /// What a call cost beyond what was available: recorded, never charged.
    pub shortfall: Usd,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldId>,
    pub balance_after: Usd,
    pub available_after: Usd,
    pub attribution: Attribution,
    pub idempotency_key: IdempotencyKey,
    pub external: ExternalRefs,
    pub created_at: DateTime<Utc>,
}

impl LedgerEntry {
    /// The entry id shown to users: unique within the org, sorts in commit order.
    pub fn id(&self) -> String {
        format!("tx_{:020}", self.seq)
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
        assert!(ChangeRequest::credit(org, EntryKind::Adjustment, Bucket::Purchased, one, key).is_ok());
    }

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for k in EntryKind::ALL {
            assert_eq!(EntryKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
    }
}
