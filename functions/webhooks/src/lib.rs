//! The webhooks function: Stripe's events in, wallet changes out, each exactly once.
//!
//! `POST /v1/stripe/webhooks` is open in the template (Stripe cannot sign with IAM or a
//! JWT); the `Stripe-Signature` header is verified on the raw body with async-stripe before
//! anything is parsed or written, with Stripe's 300 s tolerance. A bad signature is a 400
//! and writes nothing.
//!
//! Each change is keyed on its business object, so duplicates, both events of one payment
//! and events delivered out of order or days late change the wallet once:
//!
//! | event | change | key |
//! |---|---|---|
//! | `checkout.session.completed` (paid), `checkout.session.async_payment_succeeded` | purchase credit | `stripe:payment:<payment intent>` |
//! | `payment_intent.succeeded` of an auto-recharge | `auto_top_up` credit, the attempt ended | `stripe:payment:<payment intent>` |
//! | `payment_intent.payment_failed` of an auto-recharge | the attempt failed, `credit_purchase_failed`, recharge suspended | the attempt |
//! | `charge.refunded` | one `refund` entry per refund, never below zero | `stripe:refund:<refund>` |
//! | `refund.failed`, `refund.updated` / `charge.refund.updated` (failed or canceled) | what the refund took comes back (`adjustment`) | `stripe:refund:<refund>:failed` |
//! | `charge.dispute.created` | pause, reason `disputed` | `stripe:dispute:<dispute>` |
//! | `charge.dispute.closed` | won: lift the pause; lost: take the credits back, then lift | `stripe:dispute:<dispute>:...` |
//! | `invoice.paid` of a plan subscription | the period's base grant, rollover up to the cap | `stripe:invoice:<invoice>` |
//! | `invoice.paid` of a plan change (`subscription_update`) | the upgrade's prorated base credits | `stripe:invoice:<invoice>` |
//! | `invoice_payment.paid` | which PaymentIntent paid an invoice, for a plan invoice's refunds | |
//! | `customer.subscription.created` / `updated` / `deleted` | the org's subscription recorded (the newest stands) | |
//!
//! A refund or dispute of a payment of ours not yet credited (its events overtook the
//! payment's) is answered 409 so that Stripe delivers it again later; nothing is written.
//! One of a payment that is none of ours is acknowledged (`200 ignored`). Handled
//! events leave a receipt (`STRIPE#<event>`), so a redelivery is answered at once. The
//! answer is 2xx only once every write is durable; on a store failure it is 5xx and Stripe
//! retries.

mod payments;
mod plans;
mod reversals;
pub mod views;

use std::sync::Arc;

use agent_credits_domain::{Applied, PaymentLookup, SecretString, StoreError};
use agent_credits_dynamo::{DynamoWalletStore, RechargeStore};

use agent_credits_http::{ApiError, Edge, ErrorCode, Reply, Route, Router, Table, answer, json_response};
use agent_credits_stripe::events::{self, CheckoutSessionMode, Event, EventObject, Unsigned};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

pub use agent_credits_domain::{Plan, Plans};
use views::{Handled, Received};

/// The webhooks function's settings, read once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The credits table (`TABLE_NAME`).
    pub table: String,
    /// The subscription plans (`PLANS`, see [`Plans`]).
    pub plans: Plans,
    /// Stripe elsewhere than api.stripe.com (`STRIPE_API_BASE`: the project's simulator).
    pub stripe_api_base: Option<String>,
}

impl agent_credits_aws::settings::FromEnv for Settings {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        Ok(Settings {
            table: agent_credits_aws::settings::required(&get, "TABLE_NAME")?,
            plans: Plans::parse(&get("PLANS").unwrap_or_default())?,
            stripe_api_base: get("STRIPE_API_BASE"),
        })
    }
}

pub struct Webhooks {
    pub store: DynamoWalletStore,
    /// Auto-recharge attempts, which a recharge's PaymentIntent events end.
    pub recharges: RechargeStore,
    /// The endpoint's signing secret (`whsec_...`). Never logged.
    pub signing_secret: SecretString,
    /// For what an event does not carry (a charge's refunds). `None`: such events are
    /// answered 500 and Stripe retries once it is configured.
    pub payments: Option<Arc<dyn PaymentLookup>>,
    /// The subscription plans whose paid invoices grant base credits, by Stripe price id.
    pub plans: Plans,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("signing_secret", &self.signing_secret)
            .field("plans", &self.plans)
            .finish_non_exhaustive()
    }
}

/// The function's one route: open, for Stripe's signature is checked on the raw body.
pub fn routes() -> Vec<Route<Webhooks>> {
    vec![Route::stripe(Method::POST, "/v1/stripe/webhooks", |svc, c| {
        Box::pin(receive(svc, c.req))
    })]
}

impl Edge for Webhooks {}

static ROUTER: Table<Webhooks> = Table::new(|| Router::new(routes()));

pub async fn handle(svc: &Webhooks, req: Request) -> Response<Body> {
    answer(&ROUTER, svc, req).await
}

async fn receive(svc: &Webhooks, req: &Request) -> Reply {
    let event = verified(svc, req)?;
    tracing::info!(event = %event.id, kind = %event.type_, "stripe event");
    if svc.store.event_handled(event.id.as_str()).await? {
        return Ok(acknowledged(Handled::DuplicateEvent));
    }
    let reply = dispatch(svc, &event).await?;
    // Every write of the event is durable by now; the receipt only saves a redelivery the
    // work, so failing to write it is not a failure of the event.
    let now = chrono::Utc::now();
    if let Err(e) = svc
        .store
        .record_event(event.id.as_str(), &event.type_.to_string(), now)
        .await
    {
        tracing::warn!(event = %event.id, error = %e, "event handled; its receipt was not written");
    }
    Ok(reply)
}

async fn dispatch(svc: &Webhooks, event: &Event) -> Reply {
    match &event.data.object {
        EventObject::CheckoutSessionCompleted(session)
        | EventObject::CheckoutSessionAsyncPaymentSucceeded(session)
            if session.mode == CheckoutSessionMode::Subscription =>
        {
            plans::checkout_completed(session)
        }
        EventObject::CheckoutSessionCompleted(session)
        | EventObject::CheckoutSessionAsyncPaymentSucceeded(session) => {
            payments::credit_checkout(svc, event, session).await
        }
        EventObject::CustomerSubscriptionCreated(sub)
        | EventObject::CustomerSubscriptionUpdated(sub)
        | EventObject::CustomerSubscriptionDeleted(sub) => plans::subscription(svc, sub).await,
        EventObject::CheckoutSessionAsyncPaymentFailed(session) => {
            tracing::warn!(session = %session.id, "checkout payment failed; nothing credited");
            Ok(acknowledged(Handled::PaymentFailed))
        }
        EventObject::PaymentIntentSucceeded(intent) => payments::credit_recharge(svc, event, intent).await,
        EventObject::PaymentIntentPaymentFailed(intent) => payments::recharge_failed(svc, intent).await,
        EventObject::ChargeRefunded(charge) => reversals::refund(svc, event, charge).await,
        EventObject::RefundFailed(refund)
        | EventObject::RefundUpdated(refund)
        | EventObject::ChargeRefundUpdated(refund) => reversals::refund_failed(svc, event, refund).await,
        EventObject::ChargeDisputeCreated(dispute) => reversals::dispute_opened(svc, event, dispute).await,
        EventObject::ChargeDisputeClosed(dispute) => reversals::dispute_closed(svc, event, dispute).await,
        EventObject::InvoicePaid(invoice) => plans::grant(svc, event, invoice).await,
        EventObject::InvoicePaymentPaid(paid) => plans::payment(svc, paid).await,
        _ => Ok(acknowledged(Handled::Ignored)),
    }
}

/// The event, if and only if Stripe signed this very body with our secret.
fn verified(svc: &Webhooks, req: &Request) -> Result<Event, ApiError> {
    let signature = req
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::MissingSignature,
                "the Stripe-Signature header is required",
            )
        })?;
    let body = std::str::from_utf8(req.body().as_ref())
        .map_err(|_| ApiError::bad_request(ErrorCode::InvalidBody, "the body is not UTF-8"))?;
    events::verify(body, signature, &svc.signing_secret).map_err(|e| {
        tracing::warn!(error = %e, "stripe webhook refused");
        match e {
            Unsigned::NotAnEvent(_) => ApiError::bad_request(
                ErrorCode::InvalidEvent,
                "a signed body that is not a Stripe event",
            ),
            Unsigned::Signature(_) => ApiError::bad_request(
                ErrorCode::InvalidSignature,
                "the Stripe signature does not verify",
            ),
        }
    })
}

fn acknowledged(what: Handled) -> Response<Body> {
    json_response(StatusCode::OK, &Received::new(what))
}

/// A payment we have a use for but cannot attribute: refused, not acknowledged, so Stripe
/// keeps it in its failed deliveries for someone to see. Nothing is written.
fn unmatched(object: &str, what: &str) -> ApiError {
    tracing::error!(object, "stripe event with {what}");
    ApiError::bad_request(
        ErrorCode::UnmatchedPayment,
        format!("the event's object has {what}"),
    )
}

/// A refund or dispute of a payment whose credit has not arrived yet: Stripe delivers it
/// again later, by which time the payment's own event has.
fn not_yet_credited(payment_intent: &str) -> ApiError {
    tracing::warn!(
        payment_intent,
        "reversal of a payment not credited (yet); asking Stripe to retry"
    );
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::PaymentNotYetCredited,
        format!("no credited payment {payment_intent} yet; deliver again later"),
    )
}

/// The answer for one applied change: committed now or before.
fn applied(outcome: agent_credits_domain::Outcome, fresh: Handled, again: Handled) -> Reply {
    let answer = |result, entry: agent_credits_domain::LedgerEntry| {
        let received = Received {
            entry_id: Some(entry.id()),
            ..Received::new(result)
        };
        Ok(json_response(StatusCode::OK, &received))
    };
    match outcome {
        Ok(Applied::Committed(entry)) => answer(fresh, entry),
        Ok(Applied::Replayed(entry)) => answer(again, entry),
        Err(refusal) => Err(ApiError::internal(&StoreError::Invalid(format!(
            "a stripe change came back {refusal:?}"
        )))),
    }
}
