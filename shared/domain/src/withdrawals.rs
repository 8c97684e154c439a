//! Withdrawals (reference 001: earned credits "cash them out as withdrawals").
//!
//! An owner asks for earned credits to be paid out: they leave the wallet at once (a
//! `withdrawal` entry, [`crate::Movement::Withdraw`]) into a payout waiting for an
//! operator. The operator settles it as paid, with the payout's reference (a
//! `withdrawal_paid` entry that moves nothing), or as failed (a `withdrawal_returned`
//! entry that gives the credits back). Each step is one change of the wallet whose
//! transaction also writes the payout's record under a condition: the request creates it,
//! a settlement needs it still pending. So a payout is settled once, paid or failed,
//! never both, and its credits come back at most once. Paying the money itself is outside
//! this service.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{MemberId, WithdrawalId};
use crate::money::Usd;

/// Where a payout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutState {
    Pending,
    Paid,
    Failed,
}

impl PayoutState {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutState::Pending => "pending",
            PayoutState::Paid => "paid",
            PayoutState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<PayoutState> {
        [PayoutState::Pending, PayoutState::Paid, PayoutState::Failed]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

impl fmt::Display for PayoutState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a change does to a payout's record, in the change's own transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutStep {
    /// A new payout, pending: its record must not exist yet.
    Requested {
        id: WithdrawalId,
        amount: Usd,
        by: MemberId,
    },
    /// The payout was made: its record must still be pending.
    Paid { id: WithdrawalId, reference: String },
    /// The payout failed: its record must still be pending; the credits come back.
    Failed { id: WithdrawalId, reason: String },
}

impl PayoutStep {
    pub fn id(&self) -> &WithdrawalId {
        match self {
            PayoutStep::Requested { id, .. }
            | PayoutStep::Paid { id, .. }
            | PayoutStep::Failed { id, .. } => id,
        }
    }
}

/// A payout as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payout {
    pub id: WithdrawalId,
    pub amount: Usd,
    pub state: PayoutState,
    pub requested_by: MemberId,
    pub requested_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
    /// The operator's reference of the payment made (paid).
    pub reference: Option<String>,
    /// Why it failed (failed).
    pub reason: Option<String>,
}
