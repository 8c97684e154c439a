//! A member's month (reference 003, per-member credit limits): what calls attributed to
//! them cost this calendar month (UTC), and what their open holds reserve.
//!
//! The rules, all decided by [`crate::Wallet::plan`]:
//! - a call already made is always charged and counted, past the limit too: the limit
//!   acts on the next call (may-I-run, holds), never by forgetting this one;
//! - committed = spent + held. A hold is admitted only while committed + its amount stays
//!   within the limit, so parallel holds cannot together pass it; the store writes that
//!   as a condition on the month's counter, in the same transaction as the wallet;
//! - once committed reaches the limit, may-I-run answers `member_limit_reached` and holds
//!   are refused;
//! - a hold's reservation stays in the month it was made; its capture is counted in the
//!   month of the capture.

use chrono::{DateTime, Utc};

use crate::ids::MemberId;
use crate::money::{MoneyError, SignedUsd, Usd};

/// The calendar month (UTC) of `t`, as the counters are keyed: `yyyy-mm`.
pub fn month_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m").to_string()
}

/// A member's month as the store counts it, with their limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemberMonth {
    /// What their calls were billed this month (charged and shortfall).
    pub spent: Usd,
    /// What their open holds made this month reserve.
    pub held: Usd,
    /// Their monthly limit, if the owners set one.
    pub limit: Option<Usd>,
}

impl MemberMonth {
    pub fn committed(&self) -> Result<Usd, MoneyError> {
        self.spent.checked_add(self.held)
    }

    /// No room left: may-I-run says no, and holds are refused.
    pub fn limit_reached(&self) -> Result<bool, MoneyError> {
        Ok(match self.limit {
            Some(limit) => self.committed()? >= limit,
            None => false,
        })
    }
}

/// What one change adds to a member's month counter. The store applies it with `ADD`s,
/// under `committed <= at_most` when that is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterChange {
    pub member: MemberId,
    pub month: String,
    pub spent: Usd,
    pub held: SignedUsd,
    /// The most the month may already have committed for this change to fit (a hold
    /// within the limit); `None`: no condition.
    pub at_most: Option<Usd>,
}

impl CounterChange {
    /// The change of committed (spent + held).
    pub fn committed(&self) -> Result<SignedUsd, MoneyError> {
        SignedUsd::credit(self.spent).checked_add(self.held)
    }
}
