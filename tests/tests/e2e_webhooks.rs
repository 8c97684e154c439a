//! End to end: a Checkout Session created with async-stripe on the project's Stripe
//! simulator, paid there, its signed webhooks delivered over HTTP to the webhooks function
//! served by `cargo lambda watch`, and the wallet on dynoxide credited exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use agent_credits_domain::{EntryKind, OrgId, PageRequest, SystemClock, Usd, WalletStore};
use agent_credits_dynamo::DynamoWalletStore;
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    ProductData,
};
use stripe_sim::{CompleteCheckout, StripeSim, WebhookConfig};
use stripe_types::Currency;
use support::watch::Watch;

const SECRET: &str = "whsec_e2e_agent_credits";

#[test]
fn a_checkout_paid_in_the_simulator_credits_the_wallet_once_through_cargo_lambda() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (db, client) = rt.block_on(support::fresh_table("e2e"));
    let sim = rt.block_on(StripeSim::start()).unwrap();
    let watch = Watch::start(&[
        ("TABLE_NAME", "e2e".to_owned()),
        ("DYNAMODB_ENDPOINT", db.endpoint().to_owned()),
        ("STRIPE_WEBHOOK_SECRET", SECRET.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "local".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "local".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]);
    // The first invocation builds and starts the function; do it before Stripe's
    // deliveries, which give up after 10 s. Unsigned, so it is refused and writes nothing.
    let (status, refused) = watch.call("webhooks", &support::event("webhooks/stripe-event.json"));
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("invalid_signature")),
        "{refused}"
    );

    let url = format!(
        "http://127.0.0.1:{}/lambda-url/webhooks/v1/stripe/webhooks",
        watch.port()
    );
    sim.configure_webhooks(WebhookConfig {
        url,
        secret: SECRET.into(),
        ..Default::default()
    })
    .unwrap();
    let stripe = stripe::ClientBuilder::new("sk_test_e2e")
        .url(sim.base_url())
        .build()
        .unwrap();
    let session = rt.block_on(async {
        let mut price = CreateCheckoutSessionLineItemsPriceData::new(Currency::USD);
        price.unit_amount = Some(10_000);
        price.product_data = Some(ProductData::new("Agent credits"));
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price_data = Some(price);
        item.quantity = Some(1);
        let metadata: HashMap<String, String> = [
            ("org", "org_demo"),
            ("credits_usd", "100.00"),
            ("member", "u_owner"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Payment)
            .currency(Currency::USD)
            .line_items(vec![item])
            .metadata(metadata)
            .client_reference_id("org_demo")
            .success_url("http://127.0.0.1:3000/billing?session={CHECKOUT_SESSION_ID}")
            .cancel_url("http://127.0.0.1:3000/billing")
            .send(&stripe)
            .await
            .unwrap()
    });

    // The paying user completes the session; the simulator answers once its events are
    // delivered (signed, over HTTP) and says what the function answered.
    let outcome = rt
        .block_on(sim.complete_checkout(&session.id, CompleteCheckout::card("pm_card_visa")))
        .unwrap();
    let completed = outcome
        .events
        .iter()
        .find(|e| e.kind == "checkout.session.completed")
        .expect("completed event");
    assert_eq!(
        completed.deliveries.iter().map(|d| d.status).collect::<Vec<_>>(),
        [Some(200)],
        "{outcome:?}"
    );
    // Stripe delivers it again: still one credit.
    let again = rt.block_on(sim.redeliver(&completed.id)).unwrap();
    assert_eq!(again.deliveries.last().and_then(|d| d.status), Some(200));

    let store = DynamoWalletStore::new(client, "e2e", Arc::new(SystemClock));
    let org = OrgId::parse("org_demo").unwrap();
    rt.block_on(async {
        let wallet = store.wallet(&org).await.unwrap();
        assert_eq!(wallet.balance().unwrap(), Usd::parse("100").unwrap());
        let entries = store.history(&org, PageRequest::first(10)).await.unwrap().entries;
        let purchases: Vec<_> = entries.iter().filter(|e| e.kind == EntryKind::Purchase).collect();
        assert_eq!(purchases.len(), 1);
        assert_eq!(
            purchases[0].external.checkout_session.as_deref(),
            Some(session.id.as_str())
        );
        assert_eq!(
            purchases[0].external.stripe_event.as_deref(),
            Some(completed.id.as_str())
        );
        assert!(purchases[0].external.payment_intent.is_some());
    });
}
