//! `POST /v1/orgs/{org}/grants` (operators): credits nobody paid for by card, each one a
//! ledger entry of its kind, once per `request_id`.
//!
//! Kinds and where they go are the domain's (`agent_credits_domain::grants`): `referral`
//! and `creator_earnings` are earned (withdrawable, never dated); `support` and
//! `promotional` may carry `expires_at`, and dated credits are spent first and expire on
//! their date by the sweep.

use agent_credits_domain::{
    BillingMode, ChangeRequest, GrantKind, GrantRefused, HoldId, OrgId, PositiveUsd, Refusal, WalletStore,
    keys,
};
use agent_credits_http::{ApiError, ErrorCode, Reply, json_response};
use chrono::{DateTime, Utc};
use lambda_http::http::StatusCode;
use serde::Deserialize;

use crate::handler::{Usage, refused};
use crate::views;

/// The longest note kept on a grant's entry.
pub const NOTE_MAX_CHARS: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantBody {
    kind: Option<String>,
    amount_usd: Option<String>,
    /// The grant's idempotency key: the same id grants once.
    request_id: Option<HoldId>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// What a grant asks, read and checked: anything wrong is a 400 and nothing is written.
struct Grant {
    kind: GrantKind,
    amount: PositiveUsd,
    id: HoldId,
    expires_at: Option<DateTime<Utc>>,
    note: Option<String>,
}

/// The grant as asked, its date unchecked: a retry of a grant made before is answered
/// even once its date has passed.
fn read(body: GrantBody) -> Result<Grant, ApiError> {
    let kind = body
        .kind
        .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidKind, "kind is required"))?;
    let kind = GrantKind::parse(&kind).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidKind,
            "kind is referral, creator_earnings, support or promotional",
        )
    })?;
    let amount = body
        .amount_usd
        .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidAmount, "amount_usd is required"))?;
    let amount = PositiveUsd::parse(&amount).map_err(ApiError::money)?;
    let id = body
        .request_id
        .ok_or_else(|| ApiError::bad_request(ErrorCode::MissingRequestId, "request_id is required"))?;
    let expires_at = body
        .expires_at
        .map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::bad_request(ErrorCode::InvalidDate, "expires_at is an RFC 3339 time"))
        })
        .transpose()?;
    let note = body.note.filter(|n| !n.trim().is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > NOTE_MAX_CHARS) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            format!("note is at most {NOTE_MAX_CHARS} characters"),
        ));
    }
    Ok(Grant {
        kind,
        amount,
        id,
        expires_at,
        note,
    })
}

pub(crate) async fn grant(svc: &Usage, org: OrgId, body: GrantBody) -> Reply {
    let grant = read(body)?;
    let req = ChangeRequest::grant(
        org.clone(),
        grant.kind,
        grant.amount,
        grant.expires_at,
        keys::grant(&grant.id),
    )
    .map_err(|GrantRefused::EarnedCreditsDoNotExpire| {
        ApiError::bad_request(
            ErrorCode::EarnedCreditsDoNotExpire,
            "referral and creator_earnings credits do not expire: send them without expires_at",
        )
    })?;
    let req = match grant.note {
        Some(note) => req.with_note(note),
        None => req,
    };
    // A retry of a grant made before is answered as it was, whatever changed since.
    let outcome = match svc.store.made_before(&req).await? {
        Some(outcome) => outcome,
        None => {
            check_now(svc, &org, grant.expires_at).await?;
            svc.store.apply(req).await?
        }
    };
    let applied = outcome.map_err(|r| match r {
        Refusal::IdempotencyKeyReused => ApiError::conflict(
            ErrorCode::IdempotencyKeyReused,
            "this request_id was used for a different grant",
        ),
        other => refused(other),
    })?;
    let status = if applied.replayed() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let wallet = svc.store.wallet(&org).await?;
    Ok(json_response(
        status,
        &views::Granted::new(
            &org,
            &grant.id,
            grant.expires_at,
            &wallet,
            applied.entry(),
            applied.replayed(),
        ),
    ))
}

/// What a new grant needs now: a date still to come, an org on credits.
async fn check_now(svc: &Usage, org: &OrgId, expires_at: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    if expires_at.is_some_and(|t| t <= svc.clock.now()) {
        return Err(ApiError::bad_request(
            ErrorCode::ExpiryInThePast,
            "expires_at must be in the future",
        ));
    }
    let Some(profile) = svc.orgs.get(org).await? else {
        return Err(ApiError::not_found(
            ErrorCode::UnknownOrg,
            format!("no org {org}"),
        ));
    };
    // A byok or deferred org's wallet is not used (reference 000): credits granted there
    // would sit unseen. Its owners switch it to credits first.
    if profile.billing_mode != BillingMode::Credits {
        return Err(ApiError::conflict(
            ErrorCode::NotACreditsOrg,
            format!(
                "this org's billing mode is {}: its wallet is not used; it takes grants once it is on credits",
                profile.billing_mode.as_str()
            ),
        ));
    }
    Ok(())
}
