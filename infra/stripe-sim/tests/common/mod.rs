//! Test support: a webhook receiver, a plain HTTP client, and the calls the functions make
//! through async-stripe.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::post;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    CreateCheckoutSessionPaymentIntentData, CreateCheckoutSessionPaymentIntentDataSetupFutureUsage,
    CreateCheckoutSessionSubscriptionData, ProductData,
};
use stripe_client_core::{RequestBuilder, StripeMethod};
use stripe_core::customer::CreateCustomer;
use stripe_core::payment_intent::{CreatePaymentIntent, CreatePaymentIntentOffSession};
use stripe_sim::{StripeSim, WebhookConfig};
use stripe_types::Currency;
use stripe_webhook::{Event, Webhook};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub const SECRET: &str = "whsec_simulator_test_secret";

/// One webhook request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub signature: String,
    pub content_type: String,
    pub body: String,
}

impl Received {
    pub fn verify(&self) -> Event {
        Webhook::construct_event(&self.body, &self.signature, SECRET).expect("a valid Stripe signature")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap().to_string()
    }

    pub fn event_id(&self) -> String {
        self.json()["id"].as_str().unwrap().to_string()
    }
}

/// A local webhook endpoint that answers `status` and keeps what it receives.
pub struct Receiver {
    pub url: String,
    received: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    pub async fn start(status: u16) -> Self {
        let (sender, received) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/webhooks",
            post(move |headers: HeaderMap, body: String| {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default()
                };
                sender
                    .send(Received {
                        signature: header("stripe-signature"),
                        content_type: header("content-type"),
                        body,
                    })
                    .unwrap();
                async move { StatusCode::from_u16(status).unwrap() }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, received }
    }

    /// Everything received so far. The simulator answers a control action only after its
    /// events were delivered, and `flush_webhooks` waits for the rest, so no waiting here.
    pub fn take(&mut self) -> Vec<Received> {
        let mut all = Vec::new();
        while let Ok(one) = self.received.try_recv() {
            all.push(one);
        }
        all
    }
}

/// A simulator delivering to a fresh receiver that answers 200.
pub async fn sim_with_receiver() -> (StripeSim, Receiver) {
    let sim = StripeSim::start().await.unwrap();
    let receiver = Receiver::start(200).await;
    sim.configure_webhooks(WebhookConfig {
        url: receiver.url.clone(),
        secret: SECRET.into(),
        ..Default::default()
    })
    .unwrap();
    (sim, receiver)
}

pub fn stripe(sim: &StripeSim) -> stripe::Client {
    stripe::ClientBuilder::new("sk_test_simulator")
        .url(sim.base_url())
        .build()
        .unwrap()
}

/// A plain HTTP/1.1 request to the simulator (or anything on loopback).
pub async fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, HeaderMap, String) {
    let uri: axum::http::Uri = url.parse().unwrap();
    let authority = uri.authority().unwrap().to_string();
    let stream = TcpStream::connect(authority.as_str()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(uri.path_and_query().unwrap().as_str())
        .header("host", authority);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// POSTs JSON to a control route and answers the status and the JSON reply.
pub async fn control(sim: &StripeSim, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}{path}", sim.base_url());
    let (status, _, reply) = http(
        "POST",
        &url,
        &[("content-type", "application/json")],
        &body.to_string(),
    )
    .await;
    (status, serde_json::from_str(&reply).unwrap())
}

pub const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
pub const KEY: (&str, &str) = ("authorization", "Bearer sk_test_simulator");

pub fn org_metadata(org: &str) -> HashMap<String, String> {
    HashMap::from([("org".to_string(), org.to_string())])
}

/// The customer the checkout function creates once per org.
pub async fn create_customer(client: &stripe::Client, org: &str) -> stripe_shared::Customer {
    CreateCustomer::new()
        .email(format!("billing@{org}.example"))
        .metadata(org_metadata(org))
        .send(client)
        .await
        .unwrap()
}

/// The Checkout Session the checkout function creates: mode payment, usd, metadata,
/// client_reference_id, success/cancel URLs, the card saved for off-session use.
pub async fn create_checkout(
    client: &stripe::Client,
    customer: &str,
    org: &str,
    cents: i64,
) -> stripe_shared::CheckoutSession {
    let mut price = CreateCheckoutSessionLineItemsPriceData::new(Currency::USD);
    price.unit_amount = Some(cents);
    price.product_data = Some(ProductData::new("Agent credits"));
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price_data = Some(price);
    item.quantity = Some(1);
    let mut intent_data = CreateCheckoutSessionPaymentIntentData::new();
    intent_data.setup_future_usage = Some(CreateCheckoutSessionPaymentIntentDataSetupFutureUsage::OffSession);
    intent_data.metadata = Some(org_metadata(org));
    CreateCheckoutSession::new()
        .mode(CheckoutSessionMode::Payment)
        .currency(Currency::USD)
        .line_items(vec![item])
        .metadata(org_metadata(org))
        .client_reference_id(org)
        .customer(customer)
        .success_url("http://127.0.0.1:1/done?session={CHECKOUT_SESSION_ID}")
        .cancel_url("http://127.0.0.1:1/cancelled")
        .payment_intent_data(intent_data)
        .send(client)
        .await
        .unwrap()
}

/// The recharge function's call: off session, confirmed at once, on the saved card.
pub fn off_session_payment(
    customer: &str,
    payment_method: &str,
    cents: i64,
    org: &str,
) -> CreatePaymentIntent {
    CreatePaymentIntent::new(cents, Currency::USD)
        .customer(customer)
        .payment_method(payment_method)
        .confirm(true)
        .off_session(CreatePaymentIntentOffSession::Bool(true))
        .metadata(org_metadata(org))
}

/// The subscription Checkout Session the checkout function creates for a plan.
pub async fn create_subscription_checkout(
    client: &stripe::Client,
    customer: &str,
    org: &str,
    price: &str,
) -> stripe_shared::CheckoutSession {
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price = Some(price.to_string());
    item.quantity = Some(1);
    let mut subscription_data = CreateCheckoutSessionSubscriptionData::new();
    subscription_data.metadata = Some(org_metadata(org));
    CreateCheckoutSession::new()
        .mode(CheckoutSessionMode::Subscription)
        .line_items(vec![item])
        .metadata(org_metadata(org))
        .client_reference_id(org)
        .customer(customer)
        .success_url("http://127.0.0.1:1/done?session={CHECKOUT_SESSION_ID}")
        .cancel_url("http://127.0.0.1:1/cancelled")
        .subscription_data(subscription_data)
        .send(client)
        .await
        .unwrap()
}

/// A customer of `org` subscribed to `price` through Checkout, paid with `card`: the
/// customer's id, the subscription's id and the completed session's control outcome.
pub async fn subscribe(
    sim: &StripeSim,
    org: &str,
    price: &str,
    card: &str,
) -> (String, String, stripe_sim::Outcome) {
    let client = stripe(sim);
    let customer = create_customer(&client, org).await;
    let session = create_subscription_checkout(&client, &customer.id, org, price).await;
    let outcome = sim
        .complete_checkout(&session.id, stripe_sim::CompleteCheckout::card(card))
        .await
        .unwrap();
    let subscription = outcome.object["subscription"].as_str().unwrap().to_string();
    (customer.id.to_string(), subscription, outcome)
}

/// A GET async-stripe has no typed request for, read into async-stripe's type.
pub async fn get_typed<T: miniserde::Deserialize>(
    client: &stripe::Client,
    path: &str,
) -> Result<T, stripe::StripeError> {
    RequestBuilder::new(StripeMethod::Get, path)
        .customize()
        .send(client)
        .await
}

/// A form POST async-stripe has no typed request for (bracketed keys as Stripe names
/// them), read into async-stripe's type.
pub async fn post_typed<T: miniserde::Deserialize>(
    client: &stripe::Client,
    path: &str,
    params: &[(&str, &str)],
) -> Result<T, stripe::StripeError> {
    let form: std::collections::BTreeMap<&str, &str> = params.iter().copied().collect();
    RequestBuilder::new(StripeMethod::Post, path)
        .form(&form)
        .customize()
        .send(client)
        .await
}

/// A GET of the simulator's JSON, as any client sees it.
pub async fn get_v1(sim: &StripeSim, path: &str) -> (u16, Value) {
    let (status, _, body) = http("GET", &format!("{}{path}", sim.base_url()), &[KEY], "").await;
    (status, serde_json::from_str(&body).unwrap())
}

/// A form POST to the simulator's `/v1` API: status and JSON.
pub async fn post_v1(sim: &StripeSim, path: &str, body: &str) -> (u16, Value) {
    let (status, _, reply) = http("POST", &format!("{}{path}", sim.base_url()), &[KEY, FORM], body).await;
    (status, serde_json::from_str(&reply).unwrap())
}
