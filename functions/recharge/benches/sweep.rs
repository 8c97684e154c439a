//! DynamoDB requests of one recharge sweep over 10,000 orgs of which 10 are due (not a
//! test; figures for the README). The due orgs are found with one Query of the sparse
//! index, so the count does not grow with the orgs that are not due.
//!
//! `cargo bench -p recharge --bench sweep` (dynoxide and the Stripe simulator, locally).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent_credits_domain::{
    ChangeRequest, IdempotencyKey, MemberId, OrgId, PositiveUsd, RechargeSettings, SystemClock, Usd,
    WalletStore,
};
use agent_credits_dynamo::{Card, DynamoWalletStore, RechargeStore};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use recharge::{Recharge, sweep};
use stripe_sim::StripeSim;
use support::RequestCounter;

const ORGS: usize = 10_000;
const DUE: usize = 10;

#[tokio::main]
async fn main() {
    let (db, setup) = support::fresh_table("credits").await;
    let sim = StripeSim::start().await.unwrap();
    let stripe = stripe::ClientBuilder::new("sk_test_bench")
        .url(sim.base_url())
        .build()
        .unwrap();
    // 9,990 wallets that are not due, written in batches (setup, not counted).
    let quiet: Vec<WriteRequest> = (DUE..ORGS)
        .map(|i| {
            let item = [
                ("pk", AttributeValue::S(format!("ORG#org_{i:05}"))),
                ("sk", AttributeValue::S("WALLET".into())),
                ("type", AttributeValue::S("wallet".into())),
                ("billing_mode", AttributeValue::S("credits".into())),
                ("purchased", AttributeValue::N("500".into())),
                ("balance", AttributeValue::N("500".into())),
                ("available", AttributeValue::N("500".into())),
                ("version", AttributeValue::N("1".into())),
                ("state", AttributeValue::S("active".into())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build()
        })
        .collect();
    for batch in quiet.chunks(25) {
        setup
            .batch_write_item()
            .request_items("credits", batch.to_vec())
            .send()
            .await
            .unwrap();
    }
    // 10 due orgs: auto-recharge on with a saved card, then usage below $20.
    let store = DynamoWalletStore::new(setup.clone(), "credits", Arc::new(SystemClock));
    let recharges = RechargeStore::new(setup.clone(), "credits");
    let customer = stripe_core::customer::CreateCustomer::new()
        .send(&stripe)
        .await
        .unwrap();
    let settings = RechargeSettings::new(
        true,
        Usd::parse("20").unwrap(),
        Usd::parse("100").unwrap(),
        3,
        Usd::parse("1000").unwrap(),
    )
    .unwrap();
    for i in 0..DUE {
        let org = OrgId::parse(format!("org_{i:05}")).unwrap();
        support::create_credits_org(&setup, "credits", &org, "u_owner").await;
        store
            .apply(support::purchase(&org, "30", "seed"))
            .await
            .unwrap()
            .unwrap();
        let owner = MemberId::parse("u_owner").unwrap();
        let card = Card {
            customer: customer.id.to_string(),
            payment_method: "pm_card_visa".into(),
            owner: owner.clone(),
        };
        let saved = recharges
            .configure(&org, &settings, Some(&card), &owner, chrono::Utc::now())
            .await
            .unwrap();
        assert_eq!(saved, agent_credits_dynamo::Configured::Saved);
        let usage = ChangeRequest::usage(
            org,
            PositiveUsd::parse("15").unwrap(),
            IdempotencyKey::parse("usage:1").unwrap(),
        );
        store.apply(usage).await.unwrap().unwrap();
    }

    let counter = RequestCounter::default();
    let client = support::dynamodb_client(db.endpoint(), Some(counter.clone()));
    let svc = Recharge {
        store: DynamoWalletStore::new(client.clone(), "credits", Arc::new(SystemClock)),
        recharges: RechargeStore::new(client, "credits"),
        payments: support::payments(sim.base_url(), "sk_test_bench"),
        clock: Arc::new(SystemClock),
        resume_after: chrono::Duration::seconds(120),
    };
    let started = std::time::Instant::now();
    let report = sweep(&svc).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!((report.due, report.charged), (DUE, DUE), "{report:?}");
    let requests = counter.get();
    println!("orgs: {ORGS}, due: {DUE}, charged: {}", report.charged);
    println!(
        "DynamoDB requests for the sweep: {requests} (1 Query of the due index + {} for the {DUE} due orgs)",
        requests - 1
    );
    println!("wall time: {elapsed:?} (dynoxide and the simulator on this machine)");
    let empty = counter.get();
    sweep(&svc).await.unwrap();
    println!(
        "DynamoDB requests for the next sweep (none due): {}",
        counter.get() - empty
    );
}
