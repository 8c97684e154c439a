//! The checkout handler against the project's Stripe simulator (through async-stripe) and
//! dynoxide, driven by the API Gateway v2 event of `infra/events/checkout/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_credits_domain::{
    BillingMode, MemberId, Org, OrgId, PurchasePolicy, Role, Runtime, WalletSettings,
};
use agent_credits_dynamo::{OrgStore, RechargeStore};
use checkout::{Checkout, catalog_from, handle};
use serde_json::{Value, json};
use stripe_checkout::checkout_session::RetrieveCheckoutSession;
use stripe_sim::StripeSim;
use support::dynoxide::Dynoxide;

struct App {
    _db: Dynoxide,
    sim: StripeSim,
    svc: Checkout,
}

async fn app(policy: PurchasePolicy, key: &str) -> App {
    let (db, client) = support::fresh_table("credits").await;
    let sim = StripeSim::start().await.unwrap();
    let orgs = OrgStore::new(client.clone(), "credits");
    let recharges = RechargeStore::new(client, "credits");
    let org = Org {
        id: OrgId::parse("org_demo").unwrap(),
        name: "Demo".into(),
        runtime: Runtime::ClaudeCode,
        billing_mode: BillingMode::Credits,
        purchase_policy: policy,
        members_see_billing: true,
        credits_per_usd: 200,
        created_at: chrono_now(),
        referred_by: None,
        revision: 0,
    };
    let owner = MemberId::parse("u_owner").unwrap();
    let settings = WalletSettings {
        billing_mode: Some(BillingMode::Credits),
        ..Default::default()
    };
    assert!(orgs.create(&org, &owner, &settings).await.unwrap());
    orgs.set_role(
        &org.id,
        &MemberId::parse("u_member").unwrap(),
        Role::Member,
        chrono_now(),
    )
    .await
    .unwrap();
    let packages = r#"[{"id":"pro","name":"Professional","price":"100.00","credits":"110.00"}]"#;
    let catalog = catalog_from(|name| (name == "CHECKOUT_PACKAGES").then(|| packages.to_owned())).unwrap();
    let payments = agent_credits_stripe::StripeGateway::connect(&key.into(), Some(sim.base_url())).unwrap();
    let payments = std::sync::Arc::new(payments);
    let svc = Checkout {
        orgs,
        recharges,
        payments: payments.clone(),
        billing: payments,
        catalog,
        plans: agent_credits_domain::Plans::default(),
        portal_configuration: None,
        dashboard_url: "http://127.0.0.1:3000".into(),
    };
    App { _db: db, sim, svc }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn buy(sub: &str, body: Value) -> Value {
    let mut e = support::event("checkout/create-session.json");
    e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = json!(sub);
    e["body"] = json!(body.to_string());
    e
}

async fn call(svc: &Checkout, event: &Value) -> (u16, Value) {
    support::contract::call(event, |req| handle(svc, req)).await
}

/// The session as Stripe (the simulator) holds it, read back through async-stripe.
async fn stripe_session(app: &App, id: &str) -> stripe_shared::CheckoutSession {
    let client = stripe::ClientBuilder::new("sk_test_reader")
        .url(app.sim.base_url())
        .build()
        .unwrap();
    RetrieveCheckoutSession::new(id).send(&client).await.unwrap()
}

fn meta(session: &stripe_shared::CheckoutSession, key: &str) -> String {
    session
        .metadata
        .as_ref()
        .and_then(|m| m.get(key))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn an_owner_buys_a_bulk_and_the_session_carries_what_the_webhook_credits() {
    let app = app(PurchasePolicy::OwnersOnly, "sk_test_checkout").await;
    let (status, body) = call(&app.svc, &support::event("checkout/create-session.json")).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body["url"].as_str().unwrap().starts_with(app.sim.base_url()),
        "{body}"
    );
    let session = stripe_session(&app, body["session_id"].as_str().unwrap()).await;
    assert_eq!(session.mode, stripe_shared::CheckoutSessionMode::Payment);
    assert_eq!(session.currency, Some(stripe_types::Currency::USD));
    assert_eq!(session.amount_total, Some(10_000));
    assert_eq!(session.client_reference_id.as_deref(), Some("org_demo"));
    for (k, v) in [
        ("org", "org_demo"),
        ("member", "u_owner"),
        ("offer", "bulk"),
        ("credits_usd", "100.00"),
    ] {
        assert_eq!(meta(&session, k), v, "metadata {k}");
    }
    let success = session.success_url.clone().unwrap_or_default();
    assert!(
        success.starts_with("http://127.0.0.1:3000/orgs/org_demo/billing?checkout=success"),
        "{success}"
    );

    // The buyer's customer is created once and reused.
    let first = session.customer.as_ref().map(|c| c.id().to_string()).unwrap();
    let (_, again) = call(&app.svc, &buy("u_owner", json!({ "package": { "id": "pro" } }))).await;
    let second = stripe_session(&app, again["session_id"].as_str().unwrap()).await;
    assert_eq!(second.customer.as_ref().map(|c| c.id().to_string()), Some(first));
    assert_eq!(
        meta(&second, "credits_usd"),
        "110.00",
        "the package's bonus is credited"
    );
    assert_eq!(second.amount_total, Some(10_000));
}

#[tokio::test]
async fn who_may_buy_follows_the_org_policy() {
    let app = app(PurchasePolicy::OwnersOnly, "sk_test_checkout").await;
    let (status, body) = call(&app.svc, &buy("u_member", json!({ "bulk": { "quantity": 1 } }))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")));
    let (status, _) = call(&app.svc, &buy("u_stranger", json!({ "bulk": { "quantity": 1 } }))).await;
    assert_eq!(status, 403);

    let open = app_any_member().await;
    let (status, body) = call(
        &open.svc,
        &buy("u_member", json!({ "custom": { "amount": "25.00" } })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let session = stripe_session(&open, body["session_id"].as_str().unwrap()).await;
    assert_eq!(
        meta(&session, "member"),
        "u_member",
        "a member pays with their own card"
    );
    let owner = open
        .svc
        .orgs
        .member(
            &OrgId::parse("org_demo").unwrap(),
            &MemberId::parse("u_owner").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        owner.stripe_customer.is_none(),
        "the member's customer is their own, not the owner's"
    );
}

async fn app_any_member() -> App {
    app(PurchasePolicy::AnyMember, "sk_test_checkout").await
}

#[tokio::test]
async fn bad_choices_are_refused_before_stripe_is_asked() {
    let app = app(PurchasePolicy::OwnersOnly, "sk_test_checkout").await;
    for (body, code) in [
        (json!({ "custom": { "amount": "5.00" } }), "invalid_offer"),
        (json!({ "custom": { "amount": "20000" } }), "invalid_offer"),
        (json!({ "custom": { "amount": "12.345" } }), "invalid_offer"),
        (json!({ "package": { "id": "gold" } }), "invalid_offer"),
        (json!({ "custom": { "amount": 25 } }), "invalid_request"),
        (json!({ "bulk": { "quantity": 0 } }), "invalid_offer"),
        (json!({ "surprise": {} }), "invalid_request"),
    ] {
        let (status, reply) = call(&app.svc, &buy("u_owner", body.clone())).await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}: {reply}"
        );
    }
    let owner = app
        .svc
        .orgs
        .member(
            &OrgId::parse("org_demo").unwrap(),
            &MemberId::parse("u_owner").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        owner.stripe_customer.is_none(),
        "no customer was created for refused requests"
    );
}

#[tokio::test]
async fn a_stripe_refusal_is_a_502_and_records_nothing() {
    let app = app(PurchasePolicy::OwnersOnly, "rk_live_not_a_test_key").await;
    let (status, body) = call(&app.svc, &support::event("checkout/create-session.json")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("stripe_error")),
        "{body}"
    );
    let owner = app
        .svc
        .orgs
        .member(
            &OrgId::parse("org_demo").unwrap(),
            &MemberId::parse("u_owner").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(owner.stripe_customer.is_none());
}

fn auto_recharge(sub: &str, method: &str, body: Option<Value>) -> Value {
    let mut e = support::event("checkout/put-auto-recharge.json");
    e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = json!(sub);
    e["requestContext"]["http"]["method"] = json!(method);
    e["body"] = body.map_or(Value::Null, |b| json!(b.to_string()));
    e
}

#[tokio::test]
async fn auto_recharge_settings_are_checked_and_need_an_owner_with_a_saved_card() {
    let app = app(PurchasePolicy::OwnersOnly, "sk_test_checkout").await;
    let owner_put = |body: Value| auto_recharge("u_owner", "PUT", Some(body));
    let unchanged = async |app: &App| {
        let (status, body) = call(&app.svc, &auto_recharge("u_owner", "GET", None)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["enabled"], false, "{body}");
        assert!(
            app.svc
                .recharges
                .config(&OrgId::parse("org_demo").unwrap())
                .await
                .unwrap()
                .is_none()
        );
    };
    // No card saved yet.
    let (status, body) = call(&app.svc, &owner_put(json!({ "enabled": true }))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("no_saved_card")),
        "{body}"
    );
    unchanged(&app).await;

    // The owner buys once with a card: it is saved for off-session use.
    let (_, session) = call(&app.svc, &support::event("checkout/create-session.json")).await;
    app.sim
        .complete_checkout(
            session["session_id"].as_str().unwrap(),
            stripe_sim::CompleteCheckout::card("pm_card_visa"),
        )
        .await
        .unwrap();

    for (who, body, status, code) in [
        (
            "u_owner",
            json!({ "enabled": true, "threshold_usd": "150", "amount_usd": "100" }),
            400,
            "threshold_above_amount",
        ),
        (
            "u_owner",
            json!({ "enabled": true, "threshold_usd": "-5" }),
            400,
            "invalid_request",
        ),
        (
            "u_owner",
            json!({ "enabled": true, "amount_usd": "0" }),
            400,
            "invalid_amount",
        ),
        (
            "u_owner",
            json!({ "enabled": true, "amount_usd": 100 }),
            400,
            "invalid_request",
        ),
        (
            "u_owner",
            json!({ "enabled": true, "max_per_day": 0 }),
            400,
            "invalid_daily_cap",
        ),
        (
            "u_owner",
            json!({ "threshold_usd": "10" }),
            400,
            "invalid_request",
        ),
        (
            "u_owner",
            json!({ "enabled": true, "threshold_usd": "20", "target_usd": "20.49" }),
            400,
            "invalid_target",
        ),
        (
            "u_owner",
            json!({ "enabled": true, "target_usd": "100000.01", "max_usd_per_day": "200000" }),
            400,
            "invalid_target",
        ),
        (
            "u_owner",
            json!({ "enabled": true, "target_usd": "2000" }),
            400,
            "invalid_target",
        ),
        ("u_member", json!({ "enabled": true }), 403, "forbidden"),
        ("u_stranger", json!({ "enabled": true }), 403, "forbidden"),
    ] {
        let (got, reply) = call(&app.svc, &auto_recharge(who, "PUT", Some(body.clone()))).await;
        assert_eq!(
            (got, reply["error"]["code"].as_str()),
            (status, Some(code)),
            "{who} {body}: {reply}"
        );
        unchanged(&app).await;
    }

    let (status, body) = call(&app.svc, &support::event("checkout/put-auto-recharge.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], true);
    assert!(
        body["payment_method"].as_str().unwrap().starts_with("pm_"),
        "{body}"
    );
    let (_, read) = call(&app.svc, &auto_recharge("u_member", "GET", None)).await;
    assert_eq!(read, body, "members see what owners set");
    assert_eq!(body["target_usd"], Value::Null, "by the amount");

    // Recharge to a target instead: saved and shown; null goes back to the amount.
    let target = json!({ "enabled": true, "threshold_usd": "25", "target_usd": "200" });
    let (status, body) = call(&app.svc, &owner_put(target)).await;
    assert_eq!(
        (status, body["target_usd"].as_str()),
        (200, Some("200.00")),
        "{body}"
    );
    let back = json!({ "enabled": true, "target_usd": null });
    let (status, body) = call(&app.svc, &owner_put(back)).await;
    assert_eq!((status, body["target_usd"].clone()), (200, Value::Null), "{body}");
}

fn offers_page(sub: &str) -> Value {
    let mut e = support::event("checkout/offers-page.json");
    e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = json!(sub);
    e
}

#[tokio::test]
async fn every_member_sees_the_offers_as_credits_at_the_orgs_rate_and_whether_they_may_buy() {
    let mut app = app(PurchasePolicy::OwnersOnly, "sk_test_checkout").await;
    // The deployment's default catalog: reference 001's packages.
    app.svc.catalog = catalog_from(|_| None).unwrap();
    let (status, owner) = call(&app.svc, &offers_page("u_owner")).await;
    assert_eq!(status, 200, "{owner}");
    assert_eq!(owner["can_purchase"], true);
    assert_eq!(owner["bulk"], json!({"price_usd": "100.00", "credits": 20000}));
    let packages: Vec<(String, String, String, u64)> = owner["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["price_usd"].as_str().unwrap().to_owned(),
                p["bonus_usd"].as_str().unwrap().to_owned(),
                p["credits"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        packages,
        vec![
            ("starter".into(), "50.00".into(), "0.00".into(), 10_000),
            ("professional".into(), "100.00".into(), "11.11".into(), 22_222),
            ("club_800".into(), "800.00".into(), "311.11".into(), 222_222),
        ]
    );
    assert_eq!(
        owner["custom"],
        json!({"min_usd": "10.00", "max_usd": "10000.00"})
    );

    // A member of an org where owners alone buy sees the same, and that they may not buy.
    let (status, member) = call(&app.svc, &offers_page("u_member")).await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["can_purchase"], false);
    assert_eq!(member["packages"], owner["packages"]);

    // Somebody else's org: nothing.
    let (status, body) = call(&app.svc, &offers_page("u_stranger")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    // A package of the default catalog is what checkout sells.
    let (status, body) = call(&app.svc, &buy("u_owner", json!({"package": {"id": "club_800"}}))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["price"].as_str(), body["credits"].as_str()),
        (Some("800.00"), Some("1111.11"))
    );
}

#[test]
fn packages_that_checkout_could_not_sell_are_refused_at_start_up() {
    let with =
        |packages: &str| catalog_from(|name| (name == "CHECKOUT_PACKAGES").then(|| packages.to_owned()));
    let good = r#"[{"id":"a","name":"A","price":"50","credits":"55"},{"id":"b","name":"B","price":"0.50","credits":"0.50"}]"#;
    assert_eq!(with(good).unwrap().packages.len(), 2);
    for bad in [
        // The same id twice.
        r#"[{"id":"a","name":"A","price":"50","credits":"55"},{"id":"a","name":"B","price":"60","credits":"60"}]"#,
        // A fraction of a cent, below Stripe's smallest charge, fewer credits than its price.
        r#"[{"id":"a","name":"A","price":"50.001","credits":"55"}]"#,
        r#"[{"id":"a","name":"A","price":"0.49","credits":"1"}]"#,
        r#"[{"id":"a","name":"A","price":"50","credits":"49.99"}]"#,
        r#"[{"id":"","name":"A","price":"50","credits":"50"}]"#,
    ] {
        let refused = with(bad).unwrap_err();
        assert!(refused.contains("CHECKOUT_PACKAGES"), "{bad}: {refused}");
    }
    // `[]`: none; empty: reference 001's.
    assert!(with("[]").unwrap().packages.is_empty());
    assert_eq!(with("").unwrap().packages.len(), 3);
}
