//! The documented errors every route shares, answered by every route: no token (401) on
//! the dashboard's, a store that cannot be reached (503), and a store that refuses the
//! request itself (500: a wrong table or role, for an operator). Each answer is checked
//! against `infra/openapi.yaml` as every test's answers are (`support::contract`), so a
//! route that answered something the document does not describe fails here.
//!
//! With the answers the other tests receive, these cover the document's answers;
//! `bash tests/contract-coverage` lists any that no test received.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agent_credits_http::Auth;
use common::{App, WEBHOOK_SECRET, fill, good_body};
use serde_json::{Value, json};

/// A request to `method path` as its route's caller sends it, with the document's example
/// body (for Stripe's route, a signed event of a type we do not handle: the store is
/// read, for its receipt, before the type is looked at).
fn request(method: &str, path: &str, auth: Auth) -> Value {
    let doc = common::openapi();
    let op = &doc["paths"][path][method.to_lowercase().as_str()];
    let body: Option<Value> = good_body(op).map(|b| serde_json::from_str(&b).unwrap());
    let concrete = fill(path, None);
    match auth {
        Auth::Runtime => common::runtime_event(method, &concrete, body.as_ref()),
        Auth::Operator => common::operator_event(method, &concrete, body.as_ref()),
        Auth::User | Auth::Member(_) | Auth::Personal => {
            common::dashboard_event(method, &concrete, "u_owner", body.as_ref())
        }
        Auth::Stripe => {
            let event = json!({
                "id": "evt_contract", "object": "event", "api_version": "2026-09-30.endive",
                "created": chrono::Utc::now().timestamp(), "livemode": false, "pending_webhooks": 1,
                "request": { "id": null, "idempotency_key": null },
                "type": "agent_credits.contract",
                "data": { "object": { "id": "x_contract", "object": "contract" } }
            })
            .to_string();
            let signature =
                stripe_sim::signature_header(WEBHOOK_SECRET, chrono::Utc::now().timestamp(), &event);
            let mut e = support::event("webhooks/stripe-event.json");
            e["headers"]["stripe-signature"] = json!(signature.unwrap());
            e["body"] = json!(event);
            e
        }
    }
}

#[tokio::test]
async fn a_dashboard_route_without_a_token_is_401() {
    let app = App::start(None).await;
    let mut asked = 0;
    for (tag, method, path, auth) in common::route_table() {
        if !matches!(auth, Auth::User | Auth::Member(_) | Auth::Personal) {
            continue;
        }
        let mut e = request(&method, path, auth);
        e["requestContext"].as_object_mut().unwrap().remove("authorizer");
        let (status, body, _) = app.send(tag, &e).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthenticated")),
            "{method} {path}: {body}"
        );
        asked += 1;
    }
    assert!(asked >= 22, "{asked}");
}

/// The routes that read Secrets Manager, not the table: the runtime's key fetch.
fn reads_no_table(path: &str) -> bool {
    path.contains("/provider-keys/")
}

/// Every route, with DynamoDB (and Secrets Manager) out of reach: 503, retry later.
#[tokio::test]
async fn every_route_answers_503_while_the_store_is_out_of_reach() {
    let nothing = support::dynamodb_client("http://127.0.0.1:9", None);
    let app = App::on(nothing, None, None).await;
    for (tag, method, path, auth) in common::route_table() {
        let (status, body, _) = app.send(tag, &request(&method, path, auth)).await;
        let code = if reads_no_table(path) {
            "keys_unavailable"
        } else {
            "unavailable"
        };
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some(code)),
            "{method} {path}: {body}"
        );
    }
}

/// Every route, with DynamoDB refusing every request as invalid (a wrong table or
/// role): 500 `internal`, never a 4xx the caller would act on, nor a 503 that retries
/// forever.
#[tokio::test]
async fn every_route_answers_500_when_the_store_refuses_the_request_itself() {
    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    let refused = || {
        ErrorMetadata::builder()
            .code("ValidationException")
            .message("refused")
            .build()
    };
    let rules = [
        mock!(Client::get_item)
            .then_error(move || aws_sdk_dynamodb::operation::get_item::GetItemError::generic(refused())),
        mock!(Client::query)
            .then_error(move || aws_sdk_dynamodb::operation::query::QueryError::generic(refused())),
        mock!(Client::put_item)
            .then_error(move || aws_sdk_dynamodb::operation::put_item::PutItemError::generic(refused())),
        mock!(Client::update_item).then_error(move || {
            aws_sdk_dynamodb::operation::update_item::UpdateItemError::generic(refused())
        }),
        mock!(Client::delete_item).then_error(move || {
            aws_sdk_dynamodb::operation::delete_item::DeleteItemError::generic(refused())
        }),
        mock!(Client::transact_get_items).then_error(move || {
            aws_sdk_dynamodb::operation::transact_get_items::TransactGetItemsError::generic(refused())
        }),
        mock!(Client::transact_write_items).then_error(move || {
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::generic(refused())
        }),
        mock!(Client::batch_get_item).then_error(move || {
            aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemError::generic(refused())
        }),
    ];
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules.iter());
    let app = App::on(client, None, None).await;
    for (tag, method, path, auth) in common::route_table().into_iter().filter(|r| !reads_no_table(r.2)) {
        let (status, body, _) = app.send(tag, &request(&method, path, auth)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (500, Some("internal")),
            "{method} {path}: {body}"
        );
        assert!(!body.to_string().contains("ValidationException"), "{body}");
    }
}

/// The answers particular to a route that no other test happens to ask for.
#[tokio::test]
async fn holds_captures_and_members_answer_their_documented_cases() {
    let app = App::start(None).await;
    app.org_with_members("u_owner", "org_demo", &[("u_member", "member")])
        .await;
    let org = agent_credits_domain::OrgId::parse("org_demo").unwrap();
    use agent_credits_domain::WalletStore;
    app.usage
        .store
        .apply(support::purchase(&org, "10", "seed"))
        .await
        .unwrap()
        .unwrap();
    let app = &app;
    let hold = async |org: &str, id: &str, amount: &str| {
        let body = json!({ "hold_id": id, "amount": amount });
        app.runtime("POST", &format!("/v1/orgs/{org}/holds"), Some(body))
            .await
    };
    let capture = async |org: &str, id: &str, cost: &str| {
        let body = json!({ "cost": cost, "model": "claude-sonnet" });
        app.runtime("POST", &format!("/v1/orgs/{org}/holds/{id}/capture"), Some(body))
            .await
    };
    let code = |answer: &(u16, Value)| (answer.0, answer.1["error"]["code"].as_str().map(str::to_owned));
    let made = hold("org_demo", "h_1", "1.00").await;
    assert_eq!(made.0, 201, "{}", made.1);
    assert_eq!(
        code(&hold("org_demo", "h_1", "2.00").await),
        (409, Some("idempotency_key_reused".into()))
    );
    assert_eq!(
        code(&hold("org_nobody", "h_2", "1.00").await),
        (404, Some("unknown_org".into()))
    );
    let captured = capture("org_demo", "h_1", "0.10").await;
    assert_eq!(captured.0, 200, "{}", captured.1);
    let again = capture("org_demo", "h_1", "0.20").await;
    assert_eq!(again.0, 409, "{}", again.1);
    assert_eq!(
        code(&capture("org_nobody", "h_1", "0.10").await),
        (404, Some("unknown_org".into()))
    );
    let (status, body) = app
        .dashboard("DELETE", "/v1/orgs/org_demo/members/u_nobody", "u_owner", None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("member_not_found")),
        "{body}"
    );

    // An org whose calls run on its own key holds nothing: 200, billed to the key (its
    // record in the table is what the rule reads; the secret itself is not fetched).
    let byok = json!({ "runtime": "claude_code", "billing_mode": "byok" });
    let (status, body) = app.create_org("u_owner", "org_byok", byok).await;
    assert_eq!(status, 201, "{body}");
    let byok_org = agent_credits_domain::OrgId::parse("org_byok").unwrap();
    let provider = agent_credits_domain::Provider::Anthropic;
    app.account
        .orgs
        .record_key(
            &byok_org,
            provider,
            "ab12",
            "test/byok/org_byok/anthropic",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let (status, body) = hold("org_byok", "h_3", "1.00").await;
    assert_eq!(
        (status, body["billed_to"].as_str(), body["held"].as_str()),
        (200, Some("provider_key"), Some("0.00")),
        "{body}"
    );
}
