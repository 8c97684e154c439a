//! The webhooks function: Stripe's events in, credits out, each payment credited once.
//!
//! `POST /v1/stripe/webhooks` is open in the template (Stripe cannot sign with IAM or a
//! JWT); the `Stripe-Signature` header is verified on the raw body with async-stripe before
//! anything is parsed or written, with Stripe's 300 s tolerance. A bad signature is a 400
//! and writes nothing.
//!
//! A payment credits under the idempotency key of its business object
//! (`stripe:checkout:<session id>`), so `checkout.session.completed` and
//! `checkout.session.async_payment_succeeded` for one session, duplicates, and events
//! delivered out of order or days late all credit it exactly once. The answer is 2xx only
//! once the credit is durable; on a store failure it is 5xx and Stripe retries.
//!
//! The Checkout Session's metadata (written by the checkout function, and signed by
//! Stripe along with the whole event) names the org (`org`), the credited amount in USD
//! (`credits_usd`, which may exceed the price with a package bonus), the price
//! (`price_usd`, which must equal what Stripe charged, in usd) and the buyer (`member`).

use agent_credits_domain::{
    Attribution, Bucket, ChangeRequest, EntryKind, ExternalRefs, IdempotencyKey, MemberId, OrgId, Outcome,
    PositiveUsd, Usd, WalletStore,
};
use agent_credits_dynamo::DynamoWalletStore;
use agent_credits_http::{ApiError, json_response, path_segments, respond};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use rust_decimal::Decimal;
use serde_json::json;
use stripe_shared::{CheckoutSession, CheckoutSessionPaymentStatus};
use stripe_types::Currency;
use stripe_webhook::{Event, EventObject, Webhook};

pub struct Webhooks {
    pub store: DynamoWalletStore,
    /// The endpoint's signing secret (`whsec_...`). Never logged.
    pub signing_secret: String,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("signing_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

type Reply = Result<Response<Body>, ApiError>;

pub async fn handle(svc: &Webhooks, req: Request) -> Response<Body> {
    respond(route(svc, &req).await)
}

async fn route(svc: &Webhooks, req: &Request) -> Reply {
    let segments = path_segments(req);
    let path: Vec<&str> = segments.iter().map(String::as_str).collect();
    if req.method() != Method::POST || path.last() != Some(&"webhooks") {
        return Err(ApiError::not_found("route_not_found", "no such route"));
    }
    let event = verified(svc, req)?;
    tracing::info!(event = %event.id, kind = %event.type_, "stripe event");
    match &event.data.object {
        EventObject::CheckoutSessionCompleted(session)
        | EventObject::CheckoutSessionAsyncPaymentSucceeded(session) => {
            credit_checkout(svc, &event, session).await
        }
        EventObject::CheckoutSessionAsyncPaymentFailed(session) => {
            tracing::warn!(session = %session.id, "checkout payment failed; nothing credited");
            Ok(acknowledged("payment_failed"))
        }
        _ => Ok(acknowledged("ignored")),
    }
}

/// The event, if and only if Stripe signed this very body with our secret.
fn verified(svc: &Webhooks, req: &Request) -> Result<Event, ApiError> {
    let signature = req
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::bad_request("missing_signature", "the Stripe-Signature header is required")
        })?;
    let body = std::str::from_utf8(req.body().as_ref())
        .map_err(|_| ApiError::bad_request("invalid_body", "the body is not UTF-8"))?;
    Webhook::construct_event(body, signature, &svc.signing_secret).map_err(|e| {
        tracing::warn!(error = %e, "stripe webhook refused");
        ApiError::bad_request("invalid_signature", "the Stripe signature does not verify")
    })
}

fn acknowledged(what: &str) -> Response<Body> {
    json_response(StatusCode::OK, &json!({ "received": true, "result": what }))
}

/// A paid Checkout Session credits the org's purchased bucket, once per session.
async fn credit_checkout(svc: &Webhooks, event: &Event, session: &CheckoutSession) -> Reply {
    if session.payment_status != CheckoutSessionPaymentStatus::Paid {
        // Completed but unpaid (a bank debit still clearing): the async outcome decides.
        return Ok(acknowledged("awaiting_payment"));
    }
    let metadata = session.metadata.clone().unwrap_or_default();
    // A paid session we cannot attribute is refused, not acknowledged: Stripe keeps it in
    // its failed deliveries for someone to see, and nothing is written meanwhile.
    let unmatched = |what: &str| {
        tracing::error!(session = %session.id, "paid checkout session with {what}");
        ApiError::bad_request("unmatched_payment", format!("the session's metadata has {what}"))
    };
    let org = metadata
        .get("org")
        .and_then(|o| OrgId::parse(o.as_str()).ok())
        .ok_or_else(|| unmatched("no valid org"))?;
    let amount = metadata
        .get("credits_usd")
        .and_then(|a| PositiveUsd::parse(a).ok())
        .ok_or_else(|| unmatched("no valid credits_usd"))?;
    // The price recorded at checkout must be what Stripe charged, in US dollars: anything
    // else is not a purchase this deployment made, and crediting it could mint credits.
    let price = metadata
        .get("price_usd")
        .and_then(|p| Usd::parse(p).ok())
        .ok_or_else(|| unmatched("no valid price_usd"))?;
    let charged_cents = session.amount_total.ok_or_else(|| unmatched("no amount_total"))?;
    if session.currency != Some(Currency::USD) {
        return Err(unmatched("a currency other than usd"));
    }
    if Decimal::from(charged_cents) != price.as_decimal() * Decimal::ONE_HUNDRED {
        return Err(unmatched("a price_usd different from amount_total"));
    }
    // Only an org that exists is credited.
    if svc.store.wallet(&org).await?.settings.billing_mode.is_none() {
        return Err(unmatched("an unknown org"));
    }
    let member = metadata
        .get("member")
        .and_then(|m| MemberId::parse(m.as_str()).ok());
    let key = IdempotencyKey::parse(format!("stripe:checkout:{}", session.id))
        .map_err(|_| unmatched("an unusable session id"))?;
    let external = ExternalRefs {
        stripe_event: Some(event.id.to_string()),
        checkout_session: Some(session.id.to_string()),
        payment_intent: session.payment_intent.as_ref().map(|p| p.id().to_string()),
        ..Default::default()
    };
    let req = ChangeRequest::credit(org, EntryKind::Purchase, Bucket::Purchased, amount, key)
        .map_err(|e| ApiError::internal(&e))?
        .attributed_to(Attribution {
            member,
            ..Default::default()
        })
        .with_external(external);
    match svc.store.apply(req).await? {
        Outcome::Committed(entry) => Ok(json_response(
            StatusCode::OK,
            &json!({ "received": true, "result": "credited", "entry_id": entry.id() }),
        )),
        Outcome::Replayed(entry) => Ok(json_response(
            StatusCode::OK,
            &json!({ "received": true, "result": "already_credited", "entry_id": entry.id() }),
        )),
        other => Err(ApiError::internal(&format!(
            "a purchase credit came back {other:?}"
        ))),
    }
}
