use std::collections::HashMap;
use std::sync::Arc;

use agent_credits_aws::KeyVault;
use agent_credits_domain::{
    Action, AgentId, BillingMode, Clock, EntryKind, LedgerEntry, Member, MemberId, Org, OrgId, PageRequest,
    PauseReason, Provider, ProviderKey, PurchasePolicy, Role, Runtime, StoreError, Usd, WalletSettings,
    WalletStore, missing_byok_key, switch_billing_mode, verdict,
};
use agent_credits_dynamo::{DynamoWalletStore, MemberChange, OrgStore, Reserved};
use agent_credits_http::{
    ApiError, Details, Edge, ErrorCode, Reply, Route, Router, Table, answer, json_response, query_param,
};
use chrono::{DateTime, NaiveDate, Utc};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

pub struct Account {
    pub store: DynamoWalletStore,
    pub orgs: OrgStore,
    pub clock: Arc<dyn Clock>,
    /// BYOK keys in Secrets Manager.
    pub keys: KeyVault,
}

/// Every route of the function: who may call it and what answers it. Each one on an org
/// is for its members whose role the org allows the action (the matrix of
/// `agent_credits_domain::Org::allows`): no cross-org read anywhere.
pub fn routes() -> Vec<Route<Account>> {
    use Action::*;
    use Method as M;
    vec![
        Route::user(M::POST, "/v1/orgs", |svc, c| {
            Box::pin(async move { create_org(svc, &c.who, c.body()?).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}", ViewOrg, |_, c| {
            Box::pin(async move {
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "org": c.who.org, "role": c.who.member.role }),
                ))
            })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/members", ViewBilling, |svc, c| {
            Box::pin(async move { members(svc, &c.who.org).await })
        }),
        Route::member(
            M::PUT,
            "/v1/orgs/{org}/members/{member}",
            ManageMembers,
            |svc, c| {
                Box::pin(async move { set_member(svc, &c.who.org, c.param("member")?, c.body()?).await })
            },
        ),
        Route::member(
            M::DELETE,
            "/v1/orgs/{org}/members/{member}",
            ManageMembers,
            |svc, c| Box::pin(async move { remove_member(svc, &c.who.org, c.param("member")?).await }),
        ),
        Route::member(
            M::PUT,
            "/v1/orgs/{org}/members/{member}/limit",
            SetMemberLimits,
            |svc, c| Box::pin(async move { set_limit(svc, &c.who.org, c.param("member")?, c.body()?).await }),
        ),
        Route::member(M::GET, "/v1/orgs/{org}/balance", ViewBilling, |svc, c| {
            Box::pin(async move { balance(svc, &c.who.org).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/history", ViewBilling, |svc, c| {
            Box::pin(async move { history(svc, &c.who.org, c.req).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/history.csv", ViewBilling, |svc, c| {
            Box::pin(async move { history_csv(svc, &c.who.org, c.req).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/usage", ViewBilling, |svc, c| {
            Box::pin(async move { month_usage(svc, &c.who.org, c.req).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/notifications", ViewBilling, |svc, c| {
            Box::pin(async move { notifications(svc, &c.who.org).await })
        }),
        Route::member(
            M::POST,
            "/v1/orgs/{org}/notifications/read",
            ViewBilling,
            |svc, c| Box::pin(async move { mark_read(svc, &c.who.org, c.body()?).await }),
        ),
        Route::member(M::PUT, "/v1/orgs/{org}/billing-mode", ManageOrg, |svc, c| {
            Box::pin(async move { set_billing_mode(svc, &c.who.org, c.body()?).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/keys", ViewBilling, |svc, c| {
            Box::pin(async move { keys(svc, &c.who.org).await })
        }),
        Route::member(M::PUT, "/v1/orgs/{org}/keys/{provider}", ManageKeys, |svc, c| {
            Box::pin(async move { put_key(svc, &c.who.org, c.param("provider")?, c.body()?).await })
        }),
        Route::member(
            M::DELETE,
            "/v1/orgs/{org}/keys/{provider}",
            ManageKeys,
            |svc, c| Box::pin(async move { delete_key(svc, &c.who.org, c.param("provider")?).await }),
        ),
        Route::member(M::GET, "/v1/orgs/{org}/agents", ViewOrg, |svc, c| {
            Box::pin(async move { agents(svc, &c.who.org).await })
        }),
        Route::member(M::PUT, "/v1/orgs/{org}/agents/{agent}", ManageOrg, |svc, c| {
            Box::pin(async move {
                set_agent_runtime(svc, &c.who.org, &c.who.member.id, c.param("agent")?, c.body()?).await
            })
        }),
        Route::member(M::DELETE, "/v1/orgs/{org}/agents/{agent}", ManageOrg, |svc, c| {
            Box::pin(async move { clear_agent_runtime(svc, &c.who.org, c.param("agent")?).await })
        }),
    ]
}

impl Edge for Account {
    async fn membership(&self, org: &OrgId, me: &MemberId) -> Result<Option<(Org, Member)>, StoreError> {
        self.orgs.membership(org, me).await
    }
}

static ROUTER: Table<Account> = Table::new(|| Router::new(routes()));

pub async fn handle(svc: &Account, req: Request) -> Response<Body> {
    answer(&ROUTER, svc, req).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrg {
    id: OrgId,
    name: String,
    runtime: Option<Runtime>,
    /// Required, with no default (reference 000).
    billing_mode: Option<BillingMode>,
    #[serde(default)]
    purchase_policy: PurchasePolicy,
    #[serde(default)]
    members_see_billing: Option<bool>,
    /// Provider keys to store at creation (a byok org on a runtime that needs one must
    /// bring it): provider → key. Stored in Secrets Manager only.
    #[serde(default)]
    keys: HashMap<Provider, String>,
}

async fn create_org(svc: &Account, me: &MemberId, body: NewOrg) -> Reply {
    let Some(runtime) = body.runtime else {
        return Err(ApiError::bad_request(
            ErrorCode::RuntimeRequired,
            "choose a runtime: claude_code, codex, gemini_cli, open_code or hermes",
        ));
    };
    let Some(billing_mode) = body.billing_mode else {
        return Err(ApiError::bad_request(
            ErrorCode::BillingModeRequired,
            "choose how to pay: credits, byok or deferred",
        ));
    };
    if body.name.trim().is_empty() || body.name.len() > 200 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidName,
            "name must be 1 to 200 characters",
        ));
    }
    let brought: Vec<Provider> = body.keys.keys().copied().collect();
    if let Some((runtime, provider)) = missing_byok_key(billing_mode, &[runtime], &brought) {
        return Err(missing_key(runtime, provider));
    }
    // Every key is checked before anything is written.
    let keys = body
        .keys
        .iter()
        .map(|(provider, key)| provider_key(*provider, key).map(|k| (*provider, k)))
        .collect::<Result<Vec<_>, _>>()?;
    let org = Org {
        id: body.id,
        name: body.name.trim().to_owned(),
        runtime,
        billing_mode,
        purchase_policy: body.purchase_policy,
        members_see_billing: body.members_see_billing.unwrap_or(true),
        credits_per_usd: agent_credits_domain::account::DEFAULT_CREDITS_PER_USD,
        created_at: svc.clock.now(),
        revision: 0,
    };
    let settings = WalletSettings {
        billing_mode: Some(billing_mode),
        ..Default::default()
    };
    // In two steps, so that an org never exists without the keys its rule needs: the org
    // is reserved for its creator (invisible to everyone, usage included), the keys are
    // stored, and only then does it open. A failure between leaves the reservation, and
    // the creator's retry of the same request finishes it.
    let open = match svc.orgs.reserve(&org, me).await? {
        Reserved::Ours => false,
        Reserved::AlreadyOpen => true,
        Reserved::Taken => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::OrgExists,
                "an org with this id exists",
            ));
        }
    };
    let mut stored = vec![];
    for (provider, key) in &keys {
        stored.push(store_key(svc, &org.id, *provider, key).await?);
    }
    if !open {
        svc.orgs.open(&org.id, me, &settings).await?;
    }
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "org": org, "role": Role::Owner, "keys": stored }),
    ))
}

fn missing_key(runtime: Runtime, provider: Provider) -> ApiError {
    ApiError::bad_request(
        ErrorCode::ProviderKeyRequired,
        format!("a byok org on {runtime} needs its own {provider} key"),
    )
    .with_details(Details {
        provider: Some(provider),
        runtime: Some(runtime),
        ..Default::default()
    })
}

fn provider_key(provider: Provider, key: &str) -> Result<ProviderKey, ApiError> {
    ProviderKey::parse(provider, key).map_err(|e| {
        ApiError::bad_request(ErrorCode::InvalidKey, e.to_string()).with_details(Details {
            provider: Some(provider),
            ..Default::default()
        })
    })
}

/// The key in Secrets Manager first, then what the dashboard may see of it.
async fn store_key(
    svc: &Account,
    org: &OrgId,
    provider: Provider,
    key: &ProviderKey,
) -> Result<agent_credits_dynamo::KeyMeta, ApiError> {
    svc.keys.put(org, provider, key).await.map_err(|e| {
        tracing::error!(org = %org, provider = %provider, error = %e, "storing a provider key failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::KeyStoreUnavailable,
            "the key could not be stored; try again",
        )
    })?;
    let name = svc.keys.secret_name(org, provider);
    Ok(svc
        .orgs
        .record_key(org, provider, &key.last4(), &name, svc.clock.now())
        .await?)
}

async fn keys(svc: &Account, org: &Org) -> Reply {
    let keys = svc.orgs.keys(&org.id).await?;
    Ok(json_response(StatusCode::OK, &json!({ "keys": keys })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    key: String,
}

async fn put_key(svc: &Account, org: &Org, provider: Provider, body: KeyBody) -> Reply {
    let key = provider_key(provider, &body.key)?;
    let meta = store_key(svc, &org.id, provider, &key).await?;
    Ok(json_response(StatusCode::OK, &json!({ "key": meta })))
}

async fn delete_key(svc: &Account, org: &Org, provider: Provider) -> Reply {
    if !has_key(svc, org, provider).await? {
        return Err(ApiError::not_found(
            ErrorCode::KeyNotFound,
            "the org has no key for this provider",
        ));
    }
    // A byok org keeps the keys its runtimes need: its agents would stop.
    let after: Vec<Provider> = stored_keys(svc, org)
        .await?
        .into_iter()
        .filter(|p| *p != provider)
        .collect();
    if let Some((runtime, _)) = missing_byok_key(org.billing_mode, &runtimes_in_use(svc, org).await?, &after)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::KeyInUse,
            format!("this byok org's agents on {runtime} use this key; switch them or the org first"),
        )
        .with_details(Details {
            provider: Some(provider),
            runtime: Some(runtime),
            ..Default::default()
        }));
    }
    // The table forgets the key first, on the condition that the org is as the rule above
    // saw it (an agent moving onto this key's runtime meanwhile wins, and this is refused);
    // only then does the secret go, so no runtime is ever pointed at a secret that is gone.
    if !svc.orgs.forget_key(org, provider).await? {
        return Err(org_changed());
    }
    svc.keys.delete(&org.id, provider).await.map_err(|e| {
        // Unused from now on; the next key stored for this provider overwrites it, or an
        // operator deletes it (the error names the secret, never its value).
        tracing::error!(org = %org.id, provider = %provider, error = %e, "the key is forgotten; deleting its secret failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::KeyStoreUnavailable,
            "the key is no longer used, but Secrets Manager did not delete it; an operator should",
        )
    })?;
    Ok(json_response(StatusCode::OK, &json!({ "deleted": provider })))
}

/// A rule-checked change lost to another change of the org (its billing mode or an
/// agent's runtime) made meanwhile: nothing was written.
fn org_changed() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::OrgChanged,
        "the org's billing mode, an agent's runtime or its keys changed meanwhile; read the org again",
    )
}

/// The providers the org stored keys for.
async fn stored_keys(svc: &Account, org: &Org) -> Result<Vec<Provider>, ApiError> {
    Ok(svc.orgs.keys(&org.id).await?.iter().map(|k| k.provider).collect())
}

/// Whether the org has stored a key for `provider`.
async fn has_key(svc: &Account, org: &Org, provider: Provider) -> Result<bool, ApiError> {
    Ok(stored_keys(svc, org).await?.contains(&provider))
}

/// The org's runtime and every agent's own, each once.
async fn runtimes_in_use(svc: &Account, org: &Org) -> Result<Vec<Runtime>, ApiError> {
    let mut runtimes = vec![org.runtime];
    for agent in svc.orgs.agent_runtimes(&org.id).await? {
        if !runtimes.contains(&agent.runtime) {
            runtimes.push(agent.runtime);
        }
    }
    Ok(runtimes)
}

/// The org's runtime and the agents that run another (reference 000: "you can change it
/// later per agent"). Any member may read it.
async fn agents(svc: &Account, org: &Org) -> Reply {
    let agents = svc.orgs.agent_runtimes(&org.id).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "runtime": org.runtime, "agents": agents }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentRuntimeBody {
    runtime: Runtime,
}

async fn set_agent_runtime(
    svc: &Account,
    org: &Org,
    me: &MemberId,
    agent: AgentId,
    body: AgentRuntimeBody,
) -> Reply {
    // The same rule as at creation: a byok org brings the key a runtime needs.
    if let Some((runtime, provider)) =
        missing_byok_key(org.billing_mode, &[body.runtime], &stored_keys(svc, org).await?)
    {
        return Err(missing_key(runtime, provider));
    }
    let set = svc
        .orgs
        .set_agent_runtime(org, &agent, body.runtime, me, svc.clock.now())
        .await?
        .ok_or_else(org_changed)?;
    Ok(json_response(StatusCode::OK, &json!({ "agent": set })))
}

async fn clear_agent_runtime(svc: &Account, org: &Org, agent: AgentId) -> Reply {
    if !svc.orgs.clear_agent_runtime(&org.id, &agent).await? {
        return Err(ApiError::not_found(
            ErrorCode::AgentNotFound,
            "this agent has no runtime of its own",
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "agent": agent, "runtime": org.runtime }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BillingModeBody {
    billing_mode: BillingMode,
}

/// Reference 000: BYOK → credits, deferred → BYOK or credits; nothing else.
async fn set_billing_mode(svc: &Account, org: &Org, body: BillingModeBody) -> Reply {
    let to = switch_billing_mode(org.billing_mode, body.billing_mode)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, ErrorCode::SwitchRefused, e.to_string()))?;
    // The mode it already has: nothing changes, nothing is written.
    if to == org.billing_mode {
        return Ok(json_response(
            StatusCode::OK,
            &json!({ "billing_mode": to, "changed": false }),
        ));
    }
    if let Some((runtime, provider)) = missing_byok_key(
        to,
        &runtimes_in_use(svc, org).await?,
        &stored_keys(svc, org).await?,
    ) {
        return Err(missing_key(runtime, provider));
    }
    if !svc.orgs.set_billing_mode(org, to).await? {
        return Err(org_changed());
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "billing_mode": to, "changed": true }),
    ))
}

async fn members(svc: &Account, org: &Org) -> Reply {
    let list: Vec<_> = svc
        .orgs
        .members(&org.id)
        .await?
        .into_iter()
        .map(|m| json!({ "member": m.id, "role": m.role, "monthly_limit": m.monthly_limit }))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "members": list })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    role: Role,
}

async fn set_member(svc: &Account, org: &Org, member: MemberId, body: MemberBody) -> Reply {
    match svc
        .orgs
        .set_role(&org.id, &member, body.role, svc.clock.now())
        .await?
    {
        MemberChange::Done => Ok(json_response(
            StatusCode::OK,
            &json!({ "member": member, "role": body.role }),
        )),
        MemberChange::LastOwner => Err(last_owner()),
        MemberChange::NotAMember => Err(ApiError::not_found(ErrorCode::MemberNotFound, "no such member")),
    }
}

async fn remove_member(svc: &Account, org: &Org, member: MemberId) -> Reply {
    match svc.orgs.remove(&org.id, &member, svc.clock.now()).await? {
        MemberChange::Done => Ok(json_response(StatusCode::OK, &json!({ "removed": member }))),
        MemberChange::LastOwner => Err(last_owner()),
        MemberChange::NotAMember => Err(ApiError::not_found(ErrorCode::MemberNotFound, "no such member")),
    }
}

fn last_owner() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::LastOwner,
        "an org always keeps at least one owner",
    )
}

fn entry_json(e: &LedgerEntry) -> serde_json::Value {
    json!({
        "id": e.id(),
        "kind": e.kind,
        "amount": e.amount,
        "balance_after": e.balance_after,
        "available_after": e.available_after,
        "shortfall": e.shortfall,
        "member": e.attribution.member,
        "api_key": e.attribution.api_key,
        "agent": e.attribution.agent,
        "created_at": e.created_at,
        "external": e.external,
    })
}

async fn balance(svc: &Account, org: &Org) -> Reply {
    let keys = async { stored_keys(svc, org).await };
    let (wallet, recent, keys) = tokio::try_join!(
        async { Ok::<_, ApiError>(svc.store.wallet(&org.id).await?) },
        async { Ok::<_, ApiError>(svc.store.history(&org.id, PageRequest::first(5)).await?) },
        keys,
    )?;
    let balance = wallet.balance().map_err(|e| ApiError::internal(&e))?;
    // The same verdict the runtime gets from may-i-run, for the org's own runtime.
    let billing = agent_credits_domain::billing(org.billing_mode, org.runtime, &keys);
    let v = verdict(org.billing_mode, &wallet, billing, None).map_err(|e| ApiError::internal(&e))?;
    let credits = (balance.as_decimal() * Decimal::from(org.credits_per_usd)).normalize();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "balance": balance,
            "available": v.available,
            "held": wallet.held,
            "credits": credits.to_string(),
            "credits_per_usd": org.credits_per_usd,
            "buckets": wallet.buckets,
            "low_balance": v.available <= wallet.settings.low_threshold(),
            "low_balance_threshold": wallet.settings.low_threshold(),
            "exhausted": v.available.is_zero(),
            "state": if v.allowed { "active" } else { "paused" },
            "pause_reason": v.reason.map(PauseReason::as_str),
            "billed_to": v.billed_to,
            "lifetime_added": wallet.lifetime_added,
            "lifetime_spent": wallet.lifetime_spent,
            "recent": recent.entries.iter().map(entry_json).collect::<Vec<_>>(),
            "auto_recharge": { "enabled": wallet.settings.recharge.enabled, "threshold": wallet.settings.recharge.threshold },
        }),
    ))
}

/// What the history routes filter on: kind, member and a date range (RFC 3339 instants or
/// `yyyy-mm-dd` days, UTC; `from` inclusive, `to` exclusive).
struct Filters {
    kind: Option<EntryKind>,
    member: Option<MemberId>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl Filters {
    fn of(req: &Request) -> Result<Filters, ApiError> {
        let kind = query_param(req, "kind")
            .map(|k| {
                EntryKind::parse(&k)
                    .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidKind, format!("no kind {k}")))
            })
            .transpose()?;
        let member = query_param(req, "member")
            .map(|m| {
                MemberId::parse(m).map_err(|e| ApiError::bad_request(ErrorCode::InvalidMember, e.to_string()))
            })
            .transpose()?;
        let instant = |name: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
            let Some(v) = query_param(req, name) else {
                return Ok(None);
            };
            if let Ok(t) = DateTime::parse_from_rfc3339(&v) {
                return Ok(Some(t.with_timezone(&Utc)));
            }
            NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| Some(d.and_utc()))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        ErrorCode::InvalidDate,
                        format!("{name} is an RFC 3339 time or yyyy-mm-dd"),
                    )
                })
        };
        let (from, to) = (instant("from")?, instant("to")?);
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidDate,
                "from must be before to",
            ));
        }
        Ok(Filters {
            kind,
            member,
            from,
            to,
        })
    }

    fn keeps(&self, e: &LedgerEntry) -> bool {
        self.kind.is_none_or(|k| e.kind == k)
            && self
                .member
                .as_ref()
                .is_none_or(|m| e.attribution.member.as_ref() == Some(m))
            && self.from.is_none_or(|f| e.created_at >= f)
            && self.to.is_none_or(|t| e.created_at < t)
    }
}

/// Pages of entries, newest first. Filters apply to the pages the store reads; a filtered
/// page may hold fewer entries than asked, and `next` continues it.
async fn history(svc: &Account, org: &Org, req: &Request) -> Reply {
    let limit = match query_param(req, "limit") {
        Some(l) => l
            .parse::<u16>()
            .ok()
            .filter(|l| (1..=PageRequest::MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidLimit,
                    format!("limit must be 1 to {}", PageRequest::MAX_LIMIT),
                )
            })?,
        None => 25,
    };
    let cursor = query_param(req, "cursor")
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::bad_request(ErrorCode::InvalidCursor, "cursor is the `next` of a page")
            })
        })
        .transpose()?;
    let filters = Filters::of(req)?;
    let page = match cursor {
        Some(c) => PageRequest::after_cursor(limit, c),
        None => PageRequest::first(limit),
    };
    let found = svc.store.history(&org.id, page).await?;
    let entries: Vec<_> = found
        .entries
        .iter()
        .filter(|e| filters.keeps(e))
        .map(entry_json)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "entries": entries, "next": found.next.map(|n| n.to_string()) }),
    ))
}

/// The whole history (filtered), newest first, as CSV for a spreadsheet.
async fn history_csv(svc: &Account, org: &Org, req: &Request) -> Reply {
    let filters = Filters::of(req)?;
    let mut csv = String::from(
        "id,created_at,kind,amount,balance_after,available_after,shortfall,member,api_key,agent,payment_intent,refund,dispute,invoice\n",
    );
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let found = svc.store.history(&org.id, page).await?;
        for e in found.entries.iter().filter(|e| filters.keeps(e)) {
            let cells = [
                e.id(),
                e.created_at.to_rfc3339(),
                e.kind.to_string(),
                e.amount.to_string(),
                e.balance_after.to_string(),
                e.available_after.to_string(),
                e.shortfall.to_string(),
                e.attribution
                    .member
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                e.attribution
                    .api_key
                    .as_ref()
                    .map(|k| k.to_string())
                    .unwrap_or_default(),
                e.attribution
                    .agent
                    .as_ref()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                e.external.payment_intent.clone().unwrap_or_default(),
                e.external.refund.clone().unwrap_or_default(),
                e.external.dispute.clone().unwrap_or_default(),
                e.external.invoice.clone().unwrap_or_default(),
            ];
            let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            csv.push_str(&row.join(","));
            csv.push('\n');
        }
        // Older than the range: nothing further can match.
        let past = filters
            .from
            .zip(found.entries.last())
            .is_some_and(|(f, last)| last.created_at < f);
        match found.next {
            Some(next) if !past => page = PageRequest::after_cursor(PageRequest::MAX_LIMIT, next),
            _ => break,
        }
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/csv; charset=utf-8")
        .header(
            "content-disposition",
            format!("attachment; filename=\"{}-history.csv\"", org.id),
        )
        .body(Body::Text(csv))
        .map_err(|e| ApiError::internal(&e))
}

/// A CSV cell: quoted when it holds a separator, a quote or a line break, and never read
/// as a formula by a spreadsheet.
fn csv_cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '@']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitBody {
    /// `null` removes the limit.
    monthly_limit_usd: Option<Usd>,
}

/// A member's monthly credit limit (reference 003: owners set them).
async fn set_limit(svc: &Account, org: &Org, member: MemberId, body: LimitBody) -> Reply {
    if !svc.orgs.members(&org.id).await?.iter().any(|m| m.id == member) {
        return Err(ApiError::not_found(ErrorCode::MemberNotFound, "no such member"));
    }
    svc.store
        .set_member_limit(&org.id, &member, body.monthly_limit_usd)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "member": member, "monthly_limit": body.monthly_limit_usd }),
    ))
}

/// Usage by member for a month (`?month=yyyy-mm`, this month by default), with limits.
async fn month_usage(svc: &Account, org: &Org, req: &Request) -> Reply {
    let month = match query_param(req, "month") {
        Some(m) => NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d")
            .map(|_| m)
            .map_err(|_| ApiError::bad_request(ErrorCode::InvalidMonth, "month is yyyy-mm"))?,
        None => svc.clock.now().format("%Y-%m").to_string(),
    };
    let (rows, members) = tokio::try_join!(
        async { Ok::<_, ApiError>(svc.store.month_usage(&org.id, &month).await?) },
        async { Ok::<_, ApiError>(svc.orgs.members(&org.id).await?) },
    )?;
    let rows: Vec<_> = members
        .iter()
        .map(|m| {
            let row = rows.iter().find(|r| r.member == m.id.as_str());
            let (spent, held, unbilled) = row.map_or((Usd::ZERO, Usd::ZERO, Usd::ZERO), |r| {
                (r.spent, r.held, r.unbilled)
            });
            json!({
                "member": m.id, "role": m.role, "spent": spent, "held": held, "unbilled": unbilled,
                "monthly_limit": m.monthly_limit,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "month": month, "members": rows }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    /// The notifications to mark; absent with `all: true` marks every unread one.
    ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
}

async fn mark_read(svc: &Account, org: &Org, body: ReadBody) -> Reply {
    let ids = match (body.ids, body.all) {
        (Some(ids), false) if !ids.is_empty() && ids.len() <= 100 => Some(ids),
        (None, true) => None,
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidRequest,
                "give either ids (1 to 100) or all: true",
            ));
        }
    };
    if ids
        .as_ref()
        .is_some_and(|ids| ids.iter().any(|i| i.is_empty() || i.len() > 200))
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            "an id is empty or too long",
        ));
    }
    let marked = svc.store.mark_read(&org.id, ids.as_deref()).await?;
    Ok(json_response(StatusCode::OK, &json!({ "marked": marked })))
}

async fn notifications(svc: &Account, org: &Org) -> Reply {
    let list: Vec<_> = svc
        .store
        .notifications(&org.id, 50)
        .await?
        .into_iter()
        .map(|n| {
            json!({
                "id": n.id, "kind": n.kind, "available": n.available, "created_at": n.created_at,
                "read": n.read, "reason": n.reason,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "notifications": list })))
}
