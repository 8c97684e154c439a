//! The recharge function itself, under `cargo lambda watch`, invoked with the EventBridge
//! Scheduler event of `infra/events/recharge/scheduled.json`, against dynoxide and the
//! Stripe simulator: usage takes the balance below $20 and the next sweep charges $100
//! once (two sweeps at once too); a declined card fails once and stays failed until a
//! working card is saved; a cap of 2 a day allows exactly 2; a sweep that died after
//! Stripe's success is credited exactly once by the next.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use support::watch::Watch;

fn watch(app: &App, resume_after_seconds: u32) -> Watch {
    let mut env = support::watch::local_env("credits", app._db.endpoint());
    env.extend([
        ("STRIPE_SECRET_KEY", "sk_test_e2e".to_owned()),
        ("STRIPE_API_BASE", app.sim.base_url().to_owned()),
        ("RECHARGE_RESUME_AFTER_SECONDS", resume_after_seconds.to_string()),
    ]);
    Watch::start(&env)
}

fn count(report: &serde_json::Value, what: &str) -> u64 {
    report[what]
        .as_u64()
        .unwrap_or_else(|| panic!("{what} in {report}"))
}

#[test]
fn scheduled_sweeps_under_cargo_lambda_top_up_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(app(120));
    rt.block_on(enable(&app, 3));
    let watch = watch(&app, 120);
    let tick = support::event("recharge/scheduled.json");

    let report = watch.invoke("recharge", &tick);
    assert_eq!(report["due"], 0, "{report}");

    rt.block_on(spend(&app, "15", "usage:1"));
    // Two ticks at once (a slow sweep overlapping the next): one charge.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| watch.invoke("recharge", &tick));
        let b = s.spawn(|| watch.invoke("recharge", &tick));
        (a.join().unwrap(), b.join().unwrap())
    });
    let charged = a["charged"].as_u64().unwrap() + b["charged"].as_u64().unwrap();
    assert_eq!(charged, 1, "{a} {b}");
    assert_eq!(charges(&app), 1);
    assert_eq!(rt.block_on(top_ups(&app)), 1);
    assert_eq!(rt.block_on(balance(&app)), usd("115"));

    let report = watch.invoke("recharge", &tick);
    assert_eq!(
        (report["due"].as_u64(), report["charged"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
}

#[test]
fn a_declined_card_fails_once_under_cargo_lambda_until_a_working_card_is_saved() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(app(120));
    rt.block_on(enable(&app, 3));
    app.sim.set_card(&app.card, "pm_card_chargeDeclined").unwrap();
    let watch = watch(&app, 120);
    let tick = support::event("recharge/scheduled.json");

    rt.block_on(spend(&app, "30", "usage:all"));
    let report = watch.invoke("recharge", &tick);
    assert_eq!(count(&report, "failed"), 1, "{report}");
    for _ in 0..2 {
        let report = watch.invoke("recharge", &tick);
        assert_eq!(
            (count(&report, "due"), count(&report, "failed")),
            (0, 0),
            "no retry: {report}"
        );
    }
    assert_eq!(rt.block_on(notifications(&app, "credit_purchase_failed")), 1);
    let wallet = rt.block_on(app.svc.store.wallet(&app.org)).unwrap();
    assert_eq!(wallet.state, WalletState::Paused(PauseReason::CreditsExhausted));

    app.sim.set_card(&app.card, "pm_card_visa").unwrap();
    rt.block_on(enable(&app, 3));
    let report = watch.invoke("recharge", &tick);
    assert_eq!(count(&report, "charged"), 1, "{report}");
    let wallet = rt.block_on(app.svc.store.wallet(&app.org)).unwrap();
    assert_eq!(
        (wallet.balance().unwrap(), wallet.state),
        (usd("100"), WalletState::Active)
    );
}

#[test]
fn a_crashed_sweep_is_settled_once_and_a_cap_of_two_allows_two_under_cargo_lambda() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(app(0));
    rt.block_on(enable(&app, 2));
    let watch = watch(&app, 0);
    let tick = support::event("recharge/scheduled.json");

    // A sweep claimed and Stripe charged; then it died before the credit.
    rt.block_on(spend(&app, "15", "usage:0"));
    rt.block_on(async {
        let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
        let claim = app
            .svc
            .recharges
            .claim(
                &due(&app).await,
                "ra_died",
                &config,
                agent_credits_domain::Usd::ZERO,
                chrono::Utc::now(),
            )
            .await;
        assert_eq!(claim.unwrap(), Claim::Claimed);
        let a = app
            .svc
            .recharges
            .attempt(&app.org, "ra_died")
            .await
            .unwrap()
            .unwrap();
        send_intent(&app.svc, &app.org, &a).await.unwrap();
    });
    assert_eq!((charges(&app), rt.block_on(balance(&app))), (1, usd("15")));
    let report = watch.invoke("recharge", &tick);
    assert_eq!(count(&report, "charged"), 1, "{report}");
    assert_eq!(
        (charges(&app), rt.block_on(balance(&app))),
        (1, usd("115")),
        "credited once, charged once"
    );

    // Heavy usage: the second top-up of the day goes through, the third is capped.
    for round in 1..=3 {
        rt.block_on(spend(&app, "100", &format!("usage:{round}")));
        watch.invoke("recharge", &tick);
    }
    assert_eq!(rt.block_on(top_ups(&app)), 2);
    assert_eq!(charges(&app), 2);
    let report = watch.invoke("recharge", &tick);
    assert_eq!(count(&report, "cap_reached"), 1, "{report}");
}
