//! Events out, end to end: the recharge and notifier functions under `cargo lambda
//! watch`, fed by the table's stream as Lambda's event source mappings of
//! `infra/template.yaml` feed them (`local_gateway::streams`, here delivering every batch
//! twice), against dynoxide, moto's EventBridge and the Stripe simulator. Usage goes
//! through the usage function; what reached the bus is read from a queue a rule
//! subscribes to it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn stack(rt: &tokio::runtime::Runtime, app: &App) -> Stack {
    Stack::start(rt, app, true)
}

/// A model call billed $`billed` (cost × the default markup of 1.5) through the usage
/// function.
fn call(stack: &Stack, id: &str, cost: &str) {
    let event = support::runtime_event(
        "POST",
        "/v1/orgs/org_demo/usage",
        Some(&json!({"request_id": id, "runtime": "claude_code", "model": "claude-sonnet-4", "cost": cost})),
    );
    let (status, body) = stack.watch.call("usage", &event);
    assert_eq!(status, 200, "{body}");
}

/// Waits, bounded, for `done` (a state of the table or the simulator, not a time).
fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Once every notification is marked published, a later delivery of its record publishes
/// nothing more: what the bus holds then is final.
fn all_published(rt: &tokio::runtime::Runtime, app: &App) -> bool {
    let feed = rt.block_on(app.svc.store.notifications(&app.org, 100)).unwrap();
    feed.iter().all(|n| {
        rt.block_on(app.svc.store.outgoing(&app.org, &n.id))
            .unwrap()
            .is_some_and(|o| o.published_at.is_some())
    })
}

#[test]
fn crossings_are_topped_up_by_the_stream_and_each_alert_reaches_the_bus_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(app_streaming(120));
    rt.block_on(enable(&app, 3));
    let stack = stack(&rt, &app);
    // The first invocation of each function builds it: done before anything is timed.
    let tick = support::event("recharge/scheduled.json");
    assert_eq!(stack.watch.invoke("recharge", &tick)["due"], 0);
    assert!(stack.watch.invoke("notifier", &json!({"Records": []}))["batchItemFailures"].is_array());

    // No sweep runs: the stream path alone tops the org up.
    call(&stack, "req_1", "7"); // $30 - $10.50 = $19.50: below $20
    wait_for("the top-up on crossing", Duration::from_secs(30), || {
        rt.block_on(top_ups(&app)) == 1
    });
    assert_eq!(charges(&app), 1);

    // Again, with the minute's sweep running at the same moment, twice.
    call(&stack, "req_2", "67"); // $119.50 - $100.50 = $19: below $20 again
    let sweeps: Vec<_> = (0..2)
        .map(|_| {
            let port = stack.watch.port();
            let tick = tick.clone();
            std::thread::spawn(move || {
                ureq::post(&format!(
                    "http://127.0.0.1:{port}/2015-03-31/functions/recharge/invocations"
                ))
                .send(tick.to_string())
                .map(|_| ())
            })
        })
        .collect();
    wait_for("the second top-up", Duration::from_secs(60), || {
        rt.block_on(top_ups(&app)) == 2
    });
    for s in sweeps {
        s.join().unwrap().unwrap();
    }
    wait_for("every notification published", Duration::from_secs(60), || {
        all_published(&rt, &app)
    });

    assert_eq!(
        charges(&app),
        2,
        "one charge per crossing, between the stream path and two sweeps"
    );
    assert_eq!(rt.block_on(top_ups(&app)), 2);
    assert_eq!(rt.block_on(balance(&app)), usd("119"));
    let events = rt.block_on(stack.bus.received(5));
    let count = |kind: &str| events.iter().filter(|e| e["detail-type"] == kind).count();
    assert_eq!(count("credit_balance_low"), 2, "{events:?}");
    assert_eq!(count("credit_auto_recharge_triggered"), 2, "{events:?}");
    assert_eq!(count("credit_balance_recovered"), 2, "{events:?}");
    assert_eq!(events.len(), 6, "{events:?}");
    assert!(
        stack.counters.delivered.load(Ordering::Relaxed) >= 6,
        "every record went to its functions twice"
    );
    assert_eq!(stack.counters.dead_letters.load(Ordering::Relaxed), 0);
}

#[test]
fn a_declined_card_is_alerted_once_through_duplicates_and_a_concurrent_sweep() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(app_streaming(120));
    rt.block_on(enable(&app, 3));
    app.sim.set_card(&app.card, "pm_card_chargeDeclined").unwrap();
    let stack = stack(&rt, &app);
    let tick = support::event("recharge/scheduled.json");
    assert_eq!(stack.watch.invoke("recharge", &tick)["due"], 0);

    call(&stack, "req_1", "7");
    let sweep = stack.watch.invoke("recharge", &tick);
    assert!(sweep["charged"] == 0, "{sweep}");
    wait_for("the decline", Duration::from_secs(60), || {
        rt.block_on(app.svc.recharges.config(&app.org))
            .unwrap()
            .is_some_and(|c| c.suspended.is_some())
    });
    wait_for("every notification published", Duration::from_secs(60), || {
        all_published(&rt, &app)
    });

    let failed = rt.block_on(stack.bus.of("credit_purchase_failed", 5));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["detail"]["org"], "org_demo");
    assert_eq!(failed[0]["detail"]["reason"], "generic_decline");
    assert_eq!(
        failed[0]["detail"]["recipients"],
        json!([{"member": "u_owner", "role": "owner"}])
    );
    assert_eq!(rt.block_on(stack.bus.of("credit_balance_low", 0)).len(), 1);
    assert_eq!(charges(&app), 0);
}
