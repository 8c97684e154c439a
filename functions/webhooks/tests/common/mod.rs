//! What the webhooks tests share: an org on dynoxide, the Stripe simulator, sessions made
//! as the checkout function makes them, and Stripe's deliveries signed as Stripe signs.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub use std::collections::HashMap;
pub use std::sync::Arc;

pub use agent_credits_domain::{
    BillingMode, EntryKind, OrgId, PageRequest, SystemClock, Usd, WalletSettings, WalletStore,
};
pub use agent_credits_dynamo::DynamoWalletStore;
pub use serde_json::{Value, json};
pub use stripe_checkout::CheckoutSessionMode;
pub use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    CreateCheckoutSessionPaymentIntentData, CreateCheckoutSessionPaymentIntentDataSetupFutureUsage,
    ProductData,
};
pub use stripe_core::customer::CreateCustomer;
pub use stripe_sim::{CompleteCheckout, StripeSim, signature_header};
pub use stripe_types::Currency;
pub use support::dynoxide::Dynoxide;
pub use webhooks::{Plan, Plans, Webhooks, handle};

pub const SECRET: &str = "whsec_test_agent_credits";
pub const TEAM_PRICE: &str = "price_team_monthly";
/// A bigger monthly plan: $200 for $250 of base credits.
pub const SCALE_PRICE: &str = "price_scale_monthly";

pub struct App {
    pub _db: Dynoxide,
    pub sim: StripeSim,
    pub stripe: stripe::Client,
    pub svc: Arc<Webhooks>,
    pub org: OrgId,
}

pub async fn app() -> App {
    let (db, client) = support::fresh_table("credits").await;
    let sim = StripeSim::start().await.unwrap();
    let stripe = stripe::ClientBuilder::new("sk_test_agent_credits")
        .url(sim.base_url())
        .build()
        .unwrap();
    let recharges = agent_credits_dynamo::RechargeStore::new(client.clone(), "credits");
    let store = DynamoWalletStore::new(client, "credits", Arc::new(SystemClock));
    let org = OrgId::parse("org_demo").unwrap();
    let settings = WalletSettings {
        billing_mode: Some(BillingMode::Credits),
        ..Default::default()
    };
    store.put_settings(&org, &settings).await.unwrap();
    let svc = Arc::new(Webhooks {
        store,
        recharges,
        signing_secret: SECRET.into(),
        payments: Some(support::payments(sim.base_url(), "sk_test_agent_credits")),
        plans: Plans::from_map(HashMap::from([
            (
                TEAM_PRICE.to_owned(),
                Plan::monthly(
                    Usd::parse("50").unwrap(),
                    Usd::parse("50").unwrap(),
                    Usd::parse("100").unwrap(),
                ),
            ),
            (
                SCALE_PRICE.to_owned(),
                Plan::monthly(
                    Usd::parse("200").unwrap(),
                    Usd::parse("250").unwrap(),
                    Usd::parse("500").unwrap(),
                ),
            ),
        ])),
    });
    sim.add_price(TEAM_PRICE, 5_000, Some("month")).unwrap();
    sim.add_price(SCALE_PRICE, 20_000, Some("month")).unwrap();
    App {
        _db: db,
        sim,
        stripe,
        svc,
        org,
    }
}

/// A Checkout Session as the checkout function makes it: $100 for $100 of credits.
pub async fn session(app: &App, metadata: HashMap<String, String>) -> String {
    session_in(app, metadata, Currency::USD).await
}

pub async fn session_in(app: &App, metadata: HashMap<String, String>, currency: Currency) -> String {
    let customer = CreateCustomer::new()
        .email("billing@demo.example")
        .send(&app.stripe)
        .await
        .unwrap();
    let mut price = CreateCheckoutSessionLineItemsPriceData::new(currency.clone());
    price.unit_amount = Some(10_000);
    price.product_data = Some(ProductData::new("Agent credits"));
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price_data = Some(price);
    item.quantity = Some(1);
    let mut intent = CreateCheckoutSessionPaymentIntentData::new();
    intent.setup_future_usage = Some(CreateCheckoutSessionPaymentIntentDataSetupFutureUsage::OffSession);
    intent.metadata = Some(metadata.clone());
    let session = CreateCheckoutSession::new()
        .mode(CheckoutSessionMode::Payment)
        .currency(currency)
        .line_items(vec![item])
        .metadata(metadata)
        .client_reference_id("org_demo")
        .customer(customer.id.as_str())
        .success_url("http://127.0.0.1:3000/billing?session={CHECKOUT_SESSION_ID}")
        .cancel_url("http://127.0.0.1:3000/billing")
        .payment_intent_data(intent)
        .send(&app.stripe)
        .await
        .unwrap();
    session.id.to_string()
}

pub fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn standard_metadata() -> HashMap<String, String> {
    metadata(&[
        ("org", "org_demo"),
        ("credits_usd", "100.00"),
        ("price_usd", "100.00"),
        ("member", "u_owner"),
    ])
}

/// The simulator's event of `kind`, as the API Gateway event Stripe's delivery becomes,
/// signed at `signed_at` (seconds) with `secret`.
pub fn delivery(app: &App, kind: &str, secret: &str, signed_at: i64) -> Value {
    let event = app
        .sim
        .events()
        .into_iter()
        .rev()
        .find(|e| e["type"] == kind)
        .expect(kind);
    signed(event.to_string(), secret, signed_at)
}

pub fn signed(body: String, secret: &str, signed_at: i64) -> Value {
    let mut e = support::event("webhooks/stripe-event.json");
    e["headers"]["stripe-signature"] = json!(signature_header(secret, signed_at, &body).unwrap());
    e["body"] = json!(body);
    e
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub async fn call(svc: &Webhooks, event: &Value) -> (u16, Value) {
    support::contract::call(event, |req| handle(svc, req)).await
}

pub async fn purchases(app: &App) -> Vec<agent_credits_domain::LedgerEntry> {
    let page = app
        .svc
        .store
        .history(&app.org, PageRequest::first(100))
        .await
        .unwrap();
    page.entries
        .into_iter()
        .filter(|e| e.kind == EntryKind::Purchase)
        .collect()
}
