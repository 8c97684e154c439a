//! The usage handler, driven by API Gateway v2 events from `infra/events/usage/`, against
//! dynoxide over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent_credits_aws::settings::FromEnv;
use agent_credits_domain::{
    Applied, BillingMode, Clock, HoldId, MemberId, ModelId, ModelRate, OrgId, PageRequest, PositiveUsd,
    Provider, RatePerMillion, RechargeTrigger, Runtime, Usd, WalletSettings, WalletStore,
};
use agent_credits_dynamo::{DynamoWalletStore, OrgStore, RateStore};
use chrono::{Duration, TimeZone, Utc};
use serde_json::{Value, json};
use support::TestClock;
use support::dynoxide::Dynoxide;
use usage::{Settings, Usage, handle};

/// Runs the futures at once on the runtime's workers and waits for all of them.
async fn spawn_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

struct App {
    _db: Dynoxide,
    svc: Arc<Usage>,
    clock: Arc<TestClock>,
    org: OrgId,
}

fn usd(s: &str) -> Usd {
    Usd::parse(s).unwrap()
}

async fn app_with(settings: WalletSettings, credits: &str) -> App {
    app_on(settings, Runtime::ClaudeCode, &[], credits).await
}

/// `org_demo` on `runtime` with its own keys for `keys`, created as the account function
/// creates orgs, with `credits` bought.
async fn app_on(settings: WalletSettings, runtime: Runtime, keys: &[Provider], credits: &str) -> App {
    let (db, client) = support::fresh_table("credits").await;
    let clock = Arc::new(TestClock::at(
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap(),
    ));
    let store = DynamoWalletStore::new(client.clone(), "credits", clock.clone());
    let rates = RateStore::new(client.clone(), "credits");
    let org = OrgId::parse("org_demo").unwrap();
    let orgs = OrgStore::new(client, "credits");
    let mut profile = support::credits_org(&org);
    profile.runtime = runtime;
    profile.billing_mode = settings.billing_mode.unwrap();
    let owner = MemberId::parse("u_owner").unwrap();
    assert!(orgs.create(&profile, &owner, &settings).await.unwrap());
    store.put_settings(&org, &settings).await.unwrap();
    for provider in keys {
        let name = format!("agent-credits/test/byok/{org}/{provider}");
        orgs.record_key(&org, *provider, "abcd", &name, Utc::now())
            .await
            .unwrap();
    }
    if PositiveUsd::parse(credits).is_ok() {
        let buy = support::purchase(&org, credits, "purchase:seed");
        assert!(matches!(
            store.apply(buy).await.unwrap(),
            Ok(Applied::Committed(_))
        ));
    }
    rates
        .put(&ModelRate {
            model: ModelId::parse("claude-sonnet-4").unwrap(),
            effective_from: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            input: RatePerMillion::parse("3").unwrap(),
            output: RatePerMillion::parse("15").unwrap(),
            cache_read: RatePerMillion::parse("0.30").unwrap(),
            cache_write: RatePerMillion::parse("3.75").unwrap(),
        })
        .await
        .unwrap();
    let settings = Settings::from_lookup(|name| support::usage_setting("credits", name)).unwrap();
    let svc = Arc::new(Usage {
        months: Arc::new(store.clone()),
        store,
        orgs,
        rates,
        clock: clock.clone(),
        settings,
        keys: None,
    });
    App {
        _db: db,
        svc,
        clock,
        org,
    }
}

/// A byok org on Claude Code with its Anthropic key, with `credits` bought.
async fn byok_on_claude(credits: &str) -> App {
    app_on(
        WalletSettings {
            billing_mode: Some(BillingMode::Byok),
            ..Default::default()
        },
        Runtime::ClaudeCode,
        &[Provider::Anthropic],
        credits,
    )
    .await
}

async fn app(credits: &str) -> App {
    app_with(
        WalletSettings {
            billing_mode: Some(BillingMode::Credits),
            ..Default::default()
        },
        credits,
    )
    .await
}

fn with_body(mut event: Value, body: Value) -> Value {
    event["body"] = Value::String(body.to_string());
    event
}

fn body_of(event: &Value) -> Value {
    serde_json::from_str(event["body"].as_str().unwrap()).unwrap()
}

/// The fixture with some body fields replaced.
fn event_with(name: &str, changes: Value) -> Value {
    let event = support::event(name);
    let mut body = body_of(&event);
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    with_body(event, body)
}

async fn call(svc: &Usage, event: &Value) -> (u16, Value) {
    support::contract::call(event, |req| handle(svc, req)).await
}

/// What the webhooks function will do on `charge.dispute.created` (its own issue).
async fn pause_for_dispute(app: &App) {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    app.svc
        .store
        .client()
        .update_item()
        .table_name("credits")
        .key("pk", S("ORG#org_demo".into()))
        .key("sk", S("WALLET".into()))
        .update_expression("SET #s = :p, pause_reason = :r")
        .expression_attribute_names("#s", "state")
        .expression_attribute_values(":p", S("paused".into()))
        .expression_attribute_values(":r", S("disputed".into()))
        .send()
        .await
        .unwrap();
}

/// The org's newest ledger entry.
async fn last_entry(app: &App) -> agent_credits_domain::LedgerEntry {
    let page = app
        .svc
        .store
        .history(&app.org, PageRequest::first(1))
        .await
        .unwrap();
    page.entries[0].clone()
}

async fn balance(app: &App) -> Usd {
    app.svc.store.wallet(&app.org).await.unwrap().balance().unwrap()
}

async fn table_dump(app: &App) -> Vec<String> {
    let out = app
        .svc
        .store
        .client()
        .scan()
        .table_name("credits")
        .send()
        .await
        .unwrap();
    let mut items: Vec<String> = out
        .items()
        .iter()
        .map(|i| format!("{:?}", i.iter().collect::<std::collections::BTreeMap<_, _>>()))
        .collect();
    items.sort();
    items
}

#[tokio::test]
async fn a_reported_cost_is_billed_at_the_markup() {
    let app = app("10.00").await;
    let (status, body) = call(&app.svc, &support::event("usage/debit-cost.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["billed"], "0.01845");
    assert_eq!(body["charged"], "0.01845");
    assert_eq!(body["available"], "9.98155");
    assert_eq!(body["state"], "active");
    assert_eq!(balance(&app).await, usd("9.98155"));
    let entry = &last_entry(&app).await;
    assert_eq!(entry.attribution.member, Some(MemberId::parse("m_ana").unwrap()));
    assert_eq!(entry.attribution.api_key.as_ref().unwrap().as_str(), "key_ci");
    assert_eq!(entry.attribution.agent.as_ref().unwrap().as_str(), "agent_7");
}

#[tokio::test]
async fn tokens_are_priced_at_todays_rate_and_a_rate_from_tomorrow_changes_nothing() {
    let app = app("10.00").await;
    let (status, body) = call(&app.svc, &support::event("usage/debit-tokens.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["billed"], "0.01575",
        "1,000 in at $3/M + 500 out at $15/M = $0.0105, × 1.5"
    );

    let tomorrow = (app.clock.now().date_naive() + Duration::days(1)).to_string();
    let (status, _) = call(
        &app.svc,
        &with_body(
            support::event("usage/put-rate.json"),
            json!({ "effective_from": tomorrow, "input": "30", "output": "150" }),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = call(
        &app.svc,
        &event_with("usage/debit-tokens.json", json!({ "request_id": "req_0003" })),
    )
    .await;
    assert_eq!(body["billed"], "0.01575", "today's price stands");

    app.clock.advance(Duration::days(1));
    let (_, body) = call(
        &app.svc,
        &event_with("usage/debit-tokens.json", json!({ "request_id": "req_0004" })),
    )
    .await;
    assert_eq!(body["billed"], "0.1575", "from its date on, the new rate applies");
}

#[tokio::test]
async fn an_org_markup_overrides_the_default() {
    let app = app_with(
        WalletSettings {
            billing_mode: Some(BillingMode::Credits),
            markup: Some(agent_credits_domain::Markup::parse("2").unwrap()),
            ..Default::default()
        },
        "10",
    )
    .await;
    let (_, body) = call(&app.svc, &support::event("usage/debit-cost.json")).await;
    assert_eq!(body["billed"], "0.0246");
}

#[tokio::test]
async fn bad_requests_get_a_4xx_code_and_write_nothing() {
    let app = app("10.00").await;
    let before = table_dump(&app).await;
    let cases = [
        (
            json!({ "model": "gpt-unknown", "cost": null, "tokens": { "input": 10 } }),
            400,
            "unknown_model",
        ),
        (json!({ "cost": "-0.01" }), 400, "invalid_request"),
        (json!({ "cost": 0.0123 }), 400, "invalid_request"),
        (json!({ "cost": "1e400" }), 400, "invalid_request"),
        (json!({ "tokens": { "input": 10 } }), 400, "ambiguous_cost"),
        (json!({ "cost": null }), 400, "missing_cost"),
        (json!({ "request_id": null }), 400, "missing_request_id"),
        (json!({ "member": "m#1" }), 400, "invalid_request"),
        (json!({ "surprise": true }), 400, "invalid_request"),
        (
            json!({ "cost": null, "model": null, "tokens": { "input": 10 } }),
            400,
            "missing_model",
        ),
        // A charge beyond the $1,000,000,000 bound, from a cost or from tokens.
        (json!({ "cost": "999999999999" }), 400, "amount_out_of_range"),
        (
            json!({ "cost": null, "tokens": { "output": 9_223_372_036_854_775_807u64 } }),
            400,
            "amount_out_of_range",
        ),
        // An array where the document says object, nested or not.
        (json!({ "cost": null, "tokens": [] }), 400, "invalid_request"),
        (json!({ "cost": null, "tokens": [10, 5] }), 400, "invalid_request"),
    ];
    for (changes, status, code) in cases {
        let (got, body) = call(&app.svc, &event_with("usage/debit-cost.json", changes.clone())).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{changes} -> {body}"
        );
    }
    let as_array = with_body(
        support::event("usage/debit-cost.json"),
        json!(["id", "m", "k", "a", "claude_code", "model", "0.01"]),
    );
    let (got, body) = call(&app.svc, &as_array).await;
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );

    let mut not_json = support::event("usage/debit-cost.json");
    not_json["body"] = Value::String("{not json".into());
    let (got, body) = call(&app.svc, &not_json).await;
    assert_eq!((got, body["error"]["code"].as_str()), (400, Some("invalid_json")));

    let mut unsigned = support::event("usage/debit-cost.json");
    unsigned["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let (got, body) = call(&app.svc, &unsigned).await;
    assert_eq!((got, body["error"]["code"].as_str()), (403, Some("forbidden")));

    // An operator's route: a date not written yyyy-mm-dd, and a day gone.
    for (date, code) in [
        ("26-01-01", "invalid_request"),
        ("2026-11-21", "rate_in_the_past"),
    ] {
        let put = with_body(
            support::event("usage/put-rate.json"),
            json!({ "effective_from": date, "input": "3", "output": "15" }),
        );
        let (got, body) = call(&app.svc, &put).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{date}: {body}"
        );
    }
    // The runtime may not set rates at all.
    let mut by_runtime = support::event("usage/put-rate.json");
    by_runtime["requestContext"]["authorizer"] =
        support::event("usage/may-i-run.json")["requestContext"]["authorizer"].clone();
    let (got, body) = call(&app.svc, &by_runtime).await;
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    let mut unknown_org = support::event("usage/debit-cost.json");
    unknown_org["rawPath"] = json!("/v1/orgs/org_nobody/usage");
    let (got, body) = call(&app.svc, &unknown_org).await;
    assert_eq!((got, body["error"]["code"].as_str()), (404, Some("unknown_org")));

    assert_eq!(table_dump(&app).await, before, "no bad request wrote anything");
}

#[tokio::test]
async fn a_replayed_debit_answers_the_same_and_charges_once() {
    let app = app("10.00").await;
    let event = support::event("usage/debit-cost.json");
    let (_, first) = call(&app.svc, &event).await;
    let (_, again) = call(&app.svc, &event).await;
    assert_eq!(again["entry_id"], first["entry_id"]);
    assert_eq!(again["replayed"], true);
    assert_eq!(balance(&app).await, usd("9.98155"));
    let (status, body) = call(
        &app.svc,
        &event_with("usage/debit-cost.json", json!({ "cost": "0.5" })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
}

#[tokio::test]
async fn a_debit_beyond_the_balance_takes_what_is_there_pauses_at_zero_and_notifies_once() {
    let app = app("0.10").await;
    let (status, body) = call(
        &app.svc,
        &event_with("usage/debit-cost.json", json!({ "cost": "0.10" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["billed"], "0.15");
    assert_eq!(body["charged"], "0.10");
    assert_eq!(body["shortfall"], "0.05");
    assert_eq!(body["available"], "0.00");
    assert_eq!(
        (body["state"].as_str(), body["pause_reason"].as_str()),
        (Some("paused"), Some("credits_exhausted"))
    );
    assert_eq!(balance(&app).await, Usd::ZERO);

    // Another call after the pause: nothing left to take, the shortfall is recorded, and
    // the depletion is not announced twice.
    let (_, body) = call(
        &app.svc,
        &event_with(
            "usage/debit-cost.json",
            json!({ "request_id": "req_late", "cost": "0.01" }),
        ),
    )
    .await;
    assert_eq!(
        (body["charged"].as_str(), body["shortfall"].as_str()),
        (Some("0.00"), Some("0.015"))
    );
    let kinds: Vec<String> = app
        .svc
        .store
        .notifications(&app.org, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.kind)
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "credit_balance_depleted").count(),
        1,
        "{kinds:?}"
    );

    let (_, verdict) = call(&app.svc, &support::event("usage/may-i-run.json")).await;
    assert_eq!(
        (verdict["allowed"].as_bool(), verdict["reason"].as_str()),
        (Some(false), Some("credits_exhausted"))
    );

    app.svc
        .store
        .apply(support::purchase(&app.org, "100", "purchase:cs_2"))
        .await
        .unwrap()
        .unwrap();
    let (_, verdict) = call(&app.svc, &support::event("usage/may-i-run.json")).await;
    assert_eq!(
        (verdict["allowed"].as_bool(), verdict["reason"].as_str()),
        (Some(true), None)
    );
}

#[tokio::test]
async fn falling_below_the_threshold_notifies_once_per_crossing_and_marks_recharge_due() {
    let app = app_with(
        WalletSettings {
            billing_mode: Some(BillingMode::Credits),
            recharge: RechargeTrigger {
                enabled: true,
                threshold: usd("20"),
            },
            ..Default::default()
        },
        "20.01",
    )
    .await;
    for i in 0..3 {
        let (status, body) = call(
            &app.svc,
            &event_with(
                "usage/debit-cost.json",
                json!({ "request_id": format!("r{i}"), "cost": "0.01" }),
            ),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["low_balance"], true);
    }
    let lows = app.svc.store.notifications(&app.org, 10).await.unwrap();
    assert_eq!(lows.iter().filter(|n| n.kind == "credit_balance_low").count(), 1);
    let due = app
        .svc
        .store
        .client()
        .query()
        .table_name("credits")
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :due")
        .expression_attribute_values(
            ":due",
            aws_sdk_dynamodb::types::AttributeValue::S("DUE#RECHARGE".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        due.items().len(),
        1,
        "the org is due for a recharge, found without a scan"
    );
}

#[tokio::test]
async fn a_hold_reserves_and_its_capture_charges_the_actual() {
    let app = app("1.00").await;
    let (status, body) = call(&app.svc, &support::event("usage/hold.json")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["available"], "0.50");
    let (status, body) = call(&app.svc, &support::event("usage/capture.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["charged"], "0.30", "0.20 × 1.5");
    assert_eq!(body["available"], "0.70");
    let hold = app
        .svc
        .store
        .hold(&app.org, &HoldId::parse("h_demo").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hold.state, "captured");
    let (status, body) = call(&app.svc, &support::event("usage/release.json")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("hold_closed"))
    );
}

#[tokio::test]
async fn a_hold_beyond_available_is_refused_and_an_expired_hold_is_released() {
    let app = app("1.00").await;
    let (status, body) = call(
        &app.svc,
        &event_with("usage/hold.json", json!({ "amount": "1.01" })),
    )
    .await;
    assert_eq!(
        (
            status,
            body["error"]["code"].as_str(),
            body["error"]["available"].as_str()
        ),
        (402, Some("insufficient_credits"), Some("1.00"))
    );

    let (status, _) = call(
        &app.svc,
        &event_with("usage/hold.json", json!({ "amount": "1.00", "ttl_seconds": 60 })),
    )
    .await;
    assert_eq!(status, 201);
    let (_, verdict) = call(&app.svc, &support::event("usage/may-i-run.json")).await;
    assert_eq!(verdict["allowed"], false, "everything is held");

    app.clock.advance(Duration::seconds(61));
    let (_, verdict) = call(&app.svc, &support::event("usage/may-i-run.json")).await;
    assert_eq!(
        (verdict["allowed"].as_bool(), verdict["available"].as_str()),
        (Some(true), Some("1.00"))
    );
    let hold = app
        .svc
        .store
        .hold(&app.org, &HoldId::parse("h_demo").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hold.state, "released");

    // The call finished late: its capture still charges, up to what is available.
    let (status, body) = call(&app.svc, &support::event("usage/capture.json")).await;
    assert_eq!((status, body["charged"].as_str()), (200, Some("0.30")));
}

#[tokio::test]
async fn byok_usage_is_recorded_but_never_debits_the_wallet() {
    let app = byok_on_claude("5.00").await;
    let (status, body) = call(&app.svc, &support::event("usage/debit-cost.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["billed_to"], "provider_key");
    assert_eq!(balance(&app).await, usd("5.00"));
    let (_, again) = call(&app.svc, &support::event("usage/debit-cost.json")).await;
    assert_eq!(
        (again["replayed"].clone(), again["billed"].clone()),
        (json!(true), body["billed"].clone())
    );
    // The same request id reporting another cost is another request.
    let (status, other) = call(
        &app.svc,
        &event_with("usage/debit-cost.json", json!({ "cost": "5.00" })),
    )
    .await;
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
    let (_, verdict) = call(&app.svc, &support::event("usage/may-i-run.json")).await;
    assert_eq!(verdict["allowed"], true);
}

/// A report says what the call ran on (`billed_to`, the verdict the runtime was given):
/// a call on credits is debited even if the org has its key now; one said to be on the
/// org's key is free only while the org has the key its runtime needs. Codex needs an
/// OpenAI key, so an org with only an Anthropic key pays for a Codex call claimed as its
/// own, and so does a deferred org with no key at all.
#[tokio::test]
async fn a_call_said_to_run_on_a_key_the_org_lacks_is_debited() {
    let byok = WalletSettings {
        billing_mode: Some(BillingMode::Byok),
        ..Default::default()
    };
    let deferred = WalletSettings {
        billing_mode: Some(BillingMode::Deferred),
        ..Default::default()
    };
    let cases = [
        (
            byok,
            Runtime::ClaudeCode,
            vec![Provider::Anthropic],
            "provider_key",
            "provider_key",
            "5.00",
        ),
        (
            byok,
            Runtime::ClaudeCode,
            vec![Provider::Anthropic],
            "credits",
            "credits",
            "4.98155",
        ),
        (
            byok,
            Runtime::Codex,
            vec![Provider::Anthropic],
            "provider_key",
            "credits",
            "4.98155",
        ),
        (
            deferred,
            Runtime::ClaudeCode,
            vec![],
            "provider_key",
            "credits",
            "4.98155",
        ),
        (
            deferred,
            Runtime::ClaudeCode,
            vec![Provider::Anthropic],
            "credits",
            "credits",
            "4.98155",
        ),
    ];
    for (settings, runtime, keys, said, billed_to, left) in cases {
        let app = app_on(settings, runtime, &keys, "5.00").await;
        let (status, body) = call(
            &app.svc,
            &event_with("usage/debit-cost.json", json!({ "billed_to": said })),
        )
        .await;
        let case = format!("{runtime:?} with {keys:?} said {said}: {body}");
        assert_eq!(
            (status, body["billed_to"].as_str()),
            (200, Some(billed_to)),
            "{case}"
        );
        assert_eq!(balance(&app).await, usd(left), "{case}");
    }
}

#[tokio::test]
async fn a_deferred_org_without_key_or_credits_may_not_run() {
    let app = app_with(
        WalletSettings {
            billing_mode: Some(BillingMode::Deferred),
            ..Default::default()
        },
        "0",
    )
    .await;
    let (_, verdict) = call(&app.svc, &support::event("usage/may-i-run.json")).await;
    assert_eq!(
        (verdict["allowed"].as_bool(), verdict["reason"].as_str()),
        (Some(false), Some("no_key_configured"))
    );
    // The terminal links to the runtime's key-setup guide: by default its provider's key
    // page, else the deployment's guide with the runtime filled in.
    assert_eq!(
        verdict["key_setup_url"], "https://console.anthropic.com/settings/keys",
        "{verdict}"
    );
    let mut app = app;
    Arc::get_mut(&mut app.svc).unwrap().settings.key_setup_guide =
        Some("https://docs.example.com/agents/{runtime}/keys".into());
    let (_, verdict) = call(&app.svc, &support::event("usage/may-i-run.json")).await;
    assert_eq!(
        verdict["key_setup_url"], "https://docs.example.com/agents/claude_code/keys",
        "{verdict}"
    );
}

#[tokio::test]
async fn a_disputed_org_is_reported_paused_with_its_reason() {
    let app = app("10").await;
    pause_for_dispute(&app).await;
    let (_, verdict) = call(&app.svc, &support::event("usage/may-i-run.json")).await;
    assert_eq!(
        (verdict["allowed"].as_bool(), verdict["reason"].as_str()),
        (Some(false), Some("disputed"))
    );
}

/// `m_ana` of an org with $50, limited to $1.00 a month; then `n` requests made by
/// `event` at once, with their answers.
async fn at_once_with_a_dollar_limit(
    n: usize,
    event: impl Fn(usize) -> Value,
) -> (App, MemberId, Vec<(u16, Value)>) {
    let app = app("50.00").await;
    let member = MemberId::parse("m_ana").unwrap();
    app.svc
        .store
        .set_member_limit(&app.org, &member, Some(usd("1.00")))
        .await
        .unwrap();
    let svc = app.svc.clone();
    let results = spawn_all((0..n).map(|i| {
        let (svc, event) = (svc.clone(), event(i));
        async move { call(&svc, &event).await }
    }))
    .await;
    (app, member, results)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_call_is_billed_past_the_member_limit_under_32_concurrent_debits() {
    let (app, member, results) = at_once_with_a_dollar_limit(32, |i| {
        event_with(
            "usage/debit-cost.json",
            json!({ "request_id": format!("r{i}"), "cost": "0.05" }),
        )
    })
    .await;
    // Calls already made: every one charged, whatever the limit.
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    assert_eq!(balance(&app).await, usd("47.60"), "32 calls of $0.075 charged");
    let month = app
        .svc
        .store
        .member_month(&app.org, &member, app.clock.now())
        .await
        .unwrap();
    assert_eq!(month.spent, usd("2.40"), "all counted in the member's month");
    // From now on the member may not run, and may not reserve.
    let (_, verdict) = call(&app.svc, &support::event("usage/may-i-run.json")).await;
    assert_eq!(
        (verdict["allowed"].as_bool(), verdict["reason"].as_str()),
        (Some(false), Some("member_limit_reached"))
    );
    let (status, body) = call(
        &app.svc,
        &event_with("usage/hold.json", json!({ "amount": "0.01" })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("member_limit_reached"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_parallel_holds_of_90_cents_on_a_dollar_limit_admit_one() {
    let (app, member, results) = at_once_with_a_dollar_limit(10, |i| {
        event_with(
            "usage/hold.json",
            json!({ "hold_id": format!("h{i}"), "amount": "0.90" }),
        )
    })
    .await;
    let admitted = results.iter().filter(|(s, _)| *s == 201).count();
    let refused = results
        .iter()
        .filter(|(s, b)| *s == 403 && b["error"]["code"] == "member_limit_reached")
        .count();
    assert_eq!((admitted, refused), (1, 9), "{results:?}");
    let month = app
        .svc
        .store
        .member_month(&app.org, &member, app.clock.now())
        .await
        .unwrap();
    assert_eq!((month.spent, month.held), (Usd::ZERO, usd("0.90")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_callers_mixing_debits_and_holds_never_overdraw() {
    let app = app("5.00").await;
    let svc = app.svc.clone();
    let results = spawn_all((0..64).map(|i| {
        let svc = svc.clone();
        async move {
            let mut seen = vec![];
            let hold = format!("h{i}");
            match i % 4 {
                // A debit.
                0 => seen.push(
                    call(
                        &svc,
                        &event_with(
                            "usage/debit-cost.json",
                            json!({ "request_id": format!("r{i}"), "cost": "0.10" }),
                        ),
                    )
                    .await,
                ),
                // Hold, then capture less than held.
                1 | 2 => {
                    let mut e = event_with("usage/hold.json", json!({ "hold_id": hold, "amount": "0.30" }));
                    seen.push(call(&svc, &e).await);
                    e = event_with(
                        "usage/capture.json",
                        json!({ "cost": if i % 4 == 1 { "0.10" } else { "0.40" } }),
                    );
                    e["rawPath"] = json!(format!("/v1/orgs/org_demo/holds/{hold}/capture"));
                    seen.push(call(&svc, &e).await);
                }
                // Hold, then release.
                _ => {
                    seen.push(
                        call(
                            &svc,
                            &event_with("usage/hold.json", json!({ "hold_id": hold, "amount": "0.20" })),
                        )
                        .await,
                    );
                    let mut e = support::event("usage/release.json");
                    e["rawPath"] = json!(format!("/v1/orgs/org_demo/holds/{hold}/release"));
                    seen.push(call(&svc, &e).await);
                }
            }
            seen
        }
    }))
    .await;
    for (status, body) in results.iter().flatten() {
        match status {
            200 | 201 => {
                if let Some(a) = body["available"].as_str() {
                    assert!(Usd::parse(a).is_ok(), "available {a} is a non-negative amount");
                }
            }
            402 => assert_eq!(body["error"]["code"], "insufficient_credits"),
            404 => assert_eq!(
                body["error"]["code"], "hold_not_found",
                "capture or release of a hold refused"
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let wallet = app.svc.store.wallet(&app.org).await.unwrap();
    assert_eq!(wallet.held, Usd::ZERO, "every hold ended captured or released");
    let mut entries = vec![];
    let mut page = PageRequest::first(100);
    loop {
        let p = app.svc.store.history(&app.org, page).await.unwrap();
        entries.extend(p.entries);
        match p.next {
            Some(c) => page = PageRequest::after_cursor(100, c),
            None => break,
        }
    }
    entries.reverse();
    let mut running = Usd::ZERO;
    let mut held = Usd::ZERO;
    for e in &entries {
        running = e.amount.apply_to(running).unwrap();
        held = e.held_change.apply_to(held).unwrap();
        assert_eq!(e.balance_after, running);
        assert_eq!(
            e.available_after,
            running.saturating_sub(held),
            "available after entry {}",
            e.seq
        );
        assert!(
            held <= running,
            "held never exceeds the balance (entry {})",
            e.seq
        );
    }
    assert_eq!(running, wallet.balance().unwrap(), "final balance = ledger sum");
    for i in (1..64).filter(|i| i % 4 != 0) {
        if let Some(h) = app
            .svc
            .store
            .hold(&app.org, &HoldId::parse(format!("h{i}")).unwrap())
            .await
            .unwrap()
        {
            assert!(
                h.state == "captured" || h.state == "released",
                "hold h{i} ended {}",
                h.state
            );
        }
    }
}

#[tokio::test]
async fn a_hold_must_fit_the_member_limit_and_its_capture_is_always_charged() {
    let app = app("50.00").await;
    let member = MemberId::parse("m_ana").unwrap();
    app.svc
        .store
        .set_member_limit(&app.org, &member, Some(usd("1.00")))
        .await
        .unwrap();
    let (status, body) = call(
        &app.svc,
        &event_with("usage/hold.json", json!({ "amount": "1.01" })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("member_limit_reached")),
        "{body}"
    );

    let (status, _) = call(
        &app.svc,
        &event_with("usage/hold.json", json!({ "amount": "0.90" })),
    )
    .await;
    assert_eq!(status, 201);
    // The call cost more than its hold and the report names no member: the hold's member
    // is charged, past the limit, because the call was admitted.
    let (status, body) = call(
        &app.svc,
        &event_with("usage/capture.json", json!({ "member": null, "cost": "0.80" })),
    )
    .await;
    assert_eq!((status, body["charged"].as_str()), (200, Some("1.20")), "{body}");
    let month = app
        .svc
        .store
        .member_month(&app.org, &member, app.clock.now())
        .await
        .unwrap();
    assert_eq!(
        (month.spent, month.held),
        (usd("1.20"), Usd::ZERO),
        "the hold's reservation is freed"
    );
    let (_, verdict) = call(&app.svc, &support::event("usage/may-i-run.json")).await;
    assert_eq!(
        (verdict["allowed"].as_bool(), verdict["reason"].as_str()),
        (Some(false), Some("member_limit_reached"))
    );
}

#[tokio::test]
async fn a_disputed_org_reserves_nothing_but_calls_already_made_are_charged() {
    let app = app("10").await;
    pause_for_dispute(&app).await;
    let (status, body) = call(&app.svc, &support::event("usage/hold.json")).await;
    assert_eq!(
        (
            status,
            body["error"]["code"].as_str(),
            body["error"]["reason"].as_str()
        ),
        (403, Some("org_paused"), Some("disputed"))
    );
    let (status, body) = call(&app.svc, &support::event("usage/debit-cost.json")).await;
    assert_eq!(
        (status, body["charged"].as_str(), body["pause_reason"].as_str()),
        (200, Some("0.01845"), Some("disputed"))
    );
}

#[tokio::test]
async fn an_expired_hold_does_not_starve_the_next_call() {
    let app = app("1.00").await;
    let (status, _) = call(
        &app.svc,
        &event_with("usage/hold.json", json!({ "amount": "1.00", "ttl_seconds": 60 })),
    )
    .await;
    assert_eq!(status, 201);
    app.clock.advance(Duration::seconds(61));
    let (status, body) = call(
        &app.svc,
        &event_with("usage/debit-cost.json", json!({ "cost": "0.10" })),
    )
    .await;
    assert_eq!(
        (status, body["charged"].as_str(), body["shortfall"].as_str()),
        (200, Some("0.15"), Some("0.00")),
        "{body}"
    );
}

#[tokio::test]
async fn a_model_id_with_slashes_gets_its_rate_through_an_escaped_path() {
    let app = app("10.00").await;
    let model = "openrouter/anthropic/claude-sonnet-4";
    let debit = event_with(
        "usage/debit-tokens.json",
        json!({ "request_id": "req_slash", "model": model }),
    );
    let (status, before) = call(&app.svc, &debit).await;
    assert!((400..500).contains(&status), "no rate for {model} yet: {before}");

    let today = app.clock.now().date_naive().to_string();
    let mut put = with_body(
        support::event("usage/put-rate.json"),
        json!({ "effective_from": today, "input": "3", "output": "15" }),
    );
    let escaped = "/v1/rates/openrouter%2Fanthropic%2Fclaude-sonnet-4";
    put["rawPath"] = json!(escaped);
    put["requestContext"]["http"]["path"] = json!(escaped);
    let (status, body) = call(&app.svc, &put).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = call(&app.svc, &debit).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["billed"], "0.01575", "the escaped path set {model}'s rate");
}

#[tokio::test]
async fn a_retried_hold_answers_the_hold_as_it_was_made() {
    let app = app("1.00").await;
    let (status, first) = call(&app.svc, &support::event("usage/hold.json")).await;
    assert_eq!(status, 201, "{first}");
    app.clock.advance(Duration::seconds(90));
    let (status, again) = call(&app.svc, &support::event("usage/hold.json")).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["entry_id"], first["entry_id"], "one hold");
    assert_eq!(
        again["expires_at"], first["expires_at"],
        "the retry does not extend the hold"
    );
    assert_eq!(again["available"], "0.50");
}

/// may-i-run for a consumable (`?kind=`), as the runtime asks before a use.
fn may_i_run_for(kind: &str) -> Value {
    let mut e = support::event("usage/may-i-run.json");
    e["rawQueryString"] = json!(format!("member=m_ana&kind={kind}"));
    e["queryStringParameters"]["kind"] = json!(kind);
    e
}

/// The rate card's price of `kind` from `day` on, set by an operator.
fn unit_rate(kind: &str, day: &str, price: &str) -> Value {
    let mut e = with_body(
        support::event("usage/put-unit-rate.json"),
        json!({ "effective_from": day, "unit_price": price }),
    );
    e["rawPath"] = json!(format!("/v1/unit-rates/{kind}"));
    e["requestContext"]["http"]["path"] = e["rawPath"].clone();
    e
}

/// A report of `quantity` of `kind`, under its own request id.
fn use_of(kind: &str, quantity: &str, request_id: &str) -> Value {
    event_with(
        "usage/debit-cost.json",
        json!({ "kind": kind, "quantity": quantity, "cost": null, "model": null, "request_id": request_id }),
    )
}

#[tokio::test]
async fn other_consumables_are_priced_from_the_rate_card_on_the_same_debit_path() {
    let app = app("10.00").await;
    let today = app.clock.now().date_naive().to_string();
    let (status, body) = call(&app.svc, &unit_rate("sms", &today, "0.0079")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "kind": "sms", "effective_from": today, "unit_price": "0.0079" })
    );

    let mut sms = use_of("sms", "3", "req_sms");
    let mut report = body_of(&sms);
    report["feature"] = json!("rag");
    sms = with_body(sms, report);
    let (status, body) = call(&app.svc, &sms).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["billed"], "0.03555", "3 × $0.0079 = $0.0237, × 1.5");
    assert_eq!(balance(&app).await, usd("9.96445"));
    // The same request id: the first answer; with another quantity: another request.
    let (_, again) = call(&app.svc, &sms).await;
    assert_eq!(
        (again["replayed"].as_bool(), again["billed"].as_str()),
        (Some(true), Some("0.03555"))
    );
    let (status, other) = call(&app.svc, &use_of("sms", "4", "req_sms")).await;
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
    let entry = &last_entry(&app).await;
    assert_eq!(
        entry.attribution.consumable,
        agent_credits_domain::Consumable::Sms
    );
    assert_eq!(
        entry.attribution.feature,
        Some(agent_credits_domain::Feature::Rag)
    );

    // A provider's exact cost is accepted for any kind; a price from tomorrow changes
    // nothing today.
    let (status, body) = call(
        &app.svc,
        &event_with(
            "usage/debit-cost.json",
            json!({ "kind": "mcp_call", "cost": "0.01", "model": null, "request_id": "req_mcp" }),
        ),
    )
    .await;
    assert_eq!((status, body["billed"].as_str()), (200, Some("0.015")), "{body}");
    let tomorrow = (app.clock.now().date_naive() + Duration::days(1)).to_string();
    let (status, _) = call(&app.svc, &unit_rate("sms", &tomorrow, "1")).await;
    assert_eq!(status, 200);
    let (_, body) = call(&app.svc, &use_of("sms", "1", "req_sms_2")).await;
    assert_eq!(body["billed"], "0.01185", "today's price stands");

    // Bad reports and rates write nothing.
    let before = table_dump(&app).await;
    let with = |changes: Value| event_with("usage/debit-cost.json", changes);
    let cases = [
        (with(json!({ "kind": "fax" })), "unknown_kind"),
        (with(json!({ "kind": "LLM" })), "unknown_kind"),
        (with(json!({ "feature": "chat" })), "unknown_feature"),
        (use_of("email", "1", "req_email"), "no_unit_rate"),
        (use_of("sms", "0", "req_zero"), "invalid_quantity"),
        (use_of("sms", "1.5", "req_half"), "invalid_quantity"),
        (
            with(json!({ "kind": "sms", "cost": "0.01", "model": "claude-sonnet-4" })),
            "invalid_model",
        ),
        (with(json!({ "quantity": "2" })), "invalid_quantity"),
        (
            with(json!({ "kind": "sms", "quantity": "2", "model": null })),
            "ambiguous_cost",
        ),
        (
            with(json!({ "kind": "sms", "cost": null, "model": null })),
            "missing_cost",
        ),
        (
            with(json!({ "kind": "sms", "cost": null, "model": null, "tokens": { "input": 5 } })),
            "invalid_tokens",
        ),
        (unit_rate("llm", &today, "1"), "unknown_kind"),
        (unit_rate("fax", &today, "1"), "unknown_kind"),
        (unit_rate("email", "2026-11-21", "1"), "rate_in_the_past"),
        (may_i_run_for("fax"), "unknown_kind"),
    ];
    for (event, code) in cases {
        let (status, body) = call(&app.svc, &event).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    assert_eq!(table_dump(&app).await, before, "no bad request wrote anything");
}

/// 002: "Other consumables fail until you top up". A provider key pays for model calls
/// only: another kind is billed to the wallet in every mode, and a byok org (its wallet
/// stays empty) may not use one.
#[tokio::test]
async fn a_provider_key_pays_for_model_calls_only_and_every_kind_stops_at_zero() {
    let byok = byok_on_claude("0").await;
    let today = byok.clock.now().date_naive().to_string();
    call(&byok.svc, &unit_rate("email", &today, "0.001")).await;
    let (_, llm) = call(&byok.svc, &may_i_run_for("llm")).await;
    assert_eq!(
        (llm["allowed"].as_bool(), llm["billed_to"].as_str()),
        (Some(true), Some("provider_key"))
    );
    let (_, email) = call(&byok.svc, &may_i_run_for("email")).await;
    assert_eq!(
        (
            email["allowed"].as_bool(),
            email["reason"].as_str(),
            email["kind"].as_str()
        ),
        (Some(false), Some("credits_required"), Some("email")),
        "{email}"
    );
    assert_eq!(email.get("key_setup_url"), None, "a key would not help");
    // An email sent anyway is billed to the wallet, whatever the runtime says it ran on:
    // nothing there, so all of it is shortfall.
    let mut sent = use_of("email", "2", "req_email");
    let mut report = body_of(&sent);
    report["billed_to"] = json!("provider_key");
    sent = with_body(sent, report);
    let (status, body) = call(&byok.svc, &sent).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["billed_to"].as_str(),
            body["charged"].as_str(),
            body["shortfall"].as_str()
        ),
        (Some("credits"), Some("0.00"), Some("0.003"))
    );
    // It is told what may-i-run says, not to top up a wallet nobody may buy for.
    assert_eq!(body["pause_reason"], "credits_required", "{body}");
    let hold = event_with("usage/hold.json", json!({ "kind": "email" }));
    let (status, body) = call(&byok.svc, &hold).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (402, Some("insufficient_credits")),
        "{body}"
    );
    let (status, body) = call(&byok.svc, &support::event("usage/hold.json")).await;
    assert_eq!(
        (status, body["billed_to"].as_str()),
        (200, Some("provider_key")),
        "{body}"
    );
    // A request id recorded on the org's own key never makes another use free: the same
    // id reported as an email is another request, and the reverse.
    let own = event_with("usage/debit-cost.json", json!({ "request_id": "req_shared" }));
    let (status, body) = call(&byok.svc, &own).await;
    assert_eq!(
        (status, body["billed_to"].as_str()),
        (200, Some("provider_key")),
        "{body}"
    );
    let (status, body) = call(&byok.svc, &use_of("email", "1", "req_shared")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused")),
        "{body}"
    );
    let mut own_again = event_with("usage/debit-cost.json", json!({ "request_id": "req_email" }));
    let mut report = body_of(&own_again);
    report["billed_to"] = json!("provider_key");
    own_again = with_body(own_again, report);
    let (status, body) = call(&byok.svc, &own_again).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused")),
        "{body}"
    );

    // A credits org: every kind runs while there are credits, and none at zero.
    let credits = app("0.01").await;
    for kind in [
        "llm",
        "api_call",
        "mcp_call",
        "email",
        "sms",
        "voice_minute",
        "storage_gb_day",
    ] {
        let (_, v) = call(&credits.svc, &may_i_run_for(kind)).await;
        assert_eq!(
            (v["allowed"].as_bool(), v["kind"].as_str()),
            (Some(true), Some(kind)),
            "{v}"
        );
    }
    let spend = event_with(
        "usage/debit-cost.json",
        json!({ "kind": "api_call", "cost": "1", "model": null }),
    );
    let (status, _) = call(&credits.svc, &spend).await;
    assert_eq!(status, 200);
    for kind in ["llm", "api_call", "voice_minute", "storage_gb_day"] {
        let (_, v) = call(&credits.svc, &may_i_run_for(kind)).await;
        assert_eq!(
            (v["allowed"].as_bool(), v["reason"].as_str()),
            (Some(false), Some("credits_exhausted")),
            "{kind}: {v}"
        );
    }
}

/// A capture is the use its hold was made for: of its kind and feature when it names none,
/// and never of another kind.
#[tokio::test]
async fn a_capture_is_of_its_holds_kind_and_feature() {
    let app = app("10.00").await;
    let today = app.clock.now().date_naive().to_string();
    call(&app.svc, &unit_rate("voice_minute", &today, "0.02")).await;
    let hold = event_with(
        "usage/hold.json",
        json!({ "kind": "voice_minute", "feature": "upskilling" }),
    );
    let (status, body) = call(&app.svc, &hold).await;
    assert_eq!(status, 201, "{body}");
    let capture = |report: Value| with_body(support::event("usage/capture.json"), report);
    let (status, body) = call(&app.svc, &capture(json!({ "kind": "sms", "quantity": "1" }))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // 2.5 minutes at $0.02, × 1.5; no kind named: the hold's.
    let (status, body) = call(&app.svc, &capture(json!({ "quantity": "2.5" }))).await;
    assert_eq!((status, body["billed"].as_str()), (200, Some("0.075")), "{body}");
    let entry = &last_entry(&app).await;
    assert_eq!(entry.kind, agent_credits_domain::EntryKind::Capture);
    assert_eq!(
        entry.attribution.consumable,
        agent_credits_domain::Consumable::VoiceMinute
    );
    assert_eq!(
        entry.attribution.feature,
        Some(agent_credits_domain::Feature::Upskilling)
    );
}

/// The personal context (reference 003): asking about a member's own wallet never opens
/// it; the first use billed to it does, and the org's wallet is untouched.
#[tokio::test]
async fn a_personal_wallet_is_read_without_being_opened_and_opened_by_its_first_use() {
    let app = app("10.00").await;
    let before = table_dump(&app).await;
    let mut ask = support::event("usage/may-i-run.json");
    ask["rawQueryString"] = json!("member=m_new&context=personal");
    ask["queryStringParameters"] = json!({ "member": "m_new", "context": "personal" });
    let (status, v) = call(&app.svc, &ask).await;
    assert_eq!(
        (status, v["allowed"].as_bool(), v["reason"].as_str()),
        (200, Some(false), Some("credits_exhausted")),
        "{v}"
    );
    ask["rawQueryString"] = json!("context=personal");
    ask["queryStringParameters"] = json!({ "context": "personal" });
    let (status, body) = call(&app.svc, &ask).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("missing_member")),
        "{body}"
    );
    assert_eq!(table_dump(&app).await, before, "nothing opened by asking");

    let used = event_with(
        "usage/debit-cost.json",
        json!({ "member": "m_new", "context": "personal", "request_id": "req_me" }),
    );
    let (status, body) = call(&app.svc, &used).await;
    assert_eq!(
        (status, body["shortfall"].as_str()),
        (200, Some("0.01845")),
        "{body}"
    );
    let me = OrgId::personal(&MemberId::parse("m_new").unwrap());
    let wallet = app.svc.store.wallet(&me).await.unwrap();
    assert_eq!(
        wallet.settings.billing_mode,
        Some(BillingMode::Credits),
        "opened on credits"
    );
    assert_eq!(balance(&app).await, usd("10.00"), "the org's wallet is untouched");
}

/// An operator's grant, from the sample event with some body fields replaced.
fn grant_of(changes: Value) -> Value {
    event_with("usage/grant.json", changes)
}

#[tokio::test]
async fn an_operator_grants_once_per_request_and_dated_credits_are_spent_first() {
    let app = app("10.00").await;
    let (status, body) = call(&app.svc, &support::event("usage/grant.json")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["kind"], "promotional");
    assert_eq!(body["bucket"], "expiring");
    assert_eq!(body["amount_usd"], "25.00");
    assert_eq!(body["expires_at"], "2027-01-31T00:00:00Z");
    assert_eq!(body["note"], "Holiday promotion");
    assert_eq!(body["balance"], "35.00");
    assert_eq!(body["replayed"], false);
    let granted = last_entry(&app).await;
    assert_eq!(granted.kind, agent_credits_domain::EntryKind::Promotional);
    assert_eq!(granted.note.as_deref(), Some("Holiday promotion"));

    // The same request again (a retry, a double click): the first grant, nothing more.
    let (status, again) = call(&app.svc, &support::event("usage/grant.json")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (again["replayed"].clone(), again["entry_id"].clone()),
        (json!(true), body["entry_id"].clone())
    );
    assert_eq!(balance(&app).await, usd("35"));
    // The same request id for another grant is refused.
    let (status, other) = call(&app.svc, &grant_of(json!({ "amount_usd": "26.00" }))).await;
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );

    // Earned credits go to the earned bucket and are withdrawable.
    let (status, earned) = call(
        &app.svc,
        &grant_of(
            json!({ "kind": "referral", "request_id": "ref_1", "expires_at": null, "amount_usd": "5" }),
        ),
    )
    .await;
    assert_eq!(status, 201, "{earned}");
    assert_eq!(
        (earned["bucket"].as_str(), earned["withdrawable"].as_str()),
        (Some("earned"), Some("5.00"))
    );
    // An undated support grant sits with purchased credits.
    let (status, support_) = call(
        &app.svc,
        &grant_of(json!({ "kind": "support", "request_id": "sup_1", "expires_at": null, "note": null })),
    )
    .await;
    assert_eq!(status, 201, "{support_}");
    assert_eq!(support_["bucket"], "purchased");

    // A call draws the dated grant before anything else.
    let (status, charged) = call(&app.svc, &support::event("usage/debit-cost.json")).await;
    assert_eq!(status, 200, "{charged}");
    let used = last_entry(&app).await;
    assert!(!used.buckets.expiring.is_zero(), "{used:?}");
    assert!(
        used.buckets.purchased.is_zero() && used.buckets.earned.is_zero(),
        "{used:?}"
    );
}

#[tokio::test]
async fn bad_grants_get_a_4xx_code_and_write_nothing() {
    let app = app("10.00").await;
    let before = table_dump(&app).await;
    let cases = [
        (json!({ "kind": "purchase" }), 400, "invalid_kind"),
        (json!({ "kind": null }), 400, "invalid_kind"),
        (json!({ "amount_usd": "0" }), 400, "zero_amount"),
        (json!({ "amount_usd": "-5" }), 400, "negative_amount"),
        (json!({ "amount_usd": "1.0000001" }), 400, "too_many_decimals"),
        (json!({ "amount_usd": 25 }), 400, "invalid_request"),
        (json!({ "amount_usd": null }), 400, "invalid_amount"),
        (json!({ "request_id": null }), 400, "missing_request_id"),
        (json!({ "request_id": "a b" }), 400, "invalid_request"),
        (
            json!({ "expires_at": "2026-11-22T11:59:59Z" }),
            400,
            "expiry_in_the_past",
        ),
        (json!({ "expires_at": "next week" }), 400, "invalid_date"),
        (
            json!({ "kind": "creator_earnings" }),
            400,
            "earned_credits_do_not_expire",
        ),
        (json!({ "note": "x".repeat(501) }), 400, "invalid_request"),
        (json!({ "surprise": true }), 400, "invalid_request"),
    ];
    for (changes, status, code) in cases {
        let (got, body) = call(&app.svc, &grant_of(changes.clone())).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{changes} → {body}"
        );
    }
    // A body that is an array, and an org nobody created.
    let array = with_body(
        support::event("usage/grant.json"),
        json!([body_of(&support::event("usage/grant.json"))]),
    );
    let (got, body) = call(&app.svc, &array).await;
    assert_eq!(got, 400, "{body}");
    let mut nobody = support::event("usage/grant.json");
    for path in ["/rawPath", "/requestContext/http/path"] {
        *nobody.pointer_mut(path).unwrap() = json!("/v1/orgs/org_nobody/grants");
    }
    let (got, body) = call(&app.svc, &nobody).await;
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (404, Some("unknown_org")),
        "{body}"
    );
    // A runtime's role is no operator.
    let runtime = support::runtime_event(
        "POST",
        "/v1/orgs/org_demo/grants",
        Some(&body_of(&support::event("usage/grant.json"))),
    );
    let (got, body) = call(&app.svc, &runtime).await;
    assert_eq!(got, 403, "{body}");
    assert_eq!(table_dump(&app).await, before);
}

#[tokio::test]
async fn a_byok_org_takes_no_grant_until_it_is_on_credits() {
    let app = byok_on_claude("0").await;
    let before = table_dump(&app).await;
    let (status, body) = call(&app.svc, &support::event("usage/grant.json")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("not_a_credits_org")),
        "{body}"
    );
    assert_eq!(table_dump(&app).await, before);
}
