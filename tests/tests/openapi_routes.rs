//! `infra/openapi.yaml` against the handlers: every documented operation is answered by
//! the function its tag names (whatever the answer for an empty request: a 4xx naming
//! what is wrong is fine; "no such route" is not). With `infra/openapi/check.py` (the
//! document is valid, equals the template's routes, and its examples fit its schemas) the
//! document, the template and the code agree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use agent_credits_domain::SystemClock;
use agent_credits_dynamo::{DynamoWalletStore, OrgStore, RateStore, RechargeStore};
use serde_json::{Value, json};

fn operations() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(support::repo_root().join("infra/openapi.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut ops = vec![];
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        for (method, op) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if !["get", "put", "post", "delete", "patch"].contains(&method) {
                continue;
            }
            let tag = op["tags"][0]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path:?} has no tag"));
            ops.push((
                method.to_uppercase(),
                path.as_str().unwrap().to_owned(),
                tag.to_owned(),
            ));
        }
    }
    ops
}

/// The API Gateway v2 event of `method path` as the route's caller would send it.
fn request(method: &str, path: &str, tag: &str) -> Value {
    let samples = HashMap::from([
        ("{org}", "org_demo"),
        ("{hold}", "h_1"),
        ("{member}", "u_owner"),
        ("{model}", "claude-sonnet"),
        ("{provider}", "openai"),
    ]);
    let mut raw = path.to_owned();
    for (param, value) in samples {
        raw = raw.replace(param, value);
    }
    assert!(!raw.contains('{'), "a path parameter without a sample: {path}");
    let mut e = match tag {
        "usage" => support::event("usage/debit-cost.json"),
        "webhooks" => support::event("webhooks/stripe-event.json"),
        _ => support::event("account/get-org.json"),
    };
    e["routeKey"] = json!(format!("{method} {path}"));
    e["rawPath"] = json!(raw);
    e["rawQueryString"] = json!("");
    e["requestContext"]["http"]["method"] = json!(method);
    e["requestContext"]["http"]["path"] = json!(raw);
    e["body"] = json!("{}");
    e
}

#[tokio::test]
async fn every_documented_operation_is_answered_by_its_function() {
    let (_db, client) = support::fresh_table("credits").await;
    let sim = stripe_sim::StripeSim::start().await.unwrap();
    let stripe = stripe::ClientBuilder::new("sk_test_openapi")
        .url(sim.base_url())
        .build()
        .unwrap();
    let store = || DynamoWalletStore::new(client.clone(), "credits", Arc::new(SystemClock));
    let usage = usage::Usage {
        store: store(),
        rates: RateStore::new(client.clone(), "credits"),
        clock: Arc::new(SystemClock),
        config: usage::Config::from_lookup(|n| (n == "TABLE_NAME").then(|| "credits".to_owned())).unwrap(),
        keys: None,
    };
    let account = account::Account {
        store: store(),
        orgs: OrgStore::new(client.clone(), "credits"),
        clock: Arc::new(SystemClock),
        keys: agent_credits_aws::KeyVault::new(support::secrets_client("http://127.0.0.1:9"), "test/byok/"),
    };
    let checkout = checkout::Checkout {
        orgs: OrgStore::new(client.clone(), "credits"),
        recharges: RechargeStore::new(client.clone(), "credits"),
        stripe,
        catalog: checkout::catalog_from(|_| None).unwrap(),
        dashboard_url: "http://127.0.0.1:3000".into(),
    };
    let webhooks = webhooks::Webhooks {
        store: store(),
        signing_secret: "whsec_openapi".into(),
        stripe: None,
        plans: webhooks::Plans::default(),
    };
    // The caller owns the org, so that routing, not membership, decides each answer.
    let created = account::handle(
        &account,
        support::request(&support::event("account/create-org.json")),
    )
    .await;
    assert_eq!(created.status().as_u16(), 201);
    let ops = operations();
    assert!(ops.len() >= 18, "{} operations", ops.len());
    for (method, path, tag) in ops {
        let req = support::request(&request(&method, &path, &tag));
        let response = match tag.as_str() {
            "usage" => usage::handle(&usage, req).await,
            "account" => account::handle(&account, req).await,
            "checkout" => checkout::handle(&checkout, req).await,
            "webhooks" => webhooks::handle(&webhooks, req).await,
            other => panic!("{method} {path}: tag {other} names no function"),
        };
        let status = response.status().as_u16();
        let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or_default();
        assert!(
            code != "route_not_found" && code != "method_not_allowed" && status != 405,
            "{method} {path} ({tag}) is not answered: {status} {body}"
        );
    }
}
