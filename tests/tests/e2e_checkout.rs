//! End to end: the checkout function creates a Checkout Session on the project's Stripe
//! simulator, the paying user completes it there, its signed webhooks reach the webhooks
//! function over HTTP, and the wallet on dynoxide is credited exactly once. Both functions
//! are built and served by `cargo lambda watch`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent_credits_domain::{
    BillingMode, EntryKind, MemberId, Org, OrgId, PageRequest, PurchasePolicy, Runtime, SystemClock, Usd,
    WalletSettings, WalletStore,
};
use agent_credits_dynamo::{DynamoWalletStore, OrgStore};
use stripe_sim::{CompleteCheckout, StripeSim, WebhookConfig};
use support::watch::Watch;

const SECRET: &str = "whsec_e2e_agent_credits";

#[test]
fn a_checkout_paid_in_the_simulator_credits_the_wallet_once_through_cargo_lambda() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (db, client) = rt.block_on(support::fresh_table("e2e"));
    let sim = rt.block_on(StripeSim::start()).unwrap();
    let org = OrgId::parse("org_demo").unwrap();
    rt.block_on(async {
        let profile = Org {
            id: org.clone(),
            name: "Demo".into(),
            runtime: Runtime::ClaudeCode,
            billing_mode: BillingMode::Credits,
            purchase_policy: PurchasePolicy::OwnersOnly,
            members_see_billing: true,
            credits_per_usd: 200,
            created_at: chrono::Utc::now(),
            referred_by: None,
            revision: 0,
        };
        let settings = WalletSettings {
            billing_mode: Some(BillingMode::Credits),
            ..Default::default()
        };
        let owner = MemberId::parse("u_owner").unwrap();
        assert!(
            OrgStore::new(client.clone(), "e2e")
                .create(&profile, &owner, &settings)
                .await
                .unwrap()
        );
    });
    let mut env = support::watch::local_env("e2e", db.endpoint());
    env.extend([
        ("STRIPE_WEBHOOK_SECRET", SECRET.to_owned()),
        ("STRIPE_SECRET_KEY", "sk_test_e2e".to_owned()),
        ("STRIPE_API_BASE", sim.base_url().to_owned()),
    ]);
    let watch = Watch::start(&env);
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

    // The owner buys a $100 bulk from the dashboard.
    let (status, created) = watch.call("checkout", &support::event("checkout/create-session.json"));
    assert_eq!(status, 201, "{created}");
    let session = created["session_id"].as_str().unwrap().to_owned();

    // The paying user completes the session; the simulator answers once its events are
    // delivered (signed, over HTTP) and says what the function answered.
    let outcome = rt
        .block_on(sim.complete_checkout(&session, CompleteCheckout::card("pm_card_visa")))
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
    rt.block_on(async {
        let wallet = store.wallet(&org).await.unwrap();
        assert_eq!(wallet.balance().unwrap(), Usd::parse("100").unwrap());
        let entries = store.history(&org, PageRequest::first(10)).await.unwrap().entries;
        let purchases: Vec<_> = entries.iter().filter(|e| e.kind == EntryKind::Purchase).collect();
        assert_eq!(purchases.len(), 1);
        assert_eq!(
            purchases[0].external.checkout_session.as_deref(),
            Some(session.as_str())
        );
        assert_eq!(
            purchases[0].external.stripe_event.as_deref(),
            Some(completed.id.as_str())
        );
        assert!(purchases[0].external.payment_intent.is_some());
        assert_eq!(
            purchases[0].attribution.member.as_ref().map(|m| m.as_str()),
            Some("u_owner")
        );
    });
}
