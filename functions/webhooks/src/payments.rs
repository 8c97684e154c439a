//! Payments that add credits: a paid Checkout Session (a purchase) and an auto-recharge's
//! PaymentIntent (an auto top-up). Both credit under `stripe:payment:<payment intent>`, so
//! each payment credits once whichever of its events (or, for a recharge, the recharge
//! function's own reply from Stripe) arrives first; the payment is then remembered
//! (`STRIPE#<payment intent>`) for its refunds and disputes.

use std::collections::HashMap;

use agent_credits_domain::recharge;
use agent_credits_domain::{
    Attribution, BillingMode, Bucket, ChangeRequest, EntryKind, ExternalRefs, IdempotencyKey, MemberId,
    OrgId, PositiveUsd, WalletStore, keys,
};
use agent_credits_dynamo::PaymentRecord;
use agent_credits_stripe::PaymentMetadata;
use agent_credits_stripe::events::{
    CheckoutSession, CheckoutSessionPaymentStatus, Currency, Event, PaymentIntent,
};
use agent_credits_stripe::metadata;

use crate::views::Handled;
use crate::{Reply, Webhooks, acknowledged, applied, unmatched};

/// A paid Checkout Session credits the org's purchased bucket, once per payment.
///
/// The session's metadata (written by the checkout function, and signed by Stripe along
/// with the whole event) names the org (`org`), the credited amount in USD
/// (`credits_usd`, which may exceed the price with a package bonus), the price
/// (`price_usd`, which must equal what Stripe charged, in usd) and the buyer (`member`).
pub async fn credit_checkout(svc: &Webhooks, event: &Event, session: &CheckoutSession) -> Reply {
    if session.payment_status != CheckoutSessionPaymentStatus::Paid {
        // Completed but unpaid (a bank debit still clearing): the async outcome decides.
        return Ok(acknowledged(Handled::AwaitingPayment));
    }
    let id = session.id.as_str();
    let metadata = session.metadata.clone().unwrap_or_default();
    let intent = session
        .payment_intent
        .as_ref()
        .map(|p| p.id().to_string())
        .ok_or_else(|| unmatched(id, "no payment intent"))?;
    let charged = session
        .amount_total
        .ok_or_else(|| unmatched(id, "no amount_total"))?;
    let paid = Paid::from_metadata(id, &metadata, charged, session.currency.as_ref())?;
    let external = ExternalRefs {
        stripe_event: Some(event.id.to_string()),
        checkout_session: Some(id.to_owned()),
        payment_intent: Some(intent.clone()),
        ..Default::default()
    };
    let key = payment_key(&intent).ok_or_else(|| unmatched(id, "an unusable payment intent id"))?;
    let req = ChangeRequest::credit(
        paid.org.clone(),
        EntryKind::Purchase,
        Bucket::Purchased,
        paid.credits,
        key,
    )
    .map_err(|e| agent_credits_http::ApiError::internal(&e))?
    .attributed_to(Attribution {
        member: paid.member.clone(),
        ..Default::default()
    })
    .with_external(external);
    credit(svc, paid, EntryKind::Purchase, &intent, req).await
}

/// An auto-recharge's PaymentIntent succeeded: an `auto_top_up` credit, once (the recharge
/// function credits the same payment under the same key), and its attempt ended. Other
/// PaymentIntents (a checkout's) are credited through their session and ignored here.
pub async fn credit_recharge(svc: &Webhooks, event: &Event, intent: &PaymentIntent) -> Reply {
    if !metadata::is_auto_recharge(&intent.metadata) {
        return Ok(acknowledged(Handled::Ignored));
    }
    let id = intent.id.as_str();
    let paid = Paid::from_metadata(
        id,
        &intent.metadata,
        intent.amount_received,
        Some(&intent.currency),
    )?;
    let external = ExternalRefs {
        stripe_event: Some(event.id.to_string()),
        payment_intent: Some(id.to_owned()),
        charge: intent.latest_charge.as_ref().map(|c| c.id().to_string()),
        ..Default::default()
    };
    let req = recharge::top_up(paid.org.clone(), paid.credits, id)
        .ok_or_else(|| unmatched(id, "an unusable payment intent id"))?
        .with_external(external);
    let org = paid.org.clone();
    let cents = paid.charged_cents;
    let reply = credit(svc, paid, EntryKind::AutoTopUp, id, req).await?;
    if let Some(attempt) = metadata::attempt_of(&intent.metadata) {
        svc.recharges
            .succeeded(&org, attempt, id, chrono::Utc::now())
            .await?;
    }
    invoice_top_up(svc, &org, intent, cents).await?;
    Ok(reply)
}

/// Accounting has a document for every top-up: an auto top-up, charged without an
/// invoice, gets a paid one naming its PaymentIntent (once: each step is keyed on it).
/// Failing that, the event is answered 502 and Stripe delivers it again; the credit is
/// made already and is not made twice.
async fn invoice_top_up(
    svc: &Webhooks,
    org: &OrgId,
    intent: &PaymentIntent,
    cents: u64,
) -> Result<(), agent_credits_http::ApiError> {
    let (Some(payments), Some(customer)) = (svc.payments.as_deref(), intent.customer.as_ref()) else {
        return Ok(());
    };
    let amount_cents = i64::try_from(cents).map_err(|e| agent_credits_http::ApiError::internal(&e))?;
    let customer = customer.id().to_string();
    let made = agent_credits_domain::PaymentMade {
        org,
        customer: &customer,
        payment_intent: intent.id.as_str(),
        amount_cents,
        description: "agent-credits auto-recharge",
    };
    payments
        .invoice_payment_made(&made)
        .await
        .map_err(crate::reversals::stripe_unavailable)?;
    Ok(())
}

/// An auto-recharge's PaymentIntent failed. A decline (a `card_error`) fails its attempt
/// with the card's reason, notifies the org once and suspends auto-recharge, as when the
/// recharge function sees the decline itself. Any other failure is not the card's: the
/// attempt stays in flight and the recharge function settles it (nobody is suspended or
/// told of a failed purchase).
pub async fn recharge_failed(svc: &Webhooks, intent: &PaymentIntent) -> Reply {
    if !metadata::is_auto_recharge(&intent.metadata) {
        return Ok(acknowledged(Handled::Ignored));
    }
    let id = intent.id.as_str();
    let org: OrgId = metadata::org_of(&intent.metadata).ok_or_else(|| unmatched(id, "no valid org"))?;
    let attempt = metadata::attempt_of(&intent.metadata).ok_or_else(|| unmatched(id, "no attempt"))?;
    let Some(decline) = agent_credits_stripe::events::decline_of(intent) else {
        tracing::error!(alarm = "recharge_stripe", org = %org, attempt, payment_intent = id,
            "an auto-recharge failed for a reason that is not the card's; left to the recharge function");
        return Ok(acknowledged(Handled::NotACardFailure));
    };
    svc.recharges
        .failed(&org, attempt, &decline, Some(id), chrono::Utc::now())
        .await?;
    Ok(acknowledged(Handled::RechargeFailed))
}

/// What a payment's metadata says it bought, checked against what Stripe charged.
struct Paid {
    org: OrgId,
    credits: PositiveUsd,
    charged_cents: u64,
    member: Option<MemberId>,
}

impl Paid {
    fn from_metadata(
        object: &str,
        metadata: &HashMap<String, String>,
        charged_cents: i64,
        currency: Option<&Currency>,
    ) -> Result<Paid, agent_credits_http::ApiError> {
        let written = PaymentMetadata::read(metadata).map_err(|e| unmatched(object, &e.to_string()))?;
        // The price recorded when the payment was made must be what Stripe charged, in US
        // dollars: anything else is not a payment this deployment asked for, and crediting
        // it could mint credits.
        let price = written.price;
        if currency != Some(&Currency::USD) {
            return Err(unmatched(object, "a currency other than usd"));
        }
        if price.to_cents() != Ok(charged_cents) {
            return Err(unmatched(object, "a price_usd different from the amount charged"));
        }
        let charged_cents =
            u64::try_from(charged_cents).map_err(|_| unmatched(object, "a negative amount charged"))?;
        Ok(Paid {
            member: written.member().cloned(),
            org: written.org,
            credits: written.credits,
            charged_cents,
        })
    }
}

async fn credit(svc: &Webhooks, paid: Paid, kind: EntryKind, intent: &str, req: ChangeRequest) -> Reply {
    // Only an org that exists is credited.
    let Some(mode) = svc.store.wallet(&paid.org).await?.settings.billing_mode else {
        return Err(unmatched(intent, "an unknown org"));
    };
    let record = PaymentRecord {
        payment_intent: intent.to_owned(),
        org: paid.org,
        kind,
        credits: paid.credits.usd(),
        charged_cents: paid.charged_cents,
        credit_key: req.key().to_string(),
    };
    let org = record.org.clone();
    let outcome = svc.store.credit_payment(req, &record).await?;
    // Paid for credits (a session opened before checkout refused such orgs): the money is
    // credited, never lost, and the org now runs on credits.
    if outcome.is_ok() && mode != BillingMode::Credits {
        svc.store.becomes_credits(&org).await?;
    }
    applied(outcome, Handled::Credited, Handled::AlreadyCredited)
}

/// The idempotency key of the credit a payment makes.
pub fn payment_key(payment_intent: &str) -> Option<IdempotencyKey> {
    keys::payment(payment_intent).ok()
}
