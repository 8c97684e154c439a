//! Dated grants in the table: each lot's marker lives and dies with the lot, and the
//! sweep expires what is past its date once, never what open holds reserve.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent_credits_domain::{
    Applied, ChangeRequest, Clock, EntryKind, GrantKind, HoldId, IdempotencyKey, OrgId, PageRequest,
    PositiveUsd, Usd, Wallet, WalletStore,
};
use agent_credits_dynamo::DynamoWalletStore;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, TimeZone, Utc};
use futures::future::join_all;
use support::TestClock;
use support::dynoxide::Dynoxide;

struct Fixture {
    _server: Dynoxide,
    client: Client,
    store: DynamoWalletStore,
    clock: Arc<TestClock>,
    org: OrgId,
}

async fn fixture() -> Fixture {
    let (server, client) = support::fresh_table("credits").await;
    let clock = Arc::new(TestClock::at(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()));
    let store = DynamoWalletStore::new(client.clone(), "credits", clock.clone());
    Fixture {
        _server: server,
        client,
        store,
        clock,
        org: OrgId::parse("org_acme").unwrap(),
    }
}

fn usd(s: &str) -> Usd {
    Usd::parse(s).unwrap()
}

impl Fixture {
    async fn grant(&self, kind: GrantKind, amount: &str, days: Option<i64>, id: &str) {
        let expires = days.map(|d| self.clock.now() + Duration::days(d));
        let req = ChangeRequest::grant(
            self.org.clone(),
            kind,
            PositiveUsd::parse(amount).unwrap(),
            expires,
            IdempotencyKey::parse(format!("grant:{id}")).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            self.store.apply(req).await.unwrap(),
            Ok(Applied::Committed(_))
        ));
    }

    async fn apply(&self, req: ChangeRequest) {
        self.store.apply(req).await.unwrap().unwrap();
    }

    async fn wallet(&self) -> Wallet {
        self.store.wallet(&self.org).await.unwrap()
    }

    /// The sort keys of the org's lot markers still in the sweep's index (a retired one
    /// waits for its TTL, out of it).
    async fn markers(&self) -> Vec<String> {
        let out = self
            .client
            .query()
            .table_name("credits")
            .key_condition_expression("pk = :pk AND begins_with(sk, :lot)")
            .expression_attribute_values(":pk", AttributeValue::S("ORG#org_acme".into()))
            .expression_attribute_values(":lot", AttributeValue::S("LOT#".into()))
            .send()
            .await
            .unwrap();
        out.items()
            .iter()
            .filter(|i| {
                let retired = !i.contains_key("gsi1pk");
                assert_eq!(retired, i.contains_key("expires_at"), "{i:?}");
                !retired
            })
            .map(|i| i["sk"].as_s().unwrap().clone())
            .collect()
    }

    async fn entries_of(&self, kind: EntryKind) -> Vec<agent_credits_domain::LedgerEntry> {
        let page = self
            .store
            .history(&self.org, PageRequest::first(100))
            .await
            .unwrap();
        page.entries.into_iter().filter(|e| e.kind == kind).collect()
    }
}

/// added − taken back = balance + spent + expired + withdrawn, and the lots are the
/// expiring bucket, as the table holds them.
fn assert_adds_up(w: &Wallet) {
    assert!(w.accounts_for_every_credit().unwrap(), "{w:?}");
}

#[tokio::test]
async fn a_lot_past_its_date_expires_once_however_many_sweeps_run_at_once() {
    let f = fixture().await;
    f.apply(support::purchase(&f.org, "10", "purchase:1")).await;
    f.grant(GrantKind::Promotional, "5", Some(10), "p1").await;
    f.grant(GrantKind::Support, "3", Some(20), "s1").await;
    f.grant(GrantKind::Referral, "2", None, "r1").await;
    assert_eq!(f.markers().await.len(), 2, "one marker per dated grant");

    // A call drains the lot of day 10 and part of day 20's: the drained lot's marker goes
    // with it.
    f.apply(ChangeRequest::usage(
        f.org.clone(),
        PositiveUsd::parse("6").unwrap(),
        IdempotencyKey::parse("usage:1").unwrap(),
    ))
    .await;
    assert_eq!(f.markers().await.len(), 1);
    assert_eq!(f.wallet().await.buckets.expiring, usd("2"));

    // Nothing is due on day 19.
    f.clock.advance(Duration::days(19));
    let report = f.store.sweep_expired_lots().await.unwrap();
    assert_eq!((report.orgs, report.expired), (0, 0));

    // Day 20: eight sweeps at once expire the $2 left, in one entry.
    f.clock.advance(Duration::days(1));
    let sweeps = join_all((0..8).map(|_| f.store.sweep_expired_lots())).await;
    let expired: usize = sweeps.into_iter().map(|r| r.unwrap().expired).sum();
    assert_eq!(expired, 1);
    let entries = f.entries_of(EntryKind::Expired).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].amount.magnitude(), usd("2"));
    let w = f.wallet().await;
    assert_eq!((w.buckets.expiring, w.lifetime_expired), (Usd::ZERO, usd("2")));
    assert_eq!(
        w.balance().unwrap(),
        usd("12"),
        "purchased 10 and earned 2 never expire"
    );
    assert!(f.markers().await.is_empty());
    assert_adds_up(&w);
}

#[tokio::test]
async fn credits_an_open_hold_reserves_do_not_expire_until_it_closes() {
    let f = fixture().await;
    f.grant(GrantKind::Promotional, "5", Some(1), "p1").await;
    f.apply(support::purchase(&f.org, "1", "purchase:1")).await;
    let hold = HoldId::parse("h_1").unwrap();
    f.apply(ChangeRequest::hold(
        f.org.clone(),
        hold.clone(),
        PositiveUsd::parse("4").unwrap(),
        f.clock.now() + Duration::days(3),
        IdempotencyKey::parse("hold:h_1").unwrap(),
    ))
    .await;
    f.clock.advance(Duration::days(1));
    // $6 in the wallet, $4 held: $2 of the $5 may expire now.
    assert_eq!(f.store.sweep_expired_lots().await.unwrap().expired, 1);
    let w = f.wallet().await;
    assert_eq!((w.buckets.expiring, w.held), (usd("3"), usd("4")));
    assert_eq!(f.markers().await.len(), 1, "the rest waits for the hold");
    assert_adds_up(&w);
    // The hold is released: the next sweep expires the other $3.
    f.apply(ChangeRequest::release(
        f.org.clone(),
        hold,
        IdempotencyKey::parse("release:h_1").unwrap(),
    ))
    .await;
    assert_eq!(f.store.sweep_expired_lots().await.unwrap().expired, 1);
    let w = f.wallet().await;
    assert_eq!(
        (w.buckets.expiring, w.balance().unwrap(), w.lifetime_expired),
        (Usd::ZERO, usd("1"), usd("5"))
    );
    assert!(f.markers().await.is_empty());
    assert_adds_up(&w);
}
