//! What Stripe's users, banks and Stripe itself do, on request: pay a Checkout Session (in
//! JSON under `/_sim/`, or as a person on the payment page at the session's `url`), settle a
//! delayed payment, refund, dispute, pay a subscription invoice, end a subscription's period,
//! and steer webhook delivery; and the account's setup (its prices). Each action answers once
//! the events it caused have been delivered (unless held).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::cards::TEST_CARDS;
use crate::error::ApiError;
use crate::form::{self, Form};
use crate::objects::{Session, SessionMode, SessionStatus};
use crate::store::{NewInvoice, Store, cents};
use crate::webhooks::{Delivery, Order, WebhookConfig};
use crate::{EventSummary, Outcome, Shared};

/// How the payer completes a Checkout Session.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CompleteCheckout {
    /// A Stripe test card token; `pm_card_visa` when absent.
    pub card: Option<String>,
    /// The payer's email; else the session's customer_email or customer's email.
    pub email: Option<String>,
    /// Pay with a US bank account instead: the session completes `unpaid`, and the payment
    /// succeeds or fails when settled with `settle_async_payment`.
    #[serde(default, rename = "async")]
    pub async_payment: bool,
}

impl CompleteCheckout {
    pub fn card(token: &str) -> Self {
        CompleteCheckout {
            card: Some(token.to_string()),
            ..Default::default()
        }
    }

    pub fn bank_account() -> Self {
        CompleteCheckout {
            async_payment: true,
            ..Default::default()
        }
    }
}

/// A subscription's invoice, paid: what `invoice.paid` carries for a plan grant.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InvoicePayment {
    pub customer: String,
    /// Cents.
    pub amount: i64,
    pub currency: Option<String>,
    pub subscription: Option<String>,
    pub price: Option<String>,
    pub product: Option<String>,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    /// `subscription_create` or `subscription_cycle` (the default).
    pub billing_reason: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// A price the account sells, as `POST /_sim/prices` and `STRIPE_SIM_PRICES` define it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewPrice {
    pub id: String,
    /// Cents.
    pub unit_amount: i64,
    /// `usd` when absent.
    pub currency: Option<String>,
    /// `month` or `year`; absent for a one-time price.
    pub interval: Option<String>,
    /// The product's name.
    pub name: Option<String>,
}

/// Reads `STRIPE_SIM_PRICES`: a JSON object keyed by price id, each value with
/// `"amount_usd": "50.00"` (dollars, as a decimal string) and optionally `"interval"`
/// (`month`, the default, or `year`) and `"name"`; other keys are ignored. In id order.
pub fn parse_prices(text: &str) -> Result<Vec<NewPrice>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(entries) = value else {
        return Err("expected a JSON object keyed by price id".to_owned());
    };
    let mut prices = Vec::new();
    for (id, entry) in entries {
        let Value::Object(fields) = entry else {
            return Err(format!("{id}: expected an object with amount_usd"));
        };
        let amount = match fields.get("amount_usd") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(number)) => number.to_string(),
            Some(_) => {
                return Err(format!(
                    "{id}: amount_usd must be a decimal string such as \"50.00\""
                ));
            }
            None => return Err(format!("{id}: amount_usd is missing")),
        };
        let unit_amount = dollars_to_cents(&amount).ok_or_else(|| {
            format!("{id}: amount_usd {amount:?} is not a non-negative amount in whole cents")
        })?;
        let text = |key: &str| match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{id}: {key} must be a string")),
        };
        let interval = text("interval")?.unwrap_or_else(|| "month".to_owned());
        if interval != "month" && interval != "year" {
            return Err(format!(
                "{id}: interval {interval:?} must be \"month\" or \"year\""
            ));
        }
        let name = text("name")?;
        prices.push(NewPrice {
            id,
            unit_amount,
            currency: None,
            interval: Some(interval),
            name,
        });
    }
    Ok(prices)
}

/// `"50.00"` → 5000; at most two decimals, no sign, no exponent.
fn dollars_to_cents(text: &str) -> Option<i64> {
    let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 2 {
        return None;
    }
    let cents = format!("{fraction:0<2}").parse::<i64>().ok()?;
    whole.parse::<i64>().ok()?.checked_mul(100)?.checked_add(cents)
}

impl Shared {
    /// Runs one action under the lock, then waits until the events it caused (and any queued
    /// before them) have been delivered, so a caller can look at the receiver straight away.
    async fn act<F>(&self, action: F) -> Result<Outcome, ApiError>
    where
        F: FnOnce(&mut Store) -> Result<Value, ApiError>,
    {
        let (result, first_event) = {
            let mut store = self.lock();
            let first_event = store.hooks.events.len();
            (action(&mut store), first_event)
        };
        // Delivered even when the action failed: a declined payment still emits its event.
        self.flush().await;
        let object = result?;
        let store = self.lock();
        let events = store.hooks.events[first_event..]
            .iter()
            .filter_map(|event| store.hooks.event_summary(&event.id))
            .collect();
        Ok(Outcome { object, events })
    }

    pub(crate) async fn flush(&self) {
        let done = self.lock().hooks.flush_job();
        let _ = done.await;
    }

    pub(crate) async fn complete_checkout(
        &self,
        id: &str,
        payment: CompleteCheckout,
    ) -> Result<Outcome, ApiError> {
        self.act(|store| {
            let card = payment.card.as_deref().unwrap_or("pm_card_visa");
            store.complete_session(id, card, payment.email, payment.async_payment)?;
            Ok(store.session(id)?.to_json())
        })
        .await
    }

    pub(crate) async fn settle_async_payment(&self, id: &str, succeeded: bool) -> Result<Outcome, ApiError> {
        self.act(|store| {
            store.settle_async_payment(id, succeeded)?;
            Ok(store.session(id)?.to_json())
        })
        .await
    }

    pub(crate) async fn refund_charge(&self, charge: &str, amount: Option<i64>) -> Result<Outcome, ApiError> {
        self.act(|store| {
            store.refund(
                Some(charge),
                None,
                amount,
                None,
                Default::default(),
                &Default::default(),
            )
        })
        .await
    }

    pub(crate) async fn fail_refund(&self, refund: &str, reason: &str) -> Result<Outcome, ApiError> {
        self.act(|store| store.fail_refund(refund, reason)).await
    }

    pub(crate) async fn dispute_charge(&self, charge: &str, reason: &str) -> Result<Outcome, ApiError> {
        self.act(|store| store.dispute(charge, reason)).await
    }

    pub(crate) async fn pay_invoice(&self, invoice: InvoicePayment) -> Result<Outcome, ApiError> {
        self.act(|store| {
            store.pay_invoice(NewInvoice {
                customer: invoice.customer,
                amount: invoice.amount,
                currency: invoice.currency.unwrap_or_else(|| "usd".to_string()),
                subscription: invoice.subscription,
                price: invoice.price,
                product: invoice.product,
                period_start: invoice.period_start,
                period_end: invoice.period_end,
                billing_reason: invoice.billing_reason,
                metadata: invoice.metadata,
            })
        })
        .await
    }

    pub(crate) async fn renew_subscription(&self, id: &str) -> Result<Outcome, ApiError> {
        self.act(|store| store.renew_subscription(id)).await
    }

    /// Delivers the held events and answers their deliveries.
    pub(crate) async fn release_held(&self, order: Order) -> Vec<Delivery> {
        let first = {
            let mut store = self.lock();
            store.hooks.release(order);
            store.hooks.deliveries.len()
        };
        self.flush().await;
        self.lock().hooks.deliveries[first..].to_vec()
    }

    /// Delivers an event again, as Stripe retries (or an operator resends) days later.
    pub(crate) async fn redeliver(&self, event_id: &str) -> Result<EventSummary, ApiError> {
        {
            let store = self.lock();
            if !store.hooks.events.iter().any(|e| e.id == event_id) {
                return Err(ApiError::no_such("event", event_id, None));
            }
            store.hooks.enqueue(event_id);
        }
        self.flush().await;
        self.lock()
            .hooks
            .event_summary(event_id)
            .ok_or_else(|| ApiError::no_such("event", event_id, None))
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/checkout/sessions/{id}/complete", post(complete))
        .route("/_sim/checkout/sessions/{id}/async_payment", post(async_payment))
        .route("/_sim/charges/{id}/refund", post(refund))
        .route("/_sim/charges/{id}/dispute", post(dispute))
        .route("/_sim/refunds/{id}/fail", post(fail_refund))
        .route("/_sim/invoices/pay", post(pay_invoice))
        .route("/_sim/payment_methods/{id}/card", post(set_card))
        .route("/_sim/prices", post(put_price))
        .route("/_sim/subscriptions/{id}/renew", post(renew_subscription))
        .route("/_sim/subscriptions/{id}/period", post(set_period))
        .route("/_sim/webhooks", get(webhook_config).post(configure_webhooks))
        .route("/_sim/webhooks/release", post(release))
        .route("/_sim/webhooks/flush", post(flush))
        .route("/_sim/events", get(events))
        .route("/_sim/events/{id}/redeliver", post(redeliver))
        .route("/_sim/deliveries", get(deliveries))
        .route("/pay/{id}", get(payment_page).post(pay))
}

/// A JSON body; an empty one reads as `{}` so `curl -X POST` works for actions with defaults.
fn body<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let raw = if raw.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        raw
    };
    serde_json::from_slice(raw).map_err(|e| ApiError::invalid("body", format!("Invalid JSON body: {e}")))
}

fn answer<T: serde::Serialize>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn complete(State(sim): State<Arc<Shared>>, Path(id): Path<String>, raw: Bytes) -> Response {
    match body::<CompleteCheckout>(&raw) {
        Ok(payment) => answer(sim.complete_checkout(&id, payment).await),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
struct Settle {
    succeeded: bool,
}

async fn async_payment(State(sim): State<Arc<Shared>>, Path(id): Path<String>, raw: Bytes) -> Response {
    match body::<Settle>(&raw) {
        Ok(settle) => answer(sim.settle_async_payment(&id, settle.succeeded).await),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
struct RefundRequest {
    amount: Option<i64>,
}

async fn refund(State(sim): State<Arc<Shared>>, Path(id): Path<String>, raw: Bytes) -> Response {
    match body::<RefundRequest>(&raw) {
        Ok(request) => answer(sim.refund_charge(&id, request.amount).await),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
struct FailRefundRequest {
    reason: Option<String>,
}

async fn fail_refund(State(sim): State<Arc<Shared>>, Path(id): Path<String>, raw: Bytes) -> Response {
    match body::<FailRefundRequest>(&raw) {
        Ok(request) => {
            let reason = request
                .reason
                .unwrap_or_else(|| "expired_or_canceled_card".to_owned());
            answer(sim.fail_refund(&id, &reason).await)
        }
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
struct DisputeRequest {
    reason: Option<String>,
}

async fn dispute(State(sim): State<Arc<Shared>>, Path(id): Path<String>, raw: Bytes) -> Response {
    match body::<DisputeRequest>(&raw) {
        Ok(request) => {
            let reason = request.reason.unwrap_or_else(|| "fraudulent".to_string());
            answer(sim.dispute_charge(&id, &reason).await)
        }
        Err(error) => error.into_response(),
    }
}

async fn pay_invoice(State(sim): State<Arc<Shared>>, raw: Bytes) -> Response {
    match body::<InvoicePayment>(&raw) {
        Ok(invoice) => answer(sim.pay_invoice(invoice).await),
        Err(error) => error.into_response(),
    }
}

async fn put_price(State(sim): State<Arc<Shared>>, raw: Bytes) -> Response {
    answer(body::<NewPrice>(&raw).and_then(|price| sim.lock().put_price(&price)))
}

async fn renew_subscription(State(sim): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    answer(sim.renew_subscription(&id).await)
}

#[derive(Deserialize)]
struct Period {
    start: i64,
    end: i64,
}

async fn set_period(State(sim): State<Arc<Shared>>, Path(id): Path<String>, raw: Bytes) -> Response {
    answer(
        body::<Period>(&raw)
            .and_then(|period| sim.lock().set_subscription_period(&id, period.start, period.end)),
    )
}

#[derive(Deserialize)]
struct SetCard {
    card: String,
}

async fn set_card(State(sim): State<Arc<Shared>>, Path(id): Path<String>, raw: Bytes) -> Response {
    answer(body::<SetCard>(&raw).and_then(|request| sim.lock().set_card(&id, &request.card)))
}

async fn webhook_config(State(sim): State<Arc<Shared>>) -> Response {
    let store = sim.lock();
    // The secret is the receiver's to know; show only whether one is set.
    let config = store.hooks.config.as_ref().map(|c| {
        json!({"url": c.url, "secret_set": !c.secret.is_empty(), "duplicate": c.duplicate, "hold": c.hold})
    });
    Json(json!({"endpoint": config, "held": store.hooks.held})).into_response()
}

async fn configure_webhooks(State(sim): State<Arc<Shared>>, raw: Bytes) -> Response {
    let result = body::<WebhookConfig>(&raw).and_then(|config| sim.lock().hooks.configure(config));
    answer(result.map(|()| json!({"configured": true})))
}

#[derive(Deserialize, Default)]
struct Release {
    #[serde(default)]
    order: Order,
}

async fn release(State(sim): State<Arc<Shared>>, raw: Bytes) -> Response {
    match body::<Release>(&raw) {
        Ok(request) => Json(sim.release_held(request.order).await).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn flush(State(sim): State<Arc<Shared>>) -> Response {
    sim.flush().await;
    Json(json!({"flushed": true})).into_response()
}

async fn events(State(sim): State<Arc<Shared>>) -> Response {
    let store = sim.lock();
    let data: Vec<&Value> = store.hooks.events.iter().map(|e| &e.json).collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

async fn redeliver(State(sim): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    answer(sim.redeliver(&id).await)
}

async fn deliveries(State(sim): State<Arc<Shared>>) -> Response {
    Json(sim.lock().hooks.deliveries.clone()).into_response()
}

async fn payment_page(State(sim): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let store = sim.lock();
    match store.session(&id) {
        Ok(session) => Html(page(session, None)).into_response(),
        Err(error) => (StatusCode::NOT_FOUND, Html(escape(&error.message))).into_response(),
    }
}

/// The payment page's form: `card=<test token>`, or `card=async` for a bank account.
async fn pay(State(sim): State<Arc<Shared>>, Path(id): Path<String>, raw: Bytes) -> Response {
    let card = form::decode(&raw)
        .ok()
        .and_then(|tree| Form::root(&tree).text("card").ok().flatten().map(str::to_string))
        .unwrap_or_else(|| "pm_card_visa".to_string());
    let payment = if card == "async" {
        CompleteCheckout::bank_account()
    } else {
        CompleteCheckout::card(&card)
    };
    let result = sim.complete_checkout(&id, payment).await;
    let store = sim.lock();
    let Ok(session) = store.session(&id) else {
        return (StatusCode::NOT_FOUND, Html("No such Checkout Session")).into_response();
    };
    match (result, &session.success_url) {
        (Ok(_), Some(url)) => {
            Redirect::to(&url.replace("{CHECKOUT_SESSION_ID}", &session.id)).into_response()
        }
        (Ok(_), None) => Html(page(session, None)).into_response(),
        (Err(error), _) => (
            StatusCode::PAYMENT_REQUIRED,
            Html(page(session, Some(&error.message))),
        )
            .into_response(),
    }
}

fn page(session: &Session, error: Option<&str>) -> String {
    let total = cents(session.amount_total);
    let currency = session.currency.to_uppercase();
    let items: String = session
        .line_items
        .iter()
        .map(|item| {
            format!(
                "<li>{} × {} at {}</li>",
                item.quantity,
                escape(&item.name),
                cents(item.unit_amount)
            )
        })
        .collect();
    let body = if session.status == SessionStatus::Complete {
        let state = if session.paid {
            "paid"
        } else {
            "complete, payment pending"
        };
        format!("<p><strong>This session is {state}.</strong></p>")
    } else {
        let buttons: String = TEST_CARDS
            .iter()
            .map(|card| {
                format!(
                    r#"<button name="card" value="{}">{} •••• {}</button> "#,
                    card.token, card.brand, card.last4
                )
            })
            .collect();
        let error = error
            .map(|e| format!(r#"<p style="color:#b00">{}</p>"#, escape(e)))
            .unwrap_or_default();
        let cancel = session
            .cancel_url
            .as_ref()
            .map(|url| format!(r#"<p><a href="{}">Cancel</a></p>"#, escape(url)))
            .unwrap_or_default();
        // A subscription is paid by card only.
        let bank = match session.mode {
            SessionMode::Payment => {
                r#"<p><button name="card" value="async">US bank account (settles later)</button></p>"#
            }
            SessionMode::Subscription => "",
        };
        format!(
            r#"{error}<form method="post"><p>Pay with a test card:</p><p>{buttons}</p>
{bank}</form>{cancel}"#
        )
    };
    format!(
        r#"<!doctype html><meta charset="utf-8"><title>Stripe simulator: pay {total} {currency}</title>
<h1>Pay {total} {currency}</h1><p>Checkout Session <code>{}</code></p><ul>{items}</ul>{body}"#,
        escape(&session.id)
    )
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dollar_amounts_become_whole_cents() {
        assert_eq!(dollars_to_cents("50.00"), Some(5000));
        assert_eq!(dollars_to_cents("50"), Some(5000));
        assert_eq!(dollars_to_cents("0.5"), Some(50));
        assert_eq!(dollars_to_cents("19.99"), Some(1999));
        for bad in ["", ".5", "-1.00", "1.005", "1e3", "ten", "1.2.3"] {
            assert_eq!(dollars_to_cents(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_prices_variable_is_read_with_defaults_and_unknown_keys_ignored() {
        let prices = parse_prices(
            r#"{"price_team_monthly": {"amount_usd": "50.00", "base_usd": "40.00", "rollover_cap_usd": "100"},
                "price_team_yearly": {"amount_usd": "500", "interval": "year", "name": "Team"}}"#,
        )
        .unwrap();
        let read: Vec<_> = prices
            .iter()
            .map(|p| {
                (
                    p.id.as_str(),
                    p.unit_amount,
                    p.interval.as_deref(),
                    p.name.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            read,
            [
                ("price_team_monthly", 5000, Some("month"), None),
                ("price_team_yearly", 50_000, Some("year"), Some("Team"))
            ]
        );
        assert!(parse_prices("{").unwrap_err().starts_with("not JSON"));
        assert!(parse_prices("[]").is_err());
        assert!(parse_prices(r#"{"p": {"amount_usd": "1.001"}}"#).is_err());
        assert!(parse_prices(r#"{"p": {"amount_usd": "1", "interval": "week"}}"#).is_err());
        assert!(
            parse_prices(r#"{"p": {}}"#)
                .unwrap_err()
                .contains("amount_usd is missing")
        );
    }
}
