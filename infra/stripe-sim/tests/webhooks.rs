//! Webhook delivery: Stripe's signature as async-stripe verifies it, duplicated and
//! reordered delivery, recorded statuses, and every event type the functions handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use stripe_shared::{CheckoutSessionPaymentStatus, PaymentIntentStatus};
use stripe_sim::{CompleteCheckout, InvoicePayment, StripeSim, WebhookConfig};
use stripe_webhook::{EventObject, Webhook, WebhookError};

/// A paid session's charge, for the refund and dispute tests.
async fn paid_charge(sim: &StripeSim, org: &str) -> (String, String) {
    let client = stripe(sim);
    let customer = create_customer(&client, org).await;
    let session = create_checkout(&client, &customer.id, org, 5000).await;
    sim.complete_checkout(&session.id, CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    let pi_id = sim.events().last().unwrap()["data"]["object"]["payment_intent"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, intent) = http(
        "GET",
        &format!("{}v1/payment_intents/{pi_id}", sim.base_url()),
        &[KEY],
        "",
    )
    .await;
    let intent: serde_json::Value = serde_json::from_str(&intent).unwrap();
    (
        intent["latest_charge"].as_str().unwrap().to_string(),
        customer.id.to_string(),
    )
}

#[tokio::test]
async fn a_tampered_body_or_a_wrong_secret_fails_verification() {
    let (sim, mut receiver) = sim_with_receiver().await;
    let client = stripe(&sim);
    let customer = create_customer(&client, "org_1").await;
    let session = create_checkout(&client, &customer.id, "org_1", 1000).await;
    sim.complete_checkout(&session.id, CompleteCheckout::default())
        .await
        .unwrap();
    let delivered = receiver.take().pop().unwrap();

    // the genuine delivery verifies, and its header is exactly `t=<unix>,v1=<64 hex>`
    delivered.verify();
    let (t, v1) = delivered.signature.split_once(',').unwrap();
    assert!(t.strip_prefix("t=").unwrap().parse::<i64>().is_ok());
    assert_eq!(v1.strip_prefix("v1=").unwrap().len(), 64);
    let t: i64 = t[2..].parse().unwrap();
    assert_eq!(
        stripe_sim::signature_header(SECRET, t, &delivered.body).unwrap(),
        delivered.signature
    );

    let tampered = delivered
        .body
        .replace("\"amount_total\":1000", "\"amount_total\":9000");
    assert_ne!(tampered, delivered.body);
    assert!(matches!(
        Webhook::construct_event(&tampered, &delivered.signature, SECRET),
        Err(WebhookError::BadSignature)
    ));
    assert!(matches!(
        Webhook::construct_event(&delivered.body, &delivered.signature, "whsec_someone_else"),
        Err(WebhookError::BadSignature)
    ));
}

#[tokio::test]
async fn duplicate_delivery_sends_every_event_twice_with_the_same_id_and_body() {
    let sim = StripeSim::start().await.unwrap();
    let mut receiver = Receiver::start(200).await;
    let config = WebhookConfig {
        url: receiver.url.clone(),
        secret: SECRET.into(),
        duplicate: true,
        hold: false,
    };
    sim.configure_webhooks(config).unwrap();
    let client = stripe(&sim);
    let customer = create_customer(&client, "org_1").await;
    let session = create_checkout(&client, &customer.id, "org_1", 1000).await;

    let outcome = sim
        .complete_checkout(&session.id, CompleteCheckout::default())
        .await
        .unwrap();

    let received = receiver.take();
    let ids: Vec<String> = received.iter().map(Received::event_id).collect();
    let created: Vec<&str> = outcome.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [created[0], created[0], created[1], created[1]]);
    assert_eq!(received[0].body, received[1].body);
    assert!(received.iter().all(|r| r.verify().id.as_str() == r.event_id()));
    assert!(
        outcome
            .events
            .iter()
            .all(|e| e.deliveries.len() == 2 && e.deliveries.iter().all(|d| d.status == Some(200)))
    );
}

#[tokio::test]
async fn held_events_are_released_newest_first() {
    let sim = StripeSim::start().await.unwrap();
    let mut receiver = Receiver::start(200).await;
    // through the control route, as a person would set it
    let (status, _) = control(
        &sim,
        "_sim/webhooks",
        json!({"url": receiver.url, "secret": SECRET, "hold": true}),
    )
    .await;
    assert_eq!(status, 200);
    let client = stripe(&sim);
    let customer = create_customer(&client, "org_1").await;
    let session = create_checkout(&client, &customer.id, "org_1", 1000).await;

    let outcome = sim
        .complete_checkout(&session.id, CompleteCheckout::default())
        .await
        .unwrap();
    assert_eq!(
        outcome.event_types(),
        ["payment_intent.succeeded", "checkout.session.completed"]
    );
    assert!(outcome.events.iter().all(|e| e.deliveries.is_empty()));
    assert!(receiver.take().is_empty(), "held events are not delivered");

    let (status, deliveries) = control(&sim, "_sim/webhooks/release", json!({"order": "reverse"})).await;
    assert_eq!(status, 200);
    assert_eq!(deliveries.as_array().unwrap().len(), 2);
    let types: Vec<String> = receiver
        .take()
        .iter()
        .map(|r| r.verify().type_.as_str().to_string())
        .collect();
    assert_eq!(types, ["checkout.session.completed", "payment_intent.succeeded"]);
}

#[tokio::test]
async fn each_delivery_records_what_the_receiver_answered() {
    let sim = StripeSim::start().await.unwrap();
    let failing = Receiver::start(500).await;
    sim.configure_webhooks(WebhookConfig {
        url: failing.url.clone(),
        secret: SECRET.into(),
        ..Default::default()
    })
    .unwrap();
    let client = stripe(&sim);
    let customer = create_customer(&client, "org_1").await;
    let pi = off_session_payment(&customer.id, "pm_card_visa", 1000, "org_1")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(pi.status, PaymentIntentStatus::Succeeded);
    sim.flush_webhooks().await;
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, Some(500));
    assert_eq!(deliveries[0].event_type, "payment_intent.succeeded");

    // a redelivery (Stripe's retry) to a receiver that now works is recorded beside it
    let mut working = Receiver::start(200).await;
    sim.configure_webhooks(WebhookConfig {
        url: working.url.clone(),
        secret: SECRET.into(),
        ..Default::default()
    })
    .unwrap();
    let summary = sim.redeliver(&deliveries[0].event_id).await.unwrap();
    let statuses: Vec<Option<u16>> = summary.deliveries.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [Some(500), Some(200)]);
    assert_eq!(working.take().len(), 1);

    // a receiver that is not there: no status, the error kept
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/webhooks", closed.local_addr().unwrap());
    drop(closed);
    sim.configure_webhooks(WebhookConfig {
        url,
        secret: SECRET.into(),
        ..Default::default()
    })
    .unwrap();
    let summary = sim.redeliver(&deliveries[0].event_id).await.unwrap();
    let last = summary.deliveries.last().unwrap();
    assert_eq!(last.status, None);
    assert!(last.error.is_some());
}

#[tokio::test]
async fn refunds_and_disputes_arrive_as_typed_charge_events() {
    let (sim, mut receiver) = sim_with_receiver().await;
    let (charge, _) = paid_charge(&sim, "org_1").await;
    receiver.take();

    // a partial refund through the control route, then the rest through the API
    let (status, outcome) = control(
        &sim,
        &format!("_sim/charges/{charge}/refund"),
        json!({"amount": 2000}),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["object"]["amount"], 2000);
    let (status, _, refund) = http(
        "POST",
        &format!("{}v1/refunds", sim.base_url()),
        &[KEY, FORM],
        &format!("charge={charge}&reason=requested_by_customer"),
    )
    .await;
    assert_eq!(status, 200, "{refund}");
    let refund: stripe_shared::Refund =
        miniserde::json::from_str(&refund).expect("a Refund async-stripe reads");
    assert_eq!(refund.amount, 3000);
    let (status, _, too_much) = http(
        "POST",
        &format!("{}v1/refunds", sim.base_url()),
        &[KEY, FORM],
        &format!("charge={charge}"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(too_much.contains("charge_already_refunded"), "{too_much}");

    let refunded: Vec<(i64, bool)> = receiver
        .take()
        .iter()
        .map(|r| match r.verify().data.object {
            EventObject::ChargeRefunded(ch) => (ch.amount_refunded, ch.refunded),
            _ => panic!("not a charge.refunded object"),
        })
        .collect();
    assert_eq!(refunded, [(2000, false), (5000, true)]);

    // a dispute on another payment
    let (charge, _) = paid_charge(&sim, "org_2").await;
    receiver.take();
    let outcome = sim.dispute_charge(&charge, "fraudulent").await.unwrap();
    assert_eq!(outcome.event_types(), ["charge.dispute.created"]);
    let EventObject::ChargeDisputeCreated(dispute) = receiver.take()[0].verify().data.object else {
        panic!("not a charge.dispute.created object");
    };
    assert_eq!(dispute.charge.id().as_str(), charge);
    assert_eq!(dispute.amount, 5000);
    assert!(dispute.payment_intent.is_some());
}

#[tokio::test]
async fn a_returned_refund_fails_once_and_counts_as_not_refunded() {
    let (sim, mut receiver) = sim_with_receiver().await;
    let (charge, _) = paid_charge(&sim, "org_1").await;
    let outcome = sim.refund_charge(&charge, Some(2000)).await.unwrap();
    let refund = outcome.object["id"].as_str().unwrap().to_owned();
    receiver.take();

    let (status, outcome) = control(
        &sim,
        &format!("_sim/refunds/{refund}/fail"),
        json!({"reason": "expired_or_canceled_card"}),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
    let types: Vec<&str> = outcome["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["charge.refund.updated", "refund.failed"]);
    let failed: Vec<(String, Option<String>)> = receiver
        .take()
        .iter()
        .map(|r| match r.verify().data.object {
            EventObject::ChargeRefundUpdated(re) | EventObject::RefundFailed(re) => {
                (re.id.to_string(), re.status.clone())
            }
            _ => panic!("not a refund object"),
        })
        .collect();
    let expected = (refund.clone(), Some("failed".to_owned()));
    assert_eq!(failed, [expected.clone(), expected]);
    assert_eq!(outcome["object"]["failure_reason"], "expired_or_canceled_card");

    // The charge's list shows it failed, and its amount can be refunded again.
    let (status, _, list) = http(
        "GET",
        &format!("{}v1/refunds?charge={charge}", sim.base_url()),
        &[KEY],
        "",
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["data"][0]["status"], "failed");
    let outcome = sim.refund_charge(&charge, None).await.unwrap();
    assert_eq!(
        outcome.object["amount"], 5000,
        "the whole charge stands unrefunded"
    );

    let (status, again) = control(&sim, &format!("_sim/refunds/{refund}/fail"), json!({})).await;
    assert_eq!(status, 400, "{again}");
    let (status, unknown) = control(&sim, "_sim/refunds/re_nope/fail", json!({})).await;
    assert_eq!(status, 404, "{unknown}");
}

#[tokio::test]
async fn a_paid_subscription_invoice_carries_what_a_plan_grant_needs() {
    let (sim, mut receiver) = sim_with_receiver().await;
    let customer = create_customer(&stripe(&sim), "org_1").await;
    let (status, outcome) = control(
        &sim,
        "_sim/invoices/pay",
        json!({
            "customer": customer.id.as_str(), "amount": 4900, "subscription": "sub_plan1",
            "price": "price_pro", "product": "prod_pro", "period_start": 1_790_000_000,
            "period_end": 1_792_592_000, "billing_reason": "subscription_create"
        }),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");

    // As Stripe pays an invoice: its PaymentIntent succeeds, the invoice is paid, and an
    // invoice payment names the PaymentIntent that paid it.
    let events: Vec<_> = receiver.take().iter().map(|d| d.verify()).collect();
    let kinds: Vec<String> = events.iter().map(|e| e.type_.to_string()).collect();
    assert_eq!(
        kinds,
        ["payment_intent.succeeded", "invoice.paid", "invoice_payment.paid"],
        "{kinds:?}"
    );
    let EventObject::PaymentIntentSucceeded(pi) = &events[0].data.object else {
        panic!("not a PaymentIntent");
    };
    let EventObject::InvoicePaymentPaid(paid) = &events[2].data.object else {
        panic!("not an invoice_payment.paid object");
    };
    assert_eq!(
        paid.payment.payment_intent.as_ref().map(|p| p.id().clone()),
        Some(pi.id.clone())
    );
    assert!(
        pi.metadata.is_empty(),
        "an invoice's PaymentIntent carries no metadata"
    );
    let EventObject::InvoicePaid(invoice) = events[1].data.object.clone() else {
        panic!("not an invoice.paid object");
    };
    assert_eq!(paid.invoice.id(), &invoice.id);
    assert_eq!(invoice.customer.as_ref().unwrap().id(), &customer.id);
    assert_eq!(invoice.amount_paid, 4900);
    let parent = invoice
        .parent
        .as_ref()
        .unwrap()
        .subscription_details
        .as_ref()
        .unwrap();
    assert_eq!(parent.subscription.id().as_str(), "sub_plan1");
    let line = &invoice.lines.data[0];
    assert_eq!(line.amount, 4900);
    assert_eq!(
        (line.period.start, line.period.end),
        (1_790_000_000, 1_792_592_000)
    );
    let price = line.pricing.as_ref().unwrap().price_details.as_ref().unwrap();
    assert_eq!(price.price.id().as_str(), "price_pro");
    assert_eq!(price.product, "prod_pro");

    // an unknown customer is Stripe's resource_missing
    let unknown = sim
        .pay_invoice(InvoicePayment {
            customer: "cus_nope".into(),
            amount: 100,
            ..Default::default()
        })
        .await;
    assert_eq!(unknown.unwrap_err().code, Some("resource_missing"));
}

#[tokio::test]
async fn a_delayed_payment_completes_unpaid_then_succeeds_or_fails() {
    let (sim, mut receiver) = sim_with_receiver().await;
    let client = stripe(&sim);
    let customer = create_customer(&client, "org_1").await;

    for succeeded in [true, false] {
        let session = create_checkout(&client, &customer.id, "org_1", 3000).await;
        let (status, outcome) = control(
            &sim,
            &format!("_sim/checkout/sessions/{}/complete", session.id),
            json!({"async": true}),
        )
        .await;
        assert_eq!(status, 200, "{outcome}");
        let EventObject::CheckoutSessionCompleted(completed) = receiver.take()[0].verify().data.object else {
            panic!("not a checkout.session.completed object");
        };
        assert_eq!(completed.payment_status, CheckoutSessionPaymentStatus::Unpaid);

        let (status, outcome) = control(
            &sim,
            &format!("_sim/checkout/sessions/{}/async_payment", session.id),
            json!({"succeeded": succeeded}),
        )
        .await;
        assert_eq!(status, 200, "{outcome}");
        let events: Vec<stripe_webhook::Event> = receiver.take().iter().map(Received::verify).collect();
        if succeeded {
            let [pi, cs] = &events[..] else {
                panic!("two events expected")
            };
            assert!(matches!(pi.data.object, EventObject::PaymentIntentSucceeded(_)));
            let EventObject::CheckoutSessionAsyncPaymentSucceeded(cs) = &cs.data.object else {
                panic!("not checkout.session.async_payment_succeeded");
            };
            assert_eq!(cs.payment_status, CheckoutSessionPaymentStatus::Paid);
        } else {
            let [pi, cs] = &events[..] else {
                panic!("two events expected")
            };
            assert!(matches!(
                pi.data.object,
                EventObject::PaymentIntentPaymentFailed(_)
            ));
            let EventObject::CheckoutSessionAsyncPaymentFailed(cs) = &cs.data.object else {
                panic!("not checkout.session.async_payment_failed");
            };
            assert_eq!(cs.payment_status, CheckoutSessionPaymentStatus::Unpaid);
        }
        // settling twice is refused
        let again = sim.settle_async_payment(&session.id, true).await;
        assert_eq!(again.unwrap_err().status, 400);
    }
}

#[tokio::test]
async fn a_declined_card_at_checkout_leaves_the_session_open_for_another_try() {
    let (sim, mut receiver) = sim_with_receiver().await;
    let client = stripe(&sim);
    let customer = create_customer(&client, "org_1").await;
    let session = create_checkout(&client, &customer.id, "org_1", 3000).await;

    let declined = sim
        .complete_checkout(&session.id, CompleteCheckout::card("pm_card_chargeDeclined"))
        .await;
    let error = declined.unwrap_err();
    assert_eq!(
        (error.status, error.code, error.decline_code),
        (402, Some("card_declined"), Some("generic_decline"))
    );
    let types: Vec<String> = receiver.take().iter().map(Received::event_type).collect();
    assert_eq!(types, ["payment_intent.payment_failed"]);

    let paid = sim
        .complete_checkout(&session.id, CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    assert_eq!(paid.object["payment_status"], "paid");
    assert_eq!(
        paid.event_types(),
        ["payment_intent.succeeded", "checkout.session.completed"]
    );
    let again = sim
        .complete_checkout(&session.id, CompleteCheckout::default())
        .await;
    assert_eq!(
        again.unwrap_err().status,
        400,
        "a complete session cannot be paid twice"
    );
}

#[tokio::test]
async fn webhooks_go_to_this_machine_only() {
    let sim = StripeSim::start().await.unwrap();
    for url in [
        "http://example.com/webhooks",
        "http://10.1.2.3/webhooks",
        "http://192.168.0.1:9000/",
    ] {
        let refused = sim.configure_webhooks(WebhookConfig {
            url: url.into(),
            secret: SECRET.into(),
            ..Default::default()
        });
        assert!(refused.is_err(), "{url} must be refused");
    }
    for url in [
        "http://127.0.0.1:9000/webhooks",
        "http://localhost:9000/",
        "http://[::1]:9000/",
    ] {
        let accepted = sim.configure_webhooks(WebhookConfig {
            url: url.into(),
            secret: SECRET.into(),
            ..Default::default()
        });
        assert!(accepted.is_ok(), "{url} is local");
    }
}
