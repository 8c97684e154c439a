//! The wire as seen without async-stripe: form encoding, error bodies, headers, `expand[]`,
//! and the payment page a person uses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use stripe_sim::StripeSim;

async fn post_form(sim: &StripeSim, path: &str, body: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut headers = vec![KEY, FORM];
    headers.extend_from_slice(extra);
    let (status, _, reply) = http("POST", &format!("{}{path}", sim.base_url()), &headers, body).await;
    (status, serde_json::from_str(&reply).unwrap())
}

#[tokio::test]
async fn bracketed_and_percent_encoded_parameters_reach_the_objects() {
    let sim = StripeSim::start().await.unwrap();
    // literal brackets as serde_qs sends them, and %5B%5D as a form encoder would
    let (status, customer) = post_form(
        &sim,
        "v1/customers",
        "email=a%2Bb%40x.example&name=Ada+Lovelace&metadata[org]=org%201&metadata%5Bplan%5D=pro%26co",
        &[],
    )
    .await;
    assert_eq!(status, 200, "{customer}");
    assert_eq!(customer["object"], "customer");
    assert_eq!(customer["email"], "a+b@x.example");
    assert_eq!(customer["name"], "Ada Lovelace");
    assert_eq!(customer["metadata"], json!({"org": "org 1", "plan": "pro&co"}));

    let body = format!(
        "mode=payment&customer={}&line_items[0][price_data][currency]=usd\
         &line_items[0][price_data][product_data][name]=Credits&line_items[0][price_data][unit_amount]=700\
         &line_items[0][quantity]=3&line_items[1][price_data][currency]=usd\
         &line_items[1][price_data][product_data][name]=Bonus&line_items[1][price_data][unit_amount]=100\
         &line_items[1][quantity]=1&success_url=http://127.0.0.1:1/ok?s={{CHECKOUT_SESSION_ID}}",
        customer["id"].as_str().unwrap()
    );
    let (status, session) = post_form(&sim, "v1/checkout/sessions", &body, &[]).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["amount_total"], 2200);
    assert_eq!(
        session["success_url"],
        "http://127.0.0.1:1/ok?s={CHECKOUT_SESSION_ID}"
    );
}

#[tokio::test]
async fn bad_requests_get_stripes_error_bodies_and_statuses() {
    let sim = StripeSim::start().await.unwrap();
    let base = sim.base_url().to_string();

    let (status, _, body) = http("POST", &format!("{base}v1/customers"), &[FORM], "").await;
    assert_eq!(status, 401);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not provide an API key")
    );

    let (status, error) = post_form(&sim, "v1/payment_intents", "currency=usd", &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "parameter_missing");
    assert_eq!(error["error"]["param"], "amount");

    let (status, error) = post_form(&sim, "v1/payment_intents", "amount=ten&currency=usd", &[]).await;
    assert_eq!(
        (status, error["error"]["message"].as_str()),
        (400, Some("Invalid integer: ten"))
    );

    let (status, error) = post_form(&sim, "v1/payment_intents", "amount=49&currency=usd", &[]).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("amount_too_small"))
    );

    let (status, error) = post_form(
        &sim,
        "v1/payment_intents",
        "amount=1000&currency=usd&customer=cus_nope",
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "resource_missing");
    assert_eq!(error["error"]["param"], "customer");

    let (status, error) = post_form(
        &sim,
        "v1/checkout/sessions",
        "mode=payment&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=500\
         &line_items[0][price_data][product_data][name]=x",
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["param"], "line_items[0][quantity]");

    let (status, _, body) = http("GET", &format!("{base}v1/payment_intents/pi_nope"), &[KEY], "").await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "resource_missing"
    );

    let (status, _, body) = http("GET", &format!("{base}v1/balance"), &[KEY], "").await;
    assert_eq!(status, 404);
    assert!(body.contains("Unrecognized request URL"), "{body}");
}

#[tokio::test]
async fn a_replayed_answer_says_so_in_its_headers() {
    let sim = StripeSim::start().await.unwrap();
    let url = format!("{}v1/customers", sim.base_url());
    let headers = [KEY, FORM, ("idempotency-key", "k1")];
    let (_, first_headers, first) = http("POST", &url, &headers, "email=a@b.example").await;
    let (status, replay_headers, replay) = http("POST", &url, &headers, "email=a@b.example").await;
    assert_eq!(status, 200);
    assert_eq!(replay, first);
    assert_eq!(replay_headers["idempotent-replayed"], "true");
    assert_eq!(replay_headers["original-request"], first_headers["request-id"]);
    // only one customer exists
    let (_, _, list) = http("GET", &format!("{url}?limit=100"), &[KEY], "").await;
    assert_eq!(
        serde_json::from_str::<Value>(&list).unwrap()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn expand_replaces_ids_with_the_objects() {
    let sim = StripeSim::start().await.unwrap();
    let (status, intent) = post_form(
        &sim,
        "v1/payment_intents",
        "amount=1500&currency=usd&payment_method=pm_card_visa&confirm=true&expand[]=latest_charge&expand[]=payment_method",
        &[],
    )
    .await;
    assert_eq!(status, 200, "{intent}");
    assert_eq!(intent["latest_charge"]["object"], "charge");
    assert_eq!(intent["latest_charge"]["amount"], 1500);
    assert_eq!(intent["payment_method"]["card"]["brand"], "visa");
    let (status, error) = post_form(
        &sim,
        "v1/payment_intents",
        "amount=1500&currency=usd&expand[]=nothing_here",
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be expanded")
    );
}

#[tokio::test]
async fn a_person_pays_on_the_payment_page_and_is_sent_to_the_success_url() {
    let sim = StripeSim::start().await.unwrap();
    let (_, session) = post_form(
        &sim,
        "v1/checkout/sessions",
        "mode=payment&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=1000\
         &line_items[0][price_data][product_data][name]=Agent+credits&line_items[0][quantity]=1\
         &success_url=http://127.0.0.1:1/done?id={CHECKOUT_SESSION_ID}&cancel_url=http://127.0.0.1:1/cancel",
        &[],
    )
    .await;
    let page_url = session["url"].as_str().unwrap();
    let (status, _, page) = http("GET", page_url, &[], "").await;
    assert_eq!(status, 200);
    assert!(page.contains("Pay $10.00 USD"), "{page}");
    assert!(page.contains(r#"value="pm_card_visa""#) && page.contains(r#"value="pm_card_chargeDeclined""#));

    let (status, _, page) = http("POST", page_url, &[FORM], "card=pm_card_chargeDeclined").await;
    assert_eq!(status, 402);
    assert!(page.contains("Your card was declined."), "{page}");

    let (status, headers, _) = http("POST", page_url, &[FORM], "card=pm_card_visa").await;
    assert_eq!(status, 303);
    let id = session["id"].as_str().unwrap();
    assert_eq!(
        headers["location"],
        format!("http://127.0.0.1:1/done?id={id}").as_str()
    );
    let (_, _, after) = http(
        "GET",
        &format!("{}v1/checkout/sessions/{id}", sim.base_url()),
        &[KEY],
        "",
    )
    .await;
    let after: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(
        (after["status"].as_str(), after["payment_status"].as_str()),
        (Some("complete"), Some("paid"))
    );
    // without setup_future_usage or a customer, Checkout creates no customer
    assert_eq!(after["customer"], Value::Null);
    assert_eq!(after["customer_details"]["email"], "payer@example.com");
}

#[tokio::test]
async fn the_events_list_holds_every_event_in_stripes_envelope() {
    let sim = StripeSim::start().await.unwrap();
    let (status, _) = post_form(
        &sim,
        "v1/payment_intents",
        "amount=1000&currency=usd&payment_method=pm_card_visa&confirm=true",
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, events) = http("GET", &format!("{}_sim/events", sim.base_url()), &[], "").await;
    assert_eq!(status, 200);
    let events: Value = serde_json::from_str(&events).unwrap();
    let event = &events["data"][0];
    assert_eq!(event["object"], "event");
    assert_eq!(event["type"], "payment_intent.succeeded");
    assert_eq!(event["api_version"], stripe_sim::API_VERSION);
    assert_eq!(event["livemode"], false);
    assert_eq!(event["pending_webhooks"], 0, "no endpoint was configured");
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    assert!(event["created"].is_i64());
}

#[tokio::test]
async fn the_key_may_come_as_basic_auth_as_curl_sends_it() {
    use base64::Engine;
    let sim = StripeSim::start().await.unwrap();
    let url = format!("{}v1/customers", sim.base_url());
    let basic = |user: &str| format!("Basic {}", base64::prelude::BASE64_STANDARD.encode(user));
    let (status, _, _) = http("GET", &url, &[("authorization", &basic("sk_test_abc:"))], "").await;
    assert_eq!(status, 200);
    let (status, _, body) = http(
        "GET",
        &url,
        &[("authorization", &basic("sk_live_abcdefghijkl:"))],
        "",
    )
    .await;
    assert_eq!(status, 401);
    assert!(body.contains("Invalid API Key provided: sk_live_*"), "{body}");
    assert!(
        body.contains("*ijkl\"") && !body.contains("abcdefgh"),
        "the key is redacted: {body}"
    );
}

#[tokio::test]
async fn a_subscription_checkout_takes_a_known_recurring_price() {
    let sim = StripeSim::start().await.unwrap();
    sim.add_price("price_team", 5000, Some("month")).unwrap();
    sim.add_price("price_once", 5000, None).unwrap();
    let session = |price: &str| {
        format!(
            "mode=subscription&line_items[0][price]={price}&line_items[0][quantity]=1\
             &success_url=http://127.0.0.1:1/ok&subscription_data[metadata][org]=o1"
        )
    };

    let (status, error) = post_form(&sim, "v1/checkout/sessions", &session("price_nope"), &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "resource_missing");
    assert_eq!(error["error"]["param"], "line_items[0][price]");

    let (status, error) = post_form(&sim, "v1/checkout/sessions", &session("price_once"), &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], "line_items[0][price]");

    let body = format!("{}&payment_intent_data[metadata][org]=o1", session("price_team"));
    let (status, error) = post_form(&sim, "v1/checkout/sessions", &body, &[]).await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("payment_intent_data"))
    );

    // without a customer, Checkout makes one for the subscription
    let (status, created) = post_form(&sim, "v1/checkout/sessions", &session("price_team"), &[]).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        (created["mode"].as_str(), created["amount_total"].as_i64()),
        (Some("subscription"), Some(5000))
    );
    let id = created["id"].as_str().unwrap();
    let outcome = sim
        .complete_checkout(id, stripe_sim::CompleteCheckout::default())
        .await
        .unwrap();
    let customer = outcome.object["customer"].as_str().unwrap();
    assert!(customer.starts_with("cus_"));
    let (_, subscription) = get_v1(
        &sim,
        &format!(
            "v1/subscriptions/{}",
            outcome.object["subscription"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(subscription["customer"], customer);
    assert_eq!(subscription["metadata"]["org"], "o1");

    // prices: unknown ones and bad definitions
    let (status, _, body) = http(
        "GET",
        &format!("{}v1/prices/price_nope", sim.base_url()),
        &[KEY],
        "",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, error) = control(
        &sim,
        "_sim/prices",
        json!({"id": "p", "unit_amount": 100, "interval": "week"}),
    )
    .await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("interval"))
    );
    let (status, once) = control(&sim, "_sim/prices", json!({"id": "p", "unit_amount": 100})).await;
    assert_eq!(status, 200, "{once}");
    assert_eq!(
        (once["type"].as_str(), &once["recurring"]),
        (Some("one_time"), &Value::Null)
    );
}

#[test]
fn the_binary_refuses_unusable_prices_with_a_clear_message() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stripe-sim"))
        .arg("127.0.0.1:0")
        .env("STRIPE_SIM_PRICES", r#"{"price_team": {"amount_usd": 50}"#)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("STRIPE_SIM_PRICES is not usable"), "{stderr}");
}

#[tokio::test]
async fn the_binary_sells_the_prices_of_its_environment() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stripe-sim"))
        .arg("127.0.0.1:0")
        .env(
            "STRIPE_SIM_PRICES",
            r#"{"price_team_monthly": {"amount_usd": "50.00", "base_usd": "40", "name": "Team"},
                "price_team_yearly": {"amount_usd": "480", "interval": "year"}}"#,
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let base = std::io::BufReader::new(stdout)
        .lines()
        .map(Result::unwrap)
        .find_map(|line| line.strip_prefix("stripe-sim: listening on ").map(str::to_string));
    let checked = async {
        let base = base.expect("the binary says where it listens");
        let (status, _, monthly) =
            http("GET", &format!("{base}v1/prices/price_team_monthly"), &[KEY], "").await;
        assert_eq!(status, 200, "{monthly}");
        let monthly: Value = serde_json::from_str(&monthly).unwrap();
        assert_eq!(monthly["unit_amount"], 5000);
        assert_eq!(monthly["recurring"]["interval"], "month");
        assert_eq!(monthly["nickname"], "Team");
        let (_, _, yearly) = http("GET", &format!("{base}v1/prices/price_team_yearly"), &[KEY], "").await;
        let yearly: Value = serde_json::from_str(&yearly).unwrap();
        assert_eq!(
            (
                yearly["unit_amount"].as_i64(),
                yearly["recurring"]["interval"].as_str()
            ),
            (Some(48_000), Some("year"))
        );
    };
    let result = tokio::spawn(checked).await;
    child.kill().unwrap();
    child.wait().unwrap();
    result.unwrap();
}
