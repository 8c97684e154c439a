//! Holds: credits reserved before a call (`POST .../holds`) and released without one.

use agent_credits_domain::{
    AgentId, ApiKeyId, Applied, Attribution, Billing, ChangeRequest, Context, HoldId, MemberId, OrgId,
    PositiveUsd, Refusal, Usd, WalletStore, keys,
};
use agent_credits_http::{ApiError, ErrorCode, Reply, json_response};
use chrono::{DateTime, Duration, Utc};
use lambda_http::http::StatusCode;
use serde::Deserialize;

use crate::handler::{Usage, billing_of, held_elsewhere, opened, paused, refused, wallet_in, wallet_of};
use crate::reported::kind_named;
use crate::views;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldRequest {
    hold_id: HoldId,
    amount: PositiveUsd,
    #[serde(default)]
    ttl_seconds: Option<i64>,
    #[serde(default)]
    member: Option<MemberId>,
    #[serde(default)]
    api_key: Option<ApiKeyId>,
    #[serde(default)]
    agent: Option<AgentId>,
    /// What the call will consume (`llm` by default): a provider key holds nothing only
    /// for a model call.
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    feature: Option<String>,
    /// Whose wallet pays: the org's (default) or, `personal`, the member's own.
    #[serde(default)]
    context: Context,
}

pub(crate) async fn hold(svc: &Usage, org: OrgId, body: HoldRequest) -> Reply {
    let kind = kind_named(body.kind.as_deref())?;
    let feature = agent_credits_http::named(body.feature.as_deref())?;
    let org = wallet_in(org, body.context, body.member.as_ref())?;
    let (wallet, mode) = wallet_of(svc, &org).await?;
    match billing_of(svc, &org, mode, kind, body.agent.as_ref(), false)
        .await?
        .0
    {
        Ok(Billing::Credits) => {}
        Ok(Billing::ProviderKey) => {
            return Ok(json_response(
                StatusCode::OK,
                &views::Hold {
                    hold_id: body.hold_id,
                    entry_id: None,
                    held: Usd::ZERO,
                    available: None,
                    expires_at: None,
                    billed_to: Some(Billing::ProviderKey),
                },
            ));
        }
        Err(reason) => return Err(paused(reason)),
    }
    let ttl = body.ttl_seconds.unwrap_or(svc.settings.hold_ttl_seconds);
    if !(1..=svc.settings.max_hold_ttl_seconds).contains(&ttl) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidTtl,
            format!(
                "ttl_seconds must be from 1 to {}",
                svc.settings.max_hold_ttl_seconds
            ),
        ));
    }
    let expires_at: DateTime<Utc> = svc.clock.now() + Duration::seconds(ttl);
    let attribution = Attribution {
        member: body.member,
        api_key: body.api_key,
        agent: body.agent,
        model: None,
        consumable: kind,
        feature,
        // The capture names the creator: a hold charges nothing, so it earns nothing.
        creator: None,
    };
    let req = ChangeRequest::hold(
        org.clone(),
        body.hold_id.clone(),
        body.amount,
        expires_at,
        keys::hold(&body.hold_id),
    )
    .attributed_to(attribution);
    opened(svc, &wallet).await?;
    let mut outcome = svc.store.apply(req.clone()).await?;
    if matches!(outcome, Err(Refusal::InsufficientFunds { .. }))
        && !wallet.held.is_zero()
        && svc.store.expire_holds(&org).await?.released > 0
    {
        // Expired holds were still counted against the wallet: released now, try again.
        outcome = svc.store.apply(req).await?;
    }
    let (entry, expires_at) = match outcome.map_err(refused)? {
        Applied::Committed(e) => (e, expires_at),
        // The hold as it was made: its expiry then, not one counted from this retry.
        Applied::Replayed(e) => {
            let made = svc.store.hold(&org, &body.hold_id).await?;
            (e, made.map_or(expires_at, |h| h.expires))
        }
    };
    Ok(json_response(
        StatusCode::CREATED,
        &views::Hold {
            hold_id: body.hold_id,
            entry_id: Some(entry.id()),
            held: body.amount.usd(),
            available: Some(entry.available_after),
            expires_at: Some(expires_at),
            billed_to: None,
        },
    ))
}

pub(crate) async fn release(
    svc: &Usage,
    path_org: OrgId,
    context: Context,
    member: Option<MemberId>,
    hold: HoldId,
) -> Reply {
    let org = wallet_in(path_org.clone(), context, member.as_ref())?;
    let req = ChangeRequest::release(org, hold.clone(), keys::release(&hold));
    let e = match svc.store.apply(req).await? {
        Ok(applied) => applied.into_entry(),
        Err(Refusal::HoldNotFound) => {
            held_elsewhere(svc, &path_org, context, member.as_ref(), &hold).await?;
            return Err(refused(Refusal::HoldNotFound));
        }
        Err(other) => return Err(refused(other)),
    };
    Ok(json_response(
        StatusCode::OK,
        &views::Released {
            hold_id: hold,
            released: e.held_change.magnitude(),
            available: e.available_after,
        },
    ))
}
