//! Creator earnings and referrals end to end: the usage and earnings functions under
//! `cargo lambda watch`, the template's stream mapping of the earnings function run as Lambda runs it
//! (`local_gateway::streams`: its filter, batches, retries), every batch delivered twice,
//! against dynoxide with the table's stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_credits_domain::{
    BillingMode, EntryKind, MemberId, OrgId, PageRequest, SystemClock, Usd, WalletSettings, WalletStore,
};
use agent_credits_dynamo::{DynamoWalletStore, OrgStore};
use serde_json::json;

/// Waits, bounded, for `done` (a state of the table, not a time).
fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn calls_and_a_first_purchase_through_cargo_lambda_credit_creator_and_referrer_once_from_the_stream() {
    use local_gateway::streams;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (db, client) = rt.block_on(support::fresh_table_with_stream("credits"));
    let store = DynamoWalletStore::new(client.clone(), "credits", Arc::new(SystemClock));
    let payer = OrgId::parse("org_demo").unwrap();
    let creator = OrgId::parse("org_creator").unwrap();
    rt.block_on(async {
        let orgs = OrgStore::new(client.clone(), "credits");
        let settings = WalletSettings {
            billing_mode: Some(BillingMode::Credits),
            ..Default::default()
        };
        // The payer was created with the creator's referral code.
        for (org, referrer) in [(&creator, None), (&payer, Some(creator.clone()))] {
            let owner = MemberId::parse("u_owner").unwrap();
            let mut profile = support::credits_org(org);
            profile.referred_by = referrer;
            assert!(orgs.create(&profile, &owner, &settings).await.unwrap());
            store.put_settings(org, &settings).await.unwrap();
        }
        store
            .apply(support::purchase(&payer, "10.00", "purchase:seed"))
            .await
            .unwrap()
            .unwrap();
    });
    let watch = support::watch::Watch::start(&support::watch::local_env("credits", db.endpoint()));
    let mappings: Vec<_> = streams::from_template(&support::repo_root().join("infra/template.yaml"))
        .unwrap()
        .into_iter()
        .filter(|m| m.function == "earnings")
        .collect();
    assert_eq!(mappings.len(), 1);
    let source = streams::Source {
        dynamodb: db.endpoint().to_owned(),
        table: "credits".to_owned(),
        upstream: format!("http://127.0.0.1:{}", watch.port()),
        duplicate: true,
        poll: Duration::from_millis(250),
    };
    let counters = Arc::new(streams::Counters::default());
    let streams_rt = tokio::runtime::Runtime::new().unwrap();
    let _mappings = streams_rt
        .block_on(streams::start(source, mappings, counters.clone()))
        .unwrap();

    // Three calls name the creator ($0.50 each at the 1.5 markup: $0.75), one is sent
    // twice, one names no creator.
    for (id, creator) in [
        ("req_1", true),
        ("req_2", true),
        ("req_2", true),
        ("req_3", true),
        ("req_4", false),
    ] {
        let mut event = support::event("usage/debit-cost.json");
        let mut body = json!({ "request_id": id, "cost": "0.50", "member": "m_ana" });
        if creator {
            body["creator"] = json!("org_creator");
        }
        event["body"] = json!(body.to_string());
        let (status, answer) = watch.call("usage", &event);
        assert_eq!(status, 200, "{answer}");
    }
    // 10% of $0.75, three times, and $10 for the payer's first purchase (its referral).
    let expected = Usd::parse("10.225").unwrap();
    let earned = || rt.block_on(store.wallet(&creator)).unwrap().buckets.earned;
    wait_for("the creator's earnings", Duration::from_secs(60), || {
        earned() == expected
    });
    // The three calls' entries pass the mapping's filter (the one without a creator does
    // not), each delivered twice: once all six deliveries are answered, what was credited
    // is final.
    let delivered = || counters.delivered.load(std::sync::atomic::Ordering::SeqCst);
    wait_for("both deliveries of every call", Duration::from_secs(60), || {
        delivered() >= 6
    });
    let entries = rt
        .block_on(store.history(&creator, PageRequest::first(20)))
        .unwrap()
        .entries;
    let credits: Vec<_> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::CreatorEarnings)
        .collect();
    assert_eq!(credits.len(), 3, "{credits:?}");
    assert_eq!(earned(), expected);
    // The payer paid its calls and nothing more: $10 − 4 × $0.75.
    assert_eq!(
        rt.block_on(store.wallet(&payer)).unwrap().balance().unwrap(),
        Usd::parse("7").unwrap()
    );
}
