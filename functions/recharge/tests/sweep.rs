//! The recharge sweep against dynoxide over HTTP and the project's Stripe simulator: a
//! card saved at a real (simulated) checkout, usage that takes the balance below the
//! threshold, and sweeps that charge it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[tokio::test]
async fn usage_below_the_threshold_is_topped_up_once_by_the_next_sweep() {
    let app = app(120).await;
    enable(&app, 3).await;
    assert_eq!(sweep(&app.svc).await.unwrap().due, 0, "not due above $20");

    spend(&app, "15", "usage:1").await; // $15 left
    let report = sweep(&app.svc).await.unwrap();
    assert_eq!((report.due, report.charged), (1, 1), "{report:?}");
    assert_eq!(balance(&app).await, usd("115"));
    assert_eq!(top_ups(&app).await, 1);
    assert_eq!(charges(&app), 1);
    assert_eq!(notifications(&app, "credit_auto_recharge_triggered").await, 1);

    // The mark ended with the credit: the next sweeps find nothing to do.
    for _ in 0..2 {
        let report = sweep(&app.svc).await.unwrap();
        assert_eq!(report.due, 0, "{report:?}");
    }
    assert_eq!((charges(&app), top_ups(&app).await), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sweeps_at_the_same_time_charge_once() {
    let app = app(120).await;
    enable(&app, 3).await;
    spend(&app, "15", "usage:1").await;
    let (a, b) = tokio::join!(sweep(&app.svc), sweep(&app.svc));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.charged + b.charged, 1, "{a:?} {b:?}");
    assert_eq!(charges(&app), 1);
    assert_eq!(top_ups(&app).await, 1);
    assert_eq!(balance(&app).await, usd("115"));
}

#[tokio::test]
async fn a_declined_card_fails_once_notifies_and_suspends_until_the_settings_change() {
    let app = app(120).await;
    enable(&app, 3).await;
    app.sim.set_card(&app.card, "pm_card_chargeDeclined").unwrap();
    spend(&app, "30", "usage:all").await; // $0: paused
    let report = sweep(&app.svc).await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    let wallet = app.svc.store.wallet(&app.org).await.unwrap();
    assert_eq!(wallet.state, WalletState::Paused(PauseReason::CreditsExhausted));
    assert_eq!(wallet.balance().unwrap(), Usd::ZERO);
    assert_eq!(notifications(&app, "credit_purchase_failed").await, 1);
    let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
    assert_eq!(config.suspended.as_deref(), Some("generic_decline"));
    assert!(config.in_flight.is_none());

    // Later sweeps do not retry.
    for _ in 0..2 {
        let report = sweep(&app.svc).await.unwrap();
        assert_eq!(
            (report.due, report.charged, report.failed),
            (0, 0, 0),
            "{report:?}"
        );
    }
    assert_eq!(
        notifications(&app, "credit_purchase_failed").await,
        1,
        "notified once"
    );

    // A working card, saved again: the org is charged and runs again.
    app.sim.set_card(&app.card, "pm_card_visa").unwrap();
    enable(&app, 3).await;
    let report = sweep(&app.svc).await.unwrap();
    assert_eq!(report.charged, 1, "{report:?}");
    let wallet = app.svc.store.wallet(&app.org).await.unwrap();
    assert_eq!(wallet.balance().unwrap(), usd("100"));
    assert_eq!(wallet.state, WalletState::Active);
}

#[tokio::test]
async fn a_cap_of_two_top_ups_a_day_allows_exactly_two_under_heavy_usage() {
    let app = app(120).await;
    enable(&app, 2).await;
    let mut capped = 0;
    for round in 0..5 {
        // Down to $15 each time: $15 -> top-up -> $115 -> spend $100 -> $15 ...
        let spent = if round == 0 { "15" } else { "100" };
        spend(&app, spent, &format!("usage:{round}")).await;
        capped += sweep(&app.svc).await.unwrap().cap_reached;
    }
    assert_eq!(top_ups(&app).await, 2);
    assert_eq!(charges(&app), 2);
    assert!(capped >= 1, "the third asked and was refused");
    assert_eq!(
        app.svc.recharges.due().await.unwrap().len(),
        1,
        "still due tomorrow"
    );
}

#[tokio::test]
async fn a_sweep_stopped_after_stripes_success_is_credited_exactly_once_later() {
    let app = app(0).await;
    enable(&app, 3).await;
    spend(&app, "15", "usage:1").await;
    // What a sweep does up to Stripe's answer, then it dies.
    let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
    let now = chrono::Utc::now();
    assert_eq!(
        app.svc
            .recharges
            .claim(&app.org, "ra_crashed", &config, now)
            .await
            .unwrap(),
        Claim::Claimed
    );
    let a = app
        .svc
        .recharges
        .attempt(&app.org, "ra_crashed")
        .await
        .unwrap()
        .unwrap();
    let pi = send_intent(&app.svc, &app.org, &a).await.unwrap();
    assert_eq!(charges(&app), 1, "Stripe charged");
    assert_eq!(balance(&app).await, usd("15"), "nothing credited yet");

    let report = sweep(&app.svc).await.unwrap();
    assert_eq!(report.charged, 1, "{report:?}");
    assert_eq!(charges(&app), 1, "the resumed request charged nothing more");
    assert_eq!(balance(&app).await, usd("115"));
    assert_eq!(top_ups(&app).await, 1);
    assert_eq!(
        app.svc
            .recharges
            .attempt_state(&app.org, "ra_crashed")
            .await
            .unwrap()
            .as_deref(),
        Some("succeeded")
    );
    let entry = app
        .svc
        .store
        .history(&app.org, PageRequest::first(1))
        .await
        .unwrap()
        .entries
        .remove(0);
    assert_eq!(entry.external.payment_intent, None);
    assert_eq!(
        entry.idempotency_key.as_str(),
        format!("stripe:payment:{}", pi.id)
    );
    // And once more: nothing.
    assert_eq!(sweep(&app.svc).await.unwrap().due, 0);
    assert_eq!(top_ups(&app).await, 1);
}
