//! The checkout function's rules with a fake payment gateway: who is asked for what, what
//! is kept, and what a gateway failure answers. (The same purchases against the Stripe
//! simulator are in `handler.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent_credits_domain::{GatewayError, MemberId, OrgId, Usd};
use agent_credits_dynamo::{OrgStore, RechargeStore};
use checkout::{Checkout, catalog_from, handle};
use serde_json::{Value, json};
use support::dynoxide::Dynoxide;
use support::fake_gateway::{Asked, FakeGateway};

struct App {
    _db: Dynoxide,
    svc: Checkout,
    gateway: Arc<FakeGateway>,
    org: OrgId,
}

async fn app() -> App {
    let (db, client) = support::fresh_table("credits").await;
    let org = OrgId::parse("org_demo").unwrap();
    support::create_credits_org(&client, "credits", &org, "u_owner").await;
    let gateway = Arc::new(FakeGateway::default());
    let svc = Checkout {
        orgs: OrgStore::new(client.clone(), "credits"),
        recharges: RechargeStore::new(client, "credits"),
        payments: gateway.clone(),
        billing: support::payments("http://127.0.0.1:9", "sk_test_unused"),
        catalog: catalog_from(|_| None).unwrap(),
        plans: agent_credits_domain::Plans::default(),
        portal_configuration: None,
        dashboard_url: "http://127.0.0.1:3000/".into(),
    };
    App {
        _db: db,
        svc,
        gateway,
        org,
    }
}

/// The owner's request.
fn event(method: &str, path: &str, body: Value) -> Value {
    support::dashboard_event(method, path, "u_owner", Some(&body))
}

async fn call(app: &App, e: &Value) -> (u16, Value) {
    support::contract::call(e, |req| handle(&app.svc, req)).await
}

/// A $25 purchase by the owner, which makes their customer.
async fn buy(app: &App) {
    let body = json!({"custom": {"amount": "25"}});
    let (status, answer) = call(app, &event("POST", "/v1/orgs/org_demo/checkout", body)).await;
    assert_eq!(status, 201, "{answer}");
}

async fn customer(app: &App) -> Option<String> {
    let owner = MemberId::parse("u_owner").unwrap();
    let (_, member) = app.svc.orgs.membership(&app.org, &owner).await.unwrap().unwrap();
    member.stripe_customer
}

#[tokio::test]
async fn the_buyers_customer_is_made_once_and_each_session_carries_the_offer() {
    let app = app().await;
    let buy = event(
        "POST",
        "/v1/orgs/org_demo/checkout",
        json!({"custom": {"amount": "25.50"}}),
    );
    for n in 1..=2 {
        let (status, body) = call(&app, &buy).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["price"], "25.50");
        assert!(
            body["session_id"].as_str().unwrap().starts_with("cs_fake_"),
            "{body}"
        );
        let customers = app
            .gateway
            .asked()
            .iter()
            .filter(|a| matches!(a, Asked::Customer { .. }))
            .count();
        assert_eq!(customers, 1, "purchase {n}");
    }
    assert_eq!(customer(&app).await.as_deref(), Some("cus_fake_u_owner"));
    let Some(Asked::Checkout {
        org,
        customer,
        offer,
        price,
        credits,
        success_url,
        ..
    }) = app.gateway.asked().last().cloned()
    else {
        panic!("no session asked for: {:?}", app.gateway.asked());
    };
    assert_eq!(
        (org, customer.as_str(), offer.as_str()),
        (app.org.clone(), "cus_fake_u_owner", "custom")
    );
    assert_eq!(
        (price, credits),
        (Usd::parse("25.50").unwrap(), Usd::parse("25.50").unwrap())
    );
    assert_eq!(
        success_url,
        "http://127.0.0.1:3000/orgs/org_demo/billing?checkout=success&session={CHECKOUT_SESSION_ID}"
    );
}

#[tokio::test]
async fn a_gateway_failure_answers_502_with_its_code_and_keeps_no_customer() {
    let app = app().await;
    let buy = event(
        "POST",
        "/v1/orgs/org_demo/checkout",
        json!({"custom": {"amount": "25"}}),
    );
    for failure in [
        GatewayError::Refused {
            code: "api_key_expired".into(),
            status: 401,
            payment_intent: None,
        },
        GatewayError::Unreachable("connection refused".into()),
    ] {
        app.gateway.fail_with(Some(failure.clone()));
        let (status, body) = call(&app, &buy).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (502, Some("stripe_error")),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&failure.to_string()),
            "{body}"
        );
        assert_eq!(customer(&app).await, None);
    }
}

#[tokio::test]
async fn auto_recharge_is_enabled_only_on_the_callers_own_newest_card() {
    let app = app().await;
    let enable = event(
        "PUT",
        "/v1/orgs/org_demo/auto-recharge",
        json!({"enabled": true, "threshold_usd": "10", "amount_usd": "50"}),
    );
    // No customer yet: no card, and the gateway is not asked.
    let (status, body) = call(&app, &enable).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("no_saved_card")),
        "{body}"
    );
    assert!(app.gateway.asked().is_empty());

    // A customer without a card: still none.
    buy(&app).await;
    app.gateway.set_card(None);
    let (status, body) = call(&app, &enable).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("no_saved_card")),
        "{body}"
    );

    app.gateway.set_card(Some("pm_newest"));
    let (status, body) = call(&app, &enable).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.gateway.asked().last(),
        Some(&Asked::NewestCard {
            customer: "cus_fake_u_owner".into()
        })
    );
    let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
    let card = config.card.unwrap();
    assert_eq!(
        (card.customer.as_str(), card.payment_method.as_str()),
        ("cus_fake_u_owner", "pm_newest")
    );
    assert_eq!(card.owner.as_str(), "u_owner");
}

#[tokio::test]
async fn auto_recharge_is_not_saved_when_stripe_cannot_show_the_card() {
    let app = app().await;
    buy(&app).await;
    app.gateway.fail_with(Some(GatewayError::Refused {
        code: "rate_limit".into(),
        status: 429,
        payment_intent: None,
    }));
    let enable = event("PUT", "/v1/orgs/org_demo/auto-recharge", json!({"enabled": true}));
    let (status, body) = call(&app, &enable).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("stripe_error")),
        "{body}"
    );
    assert!(
        app.svc.recharges.config(&app.org).await.unwrap().is_none(),
        "nothing saved"
    );
}

/// A person's own account (`/v1/me/...`, references 002-004): opened on first use, bought
/// for with their own customer of that account (never the org's), sent back to their own
/// page, recharged from their own card, and answering 502 when Stripe fails as an org's.
#[tokio::test]
async fn a_persons_own_account_buys_and_recharges_apart_from_the_org() {
    let app = app().await;
    buy(&app).await;
    let me = OrgId::personal(&MemberId::parse("u_owner").unwrap());
    let (status, offers) = call(
        &app,
        &support::dashboard_event("GET", "/v1/me/checkout", "u_owner", None),
    )
    .await;
    assert_eq!(
        (status, offers["credits_per_usd"].as_u64()),
        (200, Some(200)),
        "{offers}"
    );
    let (status, body) = call(
        &app,
        &event("POST", "/v1/me/checkout", json!({"custom": {"amount": "30"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let Some(Asked::Checkout {
        org,
        customer,
        success_url,
        ..
    }) = app.gateway.asked().last().cloned()
    else {
        panic!("no session asked for: {:?}", app.gateway.asked());
    };
    assert_eq!(org, me, "the session credits the person's own wallet");
    assert_eq!(customer, "cus_fake_u_owner", "the fake names customers by member");
    let customers = app
        .gateway
        .asked()
        .iter()
        .filter(|a| matches!(a, Asked::Customer { .. }))
        .count();
    assert_eq!(
        customers, 2,
        "one customer for the org's purchases, another for the person's"
    );
    assert!(
        success_url.starts_with("http://127.0.0.1:3000/me/billing?checkout=success"),
        "{success_url}"
    );

    app.gateway.set_card(Some("pm_mine"));
    let enable = event(
        "PUT",
        "/v1/me/auto-recharge",
        json!({"enabled": true, "threshold_usd": "5", "amount_usd": "20"}),
    );
    let (status, body) = call(&app, &enable).await;
    assert_eq!(status, 200, "{body}");
    let card = app
        .svc
        .recharges
        .config(&me)
        .await
        .unwrap()
        .unwrap()
        .card
        .unwrap();
    assert_eq!(
        (card.owner.as_str(), card.payment_method.as_str()),
        ("u_owner", "pm_mine")
    );
    assert!(
        app.svc.recharges.config(&app.org).await.unwrap().is_none(),
        "the org's is untouched"
    );
    let (status, got) = call(
        &app,
        &support::dashboard_event("GET", "/v1/me/auto-recharge", "u_owner", None),
    )
    .await;
    assert_eq!((status, got["enabled"].as_bool()), (200, Some(true)), "{got}");

    app.gateway
        .fail_with(Some(GatewayError::Unreachable("connection refused".into())));
    for e in [
        event("POST", "/v1/me/checkout", json!({"custom": {"amount": "30"}})),
        enable,
    ] {
        let (status, body) = call(&app, &e).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (502, Some("stripe_error")),
            "{body}"
        );
    }
    // Another person's account is their own: nothing of u_owner's shows.
    app.gateway.fail_with(None);
    let (status, theirs) = call(
        &app,
        &support::dashboard_event("GET", "/v1/me/auto-recharge", "u_other", None),
    )
    .await;
    assert_eq!(
        (status, theirs["enabled"].as_bool()),
        (200, Some(false)),
        "{theirs}"
    );
}
