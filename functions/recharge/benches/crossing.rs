//! Recharge latency (not a test; figures for the README): the time from the debit that
//! takes an org below its threshold to its top-up credited, over 200 crossings, on the
//! local stack: dynoxide with the template's table and stream, the recharge and notifier
//! functions under `cargo lambda watch`, fed by the template's event source mappings as
//! `infra/local/up` feeds them (`local-gateway streams`, polling the shard four times a
//! second as Lambda does), moto's EventBridge and the Stripe simulator. No sweep runs:
//! every top-up is the stream path's.
//!
//! `cargo bench -p recharge --bench crossing` (`CROSSINGS=n` for another count).

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

fn main() {
    let crossings: usize = std::env::var("CROSSINGS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(app_streaming(120));
    // $100 below $20, as many times a day as the benchmark crosses.
    let settings = RechargeSettings::new(true, usd("20"), usd("100"), 1_000, usd("100000")).unwrap();
    let card = owners_card(&app);
    let saved = rt
        .block_on(app.svc.recharges.configure(
            &app.org,
            &settings,
            Some(&card),
            &card.owner,
            chrono::Utc::now(),
        ))
        .unwrap();
    assert_eq!(saved, Configured::Saved);
    let stack = Stack::start(&rt, &app, false);
    // Built before anything is timed (the first invocation compiles each function).
    let _ = stack
        .watch
        .invoke("recharge", &serde_json::json!({"Records": []}));
    let _ = stack
        .watch
        .invoke("notifier", &serde_json::json!({"Records": []}));
    rt.block_on(crossings_timed(&app, crossings));
}

async fn crossings_timed(app: &App, crossings: usize) {
    let mut times = Vec::with_capacity(crossings);
    for i in 0..crossings {
        // $30 to start, then $115 after each top-up: down to $15 each time, and back to
        // $115 once the top-up is credited.
        let amount = if i == 0 { "15" } else { "100" };
        // A crossing comes at any moment of the mapping's poll, not right after the last
        // one's records: a random pause, longer than the poll, before each.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(250..600))).await;
        let start = Instant::now();
        spend(app, amount, &format!("bench:{i}")).await;
        while balance(app).await < usd("115") {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "crossing {i}: no top-up in 2 minutes"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        times.push(start.elapsed());
    }
    assert_eq!(charges(app), crossings, "one charge per crossing");
    assert_eq!(balance(app).await, usd("115"));
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| {
        ms(times[((times.len() as f64 * q).ceil() as usize)
            .saturating_sub(1)
            .min(times.len() - 1)])
    };
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
    println!(
        "{crossings} crossings, each topped up once by the stream path: mean {mean:.0} ms, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        at(0.50),
        at(0.99),
        ms(times[times.len() - 1])
    );
}
