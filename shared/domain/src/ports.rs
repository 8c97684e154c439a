//! The ports the domain needs from the outside world. Adapters (DynamoDB, a test clock)
//! implement them; the domain never names an SDK.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::change::ChangeRequest;
use crate::ids::OrgId;
use crate::ledger::LedgerEntry;
use crate::wallet::{Outcome, Wallet};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Other writers kept winning the race for this wallet through every retry.
    #[error("wallet busy: gave up after {attempts} attempts")]
    Contention { attempts: u32 },
    /// A stored item does not parse: never expected, never papered over.
    #[error("corrupt item {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The request asks for something the store cannot do (e.g. a member limit without
    /// a member).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The backend failed, throttled or could not be reached: a retry may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend refused the request itself (access denied, a validation error, a
    /// missing table): the deployment is wrong, and retrying will not help.
    #[error("store refused the request: {0}")]
    Rejected(String),
}

/// A page of history, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u16,
    /// Return entries older than this sequence number (the previous page's cursor).
    pub before: Option<u64>,
}

impl PageRequest {
    pub const MAX_LIMIT: u16 = 100;

    pub fn first(limit: u16) -> PageRequest {
        PageRequest {
            limit: limit.clamp(1, Self::MAX_LIMIT),
            before: None,
        }
    }

    pub fn after_cursor(limit: u16, cursor: u64) -> PageRequest {
        PageRequest {
            limit: limit.clamp(1, Self::MAX_LIMIT),
            before: Some(cursor),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub entries: Vec<LedgerEntry>,
    /// Pass back as `before` for the next page; `None` on the last page.
    pub next: Option<u64>,
}

pub trait WalletStore: Send + Sync {
    /// Makes the change exactly once: the wallet update, its ledger entry and any member
    /// counter commit together or not at all. `Ok(Err(refusal))`: nothing was written.
    fn apply(&self, req: ChangeRequest) -> impl Future<Output = Result<Outcome, StoreError>> + Send;

    /// The wallet as last committed; an org with no changes yet has an empty wallet.
    fn wallet(&self, org: &OrgId) -> impl Future<Output = Result<Wallet, StoreError>> + Send;

    /// Ledger entries, newest first.
    fn history(
        &self,
        org: &OrgId,
        page: PageRequest,
    ) -> impl Future<Output = Result<HistoryPage, StoreError>> + Send;
}
