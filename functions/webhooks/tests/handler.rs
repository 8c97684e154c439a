//! The webhooks handler with real Stripe events: sessions created through async-stripe
//! against the project's Stripe simulator, paid there, and their events signed with
//! Stripe's scheme; the wallet on dynoxide over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[tokio::test]
async fn a_paid_checkout_credits_once_with_its_stripe_ids() {
    let app = app().await;
    let session = session(&app, standard_metadata()).await;
    app.sim
        .complete_checkout(&session, CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();

    let event = delivery(&app, "checkout.session.completed", SECRET, now());
    let (status, body) = call(&app.svc, &event).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("credited")),
        "{body}"
    );
    // Stripe delivers again (a retry, a duplicate): answered from the event's receipt.
    for _ in 0..3 {
        let (status, body) = call(&app.svc, &event).await;
        assert_eq!((status, body["result"].as_str()), (200, Some("duplicate_event")));
    }
    // Another event about the same payment (a new event id) finds the credit made.
    let mut other: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
    other["id"] = json!("evt_another_event_same_payment");
    let (status, body) = call(&app.svc, &signed(other.to_string(), SECRET, now())).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("already_credited")));
    let wallet = app.svc.store.wallet(&app.org).await.unwrap();
    assert_eq!(wallet.balance().unwrap(), Usd::parse("100").unwrap());
    let entries = purchases(&app).await;
    assert_eq!(entries.len(), 1);
    let refs = &entries[0].external;
    assert_eq!(refs.checkout_session.as_deref(), Some(session.as_str()));
    assert!(
        refs.payment_intent
            .as_deref()
            .is_some_and(|p| p.starts_with("pi_")),
        "{refs:?}"
    );
    assert!(
        refs.stripe_event
            .as_deref()
            .is_some_and(|e| e.starts_with("evt_")),
        "{refs:?}"
    );
    assert_eq!(
        entries[0].attribution.member.as_ref().unwrap().as_str(),
        "u_owner"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_simultaneous_deliveries_credit_once() {
    let app = app().await;
    let session = session(&app, standard_metadata()).await;
    app.sim
        .complete_checkout(&session, CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    let event = delivery(&app, "checkout.session.completed", SECRET, now());
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (svc, event) = (app.svc.clone(), event.clone());
            tokio::spawn(async move { call(&svc, &event).await })
        })
        .collect();
    let mut credited = 0;
    for h in handles {
        let (status, body) = h.await.unwrap();
        assert_eq!(status, 200, "{body}");
        credited += usize::from(body["result"] == "credited");
    }
    assert_eq!(credited, 1);
    assert_eq!(
        app.svc.store.wallet(&app.org).await.unwrap().balance().unwrap(),
        Usd::parse("100").unwrap()
    );
}

#[tokio::test]
async fn an_async_payment_credits_when_it_clears_whatever_the_order_of_events() {
    let app = app().await;
    let session = session(&app, standard_metadata()).await;
    app.sim
        .complete_checkout(&session, CompleteCheckout::bank_account())
        .await
        .unwrap();
    let completed = delivery(&app, "checkout.session.completed", SECRET, now());
    app.sim.settle_async_payment(&session, true).await.unwrap();
    let succeeded = delivery(&app, "checkout.session.async_payment_succeeded", SECRET, now());

    // Out of order: the success first, then the (unpaid) completion, then both again.
    let (_, body) = call(&app.svc, &succeeded).await;
    assert_eq!(body["result"], "credited");
    let (_, body) = call(&app.svc, &completed).await;
    assert_eq!(body["result"], "awaiting_payment");
    call(&app.svc, &succeeded).await;
    call(&app.svc, &completed).await;
    assert_eq!(purchases(&app).await.len(), 1);
    assert_eq!(
        app.svc.store.wallet(&app.org).await.unwrap().balance().unwrap(),
        Usd::parse("100").unwrap()
    );
}

#[tokio::test]
async fn a_failed_async_payment_credits_nothing() {
    let app = app().await;
    let session = session(&app, standard_metadata()).await;
    app.sim
        .complete_checkout(&session, CompleteCheckout::bank_account())
        .await
        .unwrap();
    app.sim.settle_async_payment(&session, false).await.unwrap();
    for kind in [
        "checkout.session.completed",
        "checkout.session.async_payment_failed",
    ] {
        let (status, _) = call(&app.svc, &delivery(&app, kind, SECRET, now())).await;
        assert_eq!(status, 200);
    }
    assert!(purchases(&app).await.is_empty());
}

#[tokio::test]
async fn bad_signatures_are_refused_and_write_nothing() {
    let app = app().await;
    let session = session(&app, standard_metadata()).await;
    app.sim
        .complete_checkout(&session, CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    let good = delivery(&app, "checkout.session.completed", SECRET, now());

    let mut tampered = good.clone();
    tampered["body"] = json!(good["body"].as_str().unwrap().replace("100.00", "999.00"));
    let wrong_secret = delivery(&app, "checkout.session.completed", "whsec_someone_else", now());
    let stale = delivery(&app, "checkout.session.completed", SECRET, now() - 301);
    let mut missing = good.clone();
    missing["headers"]
        .as_object_mut()
        .unwrap()
        .remove("stripe-signature");
    for (what, event, code) in [
        ("tampered body", tampered, "invalid_signature"),
        ("wrong secret", wrong_secret, "invalid_signature"),
        ("older than 300 s", stale, "invalid_signature"),
        ("no header", missing, "missing_signature"),
    ] {
        let (status, body) = call(&app.svc, &event).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{what}: {body}"
        );
    }
    assert!(
        purchases(&app).await.is_empty(),
        "no refused delivery credited anything"
    );
    assert_eq!(app.svc.store.wallet(&app.org).await.unwrap().version, 0);
}

#[tokio::test]
async fn a_paid_session_without_an_org_is_refused_for_someone_to_see_and_other_events_are_ignored() {
    let app = app().await;
    let session = session(&app, metadata(&[("credits_usd", "100.00")])).await;
    app.sim
        .complete_checkout(&session, CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    let (status, body) = call(
        &app.svc,
        &delivery(&app, "checkout.session.completed", SECRET, now()),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("unmatched_payment"))
    );
    let (status, body) = call(
        &app.svc,
        &delivery(&app, "payment_intent.succeeded", SECRET, now()),
    )
    .await;
    assert_eq!((status, body["result"].as_str()), (200, Some("ignored")));
    assert!(purchases(&app).await.is_empty());
}

#[tokio::test]
async fn sessions_that_are_not_our_purchases_credit_nothing() {
    let app = app().await;
    let cases = [
        (
            "a price different from what Stripe charged",
            metadata(&[
                ("org", "org_demo"),
                ("credits_usd", "100.00"),
                ("price_usd", "10.00"),
            ]),
            Currency::USD,
        ),
        ("a currency other than usd", standard_metadata(), Currency::EUR),
        (
            "an unknown org",
            metadata(&[
                ("org", "org_nobody"),
                ("credits_usd", "100.00"),
                ("price_usd", "100.00"),
            ]),
            Currency::USD,
        ),
        (
            "no price",
            metadata(&[("org", "org_demo"), ("credits_usd", "100.00")]),
            Currency::USD,
        ),
    ];
    for (what, metadata, currency) in cases {
        let session = session_in(&app, metadata, currency).await;
        app.sim
            .complete_checkout(&session, CompleteCheckout::card("pm_card_visa"))
            .await
            .unwrap();
        let (status, body) = call(
            &app.svc,
            &delivery(&app, "checkout.session.completed", SECRET, now()),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("unmatched_payment")),
            "{what}: {body}"
        );
    }
    let mut not_json = signed("{not json".to_owned(), SECRET, now());
    not_json["headers"]["content-type"] = json!("application/json");
    let (status, _) = call(&app.svc, &not_json).await;
    assert_eq!(status, 400, "a signed body that is not an event");
    assert!(purchases(&app).await.is_empty());
    assert_eq!(
        app.svc.store.wallet(&app.org).await.unwrap().version,
        0,
        "nothing was written"
    );
}

#[tokio::test]
async fn a_header_with_several_v1_signatures_verifies_when_one_of_them_is_ours() {
    let app = app().await;
    let session = session(&app, standard_metadata()).await;
    app.sim
        .complete_checkout(&session, CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    let mut event = delivery(&app, "checkout.session.completed", SECRET, now());
    let body = event["body"].as_str().unwrap().to_owned();
    let t = now();
    // Stripe sends one v1 per active secret while a secret is being rolled.
    let theirs = signature_header("whsec_the_old_secret", t, &body).unwrap();
    let ours = signature_header(SECRET, t, &body).unwrap();
    let old_v1 = theirs.split_once(",v1=").unwrap().1;
    event["headers"]["stripe-signature"] = json!(format!("{ours},v1={old_v1}"));
    let (status, body) = call(&app.svc, &event).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("credited")),
        "{body}"
    );

    // Only foreign signatures: refused.
    let mut foreign = delivery(&app, "checkout.session.completed", "whsec_the_old_secret", now());
    let v1 = foreign["headers"]["stripe-signature"]
        .as_str()
        .unwrap()
        .to_owned();
    foreign["headers"]["stripe-signature"] = json!(format!("{v1},v1=00{}", &old_v1[2..]));
    let (status, _) = call(&app.svc, &foreign).await;
    assert_eq!(status, 400);
    assert_eq!(purchases(&app).await.len(), 1);
}
