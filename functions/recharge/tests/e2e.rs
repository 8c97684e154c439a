//! The recharge function itself, under `cargo lambda watch`, invoked with the EventBridge
//! Scheduler event of `infra/events/recharge/scheduled.json`: usage takes the balance
//! below $20, the next sweep charges $100 once and credits it once, and two sweeps
//! invoked at the same time still charge once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use support::watch::Watch;

#[test]
fn scheduled_sweeps_under_cargo_lambda_top_up_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(app(120));
    rt.block_on(enable(&app, 3));
    let mut env = support::watch::local_env("credits", app._db.endpoint());
    env.extend([
        ("STRIPE_SECRET_KEY", "sk_test_e2e".to_owned()),
        ("STRIPE_API_BASE", app.sim.base_url().to_owned()),
    ]);
    let watch = Watch::start(&env);
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
