//! Reconciliation against dynoxide, the Stripe simulator and moto's EventBridge over
//! HTTP: payments made at Stripe and credited as the functions credit them, a refund
//! delivered to the webhooks function as Stripe delivers it; then items broken on
//! purpose, each reported with its evidence, published once per run, and no money moved.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use agent_credits_domain::{EntryKind, OrgId, PositiveUsd, SystemClock, Usd, WalletStore};
use agent_credits_dynamo::{DynamoWalletStore, PaymentRecord, RechargeStore};
use reconcile::{Reconciler, Report, reconcile};
use serde_json::json;
use stripe_sim::StripeSim;
use support::bus::Bus;

const TABLE: &str = "credits";
const KEY: &str = "sk_test_reconcile";
const SECRET: &str = "whsec_reconcile_tests";

struct App {
    db: support::dynoxide::Dynoxide,
    sim: StripeSim,
    _moto: support::moto::Moto,
    bus: Bus,
    stripe: stripe::Client,
    svc: Reconciler,
}

async fn app() -> App {
    let (db, client) = support::fresh_table(TABLE).await;
    let sim = StripeSim::start().await.unwrap();
    let moto = support::moto::Moto::start();
    let bus = Bus::create(moto.endpoint(), "agent-credits-reconcile").await;
    let stripe = stripe::ClientBuilder::new(KEY)
        .url(sim.base_url())
        .build()
        .unwrap();
    for org in ["org_1", "org_2"] {
        let org = OrgId::parse(org).unwrap();
        support::create_credits_org(&client, TABLE, &org, "u_owner").await;
    }
    let svc = Reconciler {
        store: DynamoWalletStore::new(client, TABLE, Arc::new(SystemClock)),
        stripe: support::payments(sim.base_url(), KEY),
        publish_to: Some((bus.events.clone(), bus.name.clone())),
        clock: Arc::new(SystemClock),
        window: chrono::Duration::days(35),
        // The simulator's payments are seconds old: every one is expected credited.
        grace: chrono::Duration::zero(),
    };
    App {
        db,
        sim,
        _moto: moto,
        bus,
        stripe,
        svc,
    }
}

fn org(id: &str) -> OrgId {
    OrgId::parse(id).unwrap()
}

/// A succeeded card payment of `cents` for `org`, as our payments carry it.
async fn pay(app: &App, org: &OrgId, cents: i64) -> (String, String) {
    use stripe_core::payment_intent::CreatePaymentIntent;
    let pi = CreatePaymentIntent::new(cents, stripe_types::Currency::USD)
        .payment_method("pm_card_visa")
        .confirm(true)
        .metadata(
            [("org".to_owned(), org.to_string())]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .send(&app.stripe)
        .await
        .unwrap();
    let charge = pi.latest_charge.as_ref().map(|c| c.id().to_string()).unwrap();
    (pi.id.to_string(), charge)
}

/// The payment credited as the recharge function credits a top-up, with its record
/// saying it was charged `recorded_cents`.
async fn credit(app: &App, org: &OrgId, pi: &str, credits: &str, recorded_cents: u64) {
    let amount = PositiveUsd::parse(credits).unwrap();
    let req = agent_credits_domain::recharge::top_up(org.clone(), amount, pi).unwrap();
    let record = PaymentRecord {
        payment_intent: pi.to_owned(),
        org: org.clone(),
        kind: EntryKind::AutoTopUp,
        credits: amount.usd(),
        charged_cents: recorded_cents,
        credit_key: req.key().to_string(),
    };
    app.svc.store.credit_payment(req, &record).await.unwrap().unwrap();
}

/// The simulator's newest `charge.refunded`, delivered to the webhooks function.
async fn deliver_refund(app: &App) {
    let event = app
        .sim
        .events()
        .into_iter()
        .rev()
        .find(|e| e["type"] == "charge.refunded")
        .unwrap();
    let body = event.to_string();
    let mut e = support::event("webhooks/stripe-event.json");
    let t = chrono::Utc::now().timestamp();
    e["headers"]["stripe-signature"] = json!(stripe_sim::signature_header(SECRET, t, &body).unwrap());
    e["body"] = json!(body);
    let client = app.svc.store.client().clone();
    let svc = webhooks::Webhooks {
        store: DynamoWalletStore::new(client.clone(), TABLE, Arc::new(SystemClock)),
        recharges: RechargeStore::new(client, TABLE),
        signing_secret: SECRET.into(),
        payments: Some(support::payments(app.sim.base_url(), KEY)),
        plans: webhooks::Plans::default(),
    };
    let (status, body) = support::contract::call(&e, |req| webhooks::handle(&svc, req)).await;
    assert_eq!(status, 200, "{body}");
}

/// An item of org_1 changed by hand, outside every rule: `update` with `:v` the number `v`.
async fn tamper(app: &App, sk: &str, update: &str, v: &str) {
    use aws_sdk_dynamodb::types::AttributeValue;
    app.svc
        .store
        .client()
        .update_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S("ORG#org_1".into()))
        .key("sk", AttributeValue::S(sk.to_owned()))
        .update_expression(update)
        .expression_attribute_values(":v", AttributeValue::N(v.to_owned()))
        .send()
        .await
        .unwrap();
}

fn checks(report: &Report) -> BTreeSet<(&'static str, String)> {
    report
        .mismatches
        .iter()
        .map(|m| (m.check, m.org.clone().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn a_table_that_adds_up_reports_and_publishes_nothing() {
    let app = app().await;
    let (a, charge) = pay(&app, &org("org_1"), 5_000).await;
    credit(&app, &org("org_1"), &a, "50", 5_000).await;
    let (b, _) = pay(&app, &org("org_2"), 2_500).await;
    credit(&app, &org("org_2"), &b, "25", 2_500).await;
    // $10 of the $50 refunded, and taken back by the webhooks function.
    app.sim.refund_charge(&charge, Some(1_000)).await.unwrap();
    deliver_refund(&app).await;
    assert_eq!(
        app.svc
            .store
            .wallet(&org("org_1"))
            .await
            .unwrap()
            .balance()
            .unwrap(),
        Usd::parse("40").unwrap()
    );

    let report = reconcile(&app.svc, None).await.unwrap();
    assert!(report.mismatches.is_empty(), "{report:#?}");
    assert_eq!(
        (report.wallets, report.payments, report.refunds),
        (2, 2, 1),
        "{report:#?}"
    );
    assert!(report.entries >= 3);
    assert!(app.bus.received(1).await.is_empty());
}

#[tokio::test]
async fn each_broken_item_is_reported_with_its_evidence_and_no_money_moves() {
    let app = app().await;
    let (one, two) = (org("org_1"), org("org_2"));
    // A payment credited right, then refunded at Stripe with the event never delivered.
    let (paid, charge) = pay(&app, &one, 5_000).await;
    credit(&app, &one, &paid, "50", 5_000).await;
    app.sim.refund_charge(&charge, Some(2_000)).await.unwrap();
    // A payment Stripe took that nobody credited.
    let (lost, _) = pay(&app, &two, 3_000).await;
    // A payment whose record says another amount than Stripe charged.
    let (wrong, _) = pay(&app, &two, 4_000).await;
    credit(&app, &two, &wrong, "40", 4_500).await;
    // A wallet whose purchased bucket moved outside any entry.
    tamper(&app, "WALLET", "SET purchased = purchased + :v", "1").await;
    let before = (
        app.svc.store.stored_wallet(&one).await.unwrap(),
        app.svc.store.stored_wallet(&two).await.unwrap(),
        app.svc.store.ledger(&one).await.unwrap().len(),
        app.svc.store.ledger(&two).await.unwrap().len(),
    );

    let report = reconcile(&app.svc, None).await.unwrap();
    let expected: BTreeSet<(&str, String)> = [
        ("buckets", "org_1".to_owned()),
        ("refund_not_taken", "org_1".to_owned()),
        ("payment_not_credited", "org_2".to_owned()),
        ("payment_mismatch", "org_2".to_owned()),
    ]
    .into_iter()
    .collect();
    assert_eq!(checks(&report), expected, "{report:#?}");
    let not_credited = report
        .mismatches
        .iter()
        .find(|m| m.check == "payment_not_credited")
        .unwrap();
    assert_eq!(not_credited.evidence["payment_intent"], lost.as_str());
    assert_eq!(not_credited.evidence["amount_received"], 3_000);
    let mismatch = report
        .mismatches
        .iter()
        .find(|m| m.check == "payment_mismatch")
        .unwrap();
    assert_eq!(mismatch.evidence["payment_intent"], wrong.as_str());
    assert_eq!(
        (
            mismatch.evidence["recorded_cents"].as_u64(),
            mismatch.evidence["stripe_amount_received"].as_i64()
        ),
        (Some(4_500), Some(4_000))
    );
    let refund = report
        .mismatches
        .iter()
        .find(|m| m.check == "refund_not_taken")
        .unwrap();
    assert_eq!(refund.evidence["refund_cents"], 2_000);
    assert_eq!(refund.evidence["share"], "20.00");

    // Published, once per mismatch, with the evidence.
    assert_eq!(report.published, 4);
    let events = app.bus.of("reconciliation_mismatch", 5).await;
    assert_eq!(events.len(), 4, "{events:#?}");
    let published: BTreeSet<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["detail"]["check"].as_str().unwrap().to_owned(),
                e["detail"]["org"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        published,
        expected
            .iter()
            .map(|(c, o)| ((*c).to_owned(), o.clone()))
            .collect()
    );

    // Nothing moved.
    let after = (
        app.svc.store.stored_wallet(&one).await.unwrap(),
        app.svc.store.stored_wallet(&two).await.unwrap(),
        app.svc.store.ledger(&one).await.unwrap().len(),
        app.svc.store.ledger(&two).await.unwrap().len(),
    );
    assert_eq!(before, after);

    // One org's run sees that org's alone.
    let report = reconcile(&app.svc, Some(&two)).await.unwrap();
    let only: BTreeSet<_> = expected.iter().filter(|(_, o)| o == "org_2").cloned().collect();
    assert_eq!(checks(&report), only, "{report:#?}");
    let _ = &app.db;
}

#[tokio::test]
async fn a_ledger_that_does_not_sum_to_its_balance_is_reported() {
    let app = app().await;
    let one = org("org_1");
    let (paid, _) = pay(&app, &one, 5_000).await;
    credit(&app, &one, &paid, "50", 5_000).await;
    // The entry's amount rewritten: its running balance and the sum no longer agree.
    tamper(&app, &format!("TX#{:020}", 1), "SET amount = :v", "49").await;
    let report = reconcile(&app.svc, Some(&one)).await.unwrap();
    let found: BTreeSet<&str> = report.mismatches.iter().map(|m| m.check).collect();
    assert!(found.contains("ledger_sum"), "{report:#?}");
    assert!(
        found.contains("payment_mismatch"),
        "the credit entry is not the payment's: {report:#?}"
    );
}

#[tokio::test]
async fn an_alert_the_notifier_never_published_is_reported_until_it_is() {
    let app = app().await;
    let one = org("org_1");
    // Written three hours ago, by a change that crossed the threshold.
    let then = chrono::Utc::now() - chrono::Duration::hours(3);
    let past = DynamoWalletStore::new(
        app.svc.store.client().clone(),
        TABLE,
        Arc::new(support::TestClock::at(then)),
    );
    past.apply(support::purchase(&one, "25", "buy:1"))
        .await
        .unwrap()
        .unwrap();
    let spend = agent_credits_domain::ChangeRequest::usage(
        one.clone(),
        PositiveUsd::parse("10").unwrap(),
        agent_credits_domain::IdempotencyKey::parse("use:1").unwrap(),
    );
    past.apply(spend).await.unwrap().unwrap();
    let feed = app.svc.store.notifications(&one, 10).await.unwrap();
    assert_eq!(feed.len(), 1);

    let report = reconcile(&app.svc, Some(&one)).await.unwrap();
    let found: Vec<_> = report
        .mismatches
        .iter()
        .filter(|m| m.check == "notification_unpublished")
        .collect();
    assert_eq!(found.len(), 1, "{report:#?}");
    assert_eq!(found[0].evidence["kind"], "credit_balance_low");
    assert_eq!(found[0].evidence["notification"], feed[0].id.as_str());
    assert_eq!(checks(&reconcile(&app.svc, None).await.unwrap()).len(), 1);

    // Published (by the notifier's retry, say): no longer reported.
    assert!(
        app.svc
            .store
            .mark_published(&one, &feed[0].id, chrono::Utc::now())
            .await
            .unwrap()
    );
    let report = reconcile(&app.svc, None).await.unwrap();
    assert!(report.mismatches.is_empty(), "{report:#?}");
}
