//! The calls the checkout, webhooks and recharge functions make, through the real
//! async-stripe client pointed at the simulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use stripe::{ApiErrorsCode, ApiErrorsType, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_checkout::checkout_session::RetrieveCheckoutSession;
use stripe_client_core::{RequestBuilder, StripeMethod};
use stripe_core::customer::{ListCustomer, RetrieveCustomer, RetrieveCustomerReturned};
use stripe_core::payment_intent::{CreatePaymentIntent, RetrievePaymentIntent};
use stripe_shared::{CheckoutSessionPaymentStatus, CheckoutSessionStatus, PaymentIntentStatus};
use stripe_types::Currency;
use stripe_webhook::EventObject;

/// The error a failed call carries, as the functions will match it.
fn stripe_error(result: Result<stripe_shared::PaymentIntent, StripeError>) -> (Box<stripe::ApiErrors>, u16) {
    match result {
        Err(StripeError::Stripe(error, status)) => (error, status),
        other => panic!("expected a Stripe error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_checkout_paid_through_the_simulator_saves_the_card_and_delivers_signed_events() {
    let (sim, mut receiver) = sim_with_receiver().await;
    let client = stripe(&sim);

    // GIVEN an org's customer and the Checkout Session the checkout function creates
    let customer = create_customer(&client, "org_1").await;
    assert!(customer.id.as_str().starts_with("cus_"));
    assert_eq!(customer.metadata.as_ref().unwrap()["org"], "org_1");
    let session = create_checkout(&client, &customer.id, "org_1", 2500).await;
    assert_eq!(session.status, Some(CheckoutSessionStatus::Open));
    assert_eq!(session.payment_status, CheckoutSessionPaymentStatus::Unpaid);
    assert_eq!(session.amount_total, Some(2500));
    assert_eq!(session.client_reference_id.as_deref(), Some("org_1"));
    assert_eq!(
        session.url.as_deref(),
        Some(format!("{}pay/{}", sim.base_url(), session.id).as_str())
    );
    assert!(receiver.take().is_empty(), "creating a session emits nothing");

    // WHEN the payer pays it with Stripe's visa test card, through the control API
    let (status, outcome) = control(
        &sim,
        &format!("_sim/checkout/sessions/{}/complete", session.id),
        json!({"card": "pm_card_visa"}),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");

    // THEN the webhook endpoint got both events, signed, in Stripe's order
    let received = receiver.take();
    let types: Vec<String> = received.iter().map(Received::event_type).collect();
    assert_eq!(types, ["payment_intent.succeeded", "checkout.session.completed"]);
    assert!(
        received
            .iter()
            .all(|r| r.content_type.starts_with("application/json"))
    );
    let completed = received[1].verify();
    assert_eq!(
        completed.api_version.as_ref().map(|v| v.as_str()),
        Some(stripe_sim::API_VERSION)
    );
    let EventObject::CheckoutSessionCompleted(paid) = completed.data.object else {
        panic!("not a checkout.session.completed object");
    };
    assert_eq!(paid.id, session.id);
    assert_eq!(paid.payment_status, CheckoutSessionPaymentStatus::Paid);
    assert_eq!(paid.metadata.as_ref().unwrap()["org"], "org_1");
    assert_eq!(paid.client_reference_id.as_deref(), Some("org_1"));
    assert_eq!(paid.customer.as_ref().unwrap().id(), &customer.id);
    assert_eq!(paid.amount_total, Some(2500));
    let pi_id = paid.payment_intent.as_ref().unwrap().id().clone();
    let EventObject::PaymentIntentSucceeded(pi_event) = received[0].verify().data.object else {
        panic!("not a payment_intent.succeeded object");
    };
    assert_eq!(pi_event.id, pi_id);
    assert_eq!(
        pi_event.metadata["org"], "org_1",
        "payment_intent_data[metadata] reaches the intent"
    );

    // AND the API shows the session paid and the card saved on the customer
    let session = RetrieveCheckoutSession::new(session.id.clone())
        .send(&client)
        .await
        .unwrap();
    assert_eq!(session.status, Some(CheckoutSessionStatus::Complete));
    assert_eq!(session.url, None);
    let intent = RetrievePaymentIntent::new(pi_id).send(&client).await.unwrap();
    assert_eq!(intent.status, PaymentIntentStatus::Succeeded);
    assert_eq!(intent.amount_received, 2500);
    let saved_card = intent.payment_method.as_ref().unwrap().id().to_string();
    let (status, _, methods) = http(
        "GET",
        &format!("{}v1/customers/{}/payment_methods", sim.base_url(), customer.id),
        &[KEY],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let methods: serde_json::Value = serde_json::from_str(&methods).unwrap();
    assert_eq!(methods["data"][0]["id"], saved_card.as_str());
    assert_eq!(methods["data"][0]["card"]["last4"], "4242");

    // WHEN the recharge function charges the saved card off session
    let recharge = off_session_payment(&customer.id, &saved_card, 10_000, "org_1")
        .send(&client)
        .await
        .unwrap();

    // THEN it succeeds at once with a charge, and payment_intent.succeeded follows
    assert_eq!(recharge.status, PaymentIntentStatus::Succeeded);
    assert_eq!(recharge.amount_received, 10_000);
    assert!(
        recharge
            .latest_charge
            .as_ref()
            .unwrap()
            .id()
            .as_str()
            .starts_with("ch_")
    );
    sim.flush_webhooks().await;
    let received = receiver.take();
    assert_eq!(received.len(), 1);
    let EventObject::PaymentIntentSucceeded(pi) = received[0].verify().data.object else {
        panic!("not a payment_intent.succeeded object");
    };
    assert_eq!(pi.id, recharge.id);
    let event = received[0].json();
    assert!(
        event["request"]["id"].as_str().unwrap().starts_with("req_"),
        "an API call is the event's request"
    );

    // AND once the saved card starts declining, the next recharge fails with the decline
    sim.set_card(&saved_card, "pm_card_chargeDeclinedInsufficientFunds")
        .unwrap();
    let (error, status) = stripe_error(
        off_session_payment(&customer.id, &saved_card, 10_000, "org_1")
            .send(&client)
            .await,
    );
    assert_eq!(status, 402);
    assert_eq!(error.decline_code.as_deref(), Some("insufficient_funds"));
}

#[tokio::test]
async fn off_session_declines_are_card_errors_with_stripes_codes() {
    let (sim, mut receiver) = sim_with_receiver().await;
    let client = stripe(&sim);
    let customer = create_customer(&client, "org_2").await;

    for (card, decline_code, message) in [
        (
            "pm_card_chargeDeclined",
            "generic_decline",
            "Your card was declined.",
        ),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "insufficient_funds",
            "Your card has insufficient funds.",
        ),
    ] {
        let result = off_session_payment(&customer.id, card, 5_000, "org_2")
            .send(&client)
            .await;
        let (error, status) = stripe_error(result);
        assert_eq!(status, 402, "{card}");
        assert_eq!(error.type_, ApiErrorsType::CardError, "{card}");
        assert_eq!(error.code, Some(ApiErrorsCode::CardDeclined), "{card}");
        assert_eq!(error.decline_code.as_deref(), Some(decline_code), "{card}");
        assert_eq!(error.message.as_deref(), Some(message), "{card}");
        assert!(
            error.charge.as_deref().unwrap().starts_with("ch_"),
            "{card}: the failed charge"
        );
        let intent = error
            .payment_intent
            .as_ref()
            .expect("the PaymentIntent comes with the error");
        assert_eq!(
            intent.status,
            PaymentIntentStatus::RequiresPaymentMethod,
            "{card}"
        );
        assert_eq!(intent.metadata["org"], "org_2");

        // the webhooks function hears of it too
        sim.flush_webhooks().await;
        let received = receiver.take();
        assert_eq!(received.len(), 1, "{card}");
        let EventObject::PaymentIntentPaymentFailed(failed) = received[0].verify().data.object else {
            panic!("{card}: not a payment_intent.payment_failed object");
        };
        assert_eq!(failed.id, intent.id);
        let last_error = failed.last_payment_error.as_ref().unwrap();
        assert_eq!(last_error.decline_code.as_deref(), Some(decline_code));
    }
}

#[tokio::test]
async fn a_card_that_needs_authentication_fails_off_session_and_asks_for_action_on_session() {
    let (sim, _receiver) = sim_with_receiver().await;
    let client = stripe(&sim);
    let customer = create_customer(&client, "org_3").await;

    // GIVEN a 3-D Secure card saved at checkout (the payer authenticated there)
    let session = create_checkout(&client, &customer.id, "org_3", 2000).await;
    let outcome = sim
        .complete_checkout(
            &session.id,
            stripe_sim::CompleteCheckout::card("pm_card_authenticationRequired"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.object["payment_status"], "paid");
    let pi_id = outcome.object["payment_intent"].as_str().unwrap().to_string();
    let intent = RetrievePaymentIntent::new(pi_id).send(&client).await.unwrap();
    let saved_card = intent.payment_method.as_ref().unwrap().id().to_string();

    // WHEN it is charged off session THEN Stripe's authentication_required card error
    let (error, status) = stripe_error(
        off_session_payment(&customer.id, &saved_card, 2000, "org_3")
            .send(&client)
            .await,
    );
    assert_eq!(status, 402);
    assert_eq!(error.type_, ApiErrorsType::CardError);
    assert_eq!(error.code, Some(ApiErrorsCode::AuthenticationRequired));
    assert_eq!(
        error.payment_intent.as_ref().unwrap().status,
        PaymentIntentStatus::RequiresPaymentMethod
    );

    // WHEN it is confirmed with the payer present THEN the intent waits for 3-D Secure
    let on_session = CreatePaymentIntent::new(2000, Currency::USD)
        .customer(customer.id.as_str())
        .payment_method(saved_card.as_str())
        .confirm(true)
        .send(&client)
        .await
        .unwrap();
    assert_eq!(on_session.status, PaymentIntentStatus::RequiresAction);
    assert_eq!(on_session.next_action.as_ref().unwrap().type_, "use_stripe_sdk");
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_other_parameters() {
    let (sim, mut receiver) = sim_with_receiver().await;
    let client = stripe(&sim);
    let customer = create_customer(&client, "org_4").await;
    let key = || RequestStrategy::Idempotent(IdempotencyKey::new("recharge-attempt-1").unwrap());

    let first = off_session_payment(&customer.id, "pm_card_visa", 10_000, "org_4")
        .customize()
        .request_strategy(key())
        .send(&client)
        .await
        .unwrap();
    let replay = off_session_payment(&customer.id, "pm_card_visa", 10_000, "org_4")
        .customize()
        .request_strategy(key())
        .send(&client)
        .await
        .unwrap();
    assert_eq!(replay.id, first.id);
    assert_eq!(
        replay.latest_charge.as_ref().unwrap().id(),
        first.latest_charge.as_ref().unwrap().id()
    );

    let conflicting = off_session_payment(&customer.id, "pm_card_visa", 20_000, "org_4")
        .customize()
        .request_strategy(key())
        .send(&client)
        .await;
    let (error, status) = stripe_error(conflicting);
    assert_eq!(status, 400);
    assert_eq!(error.type_, ApiErrorsType::IdempotencyError);

    // the replay charged nothing more: one payment, one event
    sim.flush_webhooks().await;
    let events: Vec<String> = receiver.take().iter().map(Received::event_type).collect();
    assert_eq!(events, ["payment_intent.succeeded"]);
    let succeeded = sim
        .events()
        .iter()
        .filter(|e| e["type"] == "payment_intent.succeeded")
        .count();
    assert_eq!(succeeded, 1);
}

#[tokio::test]
async fn a_declined_payment_replays_its_402_under_the_same_key() {
    let (sim, _receiver) = sim_with_receiver().await;
    let client = stripe(&sim);
    let customer = create_customer(&client, "org_5").await;
    let send = || {
        off_session_payment(&customer.id, "pm_card_chargeDeclined", 10_000, "org_5")
            .customize()
            .request_strategy(RequestStrategy::Idempotent(
                IdempotencyKey::new("attempt-7").unwrap(),
            ))
            .send(&client)
    };
    let (first, _) = stripe_error(send().await);
    let (again, status) = stripe_error(send().await);
    assert_eq!(status, 402);
    assert_eq!(
        again.payment_intent.as_ref().unwrap().id,
        first.payment_intent.as_ref().unwrap().id
    );
    let failed = sim
        .events()
        .iter()
        .filter(|e| e["type"] == "payment_intent.payment_failed")
        .count();
    assert_eq!(failed, 1);
}

#[tokio::test]
async fn customers_are_listed_and_retrieved_and_unknown_ones_are_resource_missing() {
    let sim = stripe_sim::StripeSim::start().await.unwrap();
    let client = stripe(&sim);
    let first = create_customer(&client, "org_a").await;
    let _second = create_customer(&client, "org_b").await;

    let found = ListCustomer::new()
        .email("billing@org_a.example")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(found.data.len(), 1);
    assert_eq!(found.data[0].id, first.id);
    let all = ListCustomer::new().limit(1).send(&client).await.unwrap();
    assert_eq!(all.data.len(), 1);
    assert!(all.has_more);

    let RetrieveCustomerReturned::Customer(again) = RetrieveCustomer::new(first.id.clone())
        .send(&client)
        .await
        .unwrap()
    else {
        panic!("not a customer");
    };
    assert_eq!(again.email.as_deref(), Some("billing@org_a.example"));

    match RetrieveCustomer::new("cus_nope").send(&client).await {
        Err(StripeError::Stripe(error, 404)) => {
            assert_eq!(error.type_, ApiErrorsType::InvalidRequestError);
            assert_eq!(error.code, Some(ApiErrorsCode::ResourceMissing));
            assert_eq!(error.param.as_deref(), Some("id"));
        }
        other => panic!("expected a 404, got {other:?}"),
    }
}

#[tokio::test]
async fn only_test_mode_secret_keys_are_accepted() {
    let sim = stripe_sim::StripeSim::start().await.unwrap();
    for key in ["sk_live_0123456789abcdef", "pk_test_0123456789abcdef"] {
        let client = stripe::ClientBuilder::new(key)
            .url(sim.base_url())
            .build()
            .unwrap();
        match stripe_core::customer::CreateCustomer::new().send(&client).await {
            Err(StripeError::Stripe(error, 401)) => {
                assert_eq!(error.type_, ApiErrorsType::InvalidRequestError);
                let message = error.message.unwrap();
                assert!(message.starts_with("Invalid API Key provided"), "{message}");
                assert!(
                    !message.contains("0123456789abcdef"),
                    "the key is redacted: {message}"
                );
            }
            other => panic!("{key}: expected a 401, got {other:?}"),
        }
    }
}

/// A billing portal session as the functions read it (async-stripe has no type for it
/// without its billing crate).
#[derive(miniserde::Deserialize)]
struct PortalSession {
    id: String,
    object: String,
    customer: String,
    return_url: Option<String>,
    url: String,
    created: i64,
    livemode: bool,
    configuration: String,
    locale: Option<String>,
    on_behalf_of: Option<String>,
}

#[tokio::test]
async fn a_plan_bought_at_checkout_reads_as_async_stripes_subscription_price_and_invoices() {
    let (sim, _receiver) = sim_with_receiver().await;
    let client = stripe(&sim);
    // GIVEN the plans (one through the control route, as infra/local would)
    sim.add_price("price_team_monthly", 5000, Some("month")).unwrap();
    let (status, pro) = control(
        &sim,
        "_sim/prices",
        json!({"id": "price_pro_monthly", "unit_amount": 9000, "interval": "month", "name": "Pro"}),
    )
    .await;
    assert_eq!(status, 200, "{pro}");
    let price: stripe_shared::Price = get_typed(&client, "/prices/price_team_monthly").await.unwrap();
    assert_eq!(price.id.as_str(), "price_team_monthly");
    assert_eq!(price.type_.as_str(), "recurring");
    assert_eq!(price.unit_amount, Some(5000));
    assert!(price.active);
    assert!(price.product.id().as_str().starts_with("prod_"));
    let recurring = price.recurring.as_ref().unwrap();
    assert_eq!(
        (
            recurring.interval.as_str(),
            recurring.interval_count,
            recurring.usage_type.as_str()
        ),
        ("month", 1, "licensed")
    );

    // WHEN the org subscribes at Checkout
    let customer = create_customer(&client, "org_1").await;
    let session = create_subscription_checkout(&client, &customer.id, "org_1", "price_team_monthly").await;
    assert_eq!(session.mode.as_str(), "subscription");
    assert_eq!(session.amount_total, Some(5000));
    let outcome = sim
        .complete_checkout(&session.id, stripe_sim::CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    assert_eq!(
        outcome.event_types(),
        [
            "customer.subscription.created",
            "payment_intent.succeeded",
            "invoice.paid",
            "invoice_payment.paid",
            "checkout.session.completed"
        ]
    );

    // THEN the session names the subscription and its paid invoice
    let session = RetrieveCheckoutSession::new(session.id.clone())
        .send(&client)
        .await
        .unwrap();
    assert_eq!(session.status, Some(CheckoutSessionStatus::Complete));
    assert_eq!(session.payment_status, CheckoutSessionPaymentStatus::Paid);
    let sub_id = session.subscription.as_ref().unwrap().id().to_string();
    let first_invoice = session
        .invoice
        .as_ref()
        .unwrap()
        .id()
        .as_ref()
        .unwrap()
        .to_string();

    // AND the subscription reads as async-stripe's Subscription
    let subscription: stripe_shared::Subscription = get_typed(&client, &format!("/subscriptions/{sub_id}"))
        .await
        .unwrap();
    assert_eq!(subscription.status.as_str(), "active");
    assert_eq!(subscription.customer.id(), &customer.id);
    assert_eq!(subscription.metadata["org"], "org_1");
    assert!(!subscription.cancel_at_period_end);
    let card = subscription
        .default_payment_method
        .as_ref()
        .unwrap()
        .id()
        .to_string();
    let item = &subscription.items.data[0];
    assert!(item.id.as_str().starts_with("si_"));
    assert_eq!(item.price.id.as_str(), "price_team_monthly");
    assert_eq!(item.quantity, Some(1));
    assert_eq!(item.subscription, sub_id);
    let month = item.current_period_end - item.current_period_start;
    assert!((28 * 86_400..=31 * 86_400).contains(&month), "{month}");
    // the card is saved on the customer
    let (_, methods) = get_v1(&sim, &format!("v1/customers/{}/payment_methods", customer.id)).await;
    assert_eq!(methods["data"][0]["id"], card.as_str());

    // WHEN the org upgrades, invoiced at once
    let upgraded: stripe_shared::Subscription = post_typed(
        &client,
        &format!("/subscriptions/{sub_id}"),
        &[
            ("items[0][id]", item.id.as_str()),
            ("items[0][price]", "price_pro_monthly"),
            ("proration_behavior", "always_invoice"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(upgraded.items.data[0].price.id.as_str(), "price_pro_monthly");
    assert_eq!(upgraded.items.data[0].id, item.id, "the item stays");
    assert_eq!(
        upgraded.items.data[0].current_period_end, item.current_period_end,
        "the period stays"
    );

    // THEN the subscription's invoices list newest first: the proration, then the first
    let invoices: stripe_types::List<stripe_shared::Invoice> =
        get_typed(&client, &format!("/invoices?subscription={sub_id}"))
            .await
            .unwrap();
    assert_eq!(invoices.url, "/v1/invoices");
    assert!(!invoices.has_more);
    assert_eq!(invoices.data.len(), 2);
    let (proration, first) = (&invoices.data[0], &invoices.data[1]);
    assert_eq!(first.id.as_ref().unwrap().as_str(), first_invoice);
    assert_eq!(
        first.billing_reason.as_ref().unwrap().as_str(),
        "subscription_create"
    );
    assert_eq!(first.amount_paid, 5000);
    assert_eq!(upgraded.latest_invoice.as_ref().unwrap().id(), &proration.id);
    assert_eq!(
        proration.billing_reason.as_ref().unwrap().as_str(),
        "subscription_update"
    );
    assert_eq!(proration.status.as_ref().unwrap().as_str(), "paid");
    let parent = proration
        .parent
        .as_ref()
        .unwrap()
        .subscription_details
        .as_ref()
        .unwrap();
    assert_eq!(parent.subscription.id().as_str(), sub_id);
    let lines: Vec<(i64, bool, String)> = proration
        .lines
        .data
        .iter()
        .map(|line| {
            let item = line
                .parent
                .as_ref()
                .unwrap()
                .subscription_item_details
                .as_ref()
                .unwrap();
            assert_eq!(item.subscription_item, upgraded.items.data[0].id.as_str());
            assert_eq!(line.period.end, item_period_end(&upgraded));
            let price = line.pricing.as_ref().unwrap().price_details.as_ref().unwrap();
            (line.amount, item.proration, price.price.id().to_string())
        })
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].0 < 0 && lines[0].1 && lines[0].2 == "price_team_monthly",
        "{lines:?}"
    );
    assert!(
        lines[1].0 > 0 && lines[1].1 && lines[1].2 == "price_pro_monthly",
        "{lines:?}"
    );
    assert_eq!(proration.total, lines[0].0 + lines[1].0);
    assert_eq!(proration.amount_paid, proration.total);
    assert!(proration.number.as_deref().unwrap().starts_with("SIM-"));

    // AND the PaymentIntent that paid the first invoice leads back to it
    let pi = sim
        .events()
        .iter()
        .find(|e| e["type"] == "invoice_payment.paid")
        .map(|e| {
            e["data"]["object"]["payment"]["payment_intent"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .unwrap();
    let (status, found) = get_v1(
        &sim,
        &format!("v1/invoice_payments?payment[type]=payment_intent&payment[payment_intent]={pi}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(found["data"][0]["invoice"], first_invoice.as_str());

    // AND the billing portal shows the customer's card and invoices, with a way back
    let portal: PortalSession = post_typed(
        &client,
        "/billing_portal/sessions",
        &[
            ("customer", customer.id.as_str()),
            ("return_url", "http://127.0.0.1:1/billing"),
        ],
    )
    .await
    .unwrap();
    assert!(portal.id.starts_with("bps_"));
    assert_eq!(portal.object, "billing_portal.session");
    assert_eq!(portal.customer, customer.id.as_str());
    assert_eq!(portal.return_url.as_deref(), Some("http://127.0.0.1:1/billing"));
    assert_eq!(portal.url, format!("{}portal/{}", sim.base_url(), portal.id));
    assert!(portal.created > 0 && !portal.livemode);
    assert_eq!(portal.configuration, "bpc_sim");
    assert_eq!((portal.locale, portal.on_behalf_of), (None, None));
    let (status, _, page) = http("GET", &portal.url, &[], "").await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>Billing portal</title>"), "{page}");
    assert!(page.contains("visa •••• 4242"), "{page}");
    assert!(
        page.contains(first.hosted_invoice_url.as_deref().unwrap()),
        "{page}"
    );
    assert!(
        page.contains(r#"<a href="http://127.0.0.1:1/billing">Return</a>"#),
        "{page}"
    );
    let unknown =
        post_typed::<PortalSession>(&client, "/billing_portal/sessions", &[("customer", "cus_nope")]).await;
    match unknown {
        Err(StripeError::Stripe(error, 400)) => {
            assert_eq!(error.code, Some(ApiErrorsCode::ResourceMissing));
            assert_eq!(error.param.as_deref(), Some("customer"));
        }
        Err(other) => panic!("expected a 400, got {other:?}"),
        Ok(_) => panic!("expected a 400"),
    }
}

fn item_period_end(subscription: &stripe_shared::Subscription) -> i64 {
    subscription.items.data[0].current_period_end
}

#[tokio::test]
async fn a_one_time_checkout_with_invoice_creation_gets_a_paid_invoice() {
    use stripe_checkout::checkout_session::{
        CreateCheckoutSession, CreateCheckoutSessionInvoiceCreation,
        CreateCheckoutSessionInvoiceCreationInvoiceData, CreateCheckoutSessionLineItems,
        CreateCheckoutSessionPaymentIntentData,
    };
    let (sim, mut receiver) = sim_with_receiver().await;
    let client = stripe(&sim);
    sim.add_price("price_credits_50", 5000, None).unwrap();
    let customer = create_customer(&client, "org_1").await;
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price = Some("price_credits_50".into());
    item.quantity = Some(1);
    let mut invoice_data = CreateCheckoutSessionInvoiceCreationInvoiceData::new();
    invoice_data.metadata = Some(org_metadata("org_1"));
    invoice_data.description = Some("Agent credits".into());
    let mut invoice_creation = CreateCheckoutSessionInvoiceCreation::new(true);
    invoice_creation.invoice_data = Some(invoice_data);
    let mut intent_data = CreateCheckoutSessionPaymentIntentData::new();
    intent_data.receipt_email = Some("receipts@org_1.example".into());
    let session = CreateCheckoutSession::new()
        .mode(stripe_checkout::CheckoutSessionMode::Payment)
        .line_items(vec![item])
        .customer(customer.id.as_str())
        .success_url("http://127.0.0.1:1/done")
        .invoice_creation(invoice_creation)
        .payment_intent_data(intent_data)
        .send(&client)
        .await
        .unwrap();
    assert!(session.invoice_creation.as_ref().unwrap().enabled);

    sim.complete_checkout(&session.id, stripe_sim::CompleteCheckout::default())
        .await
        .unwrap();
    let events: Vec<_> = receiver.take().iter().map(Received::verify).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.type_.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "payment_intent.succeeded",
            "checkout.session.completed",
            "invoice.paid",
            "invoice_payment.paid"
        ]
    );
    let EventObject::CheckoutSessionCompleted(completed) = &events[1].data.object else {
        panic!("not a checkout session");
    };
    let EventObject::InvoicePaid(invoice) = &events[2].data.object else {
        panic!("not an invoice");
    };
    assert_eq!(completed.invoice.as_ref().unwrap().id(), &invoice.id);
    assert_eq!(invoice.billing_reason.as_ref().unwrap().as_str(), "manual");
    assert!(invoice.parent.is_none());
    assert_eq!(invoice.metadata.as_ref().unwrap()["org"], "org_1");
    assert_eq!(invoice.description.as_deref(), Some("Agent credits"));
    assert_eq!(
        (invoice.total, invoice.amount_paid, invoice.amount_remaining),
        (5000, 5000, 0)
    );
    assert_eq!(invoice.customer_email.as_deref(), Some("billing@org_1.example"));
    assert!(invoice.status_transitions.paid_at.is_some());
    let pi = completed.payment_intent.as_ref().unwrap().id().clone();
    let EventObject::InvoicePaymentPaid(paid) = &events[3].data.object else {
        panic!("not an invoice payment");
    };
    assert_eq!(paid.payment.payment_intent.as_ref().unwrap().id(), &pi);
    let intent = RetrievePaymentIntent::new(pi).send(&client).await.unwrap();
    assert_eq!(intent.receipt_email.as_deref(), Some("receipts@org_1.example"));

    // payment mode sells one-time prices, not recurring ones
    let (status, error) = post_v1(
        &sim,
        "v1/checkout/sessions",
        "mode=payment&line_items[0][price]=price_credits_50&line_items[0][quantity]=1",
    )
    .await;
    assert_eq!(status, 200, "{error}");
    sim.add_price("price_monthly", 1000, Some("month")).unwrap();
    let (status, error) = post_v1(
        &sim,
        "v1/checkout/sessions",
        "mode=payment&line_items[0][price]=price_monthly&line_items[0][quantity]=1",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], "line_items[0][price]");

    // POST /v1/payment_intents keeps receipt_email too
    let intent = CreatePaymentIntent::new(1000, Currency::USD)
        .receipt_email("a@b.example")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(intent.receipt_email.as_deref(), Some("a@b.example"));
}

#[tokio::test]
async fn an_invoice_for_a_payment_made_elsewhere_is_drafted_finalized_and_paid_out_of_band() {
    let (sim, mut receiver) = sim_with_receiver().await;
    let client = stripe(&sim);
    let customer = create_customer(&client, "org_1").await;

    let draft: stripe_shared::Invoice = post_typed(
        &client,
        "/invoices",
        &[
            ("customer", customer.id.as_str()),
            ("auto_advance", "false"),
            ("collection_method", "charge_automatically"),
            ("description", "Auto top-up"),
            ("metadata[org]", "org_1"),
            ("pending_invoice_items_behavior", "exclude"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(draft.status.as_ref().unwrap().as_str(), "draft");
    assert_eq!(draft.number, None);
    let id = draft.id.as_ref().unwrap().to_string();
    let (status, item) = post_v1(
        &sim,
        "v1/invoiceitems",
        &format!(
            "customer={}&invoice={id}&amount=2500&currency=usd&description=Credits&metadata[org]=org_1",
            customer.id
        ),
    )
    .await;
    assert_eq!(status, 200, "{item}");
    assert_eq!(item["object"], "invoiceitem");
    let other = create_customer(&client, "org_2").await;
    let (status, error) = post_v1(
        &sim,
        "v1/invoiceitems",
        &format!("customer={}&invoice={id}&amount=100&currency=usd", other.id),
    )
    .await;
    assert_eq!(status, 400, "{error}");

    let open: stripe_shared::Invoice = post_typed(&client, &format!("/invoices/{id}/finalize"), &[])
        .await
        .unwrap();
    assert_eq!(open.status.as_ref().unwrap().as_str(), "open");
    assert_eq!(
        (open.total, open.amount_due, open.amount_remaining),
        (2500, 2500, 2500)
    );
    let number = open.number.clone().unwrap();
    assert!(number.starts_with("SIM-"), "{number}");
    let hosted = open.hosted_invoice_url.clone().unwrap();
    assert_eq!(hosted, format!("{}invoices/{id}", sim.base_url()));
    assert_eq!(open.invoice_pdf.clone().unwrap(), format!("{hosted}/pdf"));

    // paid out of band, twice under one Idempotency-Key: one payment, one event
    let pay = || {
        RequestBuilder::new(StripeMethod::Post, format!("/invoices/{id}/pay"))
            .form(
                &[("paid_out_of_band", "true")]
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .customize::<stripe_shared::Invoice>()
            .request_strategy(RequestStrategy::Idempotent(
                IdempotencyKey::new("topup-1").unwrap(),
            ))
            .send(&client)
    };
    let paid = pay().await.unwrap();
    let again = pay().await.unwrap();
    assert_eq!(paid.status.as_ref().unwrap().as_str(), "paid");
    assert_eq!((paid.amount_paid, paid.amount_remaining), (2500, 0));
    assert_eq!(again.status_transitions.paid_at, paid.status_transitions.paid_at);
    assert_eq!(paid.number.as_deref(), Some(number.as_str()));
    let (_, raw) = get_v1(&sim, &format!("v1/invoices/{id}")).await;
    assert_eq!(raw["paid_out_of_band"], true);
    sim.flush_webhooks().await;
    let kinds: Vec<String> = receiver.take().iter().map(Received::event_type).collect();
    assert_eq!(kinds, ["invoice.paid"]);
    assert!(
        sim.events()
            .iter()
            .all(|e| e["type"] != "payment_intent.succeeded"),
        "no PaymentIntent pays an invoice paid out of band"
    );

    // its pages open in a browser
    let (status, _, page) = http("GET", &hosted, &[], "").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!("Invoice {number}")) && page.contains("paid"),
        "{page}"
    );
    let (status, headers, pdf) = http("GET", &format!("{hosted}/pdf"), &[], "").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(pdf.contains(&number), "{pdf}");

    // the list: newest first, a page at a time
    for _ in 0..2 {
        let _: stripe_shared::Invoice =
            post_typed(&client, "/invoices", &[("customer", customer.id.as_str())])
                .await
                .unwrap();
    }
    let first: stripe_types::List<stripe_shared::Invoice> =
        get_typed(&client, &format!("/invoices?customer={}&limit=2", customer.id))
            .await
            .unwrap();
    assert_eq!(first.data.len(), 2);
    assert!(first.has_more);
    let last = first.data[1].id.as_ref().unwrap().to_string();
    let rest: stripe_types::List<stripe_shared::Invoice> = get_typed(
        &client,
        &format!("/invoices?customer={}&limit=2&starting_after={last}", customer.id),
    )
    .await
    .unwrap();
    assert_eq!(rest.data.len(), 1);
    assert!(!rest.has_more);
    assert_eq!(rest.data[0].id.as_ref().unwrap().as_str(), id);
    let paid_only: stripe_types::List<stripe_shared::Invoice> = get_typed(
        &client,
        &format!("/invoices?customer={}&status=paid", customer.id),
    )
    .await
    .unwrap();
    assert_eq!(paid_only.data.len(), 1);
}
