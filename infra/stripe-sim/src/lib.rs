//! The project's own Stripe simulator, for local runs and tests.
//!
//! It serves the Stripe API calls the functions make (customers, Checkout Sessions,
//! PaymentIntents, refunds, prices, subscriptions, invoices, the billing portal) in Stripe's
//! wire format: form-encoded requests with a
//! `sk_test_` key, Stripe's JSON objects and error bodies, Idempotency-Key. Stripe's test
//! payment methods behave as in Stripe (`pm_card_visa`, `pm_card_chargeDeclined`, ...). A
//! test or a person pays Checkout Sessions; events are delivered to one webhook endpoint,
//! signed with Stripe's scheme, and on request duplicated or held and reordered.
//!
//! The functions reach it through async-stripe's base URL (`ClientBuilder::url`) set to
//! [`StripeSim::base_url`]; the same code talks to Stripe test mode with a real key.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = stripe_sim::StripeSim::start().await?;
//! let base_url = sim.base_url(); // "http://127.0.0.1:PORT/"
//! # Ok(()) }
//! ```
#![allow(
    clippy::result_large_err,
    reason = "ApiError is a whole Stripe error body (message, param, charge, the PaymentIntent), made at \
              most once per request and turned into the HTTP answer; boxing it would only add noise"
)]

mod api;
mod billing;
mod cards;
mod control;
mod error;
mod form;
mod objects;
mod pages;
mod store;
mod webhooks;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use cards::{Outcome as CardOutcome, TEST_CARDS, TestCard, test_card};
pub use control::{CompleteCheckout, InvoicePayment, NewPrice, parse_prices};
pub use error::ApiError;
pub use webhooks::{API_VERSION, Delivery, Order, WebhookConfig, signature_header};

use store::Store;
use webhooks::Hooks;

/// What a control action did: the object it returns and the events it caused, each with
/// its deliveries so far (none while delivery is held).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub object: Value,
    pub events: Vec<EventSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventSummary {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub deliveries: Vec<Delivery>,
}

impl Outcome {
    pub fn event_types(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.kind.as_str()).collect()
    }
}

pub(crate) struct Shared {
    store: Mutex<Store>,
}

impl Shared {
    /// A panic while holding the lock leaves no half-applied change behind that later
    /// requests could trip on (each change is a few assignments), so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running simulator. Dropping it stops the server and the webhook delivery.
pub struct StripeSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    base_url: String,
    server: Option<JoinHandle<io::Result<()>>>,
    worker: JoinHandle<()>,
}

impl StripeSim {
    /// Starts on a free loopback port.
    pub async fn start() -> io::Result<Self> {
        StripeSim::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}/");
        let (jobs, queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(base_url.clone(), Hooks::new(jobs))),
        });
        let app: Router = Router::new()
            .merge(api::routes())
            .merge(control::routes())
            .merge(pages::routes())
            .fallback(unknown_url)
            .method_not_allowed_fallback(unknown_url)
            .with_state(shared.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let worker = tokio::spawn(webhooks::deliver(shared.clone(), queue));
        Ok(StripeSim {
            shared,
            addr,
            base_url,
            server: Some(server),
            worker,
        })
    }

    /// `http://127.0.0.1:PORT/`, for async-stripe's `ClientBuilder::url`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn configure_webhooks(&self, config: WebhookConfig) -> Result<(), ApiError> {
        self.shared.lock().hooks.configure(config)
    }

    /// Pays a Checkout Session as the paying user would.
    pub async fn complete_checkout(
        &self,
        session_id: &str,
        payment: CompleteCheckout,
    ) -> Result<Outcome, ApiError> {
        self.shared.complete_checkout(session_id, payment).await
    }

    /// The bank's verdict on a session completed with `CompleteCheckout::bank_account()`.
    pub async fn settle_async_payment(&self, session_id: &str, succeeded: bool) -> Result<Outcome, ApiError> {
        self.shared.settle_async_payment(session_id, succeeded).await
    }

    /// Refunds a charge in full (`None`) or in part; emits `charge.refunded`.
    pub async fn refund_charge(&self, charge_id: &str, amount: Option<i64>) -> Result<Outcome, ApiError> {
        self.shared.refund_charge(charge_id, amount).await
    }

    /// The customer's bank returns a refund (`reason`, Stripe's `failure_reason`); emits
    /// `charge.refund.updated` and `refund.failed`.
    pub async fn fail_refund(&self, refund_id: &str, reason: &str) -> Result<Outcome, ApiError> {
        self.shared.fail_refund(refund_id, reason).await
    }

    /// The cardholder disputes a charge; emits `charge.dispute.created`.
    pub async fn dispute_charge(&self, charge_id: &str, reason: &str) -> Result<Outcome, ApiError> {
        self.shared.dispute_charge(charge_id, reason).await
    }

    /// A subscription's invoice is paid; emits `invoice.paid`.
    pub async fn pay_invoice(&self, invoice: InvoicePayment) -> Result<Outcome, ApiError> {
        self.shared.pay_invoice(invoice).await
    }

    /// Defines a price (`interval` `Some("month")` or `Some("year")`, `None` for one-time), in
    /// usd, replacing any with that id; answers the price object.
    pub fn add_price(&self, id: &str, unit_amount: i64, interval: Option<&str>) -> Result<Value, ApiError> {
        self.put_price(NewPrice {
            id: id.to_owned(),
            unit_amount,
            interval: interval.map(str::to_owned),
            ..Default::default()
        })
    }

    /// Defines a price with all its options (currency, product name).
    pub fn put_price(&self, price: NewPrice) -> Result<Value, ApiError> {
        self.shared.lock().put_price(&price)
    }

    /// Ends a subscription's current period: canceled if it was to cancel at period end
    /// (`customer.subscription.deleted`), else renewed and its next invoice charged
    /// (`customer.subscription.updated`, `invoice.paid`, `invoice_payment.paid`; a refused
    /// card: `invoice.payment_failed` and the subscription `past_due`).
    pub async fn renew_subscription(&self, subscription_id: &str) -> Result<Outcome, ApiError> {
        self.shared.renew_subscription(subscription_id).await
    }

    /// Sets a subscription's current period (unix seconds), e.g. to put "now" halfway
    /// through it; renewals count whole intervals from `start`. Emits nothing.
    pub fn set_subscription_period(
        &self,
        subscription_id: &str,
        start: i64,
        end: i64,
    ) -> Result<Value, ApiError> {
        self.shared
            .lock()
            .set_subscription_period(subscription_id, start, end)
    }

    /// Makes a saved payment method behave as another test card from now on.
    pub fn set_card(&self, payment_method_id: &str, card: &str) -> Result<Value, ApiError> {
        self.shared.lock().set_card(payment_method_id, card)
    }

    /// Delivers the events held so far, newest first with `Order::Reverse`.
    pub async fn release_held(&self, order: Order) -> Vec<Delivery> {
        self.shared.release_held(order).await
    }

    pub async fn redeliver(&self, event_id: &str) -> Result<EventSummary, ApiError> {
        self.shared.redeliver(event_id).await
    }

    /// Waits until every event queued so far has been delivered (API calls deliver in the
    /// background, as Stripe does).
    pub async fn flush_webhooks(&self) {
        self.shared.flush().await;
    }

    /// Every event created so far, oldest first, as Stripe's event objects.
    pub fn events(&self) -> Vec<Value> {
        self.shared
            .lock()
            .hooks
            .events
            .iter()
            .map(|e| e.json.clone())
            .collect()
    }

    /// The events created after the first `start`, oldest first: a reader that keeps how
    /// many it has seen reads each event once.
    pub fn events_from(&self, start: usize) -> Vec<Value> {
        let shared = self.shared.lock();
        shared
            .hooks
            .events
            .iter()
            .skip(start)
            .map(|e| e.json.clone())
            .collect()
    }

    /// The events of `ids`, in that order (an action's `Outcome::events`), as Stripe's
    /// event objects.
    pub fn events_by_id(&self, ids: &[&str]) -> Vec<Value> {
        let shared = self.shared.lock();
        ids.iter()
            .filter_map(|id| shared.hooks.events.iter().rev().find(|e| e.json["id"] == *id))
            .map(|e| e.json.clone())
            .collect()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().hooks.deliveries.clone()
    }

    /// Serves until the server fails (the binary's main loop).
    pub async fn serve_forever(mut self) -> io::Result<()> {
        match self.server.take() {
            Some(server) => server.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for StripeSim {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
        self.worker.abort();
    }
}

async fn unknown_url(method: Method, uri: Uri) -> Response {
    ApiError::unknown_url(method.as_str(), uri.path()).into_response()
}

pub(crate) fn new_id(prefix: &str, len: usize) -> String {
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(len));
    id
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
