//! What the account function answers: one type per answer, as `infra/openapi.yaml`
//! describes it (every answer the tests receive is checked against the document).

use agent_credits_domain::{
    AgentId, Billing, BillingMode, Buckets, EntryKind, ExternalRefs, LedgerEntry, MemberId, Org, PauseReason,
    Provider, PurchasePolicy, Role, Runtime, SettingChanged, SignedUsd, Usd, WalletSettings,
};
use agent_credits_dynamo::items::Notification;
use agent_credits_dynamo::{AgentRuntime, KeyMeta};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// `GET /v1/orgs/{org}`.
#[derive(Debug, Serialize)]
pub struct OrgView<'a> {
    pub org: &'a Org,
    pub role: Role,
}

/// `POST /v1/orgs`: the org, the creator's role, and the keys stored at creation.
#[derive(Debug, Serialize)]
pub struct Created<'a> {
    pub org: &'a Org,
    pub role: Role,
    pub keys: Vec<KeyMeta>,
}

#[derive(Debug, Serialize)]
pub struct Keys {
    pub keys: Vec<KeyMeta>,
}

#[derive(Debug, Serialize)]
pub struct KeyStored {
    pub key: KeyMeta,
}

#[derive(Debug, Serialize)]
pub struct KeyDeleted {
    pub deleted: Provider,
}

/// The org's runtime and the agents that run another.
#[derive(Debug, Serialize)]
pub struct Agents {
    pub runtime: Runtime,
    pub agents: Vec<AgentRuntime>,
}

#[derive(Debug, Serialize)]
pub struct AgentSet {
    pub agent: AgentRuntime,
}

/// An agent back on the org's runtime.
#[derive(Debug, Serialize)]
pub struct AgentCleared {
    pub agent: AgentId,
    pub runtime: Runtime,
}

#[derive(Debug, Serialize)]
pub struct BillingModeSet {
    pub billing_mode: BillingMode,
    /// `false` when the org already had it: nothing was written.
    pub changed: bool,
}

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub member: MemberId,
    pub role: Role,
    pub monthly_limit: Option<Usd>,
}

#[derive(Debug, Serialize)]
pub struct Members {
    pub members: Vec<MemberView>,
}

#[derive(Debug, Serialize)]
pub struct RoleSet {
    pub member: MemberId,
    pub role: Role,
}

#[derive(Debug, Serialize)]
pub struct Removed {
    pub removed: MemberId,
}

#[derive(Debug, Serialize)]
pub struct LimitSet {
    pub member: MemberId,
    pub monthly_limit: Option<Usd>,
}

/// One ledger entry as history and the balance card show it.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub id: String,
    pub kind: EntryKind,
    pub amount: SignedUsd,
    pub balance_after: Usd,
    pub available_after: Usd,
    pub shortfall: Usd,
    pub member: Option<&'a MemberId>,
    pub api_key: Option<&'a agent_credits_domain::ApiKeyId>,
    pub agent: Option<&'a AgentId>,
    /// The model a call ran on, when the runtime named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a agent_credits_domain::ModelId>,
    /// What a usage entry consumed (`llm`, `email`, ...); absent on other entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumable: Option<agent_credits_domain::Consumable>,
    /// The product feature a usage entry served, when the runtime named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<agent_credits_domain::Feature>,
    /// What an operator wrote on a grant or a payout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'a str>,
    /// The org whose agent made a call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creator: Option<&'a agent_credits_domain::OrgId>,
    pub created_at: DateTime<Utc>,
    pub external: &'a ExternalRefs,
}

impl<'a> From<&'a LedgerEntry> for Entry<'a> {
    fn from(e: &'a LedgerEntry) -> Entry<'a> {
        Entry {
            id: e.id(),
            kind: e.kind,
            amount: e.amount,
            balance_after: e.balance_after,
            available_after: e.available_after,
            shortfall: e.shortfall,
            member: e.attribution.member.as_ref(),
            api_key: e.attribution.api_key.as_ref(),
            agent: e.attribution.agent.as_ref(),
            model: e.attribution.model.as_ref(),
            consumable: e.consumed(),
            feature: e.attribution.feature,
            note: e.note.as_deref(),
            creator: e.attribution.creator.as_ref(),
            created_at: e.created_at,
            external: &e.external,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct History<'a> {
    pub entries: Vec<Entry<'a>>,
    /// The cursor of the next page; `None` on the last.
    pub next: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Active,
    Paused,
}

#[derive(Debug, Serialize)]
pub struct AutoRechargeSummary {
    pub enabled: bool,
    pub threshold: Usd,
}

/// The credits card (reference 002).
#[derive(Debug, Serialize)]
pub struct Balance<'a> {
    pub balance: Usd,
    pub available: Usd,
    pub held: Usd,
    /// The balance in credits at the org's rate.
    pub credits: String,
    pub credits_per_usd: u32,
    pub buckets: &'a Buckets,
    pub low_balance: bool,
    pub low_balance_threshold: Usd,
    pub exhausted: bool,
    pub state: State,
    pub pause_reason: Option<PauseReason>,
    pub billed_to: Option<Billing>,
    /// Purchases and auto top-ups (reference 002's definition).
    pub lifetime_added: Usd,
    /// Credits granted (plans' base credits, grants), shown apart.
    pub lifetime_granted: Usd,
    pub lifetime_spent: Usd,
    /// Dated credits that reached their date, and plans' base beyond the rollover cap.
    pub lifetime_expired: Usd,
    /// Earned credits paid out or waiting to be.
    pub lifetime_withdrawn: Usd,
    /// Earned credits an owner may withdraw now: not spent, not reserved by holds.
    pub withdrawable: Usd,
    /// The soonest dated credits, if any: when, and how much then expires.
    pub next_expiry: Option<NextExpiry>,
    pub recent: Vec<Entry<'a>>,
    pub auto_recharge: AutoRechargeSummary,
}

#[derive(Debug, Serialize)]
pub struct NextExpiry {
    pub expires_at: DateTime<Utc>,
    pub amount: Usd,
}

#[derive(Debug, Serialize)]
pub struct MemberMonth<'a> {
    pub member: &'a MemberId,
    pub role: Role,
    pub spent: Usd,
    pub held: Usd,
    pub unbilled: Usd,
    pub monthly_limit: Option<Usd>,
}

#[derive(Debug, Serialize)]
pub struct MonthUsage<'a> {
    pub month: String,
    pub members: Vec<MemberMonth<'a>>,
}

#[derive(Debug, Serialize)]
pub struct NotificationView<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub available: Usd,
    pub created_at: DateTime<Utc>,
    pub read: bool,
    pub reason: Option<&'a str>,
}

impl<'a> From<&'a Notification> for NotificationView<'a> {
    fn from(n: &'a Notification) -> NotificationView<'a> {
        NotificationView {
            id: &n.id,
            kind: &n.kind,
            available: n.available,
            created_at: n.created_at,
            read: n.read,
            reason: n.reason.as_deref(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Notifications<'a> {
    pub notifications: Vec<NotificationView<'a>>,
}

#[derive(Debug, Serialize)]
pub struct Marked {
    pub marked: usize,
}

/// The org's settings after creation, and who changed them (newest first).
#[derive(Debug, Serialize)]
pub struct OrgSettings<'a> {
    pub purchase_policy: PurchasePolicy,
    pub members_see_billing: bool,
    /// The org's own threshold, else the default ($20).
    pub low_balance_threshold_usd: Usd,
    pub low_balance_threshold_is_default: bool,
    /// Where `credit_balance_low` fires now: auto-recharge's threshold while it is on.
    pub low_balance_alert_below_usd: Usd,
    /// The org's markup; `null`: the deployment's default (`DEFAULT_MARKUP`).
    pub markup: Option<String>,
    pub changes: &'a [SettingChanged],
}

impl<'a> OrgSettings<'a> {
    pub fn of(org: &Org, wallet: &WalletSettings, changes: &'a [SettingChanged]) -> OrgSettings<'a> {
        OrgSettings {
            purchase_policy: org.purchase_policy,
            members_see_billing: org.members_see_billing,
            low_balance_threshold_usd: wallet
                .low_threshold
                .unwrap_or(agent_credits_domain::settings::DEFAULT_LOW_THRESHOLD),
            low_balance_threshold_is_default: wallet.low_threshold.is_none(),
            low_balance_alert_below_usd: wallet.low_threshold(),
            markup: wallet.markup.map(|m| m.to_string()),
            changes,
        }
    }
}

/// What a day, or a member, key, model or kind over the range, used.
#[derive(Debug, Serialize)]
pub struct Used {
    /// Calls billed to the wallet: what they cost (paid plus shortfall).
    pub billed: Usd,
    /// Calls on the org's own key: what they would have cost.
    pub unbilled: Usd,
    pub calls: u64,
}

impl From<&agent_credits_dynamo::Used> for Used {
    fn from(u: &agent_credits_dynamo::Used) -> Used {
        Used {
            billed: u.billed,
            unbilled: u.unbilled,
            calls: u.calls,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DayUsed {
    pub day: chrono::NaiveDate,
    #[serde(flatten)]
    pub used: Used,
}

#[derive(Debug, Serialize)]
pub struct UsedBy {
    /// The member, API key, model or kind; `(unattributed)` when the runtime did not say.
    pub id: String,
    #[serde(flatten)]
    pub used: Used,
}

/// Usage over a range of days (every day of it, none left out), its total, and its
/// breakdown.
#[derive(Debug, Serialize)]
pub struct DailyUsage {
    pub from: chrono::NaiveDate,
    pub to: chrono::NaiveDate,
    pub total: Used,
    pub days: Vec<DayUsed>,
    pub by_member: Vec<UsedBy>,
    pub by_api_key: Vec<UsedBy>,
    pub by_model: Vec<UsedBy>,
    pub by_kind: Vec<UsedBy>,
    pub by_feature: Vec<UsedBy>,
}

impl DailyUsage {
    pub fn of(
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        usage: &agent_credits_dynamo::UsageByDay,
    ) -> Result<DailyUsage, agent_credits_http::ApiError> {
        use agent_credits_domain::daily::Dimension;
        let money = |e: agent_credits_domain::MoneyError| agent_credits_http::ApiError::internal(&e);
        let mut total = Used {
            billed: Usd::ZERO,
            unbilled: Usd::ZERO,
            calls: 0,
        };
        let mut days = vec![];
        for day in from.iter_days().take_while(|d| *d <= to) {
            let used = usage.days.get(&day).copied().unwrap_or_default();
            total.billed = total.billed.checked_add(used.billed).map_err(money)?;
            total.unbilled = total.unbilled.checked_add(used.unbilled).map_err(money)?;
            total.calls += used.calls;
            days.push(DayUsed {
                day,
                used: Used::from(&used),
            });
        }
        let by = |dim: Dimension| {
            let mut rows: Vec<UsedBy> = usage
                .by
                .iter()
                .filter(|((d, _), _)| *d == dim)
                .map(|((_, id), used)| UsedBy {
                    id: id.clone(),
                    used: Used::from(used),
                })
                .collect();
            rows.sort_by(|a, b| {
                (b.used.billed, b.used.unbilled)
                    .cmp(&(a.used.billed, a.used.unbilled))
                    .then_with(|| a.id.cmp(&b.id))
            });
            rows
        };
        Ok(DailyUsage {
            from,
            to,
            total,
            days,
            by_member: by(Dimension::Member),
            by_api_key: by(Dimension::ApiKey),
            by_model: by(Dimension::Model),
            by_kind: by(Dimension::Kind),
            by_feature: by(Dimension::Feature),
        })
    }
}

/// A withdrawal asked for (`201`), or found asked before under its `request_id` (`200`).
#[derive(Debug, Serialize)]
pub struct WithdrawalMade<'a> {
    pub withdrawal: &'a agent_credits_domain::Payout,
    pub entry_id: String,
    /// Earned credits that may still be withdrawn.
    pub withdrawable: Usd,
    pub replayed: bool,
}

/// The org's payouts, newest first, and what may be withdrawn now.
#[derive(Debug, Serialize)]
pub struct Withdrawals<'a> {
    pub withdrawable: Usd,
    pub earned: Usd,
    pub minimum_usd: Usd,
    pub withdrawals: &'a [agent_credits_domain::Payout],
}
