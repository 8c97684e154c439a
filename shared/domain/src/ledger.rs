//! Ledger entries and the change requests that produce them.
//!
//! Every change of a wallet writes exactly one entry, in the same transaction, carrying
//! the signed amount, the balance after it (the running balance) and where the change
//! came from. The entries of a wallet sum to its balance.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::buckets::BucketDelta;
use crate::ids::{AgentId, ApiKeyId, HoldId, IdempotencyKey, MemberId, OrgId};
use crate::money::{SignedUsd, Usd};

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
    /// Granted: a referral's reward (earned, withdrawable).
    Referral,
    /// Granted: a creator's share of a call made with their agent (earned, withdrawable).
    CreatorEarnings,
    /// Granted by support.
    Support,
    /// Granted as a promotion.
    Promotional,
    /// Dated granted credits that reached their date unspent.
    Expired,
    /// Earned credits an owner asked to be paid out: they left the wallet.
    Withdrawal,
    /// A withdrawal was paid out: nothing moves, history shows the payout.
    WithdrawalPaid,
    /// A withdrawal failed: its credits came back, once.
    WithdrawalReturned,
    /// A referral taken back: the purchase that earned it was refunded or lost a dispute.
    ReferralReversed,
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
    pub const ALL: [EntryKind; 21] = [
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
        EntryKind::Referral,
        EntryKind::CreatorEarnings,
        EntryKind::Support,
        EntryKind::Promotional,
        EntryKind::Expired,
        EntryKind::Withdrawal,
        EntryKind::WithdrawalPaid,
        EntryKind::WithdrawalReturned,
        EntryKind::ReferralReversed,
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
            EntryKind::Referral => "referral",
            EntryKind::CreatorEarnings => "creator_earnings",
            EntryKind::Support => "support",
            EntryKind::Promotional => "promotional",
            EntryKind::Expired => "expired",
            EntryKind::Withdrawal => "withdrawal",
            EntryKind::WithdrawalPaid => "withdrawal_paid",
            EntryKind::WithdrawalReturned => "withdrawal_returned",
            EntryKind::ReferralReversed => "referral_reversed",
        }
    }

    pub fn parse(s: &str) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn direction(self) -> Direction {
        match self {
            EntryKind::Purchase
            | EntryKind::AutoTopUp
            | EntryKind::Grant
            | EntryKind::PlanGrant
            | EntryKind::Referral
            | EntryKind::CreatorEarnings
            | EntryKind::Support
            | EntryKind::Promotional
            | EntryKind::WithdrawalReturned => Direction::In,
            EntryKind::Usage
            | EntryKind::Capture
            | EntryKind::Refund
            | EntryKind::Dispute
            | EntryKind::Expired
            | EntryKind::Withdrawal
            | EntryKind::ReferralReversed => Direction::Out,
            EntryKind::Adjustment => Direction::Either,
            EntryKind::Hold | EntryKind::Release | EntryKind::Rollover | EntryKind::WithdrawalPaid => {
                Direction::Neither
            }
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
    /// The model a call ran on, when the runtime named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<crate::pricing::ModelId>,
    /// What the use consumed: a model call unless the runtime said otherwise.
    #[serde(default)]
    pub consumable: crate::consumables::Consumable,
    /// The product feature it served, when the runtime named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<crate::consumables::Feature>,
    /// The org whose agent made the call: it earns a share of what the call was charged
    /// (reference 001's creator earnings), credited after the call by the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creator: Option<OrgId>,
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
    /// What an operator wrote about the change (a grant's reason, a payout's reference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl LedgerEntry {
    /// The entry id shown to users: unique within the org, sorts in commit order.
    pub fn id(&self) -> String {
        format!("tx_{:020}", self.seq)
    }

    /// What a use (a usage, a capture, or the hold before one) consumed; `None` for an
    /// entry that is not a use.
    pub fn consumed(&self) -> Option<crate::consumables::Consumable> {
        (self.kind.counts_as_spent() || self.kind == EntryKind::Hold).then_some(self.attribution.consumable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for k in EntryKind::ALL {
            assert_eq!(EntryKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
    }
}
