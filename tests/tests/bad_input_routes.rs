//! Bad input on every route of `infra/openapi.yaml` gets a 4xx with a JSON error code from
//! the function that owns the route, and changes nothing: the whole table is the same
//! afterwards. The bad inputs are derived from the document itself, so a new route or
//! field is covered as soon as it is documented:
//! - each path parameter in turn replaced by an invalid id;
//! - each query parameter in turn given an invalid value;
//! - each request body missing, not JSON, not an object, `{}` (when fields are required),
//!   the example plus an unknown field, and the example with each field in turn of the
//!   wrong type;
//! - the Stripe webhook unsigned, signed with another secret, signed long ago, and signed
//!   but not an event.
//!
//! Callers are allowed (the owner, the runtime's IAM role), so every refusal is the
//! input's doing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{App, BAD_ID, Operation, WEBHOOK_SECRET, fill, good_body, params, to_json};
use serde_json::{Value, json};
use serde_yaml::Value as Yaml;

/// Follows `$ref`s within the document.
fn resolve<'a>(doc: &'a Yaml, node: &'a Yaml) -> &'a Yaml {
    match node["$ref"].as_str() {
        Some(r) => {
            let mut at = doc;
            for part in r.trim_start_matches("#/").split('/') {
                at = &at[part];
            }
            resolve(doc, at)
        }
        None => node,
    }
}

/// The property names of a body schema (each branch of an `allOf`/`oneOf`/`anyOf`), and whether
/// any are required.
fn fields(doc: &Yaml, schema: &Yaml) -> (Vec<String>, bool) {
    let schema = resolve(doc, schema);
    let mut names = vec![];
    let mut required = schema["required"].as_sequence().is_some_and(|r| !r.is_empty());
    if let Some(props) = schema["properties"].as_mapping() {
        names.extend(props.keys().filter_map(|k| k.as_str()).map(str::to_owned));
    }
    for branch in ["allOf", "oneOf", "anyOf"] {
        for sub in schema[branch].as_sequence().into_iter().flatten() {
            let (more, req) = fields(doc, sub);
            required |= req;
            for name in more {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    (names, required)
}

/// The bodies to send `op`: (what, raw body or none).
fn bad_bodies(doc: &Yaml, op: &Yaml) -> Vec<(String, Option<String>)> {
    let content = &op["requestBody"]["content"]["application/json"];
    if content.is_null() {
        return vec![];
    }
    let example = if content["example"].is_null() {
        content["examples"]
            .as_mapping()
            .and_then(|m| m.values().next())
            .map(|e| to_json(&e["value"]))
            .unwrap_or(json!({}))
    } else {
        to_json(&content["example"])
    };
    let (names, required) = fields(doc, &content["schema"]);
    let mut out = vec![
        ("no body".to_owned(), None),
        ("not JSON".to_owned(), Some("{not json".to_owned())),
        ("an array".to_owned(), Some("[]".to_owned())),
        ("a string".to_owned(), Some("\"credits\"".to_owned())),
    ];
    if required {
        out.push(("{}".to_owned(), Some("{}".to_owned())));
    }
    let mut unknown = example.clone();
    unknown["surprise"] = json!(1);
    out.push(("an unknown field".to_owned(), Some(unknown.to_string())));
    for name in names {
        let mut wrong = example.clone();
        wrong[&name] = json!({ "wrong": [true] });
        out.push((format!("{name} of the wrong type"), Some(wrong.to_string())));
    }
    out
}

fn query_params(doc: &Yaml, op: &Yaml) -> Vec<String> {
    op["parameters"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|p| resolve(doc, p))
        .filter(|p| p["in"].as_str() == Some("query"))
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

fn event(o: &Operation, path: &str, query: &str, body: Option<String>) -> Value {
    let body: Option<Value> = body.map(Value::String);
    let mut e = if let Some(role) = o.op["x-iam-role"].as_str() {
        common::iam_event(role, &o.method, path, None)
    } else {
        common::dashboard_event(&o.method, path, "u_owner", None)
    };
    if !query.is_empty() {
        let (k, v) = query.split_once('=').unwrap();
        e["rawQueryString"] = json!(query);
        e["queryStringParameters"] = json!({ k: v });
    }
    e["body"] = body.unwrap_or(Value::Null);
    e
}

fn webhook(body: &str, signature: Option<String>) -> Value {
    let mut e = support::event("webhooks/stripe-event.json");
    match signature {
        Some(s) => e["headers"]["stripe-signature"] = json!(s),
        None => {
            e["headers"].as_object_mut().unwrap().remove("stripe-signature");
        }
    }
    e["body"] = json!(body);
    e
}

#[tokio::test]
async fn bad_input_on_every_documented_route_is_a_4xx_with_a_code_and_writes_nothing() {
    let app = App::start(None).await;
    app.org_with_members("u_owner", "org_demo", &[("u_member", "member")])
        .await;
    let org = agent_credits_domain::OrgId::parse("org_demo").unwrap();
    agent_credits_domain::WalletStore::apply(&app.usage.store, support::purchase(&org, "50", "seed"))
        .await
        .unwrap()
        .unwrap();
    let before = app.dump().await;

    let doc = common::openapi();
    let mut cases = vec![];
    for o in common::operations() {
        let route = format!("{} {}", o.method, o.path);
        if o.tag == "webhooks" {
            let now = chrono::Utc::now().timestamp();
            let sign = |secret: &str, at: i64, body: &str| stripe_sim::signature_header(secret, at, body);
            let evt = json!({ "id": "evt_bad", "object": "event", "type": "checkout.session.completed",
                              "data": { "object": { "id": "cs_bad", "object": "checkout.session" } } })
            .to_string();
            for (what, body, sig) in [
                ("unsigned", evt.clone(), None),
                (
                    "signed with another secret",
                    evt.clone(),
                    sign("whsec_other", now, &evt),
                ),
                (
                    "signed an hour ago",
                    evt.clone(),
                    sign(WEBHOOK_SECRET, now - 3600, &evt),
                ),
                ("a garbled signature", evt.clone(), Some("t=1,v1=zz".to_owned())),
                (
                    "signed, not JSON",
                    "{nope".to_owned(),
                    sign(WEBHOOK_SECRET, now, "{nope"),
                ),
                (
                    "signed, not an event",
                    "[]".to_owned(),
                    sign(WEBHOOK_SECRET, now, "[]"),
                ),
            ] {
                cases.push((format!("{route}: {what}"), o.tag.clone(), webhook(&body, sig)));
            }
            continue;
        }
        let good = good_body(&o.op);
        for p in params(&o.path) {
            let path = fill(&o.path, Some(p));
            cases.push((
                format!("{route}: {{{p}}} = {BAD_ID}"),
                o.tag.clone(),
                event(&o, &path, "", good.clone()),
            ));
        }
        let path = fill(&o.path, None);
        for q in query_params(&doc, &o.op) {
            cases.push((
                format!("{route}: ?{q}={BAD_ID}"),
                o.tag.clone(),
                event(&o, &path, &format!("{q}={BAD_ID}"), good.clone()),
            ));
        }
        for (what, body) in bad_bodies(&doc, &o.op) {
            cases.push((
                format!("{route}: {what}"),
                o.tag.clone(),
                event(&o, &path, "", body),
            ));
        }
    }
    // Every operation that takes any input is tried at least once (`GET /v1/me/balance`
    // takes none: no path parameter, query or body).
    let ops = common::operations();
    for o in &ops {
        let route = format!("{} {}: ", o.method, o.path);
        let takes_input = !params(&o.path).is_empty()
            || !query_params(&doc, &o.op).is_empty()
            || !o.op["requestBody"].is_null()
            || o.tag == "webhooks";
        assert!(
            !takes_input || cases.iter().any(|(what, ..)| what.starts_with(&route)),
            "no bad input for {route}"
        );
    }
    eprintln!("{} bad inputs over {} operations", cases.len(), ops.len());

    let mut wrong = vec![];
    for (what, tag, e) in &cases {
        let (status, body, text) = app.send(tag, e).await;
        let code = body["error"]["code"].as_str().unwrap_or_default();
        if !(400..500).contains(&status)
            || code.is_empty()
            || code == "route_not_found"
            || code == "method_not_allowed"
        {
            wrong.push(format!("{what} → {status} {text}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} bad inputs were not refused with a 4xx code:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    assert_eq!(app.dump().await, before, "a refused request wrote to the table");

    // The control: the same signing makes a good event acceptable.
    let sample = support::event("webhooks/stripe-event.json");
    let mut good: Value = serde_json::from_str(sample["body"].as_str().unwrap()).unwrap();
    good["type"] = json!("agent_credits.unknown");
    let good = good.to_string();
    let now = chrono::Utc::now().timestamp();
    let signed = webhook(&good, stripe_sim::signature_header(WEBHOOK_SECRET, now, &good));
    let (status, body, _) = app.send("webhooks", &signed).await;
    assert_eq!(status, 200, "{body}");
}
