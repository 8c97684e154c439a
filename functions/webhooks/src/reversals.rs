//! Money going back: refunds and disputes of payments that credited a wallet.
//!
//! Both name the charge's PaymentIntent, through which the payment record
//! (`STRIPE#<payment intent>`, written once the payment's credit committed) gives the org
//! and what the payment credited. A refund of a payment not credited yet is answered 409
//! (Stripe delivers it again later): applied before its payment, it would find nothing to
//! take back, and the late credit would then stand.

use agent_credits_domain::{
    Bucket, ChangeRequest, EntryKind, ExternalRefs, IdempotencyKey, PauseReason, PositiveUsd, Usd,
    WalletStore,
};
use agent_credits_dynamo::PaymentRecord;
use agent_credits_http::ApiError;
use lambda_http::http::StatusCode;
use rust_decimal::Decimal;
use serde_json::json;
use stripe_core::refund::ListRefund;
use stripe_shared::{Charge, Dispute, DisputeStatus, Refund};
use stripe_webhook::Event;

use crate::{Reply, Webhooks, acknowledged, applied, not_yet_credited};

/// `charge.refunded`: each refund of the charge takes back its share of the credits the
/// payment added (a package's bonus in proportion), never below zero; what is no longer
/// there is recorded as the entry's shortfall.
pub async fn refund(svc: &Webhooks, event: &Event, charge: &Charge) -> Reply {
    let Some(intent) = charge.payment_intent.as_ref().map(|p| p.id().to_string()) else {
        return Ok(acknowledged("ignored"));
    };
    let payment = credited(svc, &intent).await?;
    let refunds = refunds_of(svc, charge).await?;
    let mut entries = vec![];
    for r in refunds.iter().filter(|r| counts(r)) {
        let Some(amount) = share(&payment, r.amount)? else {
            continue;
        };
        let key = refund_key(r.id.as_str(), "")?;
        let external = ExternalRefs {
            stripe_event: Some(event.id.to_string()),
            payment_intent: Some(intent.clone()),
            charge: Some(charge.id.to_string()),
            refund: Some(r.id.to_string()),
            ..Default::default()
        };
        let req = ChangeRequest::take_back(payment.org.clone(), EntryKind::Refund, amount, key)
            .map_err(|e| ApiError::internal(&e))?
            .with_external(external);
        let outcome = svc.store.apply(req).await?;
        let entry = outcome
            .entry()
            .ok_or_else(|| ApiError::internal(&format!("a refund came back {outcome:?}")))?;
        entries.push(json!({
            "refund": r.id.as_str(),
            "entry_id": entry.id(),
            "taken": entry.amount.magnitude().to_string(),
            "shortfall": entry.shortfall.to_string(),
        }));
    }
    Ok(agent_credits_http::json_response(
        StatusCode::OK,
        &json!({ "received": true, "result": "refunded", "refunds": entries }),
    ))
}

/// A refund takes credits back unless it failed or was cancelled (a pending refund
/// counts: Stripe counts it in `amount_refunded` too).
fn counts(r: &Refund) -> bool {
    !matches!(r.status.as_deref(), Some("failed" | "canceled"))
}

fn refund_key(refund: &str, step: &str) -> Result<IdempotencyKey, ApiError> {
    IdempotencyKey::parse(format!("stripe:refund:{refund}{step}"))
        .map_err(|_| ApiError::bad_request("invalid_refund", "the refund id is not usable"))
}

/// A refund that failed or was cancelled after it took credits back (the customer's bank
/// returned it, say): the customer did not get the money, so the credits it took come
/// back into purchased, once (`adjustment`, key `stripe:refund:<refund>:failed`). What the
/// refund could not take (its shortfall) was never taken and does not come back. A refund
/// never applied gives nothing back: `charge.refunded` reads the refunds' current status
/// from Stripe, so a refund that failed first is never taken.
pub async fn refund_failed(svc: &Webhooks, event: &Event, refund: &Refund) -> Reply {
    if counts(refund) {
        return Ok(acknowledged("ignored"));
    }
    let Some(intent) = refund.payment_intent.as_ref().map(|p| p.id().to_string()) else {
        return Ok(acknowledged("ignored"));
    };
    let payment = credited(svc, &intent).await?;
    let Some(taken) = svc
        .store
        .entry_for_key(&payment.org, &refund_key(refund.id.as_str(), "")?)
        .await?
    else {
        return Ok(acknowledged("refund_not_applied"));
    };
    let Ok(amount) = PositiveUsd::new(taken.amount.magnitude()) else {
        return Ok(acknowledged("nothing_taken"));
    };
    let external = ExternalRefs {
        stripe_event: Some(event.id.to_string()),
        payment_intent: Some(intent),
        charge: refund.charge.as_ref().map(|c| c.id().to_string()),
        refund: Some(refund.id.to_string()),
        ..Default::default()
    };
    let req = ChangeRequest::credit(
        payment.org,
        EntryKind::Adjustment,
        Bucket::Purchased,
        amount,
        refund_key(refund.id.as_str(), ":failed")?,
    )
    .map_err(|e| ApiError::internal(&e))?
    .with_external(external);
    applied(
        svc.store.apply(req).await?,
        "refund_reversed",
        "refund_already_reversed",
    )
}

/// The charge's refunds with their current status, from Stripe's API; from the event only
/// when there is no Stripe key to ask with (a status there may be stale: a refund that
/// failed since would be taken).
async fn refunds_of(svc: &Webhooks, charge: &Charge) -> Result<Vec<Refund>, ApiError> {
    let embedded = charge.refunds.as_ref().filter(|l| !l.has_more);
    let stripe = match (svc.stripe.as_ref(), embedded) {
        (Some(stripe), _) => stripe,
        (None, Some(list)) => return Ok(list.data.clone()),
        (None, None) => {
            return Err(ApiError::internal(
                &"a charge without its refunds, and no Stripe key to list them",
            ));
        }
    };
    let mut refunds: Vec<Refund> = vec![];
    let mut page = ListRefund::new().charge(charge.id.as_str()).limit(100);
    loop {
        let list = page.send(stripe).await.map_err(|e| {
            tracing::error!(error = %e, "listing a charge's refunds failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "stripe_unavailable",
                "Stripe could not list the charge's refunds",
            )
        })?;
        let last = list.data.last().map(|r| r.id.to_string());
        refunds.extend(list.data);
        match (list.has_more, last) {
            (true, Some(last)) => {
                page = ListRefund::new()
                    .charge(charge.id.as_str())
                    .limit(100)
                    .starting_after(last)
            }
            _ => return Ok(refunds),
        }
    }
}

/// The credits `cents` of the payment stand for: the payment's credits in proportion to
/// what it charged, rounded once, never more than it credited. `None` for nothing.
fn share(payment: &PaymentRecord, cents: i64) -> Result<Option<PositiveUsd>, ApiError> {
    if cents <= 0 || payment.charged_cents == 0 {
        return Ok(None);
    }
    let exact = payment.credits.as_decimal() * Decimal::from(cents) / Decimal::from(payment.charged_cents);
    let usd = Usd::round_charge(exact)
        .map_err(|e| ApiError::internal(&e))?
        .min(payment.credits);
    Ok(PositiveUsd::new(usd).ok())
}

/// The payment of this PaymentIntent, once its credit has committed.
async fn credited(svc: &Webhooks, intent: &str) -> Result<PaymentRecord, ApiError> {
    svc.store
        .payment(intent)
        .await?
        .ok_or_else(|| not_yet_credited(intent))
}

fn dispute_refs(event: &Event, dispute: &Dispute, intent: &str) -> ExternalRefs {
    ExternalRefs {
        stripe_event: Some(event.id.to_string()),
        payment_intent: Some(intent.to_owned()),
        charge: Some(dispute.charge.id().to_string()),
        dispute: Some(dispute.id.to_string()),
        ..Default::default()
    }
}

fn dispute_key(dispute: &Dispute, step: &str) -> Result<IdempotencyKey, ApiError> {
    IdempotencyKey::parse(format!("stripe:dispute:{}{step}", dispute.id))
        .map_err(|_| ApiError::bad_request("invalid_dispute", "the dispute id is not usable"))
}

/// `charge.dispute.created`: the org is paused (reason `disputed`) until the dispute
/// closes; credits stay where they are, and nothing new may be reserved or spent.
pub async fn dispute_opened(svc: &Webhooks, event: &Event, dispute: &Dispute) -> Reply {
    let Some(intent) = dispute.payment_intent.as_ref().map(|p| p.id().to_string()) else {
        return Ok(acknowledged("ignored"));
    };
    let payment = credited(svc, &intent).await?;
    // Closed already (its events overtook this one): pausing now would never be lifted.
    if svc
        .store
        .key_used(&payment.org, &dispute_key(dispute, ":closed")?)
        .await?
    {
        return Ok(acknowledged("dispute_already_closed"));
    }
    let req = ChangeRequest::pause(
        payment.org,
        EntryKind::Dispute,
        PauseReason::Disputed,
        dispute_key(dispute, "")?,
    )
    .with_external(dispute_refs(event, dispute, &intent));
    applied(svc.store.apply(req).await?, "paused", "already_paused")
}

/// `charge.dispute.closed`: won, the pause is lifted; lost, the disputed credits are taken
/// back (never below zero) and then the pause is lifted.
pub async fn dispute_closed(svc: &Webhooks, event: &Event, dispute: &Dispute) -> Reply {
    let Some(intent) = dispute.payment_intent.as_ref().map(|p| p.id().to_string()) else {
        return Ok(acknowledged("ignored"));
    };
    let lost = match dispute.status {
        DisputeStatus::Lost => true,
        DisputeStatus::Won | DisputeStatus::WarningClosed => false,
        _ => return Ok(acknowledged("ignored")),
    };
    let payment = credited(svc, &intent).await?;
    let refs = dispute_refs(event, dispute, &intent);
    if lost && let Some(amount) = share(&payment, dispute.amount)? {
        let req = ChangeRequest::take_back(
            payment.org.clone(),
            EntryKind::Dispute,
            amount,
            dispute_key(dispute, ":lost")?,
        )
        .map_err(|e| ApiError::internal(&e))?
        .with_external(refs.clone());
        svc.store.apply(req).await?;
    }
    let req = ChangeRequest::lift(
        payment.org,
        EntryKind::Dispute,
        PauseReason::Disputed,
        dispute_key(dispute, ":closed")?,
    )
    .with_external(refs);
    applied(
        svc.store.apply(req).await?,
        "dispute_closed",
        "dispute_already_closed",
    )
}
