//! Plan subscriptions and the invoices around purchases, as Stripe's events reach the
//! handler: twice, out of order, and some before the events they depend on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agent_credits_domain::{BillingGateway, CheckoutGateway, MemberId, NewCheckout, NewSubscription, Offer};
use common::*;

fn usd(s: &str) -> Usd {
    Usd::parse(s).unwrap()
}

async fn deliver(app: &App, event: &Value) -> (u16, Value) {
    support::contract::call(
        &signed(event.to_string(), SECRET, chrono::Utc::now().timestamp()),
        |req| handle(&app.svc, req),
    )
    .await
}

/// Delivers `events` twice, the second time newest first; every answer must be `want`.
async fn deliver_twice_reordered(app: &App, events: &[Value]) {
    for event in events.iter().chain(events.iter().rev()) {
        let (status, body) = deliver(app, event).await;
        assert_eq!(status, 200, "{} answered {body}", event["type"]);
    }
}

fn gateway(app: &App) -> Arc<agent_credits_stripe::StripeGateway> {
    support::payments(app.sim.base_url(), "sk_test_agent_credits")
}

async fn base(app: &App) -> Usd {
    app.svc.store.wallet(&app.org).await.unwrap().buckets.base
}

/// The owner's subscription to `price`, paid and its events delivered: its id and item.
async fn subscribed(app: &App, price: &str) -> (String, String) {
    let stripe = gateway(app);
    let owner = MemberId::parse("u_owner").unwrap();
    let customer = stripe
        .create_customer(&app.org, &owner, Some("owner@demo.example"))
        .await
        .unwrap();
    let session = stripe
        .create_subscription_checkout(&NewSubscription {
            org: &app.org,
            member: &owner,
            customer: &customer,
            price,
            success_url: "http://127.0.0.1:3000/ok".into(),
            cancel_url: "http://127.0.0.1:3000/no".into(),
        })
        .await
        .unwrap();
    let start = app.sim.events().len();
    app.sim
        .complete_checkout(&session.id, CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    deliver_twice_reordered(app, &app.sim.events_from(start)).await;
    let record = app.svc.store.subscription(&app.org).await.unwrap().unwrap();
    assert_eq!(record.customer, customer);
    let sub = stripe.subscription(&record.subscription).await.unwrap().unwrap();
    (sub.id, sub.item.unwrap())
}

/// An upgrade halfway through the month grants half the difference in base once, however
/// its events come; a prorated downgrade (which the API never asks for, but a portal
/// could) gives money back and is refused: nothing granted, nothing written.
#[tokio::test]
async fn an_upgrade_grants_its_prorated_base_once_and_money_back_is_refused() {
    let app = app().await;
    let (sub, item) = subscribed(&app, TEAM_PRICE).await;
    assert_eq!(base(&app).await, usd("50"));
    let now = chrono::Utc::now().timestamp();
    app.sim
        .set_subscription_period(&sub, now - 15 * 86_400, now + 15 * 86_400)
        .unwrap();
    let start = app.sim.events().len();
    let changed = gateway(&app)
        .change_price(&sub, &item, SCALE_PRICE, true)
        .await
        .unwrap();
    assert_eq!(changed.price.as_deref(), Some(SCALE_PRICE));
    app.sim.flush_webhooks().await;
    let events = app.sim.events_from(start);
    deliver_twice_reordered(&app, &events).await;
    assert_eq!(base(&app).await, usd("150"), "50 + (250 - 50) / 2, once");
    let grants = app
        .svc
        .store
        .history(&app.org, PageRequest::first(100))
        .await
        .unwrap()
        .entries
        .into_iter()
        .filter(|e| e.kind == EntryKind::PlanGrant)
        .count();
    assert_eq!(grants, 2, "the subscription's and the upgrade's");

    let version = app.svc.store.wallet(&app.org).await.unwrap().version;
    let start = app.sim.events().len();
    gateway(&app)
        .change_price(&sub, &item, TEAM_PRICE, true)
        .await
        .unwrap();
    app.sim.flush_webhooks().await;
    let back = app
        .sim
        .events_from(start)
        .into_iter()
        .find(|e| e["type"] == "invoice.paid")
        .expect("the downgrade's invoice");
    assert!(back["data"]["object"]["total"].as_i64().unwrap() < 0, "{back}");
    let (status, body) = deliver(&app, &back).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("unmatched_payment")),
        "{body}"
    );
    assert_eq!(app.svc.store.wallet(&app.org).await.unwrap().version, version);
}

/// A purchase's refund that comes before its credit waits (409) even once the purchase's
/// invoice events (Checkout makes an invoice for every purchase) have been handled: an
/// invoice that grants nothing does not make the payment none of ours. Once credited, the
/// refund takes the credits back.
#[tokio::test]
async fn a_purchase_refund_before_its_credit_waits_whatever_its_invoice_said() {
    let app = app().await;
    let stripe = gateway(&app);
    let owner = MemberId::parse("u_owner").unwrap();
    let customer = stripe.create_customer(&app.org, &owner, None).await.unwrap();
    let offer = Offer {
        price: usd("100"),
        credits: usd("100"),
        label: "$100 of credits".into(),
        kind: "custom".into(),
    };
    let session = stripe
        .create_checkout(&NewCheckout {
            org: &app.org,
            member: &owner,
            customer: &customer,
            email: Some("owner@demo.example"),
            offer: &offer,
            success_url: "http://127.0.0.1:3000/ok".into(),
            cancel_url: "http://127.0.0.1:3000/no".into(),
        })
        .await
        .unwrap();
    let paid = app
        .sim
        .complete_checkout(&session.id, CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    let events: Vec<Value> = app
        .sim
        .events()
        .into_iter()
        .filter(|e| paid.events.iter().any(|s| e["id"] == s.id.as_str()))
        .collect();
    let of = |kind: &str| {
        events
            .iter()
            .find(|e| e["type"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    assert_eq!(of("invoice.paid")["data"]["object"]["billing_reason"], "manual");
    for kind in ["invoice.paid", "invoice_payment.paid"] {
        let (status, body) = deliver(&app, &of(kind)).await;
        assert_eq!(status, 200, "{kind}: {body}");
    }
    let charge = of("payment_intent.succeeded")["data"]["object"]["latest_charge"]
        .as_str()
        .unwrap()
        .to_owned();
    let refunded = app.sim.refund_charge(&charge, None).await.unwrap();
    let refund = app
        .sim
        .events()
        .into_iter()
        .find(|e| e["type"] == "charge.refunded" && refunded.events.iter().any(|s| e["id"] == s.id.as_str()))
        .unwrap();
    let (status, body) = deliver(&app, &refund).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("payment_not_yet_credited")),
        "{body}"
    );
    let (status, body) = deliver(&app, &of("checkout.session.completed")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("credited")),
        "{body}"
    );
    let (status, body) = deliver(&app, &refund).await;
    assert_eq!(status, 200, "{body}");
    let w = app.svc.store.wallet(&app.org).await.unwrap();
    assert_eq!(w.buckets.purchased, Usd::ZERO, "the refund took the $100 back");
}
