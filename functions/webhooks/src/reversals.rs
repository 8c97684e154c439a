//! Money going back: refunds and disputes of payments that credited a wallet.
//!
//! Both name the charge's PaymentIntent, through which the payment record
//! (`STRIPE#<payment intent>`, written once the payment's credit committed) gives the org
//! and what the payment credited. A refund of a payment not credited yet is answered 409
//! while the payment is one of ours (Stripe delivers it again later): applied before its
//! payment, it would find nothing to take back, and the late credit would then stand. One
//! that is none of ours is acknowledged and ignored.

use agent_credits_domain::{
    Applied, Bucket, ChangeRequest, EntryKind, ExternalRefs, GatewayError, IdempotencyKey, OrgId,
    PauseReason, PositiveUsd, RefundSeen, Refusal, WalletStore, keys,
};
use agent_credits_dynamo::PaymentRecord;
use agent_credits_http::{ApiError, ErrorCode};
use agent_credits_stripe::events::{self, Charge, Dispute, DisputeStatus, Event, Refund};
use lambda_http::http::StatusCode;

use crate::views::{FailedFirst, Handled, Received, RefundTaken};
use crate::{Reply, Webhooks, acknowledged, applied, not_yet_credited};

/// The bucket a payment filled, which its take-backs draw first.
fn filled(payment: &PaymentRecord) -> Bucket {
    match payment.kind {
        EntryKind::PlanGrant => Bucket::Base,
        _ => Bucket::Purchased,
    }
}

fn usable(
    key: Result<IdempotencyKey, agent_credits_domain::IdError>,
    what: &'static str,
) -> Result<IdempotencyKey, ApiError> {
    key.map_err(|_| ApiError::bad_request(ErrorCode::InvalidObject, format!("the {what} id is not usable")))
}

/// Money that went back to the card leaves the wallet: expired holds are released first
/// (they hold nothing any more), then the take-back draws from the balance, held credits
/// included.
async fn take_back(
    svc: &Webhooks,
    org: &OrgId,
    req: ChangeRequest,
) -> Result<agent_credits_domain::Outcome, ApiError> {
    svc.store.expire_holds(org).await?;
    Ok(svc.store.apply(req).await?)
}

/// `charge.refunded`: each refund of the charge takes back its share of the credits the
/// payment added (a package's bonus in proportion), never below zero; what is no longer
/// there is recorded as the entry's shortfall. A refund whose failure was recorded first
/// takes nothing: its take-back yields to its failure, in the same write.
pub async fn refund(svc: &Webhooks, event: &Event, charge: &Charge) -> Reply {
    let Some(intent) = charge.payment_intent.as_ref().map(|p| p.id().to_string()) else {
        return Ok(acknowledged(Handled::Ignored));
    };
    let Some(payment) = credited(svc, &intent).await? else {
        return Ok(acknowledged(Handled::Ignored));
    };
    let refunds = refunds_of(svc, charge).await?;
    let payment = match refunds.iter().find(|r| r.counts()) {
        Some(first) => {
            let why = ExternalRefs {
                stripe_event: Some(event.id.to_string()),
                payment_intent: Some(intent.clone()),
                charge: Some(charge.id.to_string()),
                refund: Some(first.id.clone()),
                ..Default::default()
            };
            stands_for(svc, payment, why).await?
        }
        None => payment,
    };
    let mut entries = vec![];
    for r in refunds.iter().filter(|r| r.counts()) {
        let Some(amount) = share(&payment, r.amount_cents)? else {
            continue;
        };
        let external = ExternalRefs {
            stripe_event: Some(event.id.to_string()),
            payment_intent: Some(intent.clone()),
            charge: Some(charge.id.to_string()),
            refund: Some(r.id.to_string()),
            ..Default::default()
        };
        let req = ChangeRequest::take_back(
            payment.org.clone(),
            EntryKind::Refund,
            amount,
            filled(&payment),
            usable(keys::refund(r.id.as_str()), "refund")?,
        )
        .map_err(|e| ApiError::internal(&e))?
        .unless(usable(keys::refund_failed(r.id.as_str()), "refund")?)
        .with_external(external);
        let entry = match take_back(svc, &payment.org, req).await? {
            Ok(applied) => applied.into_entry(),
            Err(Refusal::Superseded) => {
                entries.push(RefundTaken::FailedFirst {
                    refund: r.id.to_string(),
                    result: FailedFirst::RefundFailedFirst,
                });
                continue;
            }
            Err(other) => return Err(ApiError::internal(&format!("a refund came back {other:?}"))),
        };
        entries.push(RefundTaken::Taken {
            refund: r.id.to_string(),
            entry_id: entry.id(),
            taken: entry.amount.magnitude().to_string(),
            shortfall: entry.shortfall.to_string(),
        });
    }
    Ok(agent_credits_http::json_response(
        StatusCode::OK,
        &Received {
            refunds: Some(entries),
            ..Received::new(Handled::Refunded)
        },
    ))
}

/// A refund that failed or was cancelled (the customer's bank returned it, say): the
/// customer did not get the money, so what the refund took comes back into the buckets it
/// came from, once (`adjustment`, key `stripe:refund:<refund>:failed`). What it could not
/// take (its shortfall) was never taken and does not come back. A failure that arrives
/// before the refund was taken is recorded under the same key (moving nothing), and the
/// take-back, which yields to that key, then never happens: in either order, and when
/// both arrive at once, the refund's credits end up where they were.
pub async fn refund_failed(svc: &Webhooks, event: &Event, refund: &Refund) -> Reply {
    if events::refund(refund).counts() {
        return Ok(acknowledged(Handled::Ignored));
    }
    let Some(intent) = refund.payment_intent.as_ref().map(|p| p.id().to_string()) else {
        return Ok(acknowledged(Handled::Ignored));
    };
    let Some(payment) = credited(svc, &intent).await? else {
        return Ok(acknowledged(Handled::Ignored));
    };
    let taken_key = usable(keys::refund(refund.id.as_str()), "refund")?;
    let failed_key = usable(keys::refund_failed(refund.id.as_str()), "refund")?;
    let external = ExternalRefs {
        stripe_event: Some(event.id.to_string()),
        payment_intent: Some(intent),
        charge: refund.charge.as_ref().map(|c| c.id().to_string()),
        refund: Some(refund.id.to_string()),
        ..Default::default()
    };
    // Twice at most: a take-back that commits between the read and the note makes the
    // note yield, and the second pass gives back what it took.
    for _ in 0..2 {
        if let Some(taken) = svc.store.entry_for_key(&payment.org, &taken_key).await? {
            let Some(req) = ChangeRequest::restore(payment.org.clone(), &taken.buckets, failed_key.clone())
            else {
                return Ok(acknowledged(Handled::NothingTaken));
            };
            let outcome = svc.store.apply(req.with_external(external)).await?;
            return applied(outcome, Handled::RefundReversed, Handled::RefundAlreadyReversed);
        }
        let note = ChangeRequest::note(payment.org.clone(), EntryKind::Adjustment, failed_key.clone())
            .unless(taken_key.clone())
            .with_external(external.clone());
        match svc.store.apply(note).await? {
            Ok(Applied::Committed(_)) => return Ok(acknowledged(Handled::RefundFailedBeforeTaken)),
            Ok(Applied::Replayed(_)) => return Ok(acknowledged(Handled::RefundAlreadyReversed)),
            Err(Refusal::Superseded) => continue,
            Err(other) => {
                return Err(ApiError::internal(&format!(
                    "a refund failure came back {other:?}"
                )));
            }
        }
    }
    Err(ApiError::unavailable(
        &"a refund's take-back and its failure kept racing",
    ))
}

/// The charge's refunds with their current status, from Stripe's API; from the event only
/// when there is no Stripe key to ask with (a status there may be stale: a refund that
/// failed since would be taken, then given back when its failure arrives).
async fn refunds_of(svc: &Webhooks, charge: &Charge) -> Result<Vec<RefundSeen>, ApiError> {
    let embedded = charge.refunds.as_ref().filter(|l| !l.has_more);
    match (svc.payments.as_ref(), embedded) {
        (Some(payments), _) => payments
            .refunds(charge.id.as_str())
            .await
            .map_err(stripe_unavailable),
        (None, Some(list)) => Ok(list.data.iter().map(events::refund).collect()),
        (None, None) => Err(ApiError::internal(
            &"a charge without its refunds, and no Stripe key to list them",
        )),
    }
}

pub(crate) fn stripe_unavailable(e: GatewayError) -> ApiError {
    tracing::error!(error = %e, "a Stripe read failed");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        ErrorCode::StripeUnavailable,
        "Stripe could not be read; deliver again later",
    )
}

/// The credits `cents` of the payment stand for ([`Usd::pro_rata`]). `None` for nothing.
fn share(payment: &PaymentRecord, cents: i64) -> Result<Option<PositiveUsd>, ApiError> {
    let whole = i64::try_from(payment.charged_cents).map_err(|e| ApiError::internal(&e))?;
    let usd = payment
        .credits
        .pro_rata(cents, whole)
        .map_err(|e| ApiError::internal(&e))?;
    Ok(PositiveUsd::new(usd).ok())
}

/// The payment of this PaymentIntent, once its credit has committed. Not credited: `409`
/// while a payment of ours can still arrive (Stripe delivers the reversal again later),
/// `None` (acknowledged and ignored) when the PaymentIntent is none of ours, so Stripe
/// stops retrying something this service never credited.
async fn credited(svc: &Webhooks, intent: &str) -> Result<Option<PaymentRecord>, ApiError> {
    if let Some(payment) = svc.store.payment(intent).await? {
        return Ok(Some(payment));
    }
    if ours(svc, intent).await? {
        // Asking Stripe may have just joined an invoice's payment with its grant.
        if let Some(payment) = svc.store.payment(intent).await? {
            return Ok(Some(payment));
        }
        return Err(not_yet_credited(intent));
    }
    tracing::info!(
        payment_intent = intent,
        "a reversal of a payment that is none of ours; ignored"
    );
    Ok(None)
}

/// What a payment that money goes back for stands for. An annual plan's invoice: money
/// going back (a refund that stands, a lost dispute) first ends the months still to come,
/// once; it then stands for the months it granted, which no later grant changes. Any
/// other payment's credits are as recorded.
async fn stands_for(
    svc: &Webhooks,
    mut payment: PaymentRecord,
    why: ExternalRefs,
) -> Result<PaymentRecord, ApiError> {
    if payment.kind != EntryKind::PlanGrant {
        return Ok(payment);
    }
    let Some(invoice) = payment.credit_key.strip_prefix("stripe:invoice:") else {
        return Ok(payment);
    };
    let Some(grant) = svc.store.invoice(invoice).await?.and_then(|r| r.grant) else {
        return Ok(payment);
    };
    if grant.annual {
        let why = ExternalRefs {
            invoice: Some(invoice.to_owned()),
            ..why
        };
        let months = svc.store.end_monthly_grants(&payment.org, invoice, why).await?;
        payment.credits = grant
            .credits
            .checked_mul_u32(1 + months)
            .map_err(|e| ApiError::internal(&e))?;
    }
    Ok(payment)
}

/// Whether the PaymentIntent names an org of ours in its metadata (as every PaymentIntent
/// the checkout and recharge functions create does), or paid a subscription invoice that
/// names one. Without a Stripe key to ask, it might be: the reversal waits.
async fn ours(svc: &Webhooks, intent: &str) -> Result<bool, ApiError> {
    // An invoice's PaymentIntent carries no metadata: it is ours when the invoice granted,
    // and none of ours when the invoice was found to be none of ours.
    if let Some(invoice) = svc.store.invoice_of(intent).await?
        && let Some(record) = svc.store.invoice(&invoice).await?
        && record.grant.is_some()
    {
        // Joined here as well: a grant that read before this link was written (or whose
        // link write failed halfway) did not join it.
        crate::plans::join(svc, &record, intent).await?;
        return Ok(true);
    }
    // An invoice that granted nothing may still be a purchase's (Checkout makes one for
    // each): its PaymentIntent's metadata says whose it is.
    let Some(payments) = svc.payments.as_deref() else {
        return Ok(true);
    };
    let Some(pi) = payments
        .payment_intent(intent)
        .await
        .map_err(stripe_unavailable)?
    else {
        tracing::info!(payment_intent = intent, "no such PaymentIntent");
        return Ok(false);
    };
    let Some(org) = pi.org else {
        // No org: ours only if it paid an invoice of ours.
        return crate::plans::paid_an_invoice_of_ours(svc, payments, intent).await;
    };
    Ok(svc.store.wallet(&org).await?.settings.billing_mode.is_some())
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

/// `charge.dispute.created`: the org is paused (reason `disputed`) until the dispute
/// closes; credits stay where they are, and nothing new may be reserved or spent. The
/// pause yields to the dispute's closing in the same write: a closing that came first
/// (or commits at the same instant) leaves the org as it was.
pub async fn dispute_opened(svc: &Webhooks, event: &Event, dispute: &Dispute) -> Reply {
    let Some(intent) = dispute.payment_intent.as_ref().map(|p| p.id().to_string()) else {
        return Ok(acknowledged(Handled::Ignored));
    };
    let Some(payment) = credited(svc, &intent).await? else {
        return Ok(acknowledged(Handled::Ignored));
    };
    let id = dispute.id.as_str();
    let req = ChangeRequest::pause(
        payment.org,
        EntryKind::Dispute,
        PauseReason::Disputed,
        usable(keys::dispute_opened(id), "dispute")?,
    )
    .unless(usable(keys::dispute_closed(id), "dispute")?)
    .with_external(dispute_refs(event, dispute, &intent));
    match svc.store.apply(req).await? {
        Err(Refusal::Superseded) => Ok(acknowledged(Handled::DisputeAlreadyClosed)),
        outcome => applied(outcome, Handled::Paused, Handled::AlreadyPaused),
    }
}

/// `charge.dispute.closed`: won, the pause is lifted; lost, the disputed credits are taken
/// back (never below zero, held credits included) and then the pause is lifted.
pub async fn dispute_closed(svc: &Webhooks, event: &Event, dispute: &Dispute) -> Reply {
    let Some(intent) = dispute.payment_intent.as_ref().map(|p| p.id().to_string()) else {
        return Ok(acknowledged(Handled::Ignored));
    };
    let lost = match dispute.status {
        DisputeStatus::Lost => true,
        DisputeStatus::Won | DisputeStatus::WarningClosed => false,
        _ => return Ok(acknowledged(Handled::Ignored)),
    };
    let Some(payment) = credited(svc, &intent).await? else {
        return Ok(acknowledged(Handled::Ignored));
    };
    let refs = dispute_refs(event, dispute, &intent);
    let id = dispute.id.as_str();
    let payment = if lost {
        stands_for(svc, payment, refs.clone()).await?
    } else {
        payment
    };
    if lost && let Some(amount) = share(&payment, dispute.amount)? {
        let req = ChangeRequest::take_back(
            payment.org.clone(),
            EntryKind::Dispute,
            amount,
            filled(&payment),
            usable(keys::dispute_lost(id), "dispute")?,
        )
        .map_err(|e| ApiError::internal(&e))?
        .with_external(refs.clone());
        take_back(svc, &payment.org, req)
            .await?
            .map_err(|r| ApiError::internal(&format!("a lost dispute came back {r:?}")))?;
    }
    let req = ChangeRequest::lift(
        payment.org,
        EntryKind::Dispute,
        PauseReason::Disputed,
        usable(keys::dispute_closed(id), "dispute")?,
    )
    .with_external(refs);
    applied(
        svc.store.apply(req).await?,
        Handled::DisputeClosed,
        Handled::DisputeAlreadyClosed,
    )
}
