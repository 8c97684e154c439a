//! Settings after creation (issue 17): owners change who may buy, whether members see
//! billing and the low-balance threshold; operators set the markup; each change is in
//! the org's settings history with who made it. Through the functions' HTTP answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agent_credits_domain::{OrgId, WalletStore};
use common::*;
use serde_json::{Value, json};

const ORG: &str = "org_settings";

async fn app() -> App {
    let app = App::start(None).await;
    app.org_with_members("u_owner", ORG, &[("u_admin", "admin"), ("u_member", "member")])
        .await;
    let org = OrgId::parse(ORG).unwrap();
    app.usage
        .store
        .apply(support::purchase(&org, "100", "purchase:seed"))
        .await
        .unwrap()
        .unwrap();
    app
}

async fn patch(app: &App, sub: &str, body: Value) -> (u16, Value) {
    app.dashboard("PATCH", &format!("/v1/orgs/{ORG}/settings"), sub, Some(body))
        .await
}

async fn settings(app: &App) -> Value {
    let (status, body) = app
        .dashboard("GET", &format!("/v1/orgs/{ORG}/settings"), "u_owner", None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn checkout(app: &App, sub: &str) -> u16 {
    app.dashboard(
        "POST",
        &format!("/v1/orgs/{ORG}/checkout"),
        sub,
        Some(json!({ "bulk": { "quantity": 1 } })),
    )
    .await
    .0
}

async fn spend(app: &App, request: &str, cost: &str) -> Value {
    let body = json!({ "request_id": request, "member": "u_owner", "api_key": "k_1", "agent": "a_1",
        "runtime": "claude_code", "model": "claude-sonnet-4", "cost": cost });
    let (status, answer) = app
        .runtime("POST", &format!("/v1/orgs/{ORG}/usage"), Some(body))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owners_change_who_may_buy_and_each_change_is_recorded_with_who() {
    let app = app().await;
    assert_eq!(checkout(&app, "u_admin").await, 403, "owners only by default");

    // Only an owner changes settings, and a change must name something.
    let (status, _) = patch(&app, "u_admin", json!({ "purchase_policy": "any_member" })).await;
    assert_eq!(status, 403);
    let (status, body) = patch(&app, "u_owner", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = patch(&app, "u_owner", json!({ "purchase_policy": "everyone" })).await;
    assert_eq!(status, 400, "{body}");
    assert!(settings(&app).await["changes"].as_array().unwrap().is_empty());

    // Reference 002's variant: owners and admins buy, members do not.
    let (status, body) = patch(&app, "u_owner", json!({ "purchase_policy": "owners_and_admins" })).await;
    assert_eq!(
        (status, body["purchase_policy"].as_str()),
        (200, Some("owners_and_admins")),
        "{body}"
    );
    assert_eq!(checkout(&app, "u_admin").await, 201);
    assert_eq!(checkout(&app, "u_member").await, 403);

    // Members stop seeing billing.
    let balance = format!("/v1/orgs/{ORG}/balance");
    assert_eq!(app.dashboard("GET", &balance, "u_member", None).await.0, 200);
    patch(&app, "u_owner", json!({ "members_see_billing": false })).await;
    assert_eq!(app.dashboard("GET", &balance, "u_member", None).await.0, 403);
    assert_eq!(app.dashboard("GET", &balance, "u_admin", None).await.0, 200);

    // The same value again records nothing.
    patch(&app, "u_owner", json!({ "members_see_billing": false })).await;
    let changes = settings(&app).await["changes"].clone();
    let seen: Vec<(&str, &str, &str, &str)> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["setting"].as_str().unwrap(),
                c["from"].as_str().unwrap(),
                c["to"].as_str().unwrap(),
                c["by"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("members_see_billing", "true", "false", "u_owner"),
            ("purchase_policy", "owners_only", "owners_and_admins", "u_owner"),
        ],
        "newest first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_low_balance_threshold_is_the_orgs_then_the_default_again() {
    let app = app().await;
    let s = settings(&app).await;
    assert_eq!(
        (
            s["low_balance_threshold_usd"].as_str(),
            s["low_balance_threshold_is_default"].as_bool()
        ),
        (Some("20.00"), Some(true)),
        "{s}"
    );
    let (status, body) = patch(&app, "u_owner", json!({ "low_balance_threshold_usd": "-1" })).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("negative"),
        "{body}"
    );

    let (status, body) = patch(&app, "u_owner", json!({ "low_balance_threshold_usd": "60.00" })).await;
    assert_eq!(
        (status, body["low_balance_alert_below_usd"].as_str()),
        (200, Some("60.00")),
        "{body}"
    );
    // $100 → $55: below the org's $60, where the default $20 would say nothing.
    let answer = spend(&app, "r_1", "30.00").await;
    assert_eq!(answer["low_balance"], true, "{answer}");
    let (_, notes) = app
        .dashboard("GET", &format!("/v1/orgs/{ORG}/notifications"), "u_owner", None)
        .await;
    let lows = notes["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "credit_balance_low")
        .count();
    assert_eq!(lows, 1, "{notes}");

    // Back to the default.
    let (status, body) = patch(&app, "u_owner", json!({ "low_balance_threshold_usd": null })).await;
    assert_eq!(
        (
            status,
            body["low_balance_threshold_usd"].as_str(),
            body["low_balance_threshold_is_default"].as_bool()
        ),
        (200, Some("20.00"), Some(true)),
        "{body}"
    );
    let first = &body["changes"][0];
    assert_eq!(
        (
            first["setting"].as_str(),
            first["from"].as_str(),
            first["to"].as_str()
        ),
        (Some("low_balance_threshold"), Some("60.00"), None),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_sets_the_markup_and_the_next_call_is_billed_at_it() {
    let app = app().await;
    let put = async |role: &str, body: Value| {
        let e = iam_event(role, "PUT", &format!("/v1/orgs/{ORG}/markup"), Some(&body));
        let (status, answer, _) = app.send("usage", &e).await;
        (status, answer)
    };
    assert_eq!(
        put("runtime", json!({ "markup": "2" })).await.0,
        403,
        "the runtime may not"
    );
    let (status, body) = put("operator", json!({ "markup": "0" })).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_markup")),
        "{body}"
    );
    let (status, body) = put("operator", json!({})).await;
    assert_eq!(status, 400, "the markup must be named: {body}");
    let e = iam_event(
        "operator",
        "PUT",
        "/v1/orgs/org_nobody/markup",
        Some(&json!({ "markup": "2" })),
    );
    let (status, body, _) = app.send("usage", &e).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_org")),
        "{body}"
    );

    assert_eq!(spend(&app, "r_1", "1.00").await["charged"], "1.50", "the default");
    let (status, body) = put("operator", json!({ "markup": "2" })).await;
    assert_eq!(
        (status, body["billed_at"].as_str(), body["changed"].as_bool()),
        (200, Some("2"), Some(true)),
        "{body}"
    );
    assert_eq!(spend(&app, "r_2", "1.00").await["charged"], "2.00");
    // The call billed before keeps its charge: 100 - 1.50 - 2.00.
    let wallet = app.usage.store.wallet(&OrgId::parse(ORG).unwrap()).await.unwrap();
    assert_eq!(wallet.balance().unwrap().to_string(), "96.50");

    let (status, body) = put("operator", json!({ "markup": null })).await;
    assert_eq!((status, body["billed_at"].as_str()), (200, Some("1.5")), "{body}");
    assert_eq!(spend(&app, "r_3", "1.00").await["charged"], "1.50");
    let changes = settings(&app).await["changes"].clone();
    let first = &changes[0];
    assert_eq!(
        (
            first["setting"].as_str(),
            first["from"].as_str(),
            first["to"].as_str()
        ),
        (Some("markup"), Some("2"), None),
        "{changes}"
    );
    let by = first["by"].as_str().unwrap();
    assert!(by == "operator:agent-credits-operator", "{by}");
}

/// A markup sent for an org whose settings changed between its read and its write: 409
/// `org_changed`, and the write (conditioned on what was read) is not made. The race is
/// made on cue with aws-smithy-mocks, the one thing the emulator cannot do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_markup_set_on_an_org_that_changed_meanwhile_is_409() {
    use std::collections::HashMap;

    use agent_credits_domain::{BillingMode, Wallet};
    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_sdk_dynamodb::types::{AttributeValue as V, CancellationReason};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    let s = |v: &str| V::S(v.to_owned());
    let profile: HashMap<String, V> = [
        ("pk", s("ORG#org_m")),
        ("sk", s("PROFILE")),
        ("type", s("org")),
        ("name", s("m")),
        ("runtime", s("claude_code")),
        ("billing_mode", s("credits")),
        ("purchase_policy", s("owners_only")),
        ("members_see_billing", V::Bool(true)),
        ("credits_per_usd", V::N("200".into())),
        ("created_at", s("2026-11-22T05:00:00.000Z")),
        ("owners", V::N("1".into())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut w = Wallet::empty(OrgId::parse("org_m").unwrap());
    w.settings.billing_mode = Some(BillingMode::Credits);
    w.version = 1;
    let wallet = agent_credits_dynamo::items::wallet_item(&w, chrono::Utc::now()).unwrap();
    let is = |sk: &'static str| {
        move |r: &aws_sdk_dynamodb::operation::get_item::GetItemInput| {
            r.key().and_then(|k| k.get("sk")) == Some(&V::S(sk.to_owned()))
        }
    };
    let rules = [
        mock!(Client::get_item)
            .match_requests(is("PROFILE"))
            .then_output(move || GetItemOutput::builder().set_item(Some(profile.clone())).build()),
        mock!(Client::get_item)
            .match_requests(is("WALLET"))
            .then_output(move || GetItemOutput::builder().set_item(Some(wallet.clone())).build()),
        mock!(Client::transact_write_items).then_error(|| {
            let reason = |code: &str| CancellationReason::builder().code(code).build();
            TransactWriteItemsError::TransactionCanceledException(
                TransactionCanceledException::builder()
                    .message("Transaction cancelled [ConditionalCheckFailed, None, None]")
                    .cancellation_reasons(reason("ConditionalCheckFailed"))
                    .cancellation_reasons(reason("None"))
                    .cancellation_reasons(reason("None"))
                    .build(),
            )
        }),
    ];
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules.iter());
    let app = App::on(client, None, None).await;
    let e = iam_event(
        "operator",
        "PUT",
        "/v1/orgs/org_m/markup",
        Some(&json!({ "markup": "2" })),
    );
    let (status, body, _) = app.send("usage", &e).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("org_changed")),
        "{body}"
    );
}
