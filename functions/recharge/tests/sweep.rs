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
            .claim(
                &due(&app).await,
                "ra_crashed",
                &config,
                agent_credits_domain::Usd::ZERO,
                now
            )
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

/// The recharge function as `app`'s, but with another Stripe client and clock.
fn with(app: &App, stripe: stripe::Client, clock: Arc<dyn agent_credits_domain::Clock>) -> Recharge {
    Recharge {
        store: DynamoWalletStore::new(app.svc.store.client().clone(), "credits", clock.clone()),
        recharges: RechargeStore::new(app.svc.store.client().clone(), "credits"),
        payments: Arc::new(agent_credits_stripe::StripeGateway::from_client(stripe)),
        clock,
        resume_after: chrono::Duration::seconds(0),
    }
}

#[tokio::test]
async fn a_bad_key_or_stripe_out_of_reach_never_suspends_and_the_attempt_is_sent_again() {
    let app = app(0).await;
    enable(&app, 3).await;
    spend(&app, "15", "usage:1").await;
    let bad_key = stripe::ClientBuilder::new("rk_live_revoked")
        .url(app.sim.base_url())
        .build()
        .unwrap();
    let unreachable = stripe::ClientBuilder::new("sk_test_x")
        .url("http://127.0.0.1:9/")
        .build()
        .unwrap();
    for stripe in [bad_key, unreachable] {
        let report = sweep(&with(&app, stripe, Arc::new(SystemClock))).await.unwrap();
        assert_eq!((report.failed, report.pending), (0, 1), "{report:?}");
        let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
        assert_eq!(
            config.suspended, None,
            "one bad key deploy must not suspend anyone"
        );
        assert!(config.in_flight.is_some(), "the attempt stays in flight");
    }
    assert_eq!(notifications(&app, "credit_purchase_failed").await, 0);
    // With the key fixed, the same attempt is sent again and credited once.
    let report = sweep(&app.svc).await.unwrap();
    assert_eq!(report.charged, 1, "{report:?}");
    assert_eq!((charges(&app), balance(&app).await), (1, usd("115")));
}

#[tokio::test]
async fn a_resumed_attempt_charges_what_it_was_claimed_with_and_records_its_payment_intent() {
    let app = app(0).await;
    enable(&app, 3).await;
    spend(&app, "15", "usage:1").await;
    let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
    let claimed = app
        .svc
        .recharges
        .claim(
            &due(&app).await,
            "ra_claimed",
            &config,
            agent_credits_domain::Usd::ZERO,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(claimed, Claim::Claimed);
    // The owner changes the amount while the attempt is in flight.
    let bigger = RechargeSettings::new(true, usd("20"), usd("250"), 3, usd("1000")).unwrap();
    let card = owners_card(&app);
    app.svc
        .recharges
        .configure(&app.org, &bigger, Some(&card), &card.owner, chrono::Utc::now())
        .await
        .unwrap();
    let report = sweep(&app.svc).await.unwrap();
    assert_eq!(report.charged, 1, "{report:?}");
    assert_eq!(balance(&app).await, usd("115"), "the $100 it was claimed with");
    let attempt = app
        .svc
        .recharges
        .attempt(&app.org, "ra_claimed")
        .await
        .unwrap()
        .unwrap();
    assert!(attempt.payment_intent.is_some_and(|pi| pi.starts_with("pi_")));
    assert_eq!(attempt.tries, 1);
}

#[tokio::test]
async fn past_stripes_idempotency_window_an_attempt_is_looked_up_never_sent_again() {
    let app = app(0).await;
    enable(&app, 3).await;
    spend(&app, "15", "usage:1").await;
    // A sweep claims and charges, then dies before the credit.
    let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
    let now = chrono::Utc::now();
    app.svc
        .recharges
        .claim(
            &due(&app).await,
            "ra_old",
            &config,
            agent_credits_domain::Usd::ZERO,
            now,
        )
        .await
        .unwrap();
    let a = app
        .svc
        .recharges
        .attempt(&app.org, "ra_old")
        .await
        .unwrap()
        .unwrap();
    send_intent(&app.svc, &app.org, &a).await.unwrap();
    // A day later: Stripe has forgotten the key; the attempt is found, not sent.
    let tomorrow = Arc::new(support::TestClock::at(now + chrono::Duration::hours(25)));
    let stripe = stripe::ClientBuilder::new("sk_test_x")
        .url(app.sim.base_url())
        .build()
        .unwrap();
    let report = sweep(&with(&app, stripe, tomorrow)).await.unwrap();
    assert_eq!(report.charged, 1, "{report:?}");
    assert_eq!(charges(&app), 1, "no second PaymentIntent");
    assert_eq!(balance(&app).await, usd("115"));
}

#[tokio::test]
async fn an_attempt_that_stripe_never_made_is_abandoned_and_the_org_stays_due() {
    let app = app(0).await;
    enable(&app, 3).await;
    spend(&app, "15", "usage:1").await;
    let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
    let now = chrono::Utc::now();
    app.svc
        .recharges
        .claim(
            &due(&app).await,
            "ra_lost",
            &config,
            agent_credits_domain::Usd::ZERO,
            now,
        )
        .await
        .unwrap();
    let tomorrow = Arc::new(support::TestClock::at(now + chrono::Duration::hours(25)));
    let stripe = stripe::ClientBuilder::new("sk_test_x")
        .url(app.sim.base_url())
        .build()
        .unwrap();
    let report = sweep(&with(&app, stripe, tomorrow.clone())).await.unwrap();
    assert_eq!(report.abandoned, 1, "{report:?}");
    assert_eq!(
        app.svc
            .recharges
            .attempt_state(&app.org, "ra_lost")
            .await
            .unwrap()
            .as_deref(),
        Some("abandoned")
    );
    assert_eq!(charges(&app), 0);
    assert_eq!(
        app.svc
            .recharges
            .config(&app.org)
            .await
            .unwrap()
            .unwrap()
            .suspended,
        None
    );
    // Still due: the next sweep claims a new attempt and charges it.
    let stripe = stripe::ClientBuilder::new("sk_test_x")
        .url(app.sim.base_url())
        .build()
        .unwrap();
    let report = sweep(&with(&app, stripe, tomorrow)).await.unwrap();
    assert_eq!(report.charged, 1, "{report:?}");
}

#[tokio::test]
async fn a_crossing_while_a_sweep_decides_keeps_the_org_due() {
    let app = app(120).await;
    enable(&app, 3).await;
    spend(&app, "15", "usage:1").await;
    let due = app.svc.recharges.due().await.unwrap();
    assert_eq!(due.len(), 1);
    let seen = app.svc.store.wallet(&app.org).await.unwrap().version;
    // A debit lands between the sweep's read and its clear: the mark stands.
    spend(&app, "1", "usage:2").await;
    app.svc.recharges.clear_due(&due[0], seen).await.unwrap();
    assert_eq!(
        app.svc.recharges.due().await.unwrap().len(),
        1,
        "the crossing is not lost"
    );
}

#[tokio::test]
async fn a_disputed_org_is_not_topped_up_until_its_dispute_closes() {
    let app = app(120).await;
    enable(&app, 3).await;
    let pause = ChangeRequest::pause(
        app.org.clone(),
        EntryKind::Dispute,
        PauseReason::Disputed,
        IdempotencyKey::parse("stripe:dispute:dp_1").unwrap(),
    )
    .with_external(agent_credits_domain::ExternalRefs {
        dispute: Some("dp_1".into()),
        ..Default::default()
    });
    app.svc.store.apply(pause).await.unwrap().unwrap();
    spend(&app, "15", "usage:1").await;
    let report = sweep(&app.svc).await.unwrap();
    assert_eq!((report.disputed, report.charged), (1, 0), "{report:?}");
    assert_eq!(charges(&app), 0);
    // Closed (won): the org, still due, is topped up by the next sweep.
    let lift = ChangeRequest::lift(
        app.org.clone(),
        EntryKind::Dispute,
        PauseReason::Disputed,
        IdempotencyKey::parse("stripe:dispute:dp_1:closed").unwrap(),
    )
    .with_external(agent_credits_domain::ExternalRefs {
        dispute: Some("dp_1".into()),
        ..Default::default()
    });
    app.svc.store.apply(lift).await.unwrap().unwrap();
    let report = sweep(&app.svc).await.unwrap();
    assert_eq!(report.charged, 1, "{report:?}");
}

/// An org switched away from credits, as data written before the rule could leave it:
/// its wallet and profile say `byok`, though auto-recharge was enabled while it was a
/// credits org.
async fn made_byok(app: &App) {
    let client = app.svc.recharges.client();
    for sk in ["WALLET", "PROFILE"] {
        client
            .update_item()
            .table_name("credits")
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("ORG#{}", app.org)),
            )
            .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(sk.to_owned()))
            .update_expression("SET billing_mode = :byok")
            .expression_attribute_values(":byok", aws_sdk_dynamodb::types::AttributeValue::S("byok".into()))
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_wallet_of_an_org_off_credits_is_never_charged_by_auto_recharge() {
    let app = app(120).await;
    enable(&app, 3).await;
    made_byok(&app).await;
    spend(&app, "15", "usage:1").await; // $15 left, below the $20 threshold
    let report = sweep(&app.svc).await.unwrap();
    assert_eq!(report.charged, 0, "{report:?}");
    assert_eq!(charges(&app), 0, "the card was charged");
    assert_eq!(top_ups(&app).await, 0);
    assert_eq!(sweep(&app.svc).await.unwrap().due, 0, "the mark was cleared");

    // Enabling again is refused by the store, in the write itself.
    assert_eq!(configure(&app, 3).await, Configured::NotCredits);
}

/// The owner turns on recharge to a target: below $20, back to $150.
async fn enable_to_target(app: &App, target: &str) {
    let settings = agent_credits_domain::RechargeSettings::new(true, usd("20"), usd("100"), 3, usd("1000"))
        .unwrap()
        .with_target(Some(usd(target)))
        .unwrap();
    let card = owners_card(app);
    let saved = app
        .svc
        .recharges
        .configure(&app.org, &settings, Some(&card), &card.owner, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(saved, agent_credits_dynamo::Configured::Saved);
}

/// Issue 18: "when below X, bring the balance back to Y". A sweep charges what is missing
/// from the target, rounded up to a cent, once; the settings read back as saved.
#[tokio::test]
async fn a_target_brings_the_balance_back_to_it() {
    let app = app(120).await;
    enable_to_target(&app, "150").await;
    let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
    assert_eq!(config.settings.target, Some(usd("150")));
    spend(&app, "10.005", "usage:1").await; // $19.995 left
    let report = sweep(&app.svc).await.unwrap();
    assert_eq!((report.due, report.charged), (1, 1), "{report:?}");
    assert_eq!(
        balance(&app).await,
        usd("150.005"),
        "$130.01: never short of the target"
    );
    assert_eq!((charges(&app), top_ups(&app).await), (1, 1));
}

/// A top-up to a target is what was missing when the sweep read the wallet: if credits
/// arrive before it is claimed (a purchase), the claim fails and nothing is charged, so
/// the balance never passes the target; the org stays due for the next look.
#[tokio::test]
async fn a_target_top_up_is_not_claimed_once_the_wallet_gained_credits() {
    let app = app(120).await;
    enable_to_target(&app, "150").await;
    spend(&app, "25", "usage:1").await; // $5 left
    let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
    let seen = balance(&app).await;
    let buy = ChangeRequest::credit(
        app.org.clone(),
        EntryKind::Purchase,
        agent_credits_domain::Bucket::Purchased,
        agent_credits_domain::PositiveUsd::parse("5").unwrap(),
        IdempotencyKey::parse("purchase:meanwhile").unwrap(),
    )
    .unwrap();
    app.svc.store.apply(buy).await.unwrap().unwrap();
    let claim = app
        .svc
        .recharges
        .claim(&due(&app).await, "ra_stale", &config, seen, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(claim, agent_credits_dynamo::Claim::Moved);
    assert!(
        app.svc
            .recharges
            .attempt(&app.org, "ra_stale")
            .await
            .unwrap()
            .is_none()
    );
    // The next sweep reads $10 and brings it to $150.
    let report = sweep(&app.svc).await.unwrap();
    assert_eq!(report.charged, 1, "{report:?}");
    assert_eq!(balance(&app).await, usd("150"));
}

#[tokio::test]
async fn a_claim_read_before_another_run_topped_the_org_up_charges_nothing() {
    let app = app(120).await;
    enable(&app, 3).await;
    spend(&app, "15", "usage:1").await; // $15: due
    // One run (the stream path, say) reads what it claims on...
    let read = due(&app).await;
    let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
    let available = app
        .svc
        .recharges
        .wallet(&app.org)
        .await
        .unwrap()
        .available()
        .unwrap();
    // ...while another (the sweep) tops the org up, from claim to credit.
    assert_eq!(
        recharge::recharge_org(&app.svc, &read).await.unwrap(),
        recharge::Step::Charged
    );
    // The first run's claim comes late: the crossing it read was topped up already.
    let late = app
        .svc
        .recharges
        .claim(&read, "ra_late", &config, available, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(late, Claim::Moved);
    assert_eq!(charges(&app), 1);
    assert_eq!(balance(&app).await, usd("115"));
}
