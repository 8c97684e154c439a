//! Webhook delivery: Stripe's signature as async-stripe verifies it, duplicated and
//! reordered delivery, recorded statuses, and every event type the functions handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use stripe_shared::{CheckoutSessionPaymentStatus, PaymentIntentStatus};
use stripe_sim::{CompleteCheckout, InvoicePayment, Order, StripeSim, WebhookConfig};
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

/// The plans of the subscription tests: $50 and $100 a month.
fn plans(sim: &StripeSim) {
    sim.add_price("price_team_monthly", 5000, Some("month")).unwrap();
    sim.add_price("price_pro_monthly", 10_000, Some("month")).unwrap();
}

fn subscription_of(event: &stripe_webhook::Event) -> &stripe_shared::Subscription {
    match &event.data.object {
        EventObject::CustomerSubscriptionCreated(s)
        | EventObject::CustomerSubscriptionUpdated(s)
        | EventObject::CustomerSubscriptionDeleted(s) => s,
        _ => panic!("{}: not a subscription event", event.type_),
    }
}

fn invoice_of(event: &stripe_webhook::Event) -> &stripe_shared::Invoice {
    match &event.data.object {
        EventObject::InvoicePaid(i) | EventObject::InvoicePaymentFailed(i) => i,
        _ => panic!("{}: not an invoice event", event.type_),
    }
}

fn kinds(events: &[stripe_webhook::Event]) -> Vec<&str> {
    events.iter().map(|e| e.type_.as_str()).collect()
}

#[tokio::test]
async fn a_subscription_checkout_delivers_its_events_in_order_signed() {
    let (sim, mut receiver) = sim_with_receiver().await;
    plans(&sim);
    let client = stripe(&sim);
    let customer = create_customer(&client, "org_1").await;
    let session = create_subscription_checkout(&client, &customer.id, "org_1", "price_team_monthly").await;

    // a declined card: 402, the session stays open, only the failed payment is told
    let declined = sim
        .complete_checkout(&session.id, CompleteCheckout::card("pm_card_chargeDeclined"))
        .await
        .unwrap_err();
    assert_eq!((declined.status, declined.code), (402, Some("card_declined")));
    let types: Vec<String> = receiver.take().iter().map(Received::event_type).collect();
    assert_eq!(types, ["payment_intent.payment_failed"]);
    let (_, open) = get_v1(&sim, &format!("v1/checkout/sessions/{}", session.id)).await;
    assert_eq!(
        (open["status"].as_str(), open["subscription"].as_str()),
        (Some("open"), None)
    );

    // the payer tries again with a good card
    let (status, outcome) = control(
        &sim,
        &format!("_sim/checkout/sessions/{}/complete", session.id),
        json!({"card": "pm_card_visa"}),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
    let events: Vec<stripe_webhook::Event> = receiver.take().iter().map(Received::verify).collect();
    assert_eq!(
        kinds(&events),
        [
            "customer.subscription.created",
            "payment_intent.succeeded",
            "invoice.paid",
            "invoice_payment.paid",
            "checkout.session.completed"
        ]
    );
    let subscription = subscription_of(&events[0]);
    assert_eq!(subscription.status.as_str(), "active");
    assert_eq!(subscription.metadata["org"], "org_1");
    assert_eq!(subscription.customer.id(), &customer.id);
    let item = &subscription.items.data[0];
    assert_eq!(item.price.id.as_str(), "price_team_monthly");
    let invoice = invoice_of(&events[2]);
    assert_eq!(
        invoice.billing_reason.as_ref().unwrap().as_str(),
        "subscription_create"
    );
    assert_eq!(invoice.amount_paid, 5000);
    assert_eq!(invoice.customer.as_ref().unwrap().id(), &customer.id);
    let parent = invoice
        .parent
        .as_ref()
        .unwrap()
        .subscription_details
        .as_ref()
        .unwrap();
    assert_eq!(parent.subscription.id(), &subscription.id);
    assert_eq!(parent.metadata.as_ref().unwrap()["org"], "org_1");
    let line = &invoice.lines.data[0];
    assert_eq!(line.amount, 5000);
    assert_eq!(
        (line.period.start, line.period.end),
        (item.current_period_start, item.current_period_end)
    );
    let line_item = line
        .parent
        .as_ref()
        .unwrap()
        .subscription_item_details
        .as_ref()
        .unwrap();
    assert_eq!(
        (line_item.subscription_item.as_str(), line_item.proration),
        (item.id.as_str(), false)
    );
    let price = line.pricing.as_ref().unwrap().price_details.as_ref().unwrap();
    assert_eq!(price.price.id().as_str(), "price_team_monthly");
    let EventObject::PaymentIntentSucceeded(pi) = &events[1].data.object else {
        panic!("not a PaymentIntent");
    };
    let EventObject::InvoicePaymentPaid(paid) = &events[3].data.object else {
        panic!("not an invoice payment");
    };
    assert_eq!(paid.invoice.id(), &invoice.id);
    assert_eq!(paid.payment.payment_intent.as_ref().unwrap().id(), &pi.id);
    let EventObject::CheckoutSessionCompleted(completed) = &events[4].data.object else {
        panic!("not a checkout session");
    };
    assert_eq!(completed.mode.as_str(), "subscription");
    assert_eq!(completed.payment_status, CheckoutSessionPaymentStatus::Paid);
    assert_eq!(completed.subscription.as_ref().unwrap().id(), &subscription.id);
    assert_eq!(completed.invoice.as_ref().unwrap().id(), &invoice.id);
    assert_eq!(completed.customer.as_ref().unwrap().id(), &customer.id);
    assert_eq!(completed.client_reference_id.as_deref(), Some("org_1"));

    // the invoice's charge is a charge like any other: it can be refunded
    let charge = pi.latest_charge.as_ref().unwrap().id().to_string();
    let refunded = sim.refund_charge(&charge, None).await.unwrap();
    assert_eq!(refunded.event_types(), ["charge.refunded"]);
}

#[tokio::test]
async fn a_renewal_starts_the_next_period_and_pays_its_invoice() {
    let (sim, mut receiver) = sim_with_receiver().await;
    plans(&sim);
    let (_, sub, _) = subscribe(&sim, "org_1", "price_team_monthly", "pm_card_visa").await;
    let (_, before) = get_v1(&sim, &format!("v1/subscriptions/{sub}")).await;
    let old_end = before["items"]["data"][0]["current_period_end"].as_i64().unwrap();
    receiver.take();

    let (status, outcome) = control(&sim, &format!("_sim/subscriptions/{sub}/renew"), json!({})).await;
    assert_eq!(status, 200, "{outcome}");
    let events: Vec<stripe_webhook::Event> = receiver.take().iter().map(Received::verify).collect();
    assert_eq!(
        kinds(&events),
        [
            "customer.subscription.updated",
            "payment_intent.succeeded",
            "invoice.paid",
            "invoice_payment.paid"
        ]
    );
    let renewed = subscription_of(&events[0]);
    let item = &renewed.items.data[0];
    assert_eq!(item.current_period_start, old_end);
    let month = item.current_period_end - item.current_period_start;
    assert!((28 * 86_400..=31 * 86_400).contains(&month), "{month}");
    let previous = &events[0].data.previous_attributes;
    assert!(previous.is_some(), "the update says what changed");
    let raw = receiver_json_previous(&sim, events[0].id.as_str());
    assert_eq!(
        raw["items"]["data"][0]["current_period_end"].as_i64(),
        Some(old_end)
    );
    let invoice = invoice_of(&events[2]);
    assert_eq!(
        invoice.billing_reason.as_ref().unwrap().as_str(),
        "subscription_cycle"
    );
    assert_eq!(invoice.amount_paid, 5000);
    assert_eq!(
        (
            invoice.lines.data[0].period.start,
            invoice.lines.data[0].period.end
        ),
        (item.current_period_start, item.current_period_end)
    );
    assert_eq!(renewed.latest_invoice.as_ref().unwrap().id(), &invoice.id);

    // held renewal events are released newest first, signed as any others
    sim.configure_webhooks(WebhookConfig {
        url: receiver.url.clone(),
        secret: SECRET.into(),
        hold: true,
        ..Default::default()
    })
    .unwrap();
    let held = sim.renew_subscription(&sub).await.unwrap();
    assert!(held.events.iter().all(|e| e.deliveries.is_empty()));
    assert!(receiver.take().is_empty());
    sim.release_held(Order::Reverse).await;
    let released: Vec<String> = receiver
        .take()
        .iter()
        .map(|r| r.verify().type_.to_string())
        .collect();
    assert_eq!(
        released,
        [
            "invoice_payment.paid",
            "invoice.paid",
            "payment_intent.succeeded",
            "customer.subscription.updated"
        ]
    );
}

/// An event's `data.previous_attributes` as the simulator recorded it.
fn receiver_json_previous(sim: &StripeSim, event_id: &str) -> serde_json::Value {
    sim.events_by_id(&[event_id])[0]["data"]["previous_attributes"].clone()
}

#[tokio::test]
async fn cancel_at_period_end_then_renew_deletes_the_subscription_without_an_invoice() {
    let (sim, mut receiver) = sim_with_receiver().await;
    plans(&sim);
    let (customer, sub, _) = subscribe(&sim, "org_1", "price_team_monthly", "pm_card_visa").await;
    receiver.take();
    let client = stripe(&sim);

    let cancelling: stripe_shared::Subscription = post_typed(
        &client,
        &format!("/subscriptions/{sub}"),
        &[
            ("cancel_at_period_end", "true"),
            ("metadata[reason]", "too_expensive"),
        ],
    )
    .await
    .unwrap();
    assert!(cancelling.cancel_at_period_end);
    assert_eq!(cancelling.status.as_str(), "active");
    assert_eq!(cancelling.metadata["org"], "org_1", "metadata is merged");
    assert_eq!(cancelling.metadata["reason"], "too_expensive");
    assert_eq!(
        cancelling.cancel_at,
        Some(cancelling.items.data[0].current_period_end)
    );
    sim.flush_webhooks().await;
    let events: Vec<stripe_webhook::Event> = receiver.take().iter().map(Received::verify).collect();
    assert_eq!(kinds(&events), ["customer.subscription.updated"]);
    assert!(subscription_of(&events[0]).cancel_at_period_end);
    assert_eq!(
        receiver_json_previous(&sim, events[0].id.as_str())["cancel_at_period_end"],
        false
    );

    let outcome = sim.renew_subscription(&sub).await.unwrap();
    assert_eq!(outcome.event_types(), ["customer.subscription.deleted"]);
    let events: Vec<stripe_webhook::Event> = receiver.take().iter().map(Received::verify).collect();
    let deleted = subscription_of(&events[0]);
    assert_eq!(deleted.status.as_str(), "canceled");
    assert_eq!(deleted.ended_at, Some(deleted.items.data[0].current_period_end));
    let (_, invoices) = get_v1(&sim, &format!("v1/invoices?subscription={sub}")).await;
    assert_eq!(
        invoices["data"].as_array().unwrap().len(),
        1,
        "only the first invoice"
    );
    let (_, expanded) = get_v1(&sim, &format!("v1/subscriptions/{sub}?expand[]=latest_invoice")).await;
    assert_eq!(expanded["latest_invoice"]["id"], invoices["data"][0]["id"]);

    // a canceled subscription is listed only when asked for, and changes no more
    let (_, listed) = get_v1(&sim, &format!("v1/subscriptions?customer={customer}")).await;
    assert!(listed["data"].as_array().unwrap().is_empty());
    let (_, listed) = get_v1(
        &sim,
        &format!("v1/subscriptions?customer={customer}&status=canceled"),
    )
    .await;
    assert_eq!(listed["data"][0]["id"], sub.as_str());
    let (status, error) = post_v1(
        &sim,
        &format!("v1/subscriptions/{sub}"),
        "cancel_at_period_end=false",
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(sim.renew_subscription(&sub).await.unwrap_err().status, 400);
}

#[tokio::test]
async fn an_upgrade_halfway_through_the_period_prorates_exactly() {
    let (sim, mut receiver) = sim_with_receiver().await;
    plans(&sim);
    let (_, sub, _) = subscribe(&sim, "org_1", "price_team_monthly", "pm_card_visa").await;
    // GIVEN a 30-day period whose first half is over
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (start, end) = (now - 15 * 86_400, now + 15 * 86_400);
    let current = sim.set_subscription_period(&sub, start, end).unwrap();
    let item = current["items"]["data"][0]["id"].as_str().unwrap().to_string();
    receiver.take();
    let client = stripe(&sim);

    // WHEN the org upgrades from $50 to $100 a month, invoiced now
    let upgraded: stripe_shared::Subscription = post_typed(
        &client,
        &format!("/subscriptions/{sub}"),
        &[
            ("items[0][id]", item.as_str()),
            ("items[0][price]", "price_pro_monthly"),
            ("proration_behavior", "always_invoice"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        (
            upgraded.items.data[0].current_period_start,
            upgraded.items.data[0].current_period_end
        ),
        (start, end)
    );
    sim.flush_webhooks().await;
    let events: Vec<stripe_webhook::Event> = receiver.take().iter().map(Received::verify).collect();
    assert_eq!(
        kinds(&events),
        [
            "customer.subscription.updated",
            "payment_intent.succeeded",
            "invoice.paid",
            "invoice_payment.paid"
        ]
    );

    // THEN half of the old price back, half of the new one charged: exactly
    let invoice = invoice_of(&events[2]);
    assert_eq!(
        invoice.billing_reason.as_ref().unwrap().as_str(),
        "subscription_update"
    );
    let amounts: Vec<i64> = invoice.lines.data.iter().map(|l| l.amount).collect();
    assert_eq!(amounts, [-2500, 5000]);
    for (line, unit) in invoice.lines.data.iter().zip([5000_i64, 10_000]) {
        let remaining = end - line.period.start;
        let exact = (2 * unit * remaining + (end - start)) / (2 * (end - start));
        assert_eq!(line.amount.abs(), exact);
        assert_eq!(line.period.end, end);
        let parent = line
            .parent
            .as_ref()
            .unwrap()
            .subscription_item_details
            .as_ref()
            .unwrap();
        assert!(parent.proration);
    }
    assert_eq!((invoice.total, invoice.amount_paid), (2500, 2500));
    let EventObject::PaymentIntentSucceeded(pi) = &events[1].data.object else {
        panic!("not a PaymentIntent");
    };
    assert_eq!(pi.amount, 2500);
    assert_eq!(
        pi.payment_method.as_ref().unwrap().id(),
        upgraded.default_payment_method.as_ref().unwrap().id(),
        "charged to the subscription's card"
    );

    // a downgrade back: a credit, paid with no payment (Stripe would credit the balance)
    let _: stripe_shared::Subscription = post_typed(
        &client,
        &format!("/subscriptions/{sub}"),
        &[
            ("items[0][id]", item.as_str()),
            ("items[0][price]", "price_team_monthly"),
            ("proration_behavior", "always_invoice"),
        ],
    )
    .await
    .unwrap();
    sim.flush_webhooks().await;
    let events: Vec<stripe_webhook::Event> = receiver.take().iter().map(Received::verify).collect();
    assert_eq!(kinds(&events), ["customer.subscription.updated", "invoice.paid"]);
    let credit = invoice_of(&events[1]);
    let amounts: Vec<i64> = credit.lines.data.iter().map(|l| l.amount).collect();
    assert_eq!(amounts, [-5000, 2500]);
    assert_eq!(credit.total, -2500);
    assert_eq!(
        (credit.amount_due, credit.amount_paid, credit.amount_remaining),
        (0, 0, 0)
    );
    assert_eq!(credit.status.as_ref().unwrap().as_str(), "paid");

    // create_prorations and none: the price changes, nothing is invoiced now
    for (price, proration) in [
        ("price_pro_monthly", "create_prorations"),
        ("price_team_monthly", "none"),
    ] {
        let (status, changed) = post_v1(
            &sim,
            &format!("v1/subscriptions/{sub}"),
            &format!("items[0][id]={item}&items[0][price]={price}&proration_behavior={proration}"),
        )
        .await;
        assert_eq!(status, 200, "{changed}");
        assert_eq!(changed["items"]["data"][0]["price"]["id"], price);
        sim.flush_webhooks().await;
        let types: Vec<String> = receiver.take().iter().map(Received::event_type).collect();
        assert_eq!(types, ["customer.subscription.updated"], "{proration}");
    }
    let (_, invoices) = get_v1(&sim, &format!("v1/invoices?subscription={sub}")).await;
    assert_eq!(invoices["data"].as_array().unwrap().len(), 3);

    // unknown subscriptions, items and prices are Stripe's errors
    let (status, error) = post_v1(&sim, "v1/subscriptions/sub_nope", "cancel_at_period_end=true").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("resource_missing"))
    );
    let (status, error) = post_v1(
        &sim,
        &format!("v1/subscriptions/{sub}"),
        "items[0][id]=si_nope&items[0][price]=price_pro_monthly",
    )
    .await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("items[0][id]"))
    );
    let (status, error) = post_v1(
        &sim,
        &format!("v1/subscriptions/{sub}"),
        &format!("items[0][id]={item}&items[0][price]=price_nope"),
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("resource_missing"))
    );
    let (status, _) = post_v1(
        &sim,
        &format!("v1/subscriptions/{sub}"),
        &format!("items[0][id]={item}&items[0][price]=price_team_monthly&proration_behavior=sometimes"),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_card_that_starts_declining_leaves_the_invoice_open_and_the_subscription_past_due() {
    let (sim, mut receiver) = sim_with_receiver().await;
    plans(&sim);
    let (_, sub, _) = subscribe(&sim, "org_1", "price_team_monthly", "pm_card_visa").await;
    let (_, current) = get_v1(&sim, &format!("v1/subscriptions/{sub}")).await;
    let card = current["default_payment_method"].as_str().unwrap().to_string();
    let item = current["items"]["data"][0]["id"].as_str().unwrap().to_string();
    sim.set_card(&card, "pm_card_chargeDeclinedInsufficientFunds")
        .unwrap();
    receiver.take();

    // the renewal's payment fails
    let outcome = sim.renew_subscription(&sub).await.unwrap();
    assert_eq!(
        outcome.event_types(),
        [
            "customer.subscription.updated",
            "payment_intent.payment_failed",
            "invoice.payment_failed",
            "customer.subscription.updated"
        ]
    );
    assert_eq!(outcome.object["status"], "past_due");
    let events: Vec<stripe_webhook::Event> = receiver.take().iter().map(Received::verify).collect();
    let failed = invoice_of(&events[2]);
    assert_eq!(failed.status.as_ref().unwrap().as_str(), "open");
    assert_eq!((failed.amount_paid, failed.amount_remaining), (0, 5000));
    assert_eq!(failed.attempt_count, 1);
    let invoice = failed.id.as_ref().unwrap().to_string();

    // a plan change still applies though its proration cannot be paid
    let (status, changed) = post_v1(
        &sim,
        &format!("v1/subscriptions/{sub}"),
        &format!("items[0][id]={item}&items[0][price]=price_pro_monthly&proration_behavior=always_invoice"),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["items"]["data"][0]["price"]["id"], "price_pro_monthly");
    sim.flush_webhooks().await;
    let types: Vec<String> = receiver.take().iter().map(Received::event_type).collect();
    assert_eq!(
        types,
        [
            "customer.subscription.updated",
            "payment_intent.payment_failed",
            "invoice.payment_failed"
        ]
    );

    // paying the renewal's invoice with the card fixed: paid, a 402 before that
    let (status, error) = post_v1(&sim, &format!("v1/invoices/{invoice}/pay"), "").await;
    assert_eq!(
        (status, error["error"]["decline_code"].as_str()),
        (402, Some("insufficient_funds"))
    );
    sim.set_card(&card, "pm_card_visa").unwrap();
    let (status, paid) = post_v1(&sim, &format!("v1/invoices/{invoice}/pay"), "").await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(
        (paid["status"].as_str(), paid["amount_paid"].as_i64()),
        (Some("paid"), Some(5000))
    );
    let (status, again) = post_v1(&sim, &format!("v1/invoices/{invoice}/pay"), "").await;
    assert_eq!(status, 400, "{again}");
}
