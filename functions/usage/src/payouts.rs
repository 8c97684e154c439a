//! Withdrawals, the operators' side (IAM): a pending payout settled as paid, with the
//! payout's reference, or as failed, with a reason, when its credits come back. Once:
//! each step is a change of the wallet whose transaction needs the payout still pending
//! (`agent_credits_domain::withdrawals`).
//! - `POST /v1/orgs/{org}/withdrawals/{withdrawal}/paid`: `{"payout_reference": "..."}`
//! - `POST /v1/orgs/{org}/withdrawals/{withdrawal}/failed`: `{"reason": "..."}`
//! - `GET /v1/withdrawals/pending`: every org's payouts waiting to be paid, oldest first

/// Every org's pending payouts, oldest first.
pub(crate) async fn pending(svc: &Usage) -> Reply {
    let pending = svc.store.pending_payouts().await?;
    let rows: Vec<views::PendingPayout<'_>> = pending
        .iter()
        .map(|(org, withdrawal)| views::PendingPayout { org, withdrawal })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &views::PendingPayouts { withdrawals: rows },
    ))
}

use agent_credits_domain::{
    ChangeRequest, EntryKind, OrgId, PayoutStep, PositiveUsd, WalletStore, WithdrawalId, keys,
};
use agent_credits_http::{ApiError, ErrorCode, Reply, json_response};
use lambda_http::http::StatusCode;
use serde::Deserialize;

use crate::handler::Usage;
use crate::views;

/// The longest reference or reason kept.
const TEXT_MAX_CHARS: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PaidBody {
    payout_reference: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailedBody {
    reason: Option<String>,
}

fn text(value: Option<String>, name: &str) -> Result<String, ApiError> {
    let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    match value {
        None => Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            format!("{name} is required"),
        )),
        Some(v) if v.chars().count() > TEXT_MAX_CHARS => Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            format!("{name} is at most {TEXT_MAX_CHARS} characters"),
        )),
        Some(v) => Ok(v),
    }
}

pub(crate) async fn paid(svc: &Usage, org: OrgId, id: WithdrawalId, body: PaidBody) -> Reply {
    let reference = text(body.payout_reference, "payout_reference")?;
    // The reference is part of what the key promises: the same step with another
    // reference is another payout, refused, not answered as this one.
    let req = ChangeRequest::note(org.clone(), EntryKind::WithdrawalPaid, keys::withdrawal_paid(&id))
        .with_fingerprint(format!("reference:{reference}"))
        .with_note(reference.clone())
        .with_payout(PayoutStep::Paid {
            id: id.clone(),
            reference,
        });
    settle(svc, org, id, |_| Ok(req)).await
}

pub(crate) async fn failed(svc: &Usage, org: OrgId, id: WithdrawalId, body: FailedBody) -> Reply {
    let reason = text(body.reason, "reason")?;
    let key = keys::withdrawal_failed(&id);
    settle(svc, org.clone(), id.clone(), move |amount| {
        let amount = PositiveUsd::new(amount).map_err(|e| ApiError::internal(&e))?;
        Ok(ChangeRequest::withdrawal_returned(org, amount, key)
            .with_fingerprint(format!("{amount}|reason:{reason}"))
            .with_note(reason.clone())
            .with_payout(PayoutStep::Failed { id, reason }))
    })
    .await
}

/// Settles the payout with the change `make` builds from its amount: `404` for none,
/// `409 withdrawal_settled` once settled the other way; the same step again answers it.
async fn settle(
    svc: &Usage,
    org: OrgId,
    id: WithdrawalId,
    make: impl FnOnce(agent_credits_domain::Usd) -> Result<ChangeRequest, ApiError>,
) -> Reply {
    let Some(payout) = svc.store.payout(&org, &id).await? else {
        return Err(ApiError::not_found(
            ErrorCode::WithdrawalNotFound,
            format!("no withdrawal {id} in {org}"),
        ));
    };
    let applied = svc
        .store
        .apply(make(payout.amount)?)
        .await?
        .map_err(|r| match r {
            agent_credits_domain::Refusal::IdempotencyKeyReused => ApiError::conflict(
                ErrorCode::IdempotencyKeyReused,
                "the withdrawal was settled so before with another reference or reason",
            ),
            other => ApiError::refused(other),
        })?;
    let payout = svc
        .store
        .payout(&org, &id)
        .await?
        .ok_or_else(|| ApiError::internal(&format!("withdrawal {id} of {org} vanished")))?;
    Ok(json_response(
        StatusCode::OK,
        &views::Settled {
            withdrawal: &payout,
            entry_id: applied.entry().id(),
            replayed: applied.replayed(),
        },
    ))
}
