//! Money going back and plans: refunds, disputes and plan invoices through the webhooks
//! handler, with events from the project's Stripe simulator; and every event of a
//! purchase, a refund and a dispute delivered three times, shuffled, eight at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};

use agent_credits_domain::{
    Applied, BillingMode, ChangeRequest, IdempotencyKey, LedgerEntry, PauseReason, PositiveUsd, Refusal,
    WalletState,
};
use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use stripe_sim::InvoicePayment;

fn money(v: &Value) -> Usd {
    usd(v.as_str().unwrap())
}

fn usd(s: &str) -> Usd {
    Usd::parse(s).unwrap()
}

/// The newest event of `kind` in the simulator, as Stripe rendered it.
fn latest(app: &App, kind: &str) -> Value {
    app.sim
        .events()
        .into_iter()
        .rev()
        .find(|e| e["type"] == kind)
        .expect(kind)
}

/// The charge of the newest successful payment.
fn charge(app: &App) -> String {
    latest(app, "payment_intent.succeeded")["data"]["object"]["latest_charge"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A copy of `event` as another event about the same object (a new id).
fn reissued(event: &Value, id: &str) -> Value {
    let mut e = event.clone();
    e["id"] = json!(id);
    e
}

/// A purchase paid in full and refunded, none of its events delivered yet: the refund's
/// `charge.refunded`.
async fn refunded_before_credited(app: &App) -> Value {
    let session = session(app, standard_metadata()).await;
    app.sim
        .complete_checkout(&session, CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    app.sim.refund_charge(&charge(app), None).await.unwrap();
    latest(app, "charge.refunded")
}

async fn deliver(app: &App, event: &Value) -> (u16, Value) {
    call(&app.svc, &signed(event.to_string(), SECRET, now())).await
}

async fn entries(app: &App, org: &OrgId, kind: EntryKind) -> Vec<LedgerEntry> {
    let page = app.svc.store.history(org, PageRequest::first(100)).await.unwrap();
    page.entries.into_iter().filter(|e| e.kind == kind).collect()
}

/// A paid $100 checkout for `credits` of credits, delivered and credited.
async fn bought(app: &App, org: &str, credits: &str) {
    let session = session(
        app,
        metadata(&[
            ("org", org),
            ("credits_usd", credits),
            ("price_usd", "100.00"),
            ("member", "u_owner"),
        ]),
    )
    .await;
    app.sim
        .complete_checkout(&session, CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    let (status, body) = deliver(app, &latest(app, "checkout.session.completed")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("credited")),
        "{body}"
    );
}

async fn spend(app: &App, amount: &str, key: &str) {
    let req = ChangeRequest::usage(
        app.org.clone(),
        PositiveUsd::parse(amount).unwrap(),
        IdempotencyKey::parse(key).unwrap(),
    );
    assert!(matches!(
        app.svc.store.apply(req).await.unwrap(),
        Ok(Applied::Committed(_))
    ));
}

async fn balance(app: &App) -> Usd {
    app.svc.store.wallet(&app.org).await.unwrap().balance().unwrap()
}

#[tokio::test]
async fn a_refund_takes_back_its_share_once_and_never_below_zero() {
    let app = app().await;
    // A package: $100 paid for $110 of credits. $70 spent, $40 left.
    bought(&app, "org_demo", "110.00").await;
    spend(&app, "70", "usage:r1").await;
    let charge = charge(&app);

    app.sim.refund_charge(&charge, Some(5_000)).await.unwrap();
    let first = latest(&app, "charge.refunded");
    let (status, body) = deliver(&app, &first).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("refunded")),
        "{body}"
    );
    // Half the payment is half its credits, $55: $40 are there, $15 are not.
    assert_eq!(money(&body["refunds"][0]["taken"]), usd("40"));
    assert_eq!(money(&body["refunds"][0]["shortfall"]), usd("15"));
    assert_eq!(balance(&app).await, Usd::ZERO);

    // The same event again, and another event about the same charge: nothing more.
    let (_, again) = deliver(&app, &first).await;
    assert_eq!(again["result"], "duplicate_event");
    let (_, other) = deliver(&app, &reissued(&first, "evt_same_charge_again")).await;
    assert_eq!(other["refunds"][0]["entry_id"], body["refunds"][0]["entry_id"]);

    // The second half: its own entry, nothing left to take, all of it shortfall.
    app.sim.refund_charge(&charge, Some(5_000)).await.unwrap();
    let (status, body) = deliver(&app, &latest(&app, "charge.refunded")).await;
    assert_eq!(status, 200, "{body}");
    let refunds = entries(&app, &app.org, EntryKind::Refund).await;
    assert_eq!(refunds.len(), 2, "one entry per refund");
    let shortfalls: Vec<Usd> = refunds.iter().map(|e| e.shortfall).collect();
    assert_eq!(shortfalls, [usd("55"), usd("15")], "newest first");
    assert!(
        refunds
            .iter()
            .all(|e| e.external.charge.as_deref() == Some(charge.as_str()))
    );
    assert_ne!(refunds[0].external.refund, refunds[1].external.refund);
    assert_eq!(balance(&app).await, Usd::ZERO, "never below zero");
}

#[tokio::test]
async fn a_refund_that_overtakes_its_payment_is_retried_until_the_payment_is_credited() {
    let app = app().await;
    let refund = refunded_before_credited(&app).await;

    let (status, body) = deliver(&app, &refund).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("payment_not_yet_credited")),
        "{body}"
    );
    assert_eq!(
        app.svc.store.wallet(&app.org).await.unwrap().version,
        0,
        "nothing written"
    );

    let (_, body) = deliver(&app, &latest(&app, "checkout.session.completed")).await;
    assert_eq!(body["result"], "credited");
    // Stripe's retry of the refused delivery.
    let (status, body) = deliver(&app, &refund).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("refunded")),
        "{body}"
    );
    assert_eq!(balance(&app).await, Usd::ZERO);
}

#[tokio::test]
async fn a_charge_without_its_refunds_is_refunded_from_stripes_list() {
    let app = app().await;
    bought(&app, "org_demo", "100.00").await;
    app.sim.refund_charge(&charge(&app), Some(2_500)).await.unwrap();
    // Stripe's charges carry their refunds only when expanded.
    let mut event = latest(&app, "charge.refunded");
    event["data"]["object"]["refunds"] = Value::Null;
    let (status, body) = deliver(&app, &event).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("refunded")),
        "{body}"
    );
    assert_eq!(money(&body["refunds"][0]["taken"]), usd("25"));
    assert_eq!(balance(&app).await, usd("75"));
}

#[tokio::test]
async fn a_refund_the_bank_returns_gives_back_what_it_took_once() {
    let app = app().await;
    // $100 for $100 of credits, $30 spent: $70 left. A $50 refund takes $50.
    bought(&app, "org_demo", "100.00").await;
    spend(&app, "30", "usage:f1").await;
    let charge = charge(&app);
    app.sim.refund_charge(&charge, Some(5_000)).await.unwrap();
    let (status, body) = deliver(&app, &latest(&app, "charge.refunded")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(money(&body["refunds"][0]["taken"]), usd("50"));
    assert_eq!(balance(&app).await, usd("20"));
    let refund = body["refunds"][0]["refund"].as_str().unwrap().to_owned();

    // The customer's bank returns it: the customer did not get the $50, so the credits
    // come back, once, whichever of Stripe's two events says so.
    app.sim
        .fail_refund(&refund, "expired_or_canceled_card")
        .await
        .unwrap();
    let (status, body) = deliver(&app, &latest(&app, "charge.refund.updated")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("refund_reversed")),
        "{body}"
    );
    assert_eq!(balance(&app).await, usd("70"));
    let (status, body) = deliver(&app, &latest(&app, "refund.failed")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("refund_already_reversed")),
        "{body}"
    );
    assert_eq!(balance(&app).await, usd("70"));
    let back = entries(&app, &app.org, EntryKind::Adjustment).await;
    assert_eq!(back.len(), 1, "one adjustment");
    assert_eq!(back[0].amount.magnitude(), usd("50"));
    assert!(!back[0].amount.is_negative(), "credited, not taken");
    assert_eq!(back[0].external.refund.as_deref(), Some(refund.as_str()));

    // A later refund of the same charge takes its own share; the failed one is not taken again.
    app.sim.refund_charge(&charge, Some(1_000)).await.unwrap();
    let (status, body) = deliver(&app, &latest(&app, "charge.refunded")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refunds"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(money(&body["refunds"][0]["taken"]), usd("10"));
    assert_eq!(balance(&app).await, usd("60"));
}

#[tokio::test]
async fn a_refund_that_failed_before_its_event_was_handled_is_never_taken() {
    let app = app().await;
    bought(&app, "org_demo", "100.00").await;
    let charge = charge(&app);
    app.sim.refund_charge(&charge, Some(5_000)).await.unwrap();
    // The event as Stripe sent it, while the refund still stood...
    let refunded = latest(&app, "charge.refunded");
    let refund = refunded["data"]["object"]["refunds"]["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // ...handled only after the bank returned the refund (a delivery retried for days).
    app.sim.fail_refund(&refund, "lost_or_stolen_card").await.unwrap();
    let (status, body) = deliver(&app, &latest(&app, "refund.failed")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("refund_failed_before_taken")),
        "{body}"
    );
    let (status, body) = deliver(&app, &refunded).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["refunds"],
        json!([]),
        "Stripe says it failed: nothing to take"
    );
    assert_eq!(balance(&app).await, usd("100"));
    assert!(entries(&app, &app.org, EntryKind::Refund).await.is_empty());
}

/// `charge.dispute.closed` for the newest dispute, with `status`.
fn closed(app: &App, status: &str, id: &str) -> Value {
    let mut event = reissued(&latest(app, "charge.dispute.created"), id);
    event["type"] = json!("charge.dispute.closed");
    event["data"]["object"]["status"] = json!(status);
    event
}

#[tokio::test]
async fn a_dispute_pauses_the_org_until_it_is_won() {
    let app = app().await;
    bought(&app, "org_demo", "100.00").await;
    app.sim.dispute_charge(&charge(&app), "fraudulent").await.unwrap();
    let (status, body) = deliver(&app, &latest(&app, "charge.dispute.created")).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("paused")), "{body}");

    let wallet = app.svc.store.wallet(&app.org).await.unwrap();
    assert_eq!(wallet.state, WalletState::Paused(PauseReason::Disputed));
    assert_eq!(wallet.balance().unwrap(), usd("100"), "credits stay");
    let debit = ChangeRequest::debit(
        app.org.clone(),
        EntryKind::Usage,
        PositiveUsd::parse("1").unwrap(),
        IdempotencyKey::parse("usage:blocked").unwrap(),
    )
    .unwrap();
    assert_eq!(
        app.svc.store.apply(debit).await.unwrap(),
        Err(Refusal::Paused(PauseReason::Disputed))
    );
    // A purchase meanwhile does not lift it.
    bought(&app, "org_demo", "100.00").await;
    assert_eq!(
        app.svc.store.wallet(&app.org).await.unwrap().state,
        WalletState::Paused(PauseReason::Disputed)
    );

    let (_, body) = deliver(&app, &closed(&app, "won", "evt_dispute_won")).await;
    assert_eq!(body["result"], "dispute_closed", "{body}");
    let wallet = app.svc.store.wallet(&app.org).await.unwrap();
    assert_eq!(wallet.state, WalletState::Active);
    assert_eq!(wallet.balance().unwrap(), usd("200"));
    assert_eq!(
        entries(&app, &app.org, EntryKind::Dispute).await.len(),
        2,
        "paused, lifted"
    );
}

#[tokio::test]
async fn an_org_with_two_open_disputes_resumes_only_when_both_have_closed() {
    let app = app().await;
    let disputed = WalletState::Paused(PauseReason::Disputed);
    let state = || async { app.svc.store.wallet(&app.org).await.unwrap().state };
    bought(&app, "org_demo", "100.00").await;
    app.sim.dispute_charge(&charge(&app), "fraudulent").await.unwrap();
    let (status, body) = deliver(&app, &latest(&app, "charge.dispute.created")).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("paused")), "{body}");
    let first_won = closed(&app, "won", "evt_first_won");

    bought(&app, "org_demo", "100.00").await;
    app.sim
        .dispute_charge(&charge(&app), "product_not_received")
        .await
        .unwrap();
    let (status, body) = deliver(&app, &latest(&app, "charge.dispute.created")).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("paused")), "{body}");

    let (_, body) = deliver(&app, &first_won).await;
    assert_eq!(body["result"], "dispute_closed", "{body}");
    assert_eq!(state().await, disputed, "the second dispute is still open");

    let (_, body) = deliver(&app, &closed(&app, "won", "evt_second_won")).await;
    assert_eq!(body["result"], "dispute_closed", "{body}");
    assert_eq!(state().await, WalletState::Active);
}

#[tokio::test]
async fn a_lost_dispute_takes_the_credits_back_and_its_late_opening_pauses_nothing() {
    let app = app().await;
    bought(&app, "org_demo", "100.00").await;
    spend(&app, "30", "usage:r1").await;
    app.sim.dispute_charge(&charge(&app), "fraudulent").await.unwrap();
    let opened = latest(&app, "charge.dispute.created");
    // The closing overtakes the opening.
    let (_, body) = deliver(&app, &closed(&app, "lost", "evt_dispute_lost")).await;
    assert_eq!(body["result"], "dispute_closed", "{body}");
    let (_, body) = deliver(&app, &opened).await;
    assert_eq!(body["result"], "dispute_already_closed", "{body}");

    let wallet = app.svc.store.wallet(&app.org).await.unwrap();
    assert_eq!(wallet.balance().unwrap(), Usd::ZERO);
    assert_eq!(
        wallet.state,
        WalletState::Paused(PauseReason::CreditsExhausted),
        "empty, not disputed"
    );
    let disputes = entries(&app, &app.org, EntryKind::Dispute).await;
    let taken: Vec<String> = disputes
        .iter()
        .map(|e| e.amount.as_decimal().normalize().to_string())
        .collect();
    assert_eq!(taken, ["0", "-70"], "lift after take-back, newest first");
    assert_eq!(disputes[1].shortfall, usd("30"));
}

fn invoice(customer: &str, price: &str, org: Option<&str>) -> InvoicePayment {
    InvoicePayment {
        customer: customer.to_owned(),
        amount: 4_900,
        subscription: Some("sub_team".to_owned()),
        price: Some(price.to_owned()),
        metadata: org
            .map(|o| BTreeMap::from([("org".to_owned(), o.to_owned())]))
            .unwrap_or_default(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_plan_invoice_grants_base_and_rolls_unused_base_over_up_to_the_cap() {
    let app = app().await;
    let customer = CreateCustomer::new()
        .email("billing@demo.example")
        .send(&app.stripe)
        .await
        .unwrap();
    let customer = customer.id.as_str();
    let pay = async |price: &str, org: Option<&str>| {
        app.sim.pay_invoice(invoice(customer, price, org)).await.unwrap();
        deliver(&app, &latest(&app, "invoice.paid")).await
    };
    let (status, body) = pay(TEAM_PRICE, Some("org_demo")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("granted")),
        "{body}"
    );
    spend(&app, "20", "usage:r1").await;
    let buckets = |w: agent_credits_domain::Wallet| (w.buckets.base, w.buckets.rollover);
    // (base, rollover) after each period: $30 unused rolls; then $50; then the cap.
    for expected in [("50", "30"), ("50", "80"), ("50", "100")] {
        let (_, body) = pay(TEAM_PRICE, Some("org_demo")).await;
        assert_eq!(body["result"], "granted");
        let w = app.svc.store.wallet(&app.org).await.unwrap();
        assert_eq!(buckets(w), (usd(expected.0), usd(expected.1)));
    }
    let grants = entries(&app, &app.org, EntryKind::PlanGrant).await;
    assert_eq!(grants.len(), 4);
    assert_eq!(
        grants[0].amount.as_decimal().normalize().to_string(),
        "20",
        "$50 granted, $30 of base expired"
    );
    assert!(grants.iter().all(|e| {
        e.external
            .invoice
            .as_deref()
            .is_some_and(|i| i.starts_with("in_"))
    }));

    let version = app.svc.store.wallet(&app.org).await.unwrap().version;
    let (status, body) = pay("price_unknown", Some("org_demo")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("unmatched_payment")),
        "{body}"
    );
    let (status, body) = pay(TEAM_PRICE, None).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("ignored")),
        "{body}"
    );
    assert_eq!(app.svc.store.wallet(&app.org).await.unwrap().version, version);
}

/// A refund of a plan invoice takes back the base credits it granted, base first, in
/// whichever order the invoice's two events came.
#[tokio::test]
async fn a_refunded_plan_invoice_takes_back_the_base_it_granted() {
    let app = app().await;
    let customer = CreateCustomer::new()
        .email("billing@demo.example")
        .send(&app.stripe)
        .await
        .unwrap();
    bought(&app, "org_demo", "100.00").await;
    for (n, payment_first) in [(0, false), (1, true)] {
        let paid = app
            .sim
            .pay_invoice(invoice(customer.id.as_str(), TEAM_PRICE, Some("org_demo")))
            .await
            .unwrap();
        let events: Vec<Value> = app
            .sim
            .events()
            .into_iter()
            .filter(|e| paid.events.iter().any(|s| e["id"] == s.id.as_str()))
            .collect();
        let of = |kind: &str| events.iter().find(|e| e["type"] == kind).cloned().unwrap();
        let (granted, payment) = (of("invoice.paid"), of("invoice_payment.paid"));
        let order = if payment_first {
            [&payment, &granted]
        } else {
            [&granted, &payment]
        };
        for event in order {
            let (status, body) = deliver(&app, event).await;
            assert_eq!(status, 200, "{body}");
        }
        let before = app.svc.store.wallet(&app.org).await.unwrap().buckets;
        let intent = payment["data"]["object"]["payment"]["payment_intent"]
            .as_str()
            .unwrap();
        let pi = app
            .sim
            .events()
            .into_iter()
            .rev()
            .find(|e| e["type"] == "payment_intent.succeeded" && e["data"]["object"]["id"] == intent);
        let charge = pi.unwrap()["data"]["object"]["latest_charge"]
            .as_str()
            .unwrap()
            .to_owned();
        let refunded = app.sim.refund_charge(&charge, None).await.unwrap();
        let refund = app
            .sim
            .events()
            .into_iter()
            .find(|e| {
                e["type"] == "charge.refunded" && refunded.events.iter().any(|s| e["id"] == s.id.as_str())
            })
            .unwrap();
        let (status, body) = deliver(&app, &refund).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(money(&body["refunds"][0]["taken"]), usd("50"), "{n}: {body}");
        let after = app.svc.store.wallet(&app.org).await.unwrap().buckets;
        assert_eq!(
            (after.base, after.purchased),
            (before.base.checked_sub(usd("50")).unwrap(), before.purchased),
            "{n}: the invoice's base went back, the purchase stayed"
        );
    }
}

/// A refund of a plan invoice that comes before the invoice's grant waits (409) for it,
/// rather than being taken for someone else's, and then takes the base back, whether or
/// not `invoice_payment.paid` ever arrives: Stripe's invoice payments say which invoice
/// the PaymentIntent paid, for a customer never seen before too. A refund of another
/// product's invoice is acknowledged and moves nothing; one of a plan invoice whose grant
/// was refused (a price no plan is configured for) waits with it.
#[tokio::test]
async fn a_plan_invoice_refund_before_its_grant_waits_for_it() {
    let app = app().await;
    let customer = CreateCustomer::new()
        .email("billing@demo.example")
        .send(&app.stripe)
        .await
        .unwrap();
    let customer = customer.id.as_str();
    // The invoice's events, and its refund's, once the refund is made.
    let paid_and_refunded = async |price: &str, org: Option<&str>| {
        let paid = app.sim.pay_invoice(invoice(customer, price, org)).await.unwrap();
        let events: Vec<Value> = app
            .sim
            .events()
            .into_iter()
            .filter(|e| paid.events.iter().any(|s| e["id"] == s.id.as_str()))
            .collect();
        let of = |kind: &str| events.iter().find(|e| e["type"] == kind).cloned().unwrap();
        let charge = of("payment_intent.succeeded")["data"]["object"]["latest_charge"]
            .as_str()
            .unwrap()
            .to_owned();
        app.sim.refund_charge(&charge, None).await.unwrap();
        (
            of("invoice.paid"),
            of("invoice_payment.paid"),
            latest(&app, "charge.refunded"),
        )
    };
    let waits = |(status, body): (u16, Value)| {
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("payment_not_yet_credited")),
            "{body}"
        );
    };

    let (granted, payment, refund) = paid_and_refunded(TEAM_PRICE, Some("org_demo")).await;
    waits(deliver(&app, &refund).await);
    assert_eq!(deliver(&app, &granted).await.0, 200);
    let (status, body) = deliver(&app, &reissued(&refund, "evt_refund_again")).await;
    assert_eq!(
        (status, money(&body["refunds"][0]["taken"])),
        (200, usd("50")),
        "{body}"
    );
    let base = async || app.svc.store.wallet(&app.org).await.unwrap().buckets.base;
    assert_eq!(base().await, Usd::ZERO);
    // The payment event, late, changes nothing.
    assert_eq!(deliver(&app, &payment).await.0, 200);
    assert_eq!(deliver(&app, &reissued(&refund, "evt_refund_third")).await.0, 200);
    assert_eq!(base().await, Usd::ZERO);

    // The link's two writes, the second lost (a crash): the grant finds no payment to
    // join, and the refund joins it.
    let (granted, payment, refund) = paid_and_refunded(TEAM_PRICE, Some("org_demo")).await;
    let paid = &payment["data"]["object"];
    app.svc
        .store
        .client()
        .put_item()
        .table_name(app.svc.store.table())
        .item(
            "pk",
            AttributeValue::S(format!(
                "STRIPE#{}",
                paid["payment"]["payment_intent"].as_str().unwrap()
            )),
        )
        .item("sk", AttributeValue::S("INVOICE_PAYMENT".into()))
        .item("type", AttributeValue::S("invoice_payment".into()))
        .item(
            "invoice",
            AttributeValue::S(paid["invoice"].as_str().unwrap().into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deliver(&app, &granted).await.0, 200);
    assert_eq!(base().await, usd("50"));
    let (status, body) = deliver(&app, &refund).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (status, money(&body["refunds"][0]["taken"])),
        (200, usd("50")),
        "{body}"
    );
    assert_eq!(base().await, Usd::ZERO);

    let before = app.svc.store.wallet(&app.org).await.unwrap();
    let (_, _, refund) = paid_and_refunded(TEAM_PRICE, None).await;
    let (status, body) = deliver(&app, &refund).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("ignored")),
        "another product's invoice: {body}"
    );
    let (granted, _, refund) = paid_and_refunded("price_not_a_plan", Some("org_demo")).await;
    assert_eq!(deliver(&app, &granted).await.0, 400);
    waits(deliver(&app, &refund).await);
    assert_eq!(app.svc.store.wallet(&app.org).await.unwrap(), before);

    // A plan invoice of ours whose lines, as delivered, show no price: refused and kept
    // visible, never recorded as none of ours, so its refund waits rather than vanishing.
    let (granted, _, refund) = paid_and_refunded(TEAM_PRICE, Some("org_demo")).await;
    let mut no_price = reissued(&granted, "evt_no_price");
    for line in no_price["data"]["object"]["lines"]["data"]
        .as_array_mut()
        .unwrap()
    {
        line.as_object_mut().unwrap().remove("pricing");
    }
    assert_eq!(deliver(&app, &no_price).await.0, 400);
    waits(deliver(&app, &refund).await);
    assert_eq!(app.svc.store.wallet(&app.org).await.unwrap(), before);
}

/// A $0 plan invoice (a trial, a 100% coupon) grants the plan's base credits: the plan is
/// in force for its period. It charged nothing, so nothing can be refunded.
#[tokio::test]
async fn a_zero_plan_invoice_grants_the_base_credits() {
    let app = app().await;
    let customer = CreateCustomer::new()
        .email("billing@demo.example")
        .send(&app.stripe)
        .await
        .unwrap();
    let free = InvoicePayment {
        amount: 0,
        ..invoice(customer.id.as_str(), TEAM_PRICE, Some("org_demo"))
    };
    let paid = app.sim.pay_invoice(free).await.unwrap();
    assert!(
        paid.events.iter().all(|e| e.kind == "invoice.paid"),
        "no payment for a $0 invoice: {:?}",
        paid.events.iter().map(|e| &e.kind).collect::<Vec<_>>()
    );
    let (status, body) = deliver(&app, &latest(&app, "invoice.paid")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("granted")),
        "{body}"
    );
    assert_eq!(
        app.svc.store.wallet(&app.org).await.unwrap().buckets.base,
        usd("50")
    );
}

/// One org's purchase ($100), partial refund ($30) and dispute, as Stripe emitted them.
async fn purchase_refund_dispute(app: &App, org: &str) -> Vec<Value> {
    let settings = WalletSettings {
        billing_mode: Some(BillingMode::Credits),
        ..Default::default()
    };
    let org_id = OrgId::parse(org).unwrap();
    app.svc.store.put_settings(&org_id, &settings).await.unwrap();
    let session = session(
        app,
        metadata(&[("org", org), ("credits_usd", "100.00"), ("price_usd", "100.00")]),
    )
    .await;
    let mut ids = vec![];
    let done = app
        .sim
        .complete_checkout(&session, CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    ids.extend(done.events.into_iter().map(|e| e.id));
    let charge = charge(app);
    let refunded = app.sim.refund_charge(&charge, Some(3_000)).await.unwrap();
    ids.extend(refunded.events.into_iter().map(|e| e.id));
    let disputed = app.sim.dispute_charge(&charge, "fraudulent").await.unwrap();
    ids.extend(disputed.events.into_iter().map(|e| e.id));
    let events = app.sim.events();
    ids.iter()
        .map(|id| events.iter().find(|e| e["id"] == *id).unwrap().clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_three_times_shuffled_eight_at_once_changes_the_wallet_once_each() {
    let app = app().await;
    for seed in 0..4u64 {
        let org = format!("org_shuffled_{seed}");
        let events = purchase_refund_dispute(&app, &org).await;
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        for kind in [
            "checkout.session.completed",
            "charge.refunded",
            "charge.dispute.created",
        ] {
            assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
        }
        let mut deliveries: Vec<Value> = events
            .iter()
            .flat_map(|e| [e.clone(), e.clone(), e.clone()])
            .collect();
        fastrand::Rng::with_seed(seed).shuffle(&mut deliveries);

        // Eight at once; then, as Stripe does, again for every event with no 2xx yet.
        let mut acknowledged: HashMap<String, bool> = HashMap::new();
        for round in 0..5 {
            let gate = Arc::new(tokio::sync::Semaphore::new(8));
            let mut calls = tokio::task::JoinSet::new();
            for event in deliveries.drain(..) {
                let (svc, gate) = (app.svc.clone(), gate.clone());
                let delivery = signed(event.to_string(), SECRET, now());
                calls.spawn(async move {
                    let _permit = gate.acquire_owned().await.unwrap();
                    let (status, body) = call(&svc, &delivery).await;
                    (event, status, body)
                });
            }
            while let Some(done) = calls.join_next().await {
                let (event, status, body) = done.unwrap();
                assert!(matches!(status, 200 | 409), "round {round}: {status} {body}");
                let ok = acknowledged
                    .entry(event["id"].as_str().unwrap().to_owned())
                    .or_default();
                *ok |= status == 200;
            }
            deliveries = events
                .iter()
                .filter(|e| {
                    !acknowledged
                        .get(e["id"].as_str().unwrap())
                        .copied()
                        .unwrap_or(false)
                })
                .cloned()
                .collect();
            if deliveries.is_empty() {
                break;
            }
        }
        assert!(
            deliveries.is_empty(),
            "seed {seed}: never acknowledged: {deliveries:?}"
        );

        let org_id = OrgId::parse(&org).unwrap();
        assert_eq!(
            entries(&app, &org_id, EntryKind::Purchase).await.len(),
            1,
            "seed {seed}"
        );
        let refunds = entries(&app, &org_id, EntryKind::Refund).await;
        assert_eq!(refunds.len(), 1, "seed {seed}");
        assert_eq!(refunds[0].amount.as_decimal().normalize().to_string(), "-30");
        assert_eq!(
            entries(&app, &org_id, EntryKind::Dispute).await.len(),
            1,
            "seed {seed}"
        );
        let wallet = app.svc.store.wallet(&org_id).await.unwrap();
        assert_eq!(wallet.balance().unwrap(), usd("70"), "seed {seed}");
        assert_eq!(
            wallet.state,
            WalletState::Paused(PauseReason::Disputed),
            "seed {seed}"
        );
        assert_eq!(wallet.version, 3, "seed {seed}: three changes, nothing else");
    }
}

#[tokio::test]
async fn a_refund_whose_payment_stripe_cannot_be_asked_about_is_refused_502_and_waits_for_a_retry() {
    let app = app().await;
    let refund = refunded_before_credited(&app).await;
    // The payment is not credited yet, so whose it is must be asked of Stripe, which fails.
    let gateway = Arc::new(support::fake_gateway::FakeGateway::default());
    gateway.fail_with(Some(agent_credits_domain::GatewayError::Unreachable(
        "connection reset".into(),
    )));
    let stripe_down = Webhooks {
        store: app.svc.store.clone(),
        recharges: app.svc.recharges.clone(),
        signing_secret: SECRET.into(),
        payments: Some(gateway.clone()),
        plans: app.svc.plans.clone(),
    };
    let (status, body) = call(&stripe_down, &signed(refund.to_string(), SECRET, now())).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("stripe_unavailable")),
        "{body}"
    );
    assert_eq!(
        gateway.asked().first(),
        Some(&support::fake_gateway::Asked::PaymentIntent {
            id: latest(&app, "payment_intent.succeeded")["data"]["object"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    );
    assert_eq!(
        app.svc.store.wallet(&app.org).await.unwrap().version,
        0,
        "nothing written"
    );
    // No receipt either: Stripe's retry, with Stripe back, is handled as new.
    let (status, body) = deliver(&app, &refund).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("payment_not_yet_credited")),
        "{body}"
    );
}

/// A plan pays for credits: its base credits land in a byok org's wallet (Stripe took the
/// money), and that org runs on credits from then on, on its profile and its wallet.
#[tokio::test]
async fn a_plan_invoice_of_a_byok_org_grants_and_makes_it_a_credits_org() {
    let app = app().await;
    let org = OrgId::parse("org_plan_byok").unwrap();
    let mut profile = support::credits_org(&org);
    profile.billing_mode = BillingMode::Byok;
    let orgs = agent_credits_dynamo::OrgStore::new(app.svc.store.client().clone(), "credits");
    let settings = WalletSettings {
        billing_mode: Some(BillingMode::Byok),
        ..Default::default()
    };
    let owner = agent_credits_domain::MemberId::parse("u_owner").unwrap();
    assert!(orgs.create(&profile, &owner, &settings).await.unwrap());
    let customer = CreateCustomer::new()
        .email("billing@byok.example")
        .send(&app.stripe)
        .await
        .unwrap();
    app.sim
        .pay_invoice(invoice(customer.id.as_str(), TEAM_PRICE, Some("org_plan_byok")))
        .await
        .unwrap();
    let paid = latest(&app, "invoice.paid");
    for _ in 0..2 {
        let (status, body) = deliver(&app, &paid).await;
        assert_eq!(status, 200, "{body}");
    }
    let wallet = app.svc.store.wallet(&org).await.unwrap();
    assert_eq!(wallet.buckets.base, usd("50"));
    assert_eq!(
        (wallet.lifetime_added, wallet.lifetime_granted),
        (usd("50"), usd("50")),
        "a plan's base credits are granted, not bought"
    );
    assert_eq!(wallet.settings.billing_mode, Some(BillingMode::Credits));
    assert_eq!(
        orgs.get(&org).await.unwrap().unwrap().billing_mode,
        BillingMode::Credits
    );
}
