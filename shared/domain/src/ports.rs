//! The ports the domain needs from the outside world. Adapters (DynamoDB, Secrets
//! Manager, a test clock) implement them; the domain never names an SDK. The ports a
//! handler holds as `Arc<dyn ...>` answer boxed futures ([`Pending`]).

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::account::{Member, Org, Provider};
use crate::byok::ProviderKey;
use crate::change::ChangeRequest;
use crate::ids::{MemberId, OrgId};
use crate::ledger::LedgerEntry;
use crate::member::MemberMonth;
use crate::money::Usd;
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

/// A store call in flight, for the ports handlers hold as `Arc<dyn ...>`.
pub type Pending<'a, T, E = StoreError> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

/// Who belongs to which org, in what role: the HTTP edge asks it before every dashboard
/// route on an org.
pub trait OrgDirectory: Send + Sync {
    /// The org and the caller's membership of it; `None` when either is missing.
    fn membership<'a>(&'a self, org: &'a OrgId, member: &'a MemberId) -> Pending<'a, Option<(Org, Member)>>;
}

/// A durable notification (reference 002), readable from the dashboard API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Its id in the feed, which marking read names.
    pub id: String,
    pub kind: String,
    pub available: Usd,
    pub seq: u64,
    pub created_at: DateTime<Utc>,
    pub read: bool,
    /// Why, for `credit_purchase_failed` (the card's decline code).
    pub reason: Option<String>,
}

/// The org's notification feed. (Notifications are written with the wallet change that
/// raises them, by [`WalletStore::apply`].)
pub trait NotificationFeed: Send + Sync {
    /// The newest `limit` notifications, newest first.
    fn notifications<'a>(&'a self, org: &'a OrgId, limit: u16) -> Pending<'a, Vec<Notification>>;

    /// Marks these notifications read (`None`: every one); answers how many changed.
    fn mark_read<'a>(&'a self, org: &'a OrgId, ids: Option<&'a [String]>) -> Pending<'a, usize>;
}

// The ports are cut to what each function calls: a function links the code of every
// method of each port it holds as `dyn`, so one port that also wrote what its function
// only reads would bring that code into the binary (measured: +0.2 MB in usage).

/// Members' monthly limits (reference 003), as owners set them. (The limit itself is
/// enforced by [`WalletStore::apply`], in the same write as the spend.)
pub trait MemberLimits: Send + Sync {
    /// Sets (`Some`) or removes (`None`) the member's monthly limit.
    fn set_limit<'a>(&'a self, org: &'a OrgId, member: &'a MemberId, limit: Option<Usd>) -> Pending<'a, ()>;
}

/// A member's month so far, as may-i-run reads it.
pub trait MemberMonths: Send + Sync {
    /// The member's month at `at`: spent, held and the limit.
    fn month<'a>(
        &'a self,
        org: &'a OrgId,
        member: &'a MemberId,
        at: DateTime<Utc>,
    ) -> Pending<'a, MemberMonth>;
}

/// What putting a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Created,
    Rotated,
}

/// The orgs' own provider keys (BYOK), kept only in a secret store, as the dashboard
/// manages them. Errors are messages for an operator's log, never shown to a caller.
pub trait KeyStore: Send + Sync {
    /// Where the org's key for `provider` is kept (shown to the dashboard).
    fn secret_name(&self, org: &OrgId, provider: Provider) -> String;

    /// Stores the key, replacing (rotating) any earlier one.
    fn put<'a>(
        &'a self,
        org: &'a OrgId,
        provider: Provider,
        key: &'a ProviderKey,
    ) -> Pending<'a, Stored, String>;

    /// Deletes the key at once: a deleted key must stop working.
    fn delete<'a>(&'a self, org: &'a OrgId, provider: Provider) -> Pending<'a, (), String>;
}

/// The orgs' own provider keys, as the agent runtime fetches them.
pub trait KeySource: Send + Sync {
    /// The key; `None` when there is none.
    fn get<'a>(&'a self, org: &'a OrgId, provider: Provider) -> Pending<'a, Option<SecretString>, String>;
}
