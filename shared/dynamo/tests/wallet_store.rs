//! The wallet store against dynoxide over HTTP: the real AWS SDK, the real wire.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent_credits_domain::{
    Applied, Attribution, Bucket, ChangeRequest, EntryKind, IdempotencyKey, LedgerEntry, MemberId, OrgId,
    Outcome, PageRequest, PositiveUsd, Refusal, SignedUsd, StoreError, SystemClock, Usd, WalletState,
    WalletStore,
};
use agent_credits_dynamo::DynamoWalletStore;
use aws_sdk_dynamodb::Client;
use futures::future::join_all;
use support::dynoxide::Dynoxide;

struct Fixture {
    _server: Dynoxide,
    client: Client,
    store: DynamoWalletStore,
    org: OrgId,
}

async fn fixture() -> Fixture {
    let table = format!("credits-{}", std::process::id());
    let (server, client) = support::fresh_table(&table).await;
    let store = DynamoWalletStore::new(client.clone(), table, Arc::new(SystemClock));
    Fixture {
        _server: server,
        client,
        store,
        org: OrgId::parse("org_acme").unwrap(),
    }
}

fn usd(s: &str) -> Usd {
    Usd::parse(s).unwrap()
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

fn debit(org: &OrgId, amount: &str, k: &str) -> ChangeRequest {
    ChangeRequest::debit(
        org.clone(),
        EntryKind::Usage,
        PositiveUsd::parse(amount).unwrap(),
        key(k),
    )
    .unwrap()
}

fn credit(org: &OrgId, amount: &str, k: &str) -> ChangeRequest {
    support::purchase(org, amount, k)
}

/// The outcomes of racing writers. A writer may give up after losing the race for the
/// wallet through every retry (`Contention`, nothing written, the caller may retry with
/// the same key); every other error fails the test.
fn settled(results: Vec<Result<Outcome, StoreError>>) -> Vec<Outcome> {
    let mut gave_up = 0;
    let outcomes = results
        .into_iter()
        .filter_map(|r| match r {
            Ok(o) => Some(o),
            Err(StoreError::Contention { .. }) => {
                gave_up += 1;
                None
            }
            Err(e) => panic!("store error: {e}"),
        })
        .collect();
    eprintln!("writers that gave up on contention: {gave_up}");
    outcomes
}

/// Every entry of the org, oldest first, read page by page through `history`.
async fn ledger(store: &DynamoWalletStore, org: &OrgId) -> Vec<LedgerEntry> {
    let mut all = vec![];
    let mut page = PageRequest::first(37);
    loop {
        let p = store.history(org, page).await.unwrap();
        all.extend(p.entries);
        match p.next {
            Some(cursor) => page = PageRequest::after_cursor(37, cursor),
            None => break,
        }
    }
    all.reverse();
    all
}

/// The ledger tells the same story as the wallet: entries numbered 1..n in commit order,
/// each running balance = the previous one + its amount, the sum = the balance.
async fn assert_ledger_matches_wallet(f: &Fixture) -> Vec<LedgerEntry> {
    let wallet = f.store.wallet(&f.org).await.unwrap();
    let entries = ledger(&f.store, &f.org).await;
    assert_eq!(
        entries.len() as u64,
        wallet.version,
        "one entry per committed change"
    );
    let mut running = Usd::ZERO;
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "sequence numbers are unbroken");
        running = e
            .amount
            .apply_to(running)
            .expect("running balance never negative");
        assert_eq!(e.balance_after, running, "running balance of entry {}", e.seq);
    }
    assert_eq!(running, wallet.balance().unwrap(), "ledger sum = balance");
    entries
}

async fn table_dump(f: &Fixture) -> Vec<String> {
    let out = f.client.scan().table_name(f.store.table()).send().await.unwrap();
    let mut items: Vec<String> = out
        .items()
        .iter()
        .map(|i| {
            let mut kv: Vec<String> = i.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            kv.sort();
            kv.join(",")
        })
        .collect();
    items.sort();
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn debits_never_overdraw_under_64_concurrent_writers() {
    let f = fixture().await;
    f.store
        .apply(credit(&f.org, "10.00", "purchase:cs_1"))
        .await
        .unwrap()
        .unwrap();

    let tasks = (0..64).map(|t| {
        let (store, org) = (f.store.clone(), f.org.clone());
        tokio::spawn(async move {
            let mut results = vec![];
            for i in 0..50 {
                results.push(store.apply(debit(&org, "0.07", &format!("usage:{t}:{i}"))).await);
            }
            results
        })
    });
    let outcomes = settled(
        join_all(tasks)
            .await
            .into_iter()
            .flat_map(Result::unwrap)
            .collect(),
    );

    let successes = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Applied::Committed(_))))
        .count();
    for o in &outcomes {
        match o {
            Ok(Applied::Committed(e)) => assert_eq!(e.amount, SignedUsd::debit(usd("0.07"))),
            Err(Refusal::InsufficientFunds { available }) => assert!(*available < usd("0.07")),
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    let wallet = f.store.wallet(&f.org).await.unwrap();
    let spent = usd("0.07").as_decimal() * rust_decimal::Decimal::from(successes as u64);
    assert_eq!(
        wallet.balance().unwrap().as_decimal(),
        usd("10.00").as_decimal() - spent
    );
    // $10.00 holds 142 debits of $0.07 and not one more: the wallet was drained, not starved.
    assert_eq!(successes, 142);
    assert_eq!(wallet.balance().unwrap(), usd("0.06"));
    let entries = assert_ledger_matches_wallet(&f).await;
    assert_eq!(entries.len(), successes + 1);
    assert_eq!(wallet.lifetime_spent, usd("9.94"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_credits_and_debits_keep_one_unbroken_chain() {
    let f = fixture().await;
    f.store
        .apply(credit(&f.org, "1.00", "seed"))
        .await
        .unwrap()
        .unwrap();

    let tasks = (0..64).map(|t| {
        let (store, org) = (f.store.clone(), f.org.clone());
        tokio::spawn(async move {
            let mut results = vec![];
            for i in 0..50 {
                let req = if (t + i) % 5 == 0 {
                    credit(&org, "0.10", &format!("credit:{t}:{i}"))
                } else {
                    debit(&org, "0.07", &format!("usage:{t}:{i}"))
                };
                results.push(store.apply(req).await);
            }
            results
        })
    });
    let outcomes = settled(
        join_all(tasks)
            .await
            .into_iter()
            .flat_map(Result::unwrap)
            .collect(),
    );

    let committed: Vec<&LedgerEntry> = outcomes
        .iter()
        .filter_map(|o| match o {
            Ok(Applied::Committed(e)) => Some(e),
            Err(Refusal::InsufficientFunds { .. }) => None,
            other => panic!("unexpected outcome {other:?}"),
        })
        .collect();
    let credits = committed.iter().filter(|e| !e.amount.is_negative()).count();
    let debits = committed.len() - credits;
    let expected = rust_decimal::Decimal::ONE
        + usd("0.10").as_decimal() * rust_decimal::Decimal::from(credits as u64)
        - usd("0.07").as_decimal() * rust_decimal::Decimal::from(debits as u64);
    let wallet = f.store.wallet(&f.org).await.unwrap();
    assert_eq!(wallet.balance().unwrap().as_decimal(), expected);
    let entries = assert_ledger_matches_wallet(&f).await;
    assert_eq!(entries.len(), committed.len() + 1);
}

async fn replay_16_at_once_then_later(f: &Fixture, req: ChangeRequest) {
    let before = f.store.wallet(&f.org).await.unwrap();
    let outcomes = join_all((0..16).map(|_| {
        let (store, req) = (f.store.clone(), req.clone());
        tokio::spawn(async move { store.apply(req).await.unwrap() })
    }))
    .await;
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(Result::unwrap).collect();
    let committed = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Applied::Committed(_))))
        .count();
    assert_eq!(committed, 1, "exactly one of 16 concurrent replays commits");
    let first = outcomes[0].as_ref().unwrap().entry().clone();
    assert!(
        outcomes
            .iter()
            .all(|o| o.as_ref().map(|a| a.entry()) == Ok(&first)),
        "every replay answers the same entry"
    );

    let later = f.store.apply(req).await.unwrap();
    assert_eq!(later, Ok(Applied::Replayed(first.clone())));

    let after = f.store.wallet(&f.org).await.unwrap();
    assert_eq!(after.version, before.version + 1, "one balance change");
    assert_eq!(
        first.amount.apply_to(before.balance().unwrap()).unwrap(),
        after.balance().unwrap()
    );
    let entries = assert_ledger_matches_wallet(f).await;
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.idempotency_key == first.idempotency_key)
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replaying_a_credit_or_a_debit_changes_the_balance_once() {
    let f = fixture().await;
    replay_16_at_once_then_later(&f, credit(&f.org, "25.00", "purchase:cs_replayed")).await;
    replay_16_at_once_then_later(&f, debit(&f.org, "1.25", "usage:req_replayed")).await;
    assert_eq!(
        f.store.wallet(&f.org).await.unwrap().balance().unwrap(),
        usd("23.75")
    );
}

#[tokio::test]
async fn reusing_a_key_for_a_different_change_is_refused_and_writes_nothing() {
    let f = fixture().await;
    f.store
        .apply(credit(&f.org, "5.00", "k1"))
        .await
        .unwrap()
        .unwrap();
    let before = table_dump(&f).await;
    assert_eq!(
        f.store.apply(credit(&f.org, "6.00", "k1")).await.unwrap(),
        Err(Refusal::IdempotencyKeyReused)
    );
    assert_eq!(
        f.store.apply(debit(&f.org, "5.00", "k1")).await.unwrap(),
        Err(Refusal::IdempotencyKeyReused)
    );
    assert_eq!(table_dump(&f).await, before);
}

#[tokio::test]
async fn insufficient_funds_reports_the_available_balance_and_writes_nothing() {
    let f = fixture().await;
    f.store
        .apply(credit(&f.org, "0.50", "k1"))
        .await
        .unwrap()
        .unwrap();
    let before = table_dump(&f).await;
    let outcome = f
        .store
        .apply(debit(&f.org, "0.500001", "usage:big"))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Err(Refusal::InsufficientFunds {
            available: usd("0.50")
        })
    );
    assert_eq!(table_dump(&f).await, before);
    // The same key can still be used once funds allow it: a refusal claims nothing.
    f.store
        .apply(credit(&f.org, "1.00", "k2"))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        f.store
            .apply(debit(&f.org, "0.500001", "usage:big"))
            .await
            .unwrap(),
        Ok(Applied::Committed(_))
    ));
}

#[tokio::test]
async fn an_unknown_org_has_an_empty_wallet_and_cannot_spend() {
    let f = fixture().await;
    let before = table_dump(&f).await;
    let nobody = OrgId::parse("org_nobody").unwrap();
    assert_eq!(
        f.store.wallet(&nobody).await.unwrap().balance().unwrap(),
        Usd::ZERO
    );
    assert_eq!(
        f.store.apply(debit(&nobody, "0.01", "u1")).await.unwrap(),
        Err(Refusal::InsufficientFunds { available: Usd::ZERO })
    );
    assert_eq!(table_dump(&f).await, before);
}

#[tokio::test]
async fn draining_to_zero_pauses_and_a_purchase_resumes() {
    let f = fixture().await;
    f.store
        .apply(credit(&f.org, "0.14", "c1"))
        .await
        .unwrap()
        .unwrap();
    f.store.apply(debit(&f.org, "0.07", "u1")).await.unwrap().unwrap();
    assert_eq!(f.store.wallet(&f.org).await.unwrap().state, WalletState::Active);
    f.store.apply(debit(&f.org, "0.07", "u2")).await.unwrap().unwrap();
    let w = f.store.wallet(&f.org).await.unwrap();
    assert_eq!(
        w.state,
        WalletState::Paused(agent_credits_domain::PauseReason::CreditsExhausted)
    );
    assert_eq!(w.available().unwrap(), Usd::ZERO);
    f.store.apply(credit(&f.org, "100", "c2")).await.unwrap().unwrap();
    assert_eq!(f.store.wallet(&f.org).await.unwrap().state, WalletState::Active);
}

#[tokio::test]
async fn debits_draw_base_then_rollover_then_purchased_in_the_table() {
    let f = fixture().await;
    let grant = |bucket, amount: &str, k: &str| {
        let kind = if bucket == Bucket::Base {
            EntryKind::PlanGrant
        } else {
            EntryKind::Grant
        };
        ChangeRequest::credit(
            f.org.clone(),
            kind,
            bucket,
            PositiveUsd::parse(amount).unwrap(),
            key(k),
        )
        .unwrap()
    };
    f.store
        .apply(grant(Bucket::Purchased, "3", "g1"))
        .await
        .unwrap()
        .unwrap();
    f.store
        .apply(grant(Bucket::Rollover, "2", "g2"))
        .await
        .unwrap()
        .unwrap();
    f.store
        .apply(grant(Bucket::Base, "1", "g3"))
        .await
        .unwrap()
        .unwrap();
    let Ok(Applied::Committed(e)) = f.store.apply(debit(&f.org, "2.5", "u1")).await.unwrap() else {
        panic!()
    };
    assert_eq!(e.buckets.base, SignedUsd::debit(usd("1")));
    assert_eq!(e.buckets.rollover, SignedUsd::debit(usd("1.5")));
    assert!(e.buckets.purchased.is_zero());
    let w = f.store.wallet(&f.org).await.unwrap();
    assert_eq!(
        (w.buckets.base, w.buckets.rollover, w.buckets.purchased),
        (usd("0"), usd("0.5"), usd("3"))
    );
    assert_eq!(w.lifetime_added, usd("6"));
    assert_eq!(w.lifetime_spent, usd("2.5"));
}

#[tokio::test]
async fn history_pages_list_newest_first_with_running_balances_and_attribution() {
    let f = fixture().await;
    f.store
        .apply(credit(&f.org, "1.00", "c1"))
        .await
        .unwrap()
        .unwrap();
    let who = Attribution {
        member: Some(MemberId::parse("m_ana").unwrap()),
        api_key: Some("key_1".parse().unwrap()),
        agent: Some("agent_7".parse().unwrap()),
        model: Some("claude-sonnet-4".parse().unwrap()),
        consumable: agent_credits_domain::Consumable::Llm,
        feature: Some(agent_credits_domain::Feature::AgentConversation),
        creator: Some(OrgId::parse("org_creator").unwrap()),
    };
    for i in 0..4 {
        f.store
            .apply(debit(&f.org, "0.10", &format!("u{i}")).attributed_to(who.clone()))
            .await
            .unwrap()
            .unwrap();
    }
    let page1 = f.store.history(&f.org, PageRequest::first(2)).await.unwrap();
    assert_eq!(
        page1.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![5, 4]
    );
    assert_eq!(page1.entries[0].balance_after, usd("0.60"));
    assert_eq!(page1.entries[0].attribution, who);
    let page2 = f
        .store
        .history(&f.org, PageRequest::after_cursor(2, page1.next.unwrap()))
        .await
        .unwrap();
    assert_eq!(
        page2.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 2]
    );
    let page3 = f
        .store
        .history(&f.org, PageRequest::after_cursor(2, page2.next.unwrap()))
        .await
        .unwrap();
    assert_eq!(page3.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
    assert_eq!(page3.entries[0].kind, EntryKind::Purchase);
    assert_eq!(page3.next, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_limit_admits_holds_within_its_room_under_32_concurrent_holds() {
    let f = fixture().await;
    f.store
        .apply(credit(&f.org, "50.00", "c1"))
        .await
        .unwrap()
        .unwrap();
    let member = MemberId::parse("m_bo").unwrap();
    f.store
        .set_member_limit(&f.org, &member, Some(usd("1.00")))
        .await
        .unwrap();
    let outcomes = join_all((0..32).map(|i| {
        let (store, org, member) = (f.store.clone(), f.org.clone(), member.clone());
        tokio::spawn(async move {
            let id = agent_credits_domain::HoldId::parse(format!("h{i}")).unwrap();
            let req = ChangeRequest::hold(
                org,
                id.clone(),
                agent_credits_domain::PositiveUsd::parse("0.07").unwrap(),
                chrono::Utc::now() + chrono::Duration::minutes(5),
                agent_credits_domain::keys::hold(&id),
            )
            .attributed_to(Attribution {
                member: Some(member),
                ..Default::default()
            });
            store.apply(req).await.unwrap()
        })
    }))
    .await;
    let committed = outcomes
        .iter()
        .filter(|o| matches!(o.as_ref().unwrap(), Ok(Applied::Committed(_))))
        .count();
    let refused = outcomes
        .iter()
        .filter(
            |o| matches!(o.as_ref().unwrap(), Err(Refusal::MemberLimitReached { limit }) if *limit == usd("1.00")),
        )
        .count();
    assert_eq!(committed, 14, "$1.00 has room for 14 holds of $0.07");
    assert_eq!(refused, 32 - 14);
    let month = f
        .store
        .member_month(&f.org, &member, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!((month.spent, month.held), (Usd::ZERO, usd("0.98")));
    assert_eq!(f.store.wallet(&f.org).await.unwrap().held, usd("0.98"));
    assert_ledger_matches_wallet(&f).await;
}
