//! Withdrawals of earned credits (reference 001), the owner's side:
//! - `POST /v1/orgs/{org}/withdrawals` (owners): earned credits leave the wallet at once
//!   into a payout waiting for an operator, once per `request_id`;
//! - `GET /v1/orgs/{org}/withdrawals` (who may view billing): what may be withdrawn, the
//!   minimum, and every payout with its state.
//!
//! Operators settle payouts through the usage function's IAM routes. Paying out the money
//! itself is outside this service (README, "Withdrawals").

use agent_credits_domain::{
    ChangeRequest, NotificationKind, Org, PayoutStep, PositiveUsd, Refusal, Usd, WalletStore, WithdrawalId,
    keys,
};
use agent_credits_http::{ApiError, ErrorCode, Membership, Reply, json_response};
use lambda_http::http::StatusCode;
use serde::Deserialize;

use crate::{Account, views};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WithdrawalBody {
    amount_usd: Option<String>,
    /// The withdrawal's id and idempotency key: the same id withdraws once.
    request_id: Option<WithdrawalId>,
}

pub(crate) async fn request(svc: &Account, who: &Membership, body: WithdrawalBody) -> Reply {
    let org = &who.org.id;
    let amount = body
        .amount_usd
        .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidAmount, "amount_usd is required"))?;
    let amount = PositiveUsd::parse(&amount).map_err(ApiError::money)?;
    let id = body
        .request_id
        .ok_or_else(|| ApiError::bad_request(ErrorCode::MissingRequestId, "request_id is required"))?;
    let req = ChangeRequest::withdraw(org.clone(), amount, keys::withdrawal(&id))
        .with_payout(PayoutStep::Requested {
            id: id.clone(),
            amount: amount.usd(),
            by: who.member.id.clone(),
        })
        .notifying(NotificationKind::CreditWithdrawalRequested);
    // A retry of a withdrawal made before is answered as it was, even if the minimum
    // changed since.
    let outcome = match svc.store.made_before(&req).await? {
        Some(outcome) => outcome,
        None => {
            allowed(svc, amount)?;
            svc.store.apply(req).await?
        }
    };
    let applied = outcome.map_err(|r| match r {
        Refusal::IdempotencyKeyReused => ApiError::conflict(
            ErrorCode::IdempotencyKeyReused,
            "this request_id was used for another withdrawal",
        ),
        other => ApiError::refused(other),
    })?;
    let payout =
        svc.store.payout(org, &id).await?.ok_or_else(|| {
            ApiError::internal(&format!("withdrawal {id} of {org} has an entry but no record"))
        })?;
    let wallet = svc.store.wallet(org).await?;
    let status = if applied.replayed() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json_response(
        status,
        &views::WithdrawalMade {
            withdrawal: &payout,
            entry_id: applied.entry().id(),
            withdrawable: wallet.withdrawable().map_err(|e| ApiError::internal(&e))?,
            replayed: applied.replayed(),
        },
    ))
}

/// What a new withdrawal must be: whole cents (a payout is money), at least the minimum.
fn allowed(svc: &Account, amount: PositiveUsd) -> Result<(), ApiError> {
    if !whole_cents(amount.usd()) {
        return Err(ApiError::bad_request(
            ErrorCode::FractionOfACent,
            "a withdrawal is in whole cents",
        ));
    }
    if amount.usd() < svc.withdrawal_minimum {
        return Err(ApiError::bad_request(
            ErrorCode::BelowMinimum,
            format!("the least a withdrawal may be is {}", svc.withdrawal_minimum),
        ));
    }
    Ok(())
}

pub(crate) fn whole_cents(amount: Usd) -> bool {
    amount.to_cents().ok().and_then(|c| Usd::from_cents(c).ok()) == Some(amount)
}

pub(crate) async fn list(svc: &Account, org: &Org) -> Reply {
    let wallet = svc.store.wallet(&org.id).await?;
    let payouts = svc.store.payouts(&org.id).await?;
    Ok(json_response(
        StatusCode::OK,
        &views::Withdrawals {
            withdrawable: wallet.withdrawable().map_err(|e| ApiError::internal(&e))?,
            earned: wallet.buckets.earned,
            minimum_usd: svc.withdrawal_minimum,
            withdrawals: &payouts,
        },
    ))
}
