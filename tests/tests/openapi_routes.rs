//! `infra/openapi.yaml` against the handlers: every documented operation is answered by
//! the function its tag names (whatever the answer for an empty request: a 4xx naming
//! what is wrong is fine; "no such route" is not). With `infra/openapi/check.py` (the
//! document is valid, equals the template's routes, and its examples fit its schemas) the
//! document, the template and the code agree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{App, operations};
use serde_json::{Value, json};

/// The API Gateway v2 event of `method path` as the route's caller would send it.
fn request(method: &str, path: &str, tag: &str) -> Value {
    let samples = HashMap::from([
        ("{org}", "org_demo"),
        ("{hold}", "h_1"),
        ("{member}", "u_owner"),
        ("{model}", "claude-sonnet"),
        ("{provider}", "openai"),
        ("{agent}", "agent_7"),
        ("{kind}", "sms"),
        ("{withdrawal}", "wd_1"),
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
    let app = App::start(None).await;
    // The caller owns the org, so that routing, not membership, decides each answer.
    let (created, _, _) = app
        .send("account", &support::event("account/create-org.json"))
        .await;
    assert_eq!(created, 201);
    let ops = operations();
    assert!(ops.len() >= 18, "{} operations", ops.len());
    for common::Operation {
        method,
        path,
        tag,
        op,
    } in ops
    {
        let mut event = request(&method, &path, &tag);
        if let Some(role) = op["x-iam-role"].as_str() {
            event["requestContext"]["authorizer"] =
                common::iam_event(role, &method, &path, None)["requestContext"]["authorizer"].clone();
        }
        let (status, body, _) = app.send(&tag, &event).await;
        let code = body["error"]["code"].as_str().unwrap_or_default();
        assert!(
            code != "route_not_found" && code != "method_not_allowed" && status != 405,
            "{method} {path} ({tag}) is not answered: {status} {body}"
        );
    }
}
