//! The plan, invoice and portal routes while Stripe cannot be reached: each answers
//! `502 stripe_error`, nothing is recorded as paid or changed, and the org's plan lock is
//! given back (asking again is a 502 again, never `plan_change_in_progress`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use agent_credits_domain::{MemberId, OrgId, Plans, SystemClock};
use agent_credits_dynamo::{DynamoWalletStore, OrgStore, SubscriptionRecord};
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_routes_answer_502_while_stripe_is_unreachable() {
    let mut app = App::start(None).await;
    let down = support::payments("http://127.0.0.1:9/", "sk_test_down");
    app.checkout.payments = down.clone();
    app.checkout.billing = down;
    app.checkout.plans = Plans::parse(
        r#"{"price_team": {"amount_usd": "50.00", "base_usd": "50.00", "rollover_cap_usd": "100.00"}}"#,
    )
    .unwrap();
    app.org_with_members("u_owner", "org_down", &[]).await;
    let org = OrgId::parse("org_down").unwrap();
    // A subscription on record and the owner's customer, so that every route asks Stripe.
    let store = DynamoWalletStore::new(app.client.clone(), TABLE, Arc::new(SystemClock));
    let record = SubscriptionRecord {
        subscription: "sub_down".into(),
        customer: "cus_down".into(),
        created: chrono::Utc::now(),
    };
    assert!(store.record_subscription(&org, &record).await.unwrap());
    OrgStore::new(app.client.clone(), TABLE)
        .keep_stripe_customer(&org, &MemberId::parse("u_owner").unwrap(), "cus_down")
        .await
        .unwrap();
    let before = app.dump().await;
    let plan = || Some(json!({ "plan": "price_team" }));
    for _ in 0..2 {
        for (method, path, body) in [
            ("GET", "/v1/orgs/org_down/plans", None),
            ("POST", "/v1/orgs/org_down/subscription", plan()),
            ("PUT", "/v1/orgs/org_down/subscription", plan()),
            ("DELETE", "/v1/orgs/org_down/subscription", None),
            ("GET", "/v1/orgs/org_down/invoices", None),
            ("POST", "/v1/orgs/org_down/portal", None),
        ] {
            let (status, answer) = app.dashboard(method, path, "u_owner", body).await;
            assert_eq!(
                (status, answer["error"]["code"].as_str()),
                (502, Some("stripe_error")),
                "{method} {path}: {answer}"
            );
        }
    }
    // Only the plan lock's own item moved (taken and given back).
    let without_lock = |dump: String| {
        dump.lines()
            .filter(|l| !l.contains("PLAN_LOCK"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_lock(app.dump().await), without_lock(before));
}
