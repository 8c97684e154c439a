use std::sync::Arc;

use agent_credits_domain::{
    Action, BillingMode, Clock, EntryKind, LedgerEntry, MemberId, Org, OrgId, PageRequest, PurchasePolicy,
    Role, Runtime, WalletSettings, WalletState, WalletStore,
};
use agent_credits_dynamo::{DynamoWalletStore, MemberChange, OrgStore};
use agent_credits_http::{
    ApiError, dashboard_caller, json_response, parse_json, path_segments, query_param, respond,
};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

pub struct Account {
    pub store: DynamoWalletStore,
    pub orgs: OrgStore,
    pub clock: Arc<dyn Clock>,
}

type Reply = Result<Response<Body>, ApiError>;

pub async fn handle(svc: &Account, req: Request) -> Response<Body> {
    respond(route(svc, &req).await)
}

async fn route(svc: &Account, req: &Request) -> Reply {
    let me = dashboard_caller(req)?;
    let segments = path_segments(req);
    let path: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (req.method(), path.as_slice()) {
        (&Method::POST, ["v1", "orgs"]) => create_org(svc, &me, parse_json(req)?).await,
        (method, ["v1", "orgs", org, rest @ ..]) => {
            let org = OrgId::parse(*org).map_err(|e| ApiError::bad_request("invalid_org", e.to_string()))?;
            // Membership first: a non-member learns nothing, not even whether the org exists.
            let (org, role) = membership(svc, &org, &me).await?;
            match (method, rest) {
                (&Method::GET, []) => Ok(json_response(
                    StatusCode::OK,
                    &json!({ "org": org, "role": role }),
                )),
                (&Method::GET, ["members"]) => members(svc, &org, role).await,
                (&Method::PUT, ["members", member]) => {
                    set_member(svc, &org, role, member, parse_json(req)?).await
                }
                (&Method::DELETE, ["members", member]) => remove_member(svc, &org, role, member).await,
                (&Method::GET, ["balance"]) => balance(svc, &org, role).await,
                (&Method::GET, ["history"]) => history(svc, &org, role, req).await,
                (&Method::GET, ["notifications"]) => notifications(svc, &org, role).await,
                _ => Err(ApiError::not_found("route_not_found", "no such route")),
            }
        }
        _ => Err(ApiError::not_found("route_not_found", "no such route")),
    }
}

async fn membership(svc: &Account, org: &OrgId, me: &MemberId) -> Result<(Org, Role), ApiError> {
    match svc.orgs.membership(org, me).await? {
        Some((org, member)) => Ok((org, member.role)),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "not a member of this org",
        )),
    }
}

fn require(org: &Org, role: Role, action: Action) -> Result<(), ApiError> {
    if org.allows(role, action) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("a {} may not do this here", role.as_str()),
        ))
    }
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
}

async fn create_org(svc: &Account, me: &MemberId, body: NewOrg) -> Reply {
    let Some(runtime) = body.runtime else {
        return Err(ApiError::bad_request(
            "runtime_required",
            "choose a runtime: claude_code, codex, gemini_cli, open_code or hermes",
        ));
    };
    let Some(billing_mode) = body.billing_mode else {
        return Err(ApiError::bad_request(
            "billing_mode_required",
            "choose how to pay: credits, byok or deferred",
        ));
    };
    if body.name.trim().is_empty() || body.name.len() > 200 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name must be 1 to 200 characters",
        ));
    }
    if let (BillingMode::Byok, Some(provider)) = (billing_mode, runtime.required_byok_provider()) {
        // Keys arrive through the BYOK key route; until it exists, a BYOK org on a runtime
        // that needs its own provider key cannot be created without one.
        return Err(ApiError::bad_request(
            "provider_key_required",
            format!("a byok org on {runtime} needs an {provider} key at creation"),
        )
        .with_details(json!({ "provider": provider })));
    }
    let org = Org {
        id: body.id,
        name: body.name.trim().to_owned(),
        runtime,
        billing_mode,
        purchase_policy: body.purchase_policy,
        members_see_billing: body.members_see_billing.unwrap_or(true),
        credits_per_usd: agent_credits_domain::account::DEFAULT_CREDITS_PER_USD,
        created_at: svc.clock.now(),
    };
    let settings = WalletSettings {
        billing_mode: Some(billing_mode),
        ..Default::default()
    };
    if !svc.orgs.create(&org, me, &settings).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "org_exists",
            "an org with this id exists",
        ));
    }
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "org": org, "role": Role::Owner }),
    ))
}

async fn members(svc: &Account, org: &Org, role: Role) -> Reply {
    require(org, role, Action::ViewBilling)?;
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

async fn set_member(svc: &Account, org: &Org, role: Role, member: &str, body: MemberBody) -> Reply {
    require(org, role, Action::ManageMembers)?;
    let member =
        MemberId::parse(member).map_err(|e| ApiError::bad_request("invalid_member", e.to_string()))?;
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
        MemberChange::NotAMember => Err(ApiError::not_found("member_not_found", "no such member")),
    }
}

async fn remove_member(svc: &Account, org: &Org, role: Role, member: &str) -> Reply {
    require(org, role, Action::ManageMembers)?;
    let member =
        MemberId::parse(member).map_err(|e| ApiError::bad_request("invalid_member", e.to_string()))?;
    match svc.orgs.remove(&org.id, &member).await? {
        MemberChange::Done => Ok(json_response(StatusCode::OK, &json!({ "removed": member }))),
        MemberChange::LastOwner => Err(last_owner()),
        MemberChange::NotAMember => Err(ApiError::not_found("member_not_found", "no such member")),
    }
}

fn last_owner() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "last_owner",
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

async fn balance(svc: &Account, org: &Org, role: Role) -> Reply {
    require(org, role, Action::ViewBilling)?;
    let wallet = svc.store.wallet(&org.id).await?;
    let balance = wallet.balance().map_err(|e| ApiError::internal(&e))?;
    let available = wallet.available().map_err(|e| ApiError::internal(&e))?;
    let recent = svc.store.history(&org.id, PageRequest::first(5)).await?;
    let credits = (balance.as_decimal() * Decimal::from(org.credits_per_usd)).normalize();
    let (state, reason) = match wallet.state {
        WalletState::Active => ("active", None),
        WalletState::Paused(r) => ("paused", Some(r.as_str())),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "balance": balance,
            "available": available,
            "held": wallet.held,
            "credits": credits.to_string(),
            "credits_per_usd": org.credits_per_usd,
            "buckets": wallet.buckets,
            "low_balance": available <= wallet.settings.low_threshold(),
            "low_balance_threshold": wallet.settings.low_threshold(),
            "exhausted": available.is_zero(),
            "state": state,
            "pause_reason": reason,
            "lifetime_added": wallet.lifetime_added,
            "lifetime_spent": wallet.lifetime_spent,
            "recent": recent.entries.iter().map(entry_json).collect::<Vec<_>>(),
            "auto_recharge": { "enabled": wallet.settings.recharge.enabled, "threshold": wallet.settings.recharge.threshold },
        }),
    ))
}

/// Pages of entries, newest first. Filters apply to the pages the store reads; a filtered
/// page may hold fewer entries than asked, and `next` continues it.
async fn history(svc: &Account, org: &Org, role: Role, req: &Request) -> Reply {
    require(org, role, Action::ViewBilling)?;
    let limit = match query_param(req, "limit") {
        Some(l) => l
            .parse::<u16>()
            .ok()
            .filter(|l| (1..=PageRequest::MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_limit",
                    format!("limit must be 1 to {}", PageRequest::MAX_LIMIT),
                )
            })?,
        None => 25,
    };
    let cursor = query_param(req, "cursor")
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is the `next` of a page"))
        })
        .transpose()?;
    let kind = query_param(req, "kind")
        .map(|k| {
            EntryKind::parse(&k).ok_or_else(|| ApiError::bad_request("invalid_kind", format!("no kind {k}")))
        })
        .transpose()?;
    let member = query_param(req, "member")
        .map(|m| MemberId::parse(m).map_err(|e| ApiError::bad_request("invalid_member", e.to_string())))
        .transpose()?;
    let page = match cursor {
        Some(c) => PageRequest::after_cursor(limit, c),
        None => PageRequest::first(limit),
    };
    let found = svc.store.history(&org.id, page).await?;
    let entries: Vec<_> = found
        .entries
        .iter()
        .filter(|e| kind.is_none_or(|k| e.kind == k))
        .filter(|e| {
            member
                .as_ref()
                .is_none_or(|m| e.attribution.member.as_ref() == Some(m))
        })
        .map(entry_json)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "entries": entries, "next": found.next.map(|n| n.to_string()) }),
    ))
}

async fn notifications(svc: &Account, org: &Org, role: Role) -> Reply {
    require(org, role, Action::ViewBilling)?;
    let list: Vec<_> = svc
        .store
        .notifications(&org.id, 50)
        .await?
        .into_iter()
        .map(|n| json!({ "kind": n.kind, "available": n.available, "created_at": n.created_at, "read": n.read }))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "notifications": list })))
}
