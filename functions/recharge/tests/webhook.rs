//! The recharge function and the webhooks function settle the same attempt: whichever of
//! the sweep and Stripe's event comes first, a top-up is credited once and a failure
//! notified once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use webhooks::{Plans, Webhooks, handle};

const SECRET: &str = "whsec_recharge_tests";

fn webhooks(app: &App) -> Webhooks {
    Webhooks {
        store: DynamoWalletStore::new(app.svc.store.client().clone(), "credits", Arc::new(SystemClock)),
        recharges: app.svc.recharges.clone(),
        signing_secret: SECRET.into(),
        payments: None,
        plans: Plans::default(),
    }
}

/// Delivers the simulator's newest event of `kind`, signed as Stripe signs.
async fn deliver(app: &App, kind: &str) -> Value {
    let event = app
        .sim
        .events()
        .into_iter()
        .rev()
        .find(|e| e["type"] == kind)
        .expect(kind);
    let body = event.to_string();
    let mut e = support::event("webhooks/stripe-event.json");
    let t = chrono::Utc::now().timestamp();
    e["headers"]["stripe-signature"] = json!(stripe_sim::signature_header(SECRET, t, &body).unwrap());
    e["body"] = json!(body);
    let svc = webhooks(app);
    let (status, body) = support::contract::call(&e, |req| handle(&svc, req)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A sweep's claim and Stripe call, then nothing: the sweep died.
async fn claimed_and_sent(app: &App, attempt: &str) {
    let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
    let claim = app
        .svc
        .recharges
        .claim(
            &due(app).await,
            attempt,
            &config,
            agent_credits_domain::Usd::ZERO,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(claim, Claim::Claimed);
    let a = app
        .svc
        .recharges
        .attempt(&app.org, attempt)
        .await
        .unwrap()
        .unwrap();
    let _ = send_intent(&app.svc, &app.org, &a).await;
}

#[tokio::test]
async fn stripes_success_event_credits_the_top_up_and_the_next_sweep_adds_nothing() {
    let app = app(0).await;
    enable(&app, 3).await;
    spend(&app, "15", "usage:1").await;
    claimed_and_sent(&app, "ra_webhook_first").await;

    let reply = deliver(&app, "payment_intent.succeeded").await;
    assert_eq!(reply["result"], "credited", "{reply}");
    assert_eq!(balance(&app).await, usd("115"));
    assert_eq!(
        app.svc
            .recharges
            .attempt_state(&app.org, "ra_webhook_first")
            .await
            .unwrap()
            .as_deref(),
        Some("succeeded")
    );
    assert_eq!(notifications(&app, "credit_auto_recharge_triggered").await, 1);

    let report = sweep(&app.svc).await.unwrap();
    assert_eq!(
        (report.due, report.charged),
        (0, 0),
        "the credit ended the mark: {report:?}"
    );
    assert_eq!((top_ups(&app).await, charges(&app)), (1, 1));
}

#[tokio::test]
async fn stripes_failure_event_fails_the_attempt_once_and_suspends_recharge() {
    let app = app(0).await;
    enable(&app, 3).await;
    app.sim
        .set_card(&app.card, "pm_card_chargeDeclinedInsufficientFunds")
        .unwrap();
    spend(&app, "15", "usage:1").await;
    claimed_and_sent(&app, "ra_declined").await;

    let reply = deliver(&app, "payment_intent.payment_failed").await;
    assert_eq!(reply["result"], "recharge_failed", "{reply}");
    let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
    assert_eq!(config.suspended.as_deref(), Some("insufficient_funds"));
    assert!(config.in_flight.is_none());
    // Again, and then a sweep: nothing more.
    deliver(&app, "payment_intent.payment_failed").await;
    let report = sweep(&app.svc).await.unwrap();
    assert_eq!((report.charged, report.failed), (0, 0), "{report:?}");
    assert_eq!(notifications(&app, "credit_purchase_failed").await, 1);
    assert_eq!(
        app.svc
            .recharges
            .attempt_state(&app.org, "ra_declined")
            .await
            .unwrap()
            .as_deref(),
        Some("failed")
    );
    assert_eq!(balance(&app).await, usd("15"));
}
