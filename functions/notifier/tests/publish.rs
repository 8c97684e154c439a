//! The notifier against dynoxide and moto's EventBridge over HTTP: notifications written
//! by real wallet changes, stream records read from dynoxide's stream, and what reached
//! the bus read from a queue a rule subscribes to it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent_credits_aws::stream::StreamEvent;
use agent_credits_domain::{
    ChangeRequest, IdempotencyKey, MemberId, OrgId, PositiveUsd, Role, SystemClock, WalletStore,
};
use agent_credits_dynamo::{DynamoWalletStore, OrgStore};
use notifier::{Notifier, handle};
use serde_json::{Value, json};
use support::bus::Bus;

const TABLE: &str = "credits";

struct App {
    _db: support::dynoxide::Dynoxide,
    _moto: support::moto::Moto,
    bus: Bus,
    svc: Notifier,
    org: OrgId,
}

async fn app(bus_name: &str) -> App {
    let (db, client) = support::fresh_table_with_stream(TABLE).await;
    let moto = support::moto::Moto::start();
    let bus = Bus::create(moto.endpoint(), "agent-credits-test").await;
    let org = OrgId::parse("org_1").unwrap();
    support::create_credits_org(&client, TABLE, &org, "u_owner").await;
    let orgs = OrgStore::new(client.clone(), TABLE);
    for (member, role) in [("u_admin", Role::Admin), ("u_member", Role::Member)] {
        orgs.set_role(&org, &MemberId::parse(member).unwrap(), role, chrono::Utc::now())
            .await
            .unwrap();
    }
    let svc = Notifier {
        store: DynamoWalletStore::new(client.clone(), TABLE, Arc::new(SystemClock)),
        orgs,
        events: bus.events.clone(),
        bus: bus_name.to_owned(),
        clock: Arc::new(SystemClock),
    };
    App {
        _db: db,
        _moto: moto,
        bus,
        svc,
        org,
    }
}

async fn change(app: &App, req: ChangeRequest) {
    app.svc.store.apply(req).await.unwrap().unwrap();
}

fn usage(org: &OrgId, amount: &str, key: &str) -> ChangeRequest {
    ChangeRequest::usage(
        org.clone(),
        PositiveUsd::parse(amount).unwrap(),
        IdempotencyKey::parse(key).unwrap(),
    )
}

/// Every record of the table's stream so far, as Lambda would deliver them (unfiltered:
/// the notifier must skip what is not a new notification).
fn stream(app: &App) -> Vec<Value> {
    support::streams::read_all(app._db.endpoint(), TABLE)
}

fn event_of(records: &[Value]) -> StreamEvent {
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

#[tokio::test]
async fn each_notification_reaches_the_bus_once_however_often_it_is_delivered() {
    let app = app("agent-credits-test").await;
    change(&app, support::purchase(&app.org, "25", "buy:1")).await;
    change(&app, usage(&app.org, "10", "use:1")).await; // $15: low
    change(&app, usage(&app.org, "15", "use:2")).await; // $0: depleted
    change(&app, support::purchase(&app.org, "30", "buy:2")).await; // $30: recovered

    let batch = event_of(&stream(&app));
    assert!(batch.records.len() > 4, "wallet, ledger and notification records");
    for _ in 0..3 {
        assert!(handle(&app.svc, &batch).await.failures.is_empty());
    }
    let events = app.bus.received(5).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "credit_balance_low",
            "credit_balance_depleted",
            "credit_balance_recovered"
        ],
        "each once, in the order they happened"
    );
    let low = &events[0];
    assert_eq!(low["source"], "agent-credits");
    let detail = &low["detail"];
    assert_eq!(detail["org"], "org_1");
    assert_eq!(detail["account"], "org");
    assert_eq!(detail["available_usd"], "15.00");
    assert_eq!(detail["threshold_usd"], "20.00");
    assert_eq!(
        detail["recipients"],
        json!([{"member": "u_admin", "role": "admin"}, {"member": "u_owner", "role": "owner"}]),
        "owners and admins, not members"
    );
    let id = detail["event_id"].as_str().unwrap();
    assert!(id.starts_with("org_1/"), "{id}");
    let feed = app.svc.store.notifications(&app.org, 10).await.unwrap();
    assert!(
        feed.iter().any(|n| id == format!("org_1/{}", n.id)),
        "the event id names the notification in the feed"
    );
}

#[tokio::test]
async fn a_bus_that_refuses_leaves_the_notification_to_the_retry_which_publishes_it_once() {
    let mut app = app("no-such-bus").await;
    change(&app, support::purchase(&app.org, "25", "buy:1")).await;
    change(&app, usage(&app.org, "10", "use:1")).await;
    let records = stream(&app);
    let batch = event_of(&records);
    let answer = handle(&app.svc, &batch).await;
    assert_eq!(
        answer.failures.len(),
        1,
        "the notification's record is delivered again"
    );
    let failed = &answer.failures[0].id;
    let record = batch
        .records
        .iter()
        .find(|r| &r.dynamodb.sequence_number == failed)
        .unwrap();
    assert!(record.key().unwrap().1.starts_with("NOTIF#"));
    assert!(app.bus.received(1).await.is_empty());
    let id = record.key().unwrap().1.trim_start_matches("NOTIF#").to_owned();
    let out = app.svc.store.outgoing(&app.org, &id).await.unwrap().unwrap();
    assert_eq!(out.published_at, None, "not marked published");

    // The bus is there on the retry (Lambda delivers from the failed record on).
    app.svc.bus = app.bus.name.clone();
    let from: Vec<Value> = records
        .into_iter()
        .filter(|r| r["dynamodb"]["SequenceNumber"].as_str().unwrap() >= failed.as_str())
        .collect();
    for _ in 0..2 {
        assert!(handle(&app.svc, &event_of(&from)).await.failures.is_empty());
    }
    assert_eq!(app.bus.of("credit_balance_low", 5).await.len(), 1);
}
#[tokio::test]
async fn a_persons_own_alerts_go_to_that_person() {
    let app = app("agent-credits-test").await;
    let person = MemberId::parse("u_alice").unwrap();
    let (account, _) = app.svc.orgs.personal(&person).await.unwrap();
    change(&app, support::purchase(&account.id, "25", "buy:me")).await;
    change(&app, usage(&account.id, "10", "use:me")).await;
    handle(&app.svc, &event_of(&stream(&app))).await;
    let low = app.bus.of("credit_balance_low", 5).await;
    assert_eq!(low.len(), 1);
    assert_eq!(low[0]["detail"]["account"], "personal");
    assert_eq!(low[0]["detail"]["org"], "@u_alice");
    assert_eq!(
        low[0]["detail"]["recipients"],
        json!([{"member": "u_alice", "role": "owner"}])
    );
}
