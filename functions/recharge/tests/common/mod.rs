//! What the recharge tests share: an org with credits and a card saved at a simulated
//! checkout, on dynoxide and the Stripe simulator.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub use std::sync::Arc;

pub use agent_credits_domain::{
    BillingMode, ChangeRequest, EntryKind, IdempotencyKey, MemberId, OrgId, PageRequest, PauseReason,
    PositiveUsd, RechargeSettings, SystemClock, Usd, WalletSettings, WalletState, WalletStore,
};
pub use agent_credits_dynamo::{Card, Claim, Configured, Due, DynamoWalletStore, RechargeStore};
pub use recharge::{Recharge, send_intent, sweep};
pub use stripe::StripeRequest;
pub use stripe_core::customer::CreateCustomer;
pub use stripe_sim::{CompleteCheckout, StripeSim};
pub use support::dynoxide::Dynoxide;

pub struct App {
    pub _db: Dynoxide,
    pub sim: StripeSim,
    pub svc: Arc<Recharge>,
    pub org: OrgId,
    pub card: String,
    pub customer: String,
}

pub fn usd(s: &str) -> Usd {
    Usd::parse(s).unwrap()
}

/// An org with $30 of credits and a card saved at checkout.
pub async fn app(resume_after_seconds: i64) -> App {
    app_on(support::fresh_table("credits").await, resume_after_seconds).await
}

/// [`app`] on a table with the template's stream, for the stream's consumers.
pub async fn app_streaming(resume_after_seconds: i64) -> App {
    app_on(
        support::fresh_table_with_stream("credits").await,
        resume_after_seconds,
    )
    .await
}

async fn app_on((db, client): (Dynoxide, aws_sdk_dynamodb::Client), resume_after_seconds: i64) -> App {
    let sim = StripeSim::start().await.unwrap();
    let stripe = stripe::ClientBuilder::new("sk_test_recharge")
        .url(sim.base_url())
        .build()
        .unwrap();
    let store = DynamoWalletStore::new(client.clone(), "credits", Arc::new(SystemClock));
    let org = OrgId::parse("org_demo").unwrap();
    support::create_credits_org(&client, "credits", &org, "u_owner").await;
    store
        .apply(support::purchase(&org, "30", "seed"))
        .await
        .unwrap()
        .unwrap();
    let customer = CreateCustomer::new()
        .email("owner@demo.example")
        .send(&stripe)
        .await
        .unwrap();
    let card = saved_card(&sim, &stripe, customer.id.as_str()).await;
    let svc = Arc::new(Recharge {
        store,
        recharges: RechargeStore::new(client, "credits"),
        payments: support::payments(sim.base_url(), "sk_test_recharge"),
        clock: Arc::new(SystemClock),
        resume_after: chrono::Duration::seconds(resume_after_seconds),
    });
    App {
        _db: db,
        sim,
        svc,
        org,
        card,
        customer: customer.id.to_string(),
    }
}

/// Pays a checkout with Stripe's visa test card, saving it for off-session use.
pub async fn saved_card(sim: &StripeSim, stripe: &stripe::Client, customer: &str) -> String {
    use stripe_checkout::CheckoutSessionMode;
    use stripe_checkout::checkout_session::*;
    let mut price = CreateCheckoutSessionLineItemsPriceData::new(stripe_types::Currency::USD);
    price.unit_amount = Some(1_000);
    price.product_data = Some(ProductData::new("Agent credits"));
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price_data = Some(price);
    item.quantity = Some(1);
    let mut intent = CreateCheckoutSessionPaymentIntentData::new();
    intent.setup_future_usage = Some(CreateCheckoutSessionPaymentIntentDataSetupFutureUsage::OffSession);
    let session = CreateCheckoutSession::new()
        .mode(CheckoutSessionMode::Payment)
        .line_items(vec![item])
        .customer(customer)
        .success_url("http://127.0.0.1:3000/billing")
        .payment_intent_data(intent)
        .send(stripe)
        .await
        .unwrap();
    sim.complete_checkout(session.id.as_str(), CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    let cards = stripe_core::customer::ListPaymentMethodsCustomer::new(customer)
        .send(stripe)
        .await
        .unwrap();
    cards.data[0].id.to_string()
}

/// The owner's card on file for the org.
pub fn owners_card(app: &App) -> Card {
    Card {
        customer: app.customer.clone(),
        payment_method: app.card.clone(),
        owner: MemberId::parse("u_owner").unwrap(),
    }
}

/// The owner turns auto-recharge on with their card: $100 below $20, `max_per_day`.
pub async fn configure(app: &App, max_per_day: u32) -> Configured {
    let settings = RechargeSettings::new(true, usd("20"), usd("100"), max_per_day, usd("1000")).unwrap();
    let card = owners_card(app);
    app.svc
        .recharges
        .configure(&app.org, &settings, Some(&card), &card.owner, chrono::Utc::now())
        .await
        .unwrap()
}

pub async fn enable(app: &App, max_per_day: u32) {
    assert_eq!(
        configure(app, max_per_day).await,
        Configured::Saved,
        "the owner may save their card"
    );
}

pub async fn spend(app: &App, amount: &str, key: &str) {
    let req = ChangeRequest::usage(
        app.org.clone(),
        PositiveUsd::parse(amount).unwrap(),
        IdempotencyKey::parse(key).unwrap(),
    );
    app.svc.store.apply(req).await.unwrap().unwrap();
}

pub async fn top_ups(app: &App) -> usize {
    let page = app
        .svc
        .store
        .history(&app.org, PageRequest::first(100))
        .await
        .unwrap();
    page.entries
        .iter()
        .filter(|e| e.kind == EntryKind::AutoTopUp)
        .count()
}

pub fn charges(app: &App) -> usize {
    app.sim
        .events()
        .iter()
        .filter(|e| {
            e["type"] == "payment_intent.succeeded"
                && e["data"]["object"]["metadata"]["purpose"] == "auto_recharge"
        })
        .count()
}

pub async fn notifications(app: &App, kind: &str) -> usize {
    let all = app.svc.store.notifications(&app.org, 100).await.unwrap();
    all.iter().filter(|n| n.kind == kind).count()
}

pub async fn balance(app: &App) -> Usd {
    app.svc.store.wallet(&app.org).await.unwrap().balance().unwrap()
}

/// The org's due mark, as a sweep reads it before claiming.
pub async fn due(app: &App) -> Due {
    app.svc
        .recharges
        .due()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.org == app.org)
        .expect("the org is due")
}

/// The local stack of the events tests and the crossing benchmark: moto's EventBridge with
/// the alerts bus and a queue on it, the functions under `cargo lambda watch`, and the
/// template's stream mappings (`local_gateway::streams`) started before anything is
/// written, each batch delivered twice when `duplicate`.
pub struct Stack {
    pub watch: support::watch::Watch,
    pub bus: support::bus::Bus,
    _moto: support::moto::Moto,
    pub counters: Arc<local_gateway::streams::Counters>,
    // The mappings' tasks run on this runtime's workers until the stack is dropped.
    _mappings: tokio::task::JoinSet<Result<(), String>>,
    _streams: tokio::runtime::Runtime,
}

impl Stack {
    pub fn start(rt: &tokio::runtime::Runtime, app: &App, duplicate: bool) -> Stack {
        use local_gateway::streams;
        const BUS: &str = "agent-credits-e2e";
        let moto = support::moto::Moto::start();
        let bus = rt.block_on(support::bus::Bus::create(moto.endpoint(), BUS));
        let mut env = support::watch::local_env("credits", app._db.endpoint());
        env.extend([
            ("STRIPE_SECRET_KEY", "sk_test_e2e".to_owned()),
            ("STRIPE_API_BASE", app.sim.base_url().to_owned()),
            ("RECHARGE_RESUME_AFTER_SECONDS", "120".to_owned()),
            ("EVENTBRIDGE_ENDPOINT", moto.endpoint().to_owned()),
            ("EVENT_BUS_NAME", BUS.to_owned()),
        ]);
        let watch = support::watch::Watch::start(&env);
        let mappings = streams::from_template(&support::repo_root().join("infra/template.yaml")).unwrap();
        assert_eq!(
            mappings.len(),
            3,
            "the notifier's, recharge on crossing's and the earnings'"
        );
        let source = streams::Source {
            dynamodb: app._db.endpoint().to_owned(),
            table: "credits".to_owned(),
            upstream: format!("http://127.0.0.1:{}", watch.port()),
            duplicate,
            poll: std::time::Duration::from_millis(250),
        };
        let counters = Arc::new(streams::Counters::default());
        let streams_rt = tokio::runtime::Runtime::new().unwrap();
        let mappings = streams_rt
            .block_on(streams::start(source, mappings, counters.clone()))
            .unwrap();
        Stack {
            watch,
            bus,
            _moto: moto,
            counters,
            _mappings: mappings,
            _streams: streams_rt,
        }
    }
}
