//! Benchmark (not a test): what a debit costs before and after its org has closed 100,000
//! holds. Before each debit the usage function releases the org's expired holds (it does
//! whenever the wallet holds anything); that read must not grow with the holds the org
//! ever closed. Prints, for each number of closed holds, the DynamoDB requests, the items
//! the expiry read looked at (`ScannedCount`) and the wall time per debit, and the same
//! read as it was before (every `HOLD#` item of the org, filtered) for comparison.
//!
//!   cargo run --profile bench -p agent-credits-tests --bin bench-holds [-- CLOSED DEBITS]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_credits_domain::{ChangeRequest, HoldId, OrgId, PositiveUsd, SystemClock, WalletStore, keys};
use agent_credits_dynamo::DynamoWalletStore;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use support::RequestCounter;
use support::dynoxide::Dynoxide;
use support::table::TableDefinition;

type Error = Box<dyn std::error::Error + Send + Sync>;

const TABLE: &str = "bench";

fn arg(i: usize, default: u64) -> Result<u64, Error> {
    Ok(std::env::args()
        .nth(i)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(default))
}

/// `n` holds of `org`, captured long ago: what a busy org leaves behind.
async fn closed_holds(client: &Client, org: &OrgId, n: u64) -> Result<(), Error> {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let items: Vec<WriteRequest> = (0..n)
        .map(|i| {
            let id = format!("h_closed_{i:06}");
            let item = [
                ("pk", s(&format!("ORG#{org}"))),
                ("sk", s(&format!("HOLD#{id}"))),
                ("type", s("hold")),
                ("hold", s(&id)),
                ("org", s(org.as_str())),
                ("amount", AttributeValue::N("0.5".into())),
                ("state", s("captured")),
                ("hold_expires", s("2026-01-01T00:00:00.000Z")),
                ("made_at", AttributeValue::N("1".into())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map(|p| WriteRequest::builder().put_request(p).build())
        })
        .collect::<Result<_, _>>()?;
    for batch in items.chunks(25) {
        client
            .batch_write_item()
            .request_items(TABLE, batch.to_vec())
            .send()
            .await?;
    }
    Ok(())
}

/// The expiry read as it was before the open-holds index: every hold of the org, filtered
/// on open and expired. Returns the items it looked at.
async fn old_expiry_read(client: &Client, org: &OrgId) -> Result<i32, Error> {
    let mut scanned = 0;
    let mut start = None;
    loop {
        let out = client
            .query()
            .table_name(TABLE)
            .key_condition_expression("pk = :pk AND begins_with(sk, :hold)")
            .filter_expression("#state = :open AND hold_expires <= :now")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":pk", AttributeValue::S(format!("ORG#{org}")))
            .expression_attribute_values(":hold", AttributeValue::S("HOLD#".into()))
            .expression_attribute_values(":open", AttributeValue::S("open".into()))
            .expression_attribute_values(":now", AttributeValue::S("2099-01-01T00:00:00.000Z".into()))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        scanned += out.scanned_count();
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(scanned),
        }
    }
}

/// The expiry read as it is: the org's range of its shard of the open-holds index.
/// Returns the items it looked at.
async fn new_expiry_read(client: &Client, org: &OrgId) -> Result<i32, Error> {
    let out = client
        .query()
        .table_name(TABLE)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi")
        .expression_attribute_values(
            ":p",
            AttributeValue::S(agent_credits_dynamo::items::hold_shard_pk(org)),
        )
        .expression_attribute_values(":lo", AttributeValue::S(format!("{org}#")))
        .expression_attribute_values(":hi", AttributeValue::S(format!("{org}#2099")))
        .send()
        .await?;
    Ok(out.scanned_count())
}

/// `debits` debits as the usage function makes them (expired holds released first), timed.
async fn debits(
    store: &DynamoWalletStore,
    counter: &RequestCounter,
    org: &OrgId,
    tag: &str,
    n: u64,
) -> Result<(f64, Vec<Duration>), Error> {
    let before = counter.get();
    let mut times = Vec::with_capacity(n as usize);
    for i in 0..n {
        let start = Instant::now();
        store.expire_holds(org).await?;
        let req = ChangeRequest::usage(
            org.clone(),
            PositiveUsd::parse("0.07")?,
            keys::usage(&HoldId::parse(format!("{tag}_{i}"))?),
        );
        store
            .apply(req)
            .await?
            .map_err(|r| format!("debit refused: {r}"))?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(((counter.get() - before) as f64 / n as f64, times))
}

fn report(label: &str, requests: f64, times: &[Duration]) {
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;
    let mean = times.iter().sum::<Duration>().as_secs_f64() * 1e3 / times.len() as f64;
    println!(
        "{label}: {requests:.2} requests per debit; mean {mean:.3} ms, p50 {:.3} ms, p99 {:.3} ms",
        pct(0.5),
        pct(0.99)
    );
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let closed = arg(1, 100_000)?;
    let n = arg(2, 1_000)?;
    let server = Dynoxide::start();
    let counter = RequestCounter::default();
    let client = support::dynamodb_client(server.endpoint(), Some(counter.clone()));
    TableDefinition::from_repo()?
        .without_stream()
        .create(&client, TABLE)
        .await?;
    let store = DynamoWalletStore::new(client.clone(), TABLE, Arc::new(SystemClock));
    let org = OrgId::parse("org_bench")?;
    store
        .apply(support::purchase(&org, "1000000", "seed"))
        .await?
        .map_err(|r| format!("seed refused: {r}"))?;
    // One hold open for good, so that every debit releases expired holds first.
    let open = HoldId::parse("h_open")?;
    let hold = ChangeRequest::hold(
        org.clone(),
        open.clone(),
        PositiveUsd::parse("1")?,
        chrono::Utc::now() + chrono::Duration::hours(1),
        keys::hold(&open),
    );
    store
        .apply(hold)
        .await?
        .map_err(|r| format!("hold refused: {r}"))?;
    debits(&store, &counter, &org, "warm", 50).await?;

    let (requests, times) = debits(&store, &counter, &org, "none", n).await?;
    report("0 closed holds", requests, &times);
    let new_before = new_expiry_read(&client, &org).await?;
    let old_before = old_expiry_read(&client, &org).await?;
    closed_holds(&client, &org, closed).await?;
    let (requests, times) = debits(&store, &counter, &org, "many", n).await?;
    report(&format!("{closed} closed holds"), requests, &times);
    let old_after = old_expiry_read(&client, &org).await?;
    let new_after = new_expiry_read(&client, &org).await?;
    println!("the expiry read looks at {new_before} items (the open hold), then {new_after}");
    let old_start = Instant::now();
    for _ in 0..5 {
        old_expiry_read(&client, &org).await?;
    }
    println!(
        "the expiry read before the open-holds index looked at {old_before} items, then {old_after} ({:.1} ms each)",
        old_start.elapsed().as_secs_f64() * 1e3 / 5.0
    );
    Ok(())
}
