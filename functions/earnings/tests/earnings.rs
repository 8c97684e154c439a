//! Creator earnings: a call that names its agent's creator is charged as any other, and
//! the table's stream credits the creator its share afterwards, once however often the
//! records are delivered. Against dynoxide with its stream, the records delivered as
//! Lambda delivers them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent_credits_aws::settings::FromEnv;
use agent_credits_aws::stream::StreamEvent;
use agent_credits_domain::{
    BillingMode, EntryKind, MemberId, OrgId, PageRequest, SystemClock, Usd, WalletSettings, WalletStore,
};
use agent_credits_dynamo::{DynamoWalletStore, OrgStore, RateStore};
use earnings::{CreatorShare, Earned, Earnings, earn, handle};
use serde_json::{Value, json};
use usage::{Settings, Usage};

const TABLE: &str = "credits";

struct App {
    _db: support::dynoxide::Dynoxide,
    usage: Usage,
    earnings: Earnings,
    payer: OrgId,
    creator: OrgId,
}

async fn app(credits: &str) -> App {
    let (db, client) = support::fresh_table_with_stream(TABLE).await;
    let store = || DynamoWalletStore::new(client.clone(), TABLE, Arc::new(SystemClock));
    let orgs = OrgStore::new(client.clone(), TABLE);
    let settings = WalletSettings {
        billing_mode: Some(BillingMode::Credits),
        ..Default::default()
    };
    let payer = OrgId::parse("org_demo").unwrap();
    let creator = OrgId::parse("org_creator").unwrap();
    for org in [&payer, &creator] {
        let owner = MemberId::parse("u_owner").unwrap();
        assert!(
            orgs.create(&support::credits_org(org), &owner, &settings)
                .await
                .unwrap()
        );
        store().put_settings(org, &settings).await.unwrap();
    }
    store()
        .apply(support::purchase(&payer, credits, "purchase:seed"))
        .await
        .unwrap()
        .unwrap();
    App {
        usage: Usage {
            store: store(),
            orgs: OrgStore::new(client.clone(), TABLE),
            rates: RateStore::new(client.clone(), TABLE),
            months: Arc::new(store()),
            clock: Arc::new(SystemClock),
            settings: Settings::from_lookup(|n| support::usage_setting(TABLE, n)).unwrap(),
            keys: None,
        },
        earnings: Earnings {
            store: store(),
            orgs,
            share: CreatorShare::DEFAULT,
            referral: earnings::ReferralReward::DEFAULT,
        },
        _db: db,
        payer,
        creator,
    }
}

/// The sample debit with its body's fields replaced.
fn call_of(changes: Value) -> Value {
    let mut event = support::event("usage/debit-cost.json");
    let mut body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
    for (k, v) in changes.as_object().unwrap() {
        body[k] = v.clone();
    }
    event["body"] = json!(body.to_string());
    event
}

async fn call(app: &App, event: &Value) -> (u16, Value) {
    support::contract::call(event, |req| usage::handle(&app.usage, req)).await
}

fn batch(app: &App) -> StreamEvent {
    let records = support::streams::read_all(app._db.endpoint(), TABLE);
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

async fn earned(app: &App) -> Vec<agent_credits_domain::LedgerEntry> {
    let page = app
        .earnings
        .store
        .history(&app.creator, PageRequest::first(50))
        .await
        .unwrap();
    page.entries
        .into_iter()
        .filter(|e| e.kind == EntryKind::CreatorEarnings)
        .collect()
}

#[tokio::test]
async fn the_creator_earns_its_share_of_each_call_once_however_often_the_stream_delivers_it() {
    let app = app("10.00").await;
    let (status, charged) = call(&app, &call_of(json!({ "creator": "org_creator" }))).await;
    assert_eq!(status, 200, "{charged}");
    assert_eq!(charged["charged"], "0.01845");
    let (status, other) = call(&app, &call_of(json!({ "request_id": "req_plain" }))).await;
    assert_eq!(status, 200, "{other}");
    let payer_after_calls = app
        .usage
        .store
        .wallet(&app.payer)
        .await
        .unwrap()
        .balance()
        .unwrap();

    // Every batch delivered three times, two of them at once.
    let event = batch(&app);
    let (a, b) = tokio::join!(handle(&app.earnings, &event), handle(&app.earnings, &event));
    assert!(a.failures.is_empty() && b.failures.is_empty());
    assert!(handle(&app.earnings, &event).await.failures.is_empty());

    let credits = earned(&app).await;
    assert_eq!(credits.len(), 1, "one call named the creator: {credits:?}");
    // 10% of $0.01845, rounded once to 6 places.
    assert_eq!(credits[0].amount.magnitude(), Usd::parse("0.001845").unwrap());
    let creator = app.earnings.store.wallet(&app.creator).await.unwrap();
    assert_eq!(
        (creator.buckets.earned, creator.withdrawable().unwrap()),
        (Usd::parse("0.001845").unwrap(), Usd::parse("0.001845").unwrap())
    );
    // The payer paid the call and nothing more.
    assert_eq!(
        app.usage
            .store
            .wallet(&app.payer)
            .await
            .unwrap()
            .balance()
            .unwrap(),
        payer_after_calls
    );
}

#[tokio::test]
async fn what_the_wallet_did_not_pay_earns_nothing_and_a_creator_is_another_org() {
    let app = app("0.01").await;
    // A call of $0.01845 on $0.01: $0.01 charged, the rest shortfall; 10% of $0.01.
    let (status, charged) = call(&app, &call_of(json!({ "creator": "org_creator" }))).await;
    assert_eq!(
        (status, charged["shortfall"].as_str()),
        (200, Some("0.00845")),
        "{charged}"
    );
    let entry = app
        .usage
        .store
        .history(&app.payer, PageRequest::first(1))
        .await
        .unwrap()
        .entries[0]
        .clone();
    assert_eq!(
        earn(&app.earnings, &app.payer, entry.seq).await.unwrap(),
        Earned::Now(Usd::parse("0.001").unwrap())
    );
    assert_eq!(
        earn(&app.earnings, &app.payer, entry.seq).await.unwrap(),
        Earned::Already
    );

    // The payer itself, or a person's own account, is no creator: refused, nothing written.
    for creator in ["org_demo", "@u_owner"] {
        let (status, refused) = call(
            &app,
            &call_of(json!({ "creator": creator, "request_id": "req_self" })),
        )
        .await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (400, Some("invalid_creator")),
            "{refused}"
        );
    }
    // A creator that is no org: the call is charged, nothing is credited.
    app.usage
        .store
        .apply(support::purchase(&app.payer, "1.00", "purchase:more"))
        .await
        .unwrap()
        .unwrap();
    let (status, _) = call(
        &app,
        &call_of(json!({ "creator": "org_nobody", "request_id": "req_nobody" })),
    )
    .await;
    assert_eq!(status, 200);
    let entry = app
        .usage
        .store
        .history(&app.payer, PageRequest::first(1))
        .await
        .unwrap()
        .entries[0]
        .clone();
    assert_eq!(
        earn(&app.earnings, &app.payer, entry.seq).await.unwrap(),
        Earned::UnknownCreator
    );
    assert_eq!(earned(&app).await.len(), 1);
}

/// A referred org's first purchase earns its referrer the reward once, whatever the stream
/// delivers twice or at once; a later purchase earns nothing more; a refund of that first
/// purchase takes the reward back once, and a refund of another purchase does not.
#[tokio::test]
async fn a_first_purchase_earns_its_referrer_once_and_its_refund_takes_it_back_once() {
    use agent_credits_domain::{Bucket, ChangeRequest, ExternalRefs, PositiveUsd, keys};
    let app = app("10.00").await;
    // org_new, created with org_creator's referral code.
    let referred = OrgId::parse("org_new").unwrap();
    let mut profile = support::credits_org(&referred);
    profile.referred_by = Some(app.creator.clone());
    let settings = WalletSettings {
        billing_mode: Some(BillingMode::Credits),
        ..Default::default()
    };
    let owner = MemberId::parse("u_new").unwrap();
    assert!(
        app.earnings
            .orgs
            .create(&profile, &owner, &settings)
            .await
            .unwrap()
    );
    let store = &app.earnings.store;
    let paid = |pi: &str, amount: &str| {
        ChangeRequest::credit(
            referred.clone(),
            EntryKind::Purchase,
            Bucket::Purchased,
            PositiveUsd::parse(amount).unwrap(),
            keys::payment(pi).unwrap(),
        )
        .unwrap()
        .with_external(ExternalRefs {
            payment_intent: Some(pi.to_owned()),
            ..Default::default()
        })
    };
    let refunded = |pi: &str, re: &str, amount: &str| {
        ChangeRequest::take_back(
            referred.clone(),
            EntryKind::Refund,
            PositiveUsd::parse(amount).unwrap(),
            Bucket::Purchased,
            keys::refund(re).unwrap(),
        )
        .unwrap()
        .with_external(ExternalRefs {
            payment_intent: Some(pi.to_owned()),
            ..Default::default()
        })
    };
    for req in [
        paid("pi_first", "100.00"),
        paid("pi_second", "50.00"),
        refunded("pi_second", "re_second", "50.00"),
        refunded("pi_first", "re_first", "100.00"),
    ] {
        store.apply(req).await.unwrap().unwrap();
    }
    // The whole stream, three times, two of them at once.
    let event = batch(&app);
    let (a, b) = tokio::join!(handle(&app.earnings, &event), handle(&app.earnings, &event));
    assert!(a.failures.is_empty() && b.failures.is_empty());
    assert!(handle(&app.earnings, &event).await.failures.is_empty());

    let entries = store
        .history(&app.creator, PageRequest::first(50))
        .await
        .unwrap()
        .entries;
    let of = |kind: EntryKind| entries.iter().filter(|e| e.kind == kind).collect::<Vec<_>>();
    let rewards = of(EntryKind::Referral);
    assert_eq!(rewards.len(), 1, "{entries:?}");
    assert_eq!(rewards[0].amount.magnitude(), Usd::parse("10").unwrap());
    assert_eq!(rewards[0].external.payment_intent.as_deref(), Some("pi_first"));
    let back = of(EntryKind::ReferralReversed);
    assert_eq!(back.len(), 1, "{entries:?}");
    assert_eq!(back[0].amount.magnitude(), Usd::parse("10").unwrap());
    let referrer = store.wallet(&app.creator).await.unwrap();
    assert_eq!(
        (referrer.buckets.earned, referrer.lifetime_taken_back),
        (Usd::ZERO, Usd::parse("10").unwrap())
    );
}

/// The stream may deliver a later purchase, or the first purchase's refund, before the
/// first purchase itself (another shard, a batch that went to the dead letters and was
/// replayed): the reward is still the first purchase's, and a refund that came first
/// leaves nothing to grant.
#[tokio::test]
async fn the_reward_is_the_first_purchases_whatever_the_stream_delivers_first() {
    use agent_credits_domain::{Bucket, ChangeRequest, ExternalRefs, PositiveUsd, keys};
    let app = app("10.00").await;
    let store = &app.earnings.store;
    let settings = WalletSettings {
        billing_mode: Some(BillingMode::Credits),
        ..Default::default()
    };
    let mut seqs = vec![];
    for (org, pi) in [("org_a", "pi_a"), ("org_b", "pi_b")] {
        let referred = OrgId::parse(org).unwrap();
        let mut profile = support::credits_org(&referred);
        profile.referred_by = Some(app.creator.clone());
        let owner = MemberId::parse("u_x").unwrap();
        assert!(
            app.earnings
                .orgs
                .create(&profile, &owner, &settings)
                .await
                .unwrap()
        );
        let with_intent = |intent: String| ExternalRefs {
            payment_intent: Some(intent),
            ..Default::default()
        };
        let mut mine = vec![];
        for (n, amount) in [(1, "40.00"), (2, "60.00")] {
            let intent = format!("{pi}{n}");
            let req = ChangeRequest::credit(
                referred.clone(),
                EntryKind::Purchase,
                Bucket::Purchased,
                PositiveUsd::parse(amount).unwrap(),
                keys::payment(&intent).unwrap(),
            )
            .unwrap()
            .with_external(with_intent(intent));
            mine.push(store.apply(req).await.unwrap().unwrap().entry().seq);
        }
        let refund = ChangeRequest::take_back(
            referred.clone(),
            EntryKind::Refund,
            PositiveUsd::parse("40.00").unwrap(),
            Bucket::Purchased,
            keys::refund(&format!("re_{org}")).unwrap(),
        )
        .unwrap()
        .with_external(with_intent(format!("{pi}1")));
        mine.push(store.apply(refund).await.unwrap().unwrap().entry().seq);
        seqs.push((referred, mine));
    }
    // org_a: its second purchase first, then its first. org_b: the refund of its first
    // purchase first, then both purchases.
    let (a, b) = (&seqs[0], &seqs[1]);
    assert_eq!(earn(&app.earnings, &a.0, a.1[1]).await.unwrap(), Earned::Nothing);
    assert_eq!(
        earn(&app.earnings, &a.0, a.1[0]).await.unwrap(),
        Earned::Now(Usd::parse("10").unwrap())
    );
    assert_eq!(
        earn(&app.earnings, &b.0, b.1[2]).await.unwrap(),
        Earned::TakenBack(Usd::ZERO)
    );
    assert_eq!(earn(&app.earnings, &b.0, b.1[0]).await.unwrap(), Earned::Nothing);
    assert_eq!(earn(&app.earnings, &b.0, b.1[1]).await.unwrap(), Earned::Nothing);
    let entries = store
        .history(&app.creator, PageRequest::first(50))
        .await
        .unwrap()
        .entries;
    let rewards: Vec<_> = entries.iter().filter(|e| e.kind == EntryKind::Referral).collect();
    assert_eq!(rewards.len(), 1, "{entries:?}");
    assert_eq!(rewards[0].external.payment_intent.as_deref(), Some("pi_a1"));
    let creator = store.wallet(&app.creator).await.unwrap();
    assert_eq!(creator.buckets.earned, Usd::parse("10").unwrap());
    assert!(creator.accounts_for_every_credit().unwrap());
}
