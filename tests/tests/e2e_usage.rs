//! End to end: the usage function built and served by `cargo lambda watch`, called over
//! HTTP with the sample events of `infra/events/usage/`, against dynoxide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent_credits_domain::{
    BillingMode, Bucket, ChangeRequest, EntryKind, IdempotencyKey, ModelId, ModelRate, OrgId, PageRequest,
    PositiveUsd, RatePerMillion, SystemClock, Usd, WalletSettings, WalletStore,
};
use agent_credits_dynamo::{DynamoWalletStore, RateStore};
use serde_json::json;
use support::dynoxide::Dynoxide;
use support::table::TableDefinition;
use support::watch::Watch;

#[test]
fn usage_through_cargo_lambda_debits_holds_and_answers_may_i_run() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = Dynoxide::start();
    let client = support::dynamodb_client(db.endpoint(), None);
    let store = DynamoWalletStore::new(client.clone(), "e2e", Arc::new(SystemClock));
    let org = OrgId::parse("org_demo").unwrap();
    rt.block_on(async {
        TableDefinition::from_repo()
            .unwrap()
            .without_stream()
            .create(&client, "e2e")
            .await
            .unwrap();
        store
            .put_settings(
                &org,
                &WalletSettings {
                    billing_mode: Some(BillingMode::Credits),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let buy = ChangeRequest::credit(
            org.clone(),
            EntryKind::Purchase,
            Bucket::Purchased,
            PositiveUsd::parse("10.00").unwrap(),
            IdempotencyKey::parse("purchase:seed").unwrap(),
        )
        .unwrap();
        store.apply(buy).await.unwrap().unwrap();
        RateStore::new(client.clone(), "e2e")
            .put(&ModelRate {
                model: ModelId::parse("claude-sonnet-4").unwrap(),
                effective_from: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                input: RatePerMillion::parse("3").unwrap(),
                output: RatePerMillion::parse("15").unwrap(),
                cache_read: RatePerMillion::default(),
                cache_write: RatePerMillion::default(),
            })
            .await
            .unwrap();
    });

    let watch = Watch::start(&support::watch::local_env("e2e", db.endpoint()));

    let (status, verdict) = watch.call("usage", &support::event("usage/may-i-run.json"));
    assert_eq!(
        (status, verdict["allowed"].as_bool()),
        (200, Some(true)),
        "{verdict}"
    );

    let (status, debit) = watch.call("usage", &support::event("usage/debit-cost.json"));
    assert_eq!(status, 200, "{debit}");
    assert_eq!(debit["billed"], "0.01845");
    let (_, replay) = watch.call("usage", &support::event("usage/debit-cost.json"));
    assert_eq!(
        (replay["entry_id"].clone(), replay["replayed"].as_bool()),
        (debit["entry_id"].clone(), Some(true))
    );

    let (status, tokens) = watch.call("usage", &support::event("usage/debit-tokens.json"));
    assert_eq!(
        (status, tokens["billed"].as_str()),
        (200, Some("0.01575")),
        "{tokens}"
    );

    let (status, hold) = watch.call("usage", &support::event("usage/hold.json"));
    assert_eq!(status, 201, "{hold}");
    let (status, capture) = watch.call("usage", &support::event("usage/capture.json"));
    assert_eq!(
        (status, capture["charged"].as_str()),
        (200, Some("0.30")),
        "{capture}"
    );

    // Another consumable, priced from the rate card an operator set for today.
    let mut rate = support::event("usage/put-unit-rate.json");
    let today = chrono::Utc::now().date_naive().to_string();
    rate["body"] = json!(json!({ "effective_from": today, "unit_price": "0.0079" }).to_string());
    let (status, card) = watch.call("usage", &rate);
    assert_eq!(status, 200, "{card}");
    let mut sms = support::event("usage/debit-cost.json");
    sms["body"] = json!(
        json!({ "request_id": "req_sms", "member": "m_ana", "kind": "sms", "feature": "rag", "quantity": "3" })
            .to_string()
    );
    let (status, sent) = watch.call("usage", &sms);
    assert_eq!(
        (status, sent["billed"].as_str()),
        (200, Some("0.03555")),
        "{sent}"
    );
    let mut ask = support::event("usage/may-i-run.json");
    ask["rawQueryString"] = json!("member=m_ana&kind=sms");
    ask["queryStringParameters"]["kind"] = json!("sms");
    let (status, verdict) = watch.call("usage", &ask);
    assert_eq!(
        (status, verdict["kind"].as_str()),
        (200, Some("sms")),
        "{verdict}"
    );

    let mut unsigned = support::event("usage/debit-cost.json");
    unsigned["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let (status, refused) = watch.call("usage", &unsigned);
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    let mut bad = support::event("usage/debit-cost.json");
    bad["body"] = json!(r#"{"request_id":"r9","cost":"NaN"}"#);
    let (status, refused) = watch.call("usage", &bad);
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );

    // A body marked base64 that is not: a 400, not a panic inside lambda_http.
    let mut garbled = support::event("usage/debit-cost.json");
    garbled["isBase64Encoded"] = json!(true);
    garbled["body"] = json!("this is not base64!");
    let (status, refused) = watch.call("usage", &garbled);
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{refused}"
    );

    rt.block_on(async {
        let wallet = store.wallet(&org).await.unwrap();
        // 10.00 - 0.01845 - 0.01575 - 0.30 - 0.03555
        assert_eq!(wallet.balance().unwrap(), Usd::parse("9.63025").unwrap());
        assert_eq!(wallet.held, Usd::ZERO);
        let entries = store.history(&org, PageRequest::first(10)).await.unwrap().entries;
        let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["usage", "capture", "hold", "usage", "usage", "purchase"]);
        assert_eq!(entries[4].attribution.member.as_ref().unwrap().as_str(), "m_ana");
        assert_eq!(entries[0].attribution.consumable.as_str(), "sms");
    });
}

/// Grants and withdrawals through `cargo lambda watch`: an operator's dated and earned
/// grants over HTTP, once per request; the recharge function's scheduled sweep expires
/// what a lot past its date has left, once, and leaves the rest; the owner withdraws the
/// earned credits and an operator settles the payout, once.
#[test]
fn grants_through_cargo_lambda_and_the_scheduled_sweep_expires_them() {
    use agent_credits_dynamo::OrgStore;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = Dynoxide::start();
    let client = support::dynamodb_client(db.endpoint(), None);
    let store = DynamoWalletStore::new(client.clone(), "e2e", Arc::new(SystemClock));
    let org = OrgId::parse("org_demo").unwrap();
    rt.block_on(async {
        TableDefinition::from_repo()
            .unwrap()
            .without_stream()
            .create(&client, "e2e")
            .await
            .unwrap();
        let settings = WalletSettings {
            billing_mode: Some(BillingMode::Credits),
            ..Default::default()
        };
        let owner = agent_credits_domain::MemberId::parse("u_owner").unwrap();
        assert!(
            OrgStore::new(client.clone(), "e2e")
                .create(&support::credits_org(&org), &owner, &settings)
                .await
                .unwrap()
        );
        store.put_settings(&org, &settings).await.unwrap();
        // A lot whose date has passed (the route only takes dates to come).
        let past = ChangeRequest::grant(
            org.clone(),
            agent_credits_domain::GrantKind::Promotional,
            PositiveUsd::parse("4.00").unwrap(),
            Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
            IdempotencyKey::parse("grant:old_promo").unwrap(),
        )
        .unwrap();
        store.apply(past).await.unwrap().unwrap();
    });
    let mut env = support::watch::local_env("e2e", db.endpoint());
    env.extend([
        ("STRIPE_SECRET_KEY", "sk_test_unused".to_owned()),
        ("STRIPE_API_BASE", "http://127.0.0.1:9/".to_owned()),
    ]);
    let watch = Watch::start(&env);

    let (status, granted) = watch.call("usage", &support::event("usage/grant.json"));
    assert_eq!(
        (status, granted["bucket"].as_str()),
        (201, Some("expiring")),
        "{granted}"
    );
    let (status, again) = watch.call("usage", &support::event("usage/grant.json"));
    assert_eq!(
        (status, again["replayed"].as_bool()),
        (200, Some(true)),
        "{again}"
    );
    let mut referral = support::event("usage/grant.json");
    referral["body"] =
        json!(json!({ "kind": "referral", "amount_usd": "30.00", "request_id": "ref_1" }).to_string());
    let (status, earned) = watch.call("usage", &referral);
    assert_eq!(
        (status, earned["withdrawable"].as_str()),
        (201, Some("30.00")),
        "{earned}"
    );

    let tick = support::event("recharge/scheduled.json");
    let report = watch.invoke("recharge", &tick);
    assert_eq!(
        (
            report["lots"]["orgs"].as_u64(),
            report["lots"]["expired"].as_u64()
        ),
        (Some(1), Some(1)),
        "{report}"
    );
    let report = watch.invoke("recharge", &tick);
    assert_eq!(report["lots"]["orgs"], 0, "{report}");

    // The owner withdraws the earned $30 (the account function), and an operator settles
    // it as paid (the usage function); the same settlement again changes nothing.
    let (status, asked) = watch.call("account", &support::event("account/withdraw.json"));
    assert_eq!(
        (status, asked["withdrawable"].as_str()),
        (201, Some("0.00")),
        "{asked}"
    );
    let paid = support::event("usage/withdrawal-paid.json");
    let (status, settled) = watch.call("usage", &paid);
    assert_eq!(
        (status, settled["withdrawal"]["state"].as_str()),
        (200, Some("paid")),
        "{settled}"
    );
    let (status, again) = watch.call("usage", &paid);
    assert_eq!(
        (status, again["replayed"].as_bool()),
        (200, Some(true)),
        "{again}"
    );

    rt.block_on(async {
        let wallet = store.wallet(&org).await.unwrap();
        // 4 expired, 30 withdrawn; the $25 dated a month on stays.
        assert_eq!(wallet.balance().unwrap(), Usd::parse("25").unwrap());
        assert_eq!(wallet.lifetime_expired, Usd::parse("4").unwrap());
        assert_eq!(wallet.lifetime_withdrawn, Usd::parse("30").unwrap());
        let entries = store.history(&org, PageRequest::first(10)).await.unwrap().entries;
        let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "withdrawal_paid",
                "withdrawal",
                "expired",
                "referral",
                "promotional",
                "promotional"
            ]
        );
    });
}
