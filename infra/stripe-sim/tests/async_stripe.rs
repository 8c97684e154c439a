//! The calls the checkout, webhooks and recharge functions make, through the real
//! async-stripe client pointed at the simulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use stripe::{ApiErrorsCode, ApiErrorsType, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_checkout::checkout_session::RetrieveCheckoutSession;
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
