//! Benchmark (not a test): one uncontended debit against dynoxide over HTTP.
//! Prints the DynamoDB requests each debit makes (counted by an SDK interceptor, retries
//! included) and the wall time per debit.
//!
//!   cargo run --profile bench -p agent-credits-tests --bin bench-debit [-- DEBITS]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_credits_domain::{
    Applied, Bucket, ChangeRequest, EntryKind, IdempotencyKey, OrgId, PositiveUsd, SystemClock, WalletStore,
};
use agent_credits_dynamo::DynamoWalletStore;
use support::RequestCounter;
use support::dynoxide::Dynoxide;
use support::table::TableDefinition;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let debits: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(2_000);
    let server = Dynoxide::start();
    let counter = RequestCounter::default();
    let client = support::dynamodb_client(server.endpoint(), Some(counter.clone()));
    TableDefinition::from_repo()?
        .without_stream()
        .create(&client, "bench")
        .await?;
    let store = DynamoWalletStore::new(client, "bench", Arc::new(SystemClock));
    let org = OrgId::parse("org_bench")?;
    let amount = PositiveUsd::parse("0.07")?;
    store
        .apply(ChangeRequest::credit(
            org.clone(),
            EntryKind::Purchase,
            Bucket::Purchased,
            PositiveUsd::parse("1000000")?,
            IdempotencyKey::parse("seed")?,
        )?)
        .await?
        .map_err(|r| format!("seed refused: {r}"))?;

    // Warm up connections and caches, then measure.
    for i in 0..50 {
        let key = IdempotencyKey::parse(format!("warm:{i}"))?;
        store
            .apply(ChangeRequest::debit(org.clone(), EntryKind::Usage, amount, key)?)
            .await?
            .map_err(|r| format!("warm-up refused: {r}"))?;
    }
    let requests_before = counter.get();
    let mut times = Vec::with_capacity(debits as usize);
    for i in 0..debits {
        let key = IdempotencyKey::parse(format!("usage:{i}"))?;
        let req = ChangeRequest::debit(org.clone(), EntryKind::Usage, amount, key)?;
        let start = Instant::now();
        let outcome = store.apply(req).await?;
        times.push(start.elapsed());
        if !matches!(outcome, Ok(Applied::Committed(_))) {
            return Err(format!("debit {i} did not commit: {outcome:?}").into());
        }
    }
    let requests = counter.get() - requests_before;
    times.sort();
    let total: Duration = times.iter().sum();
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p) as usize];
    println!("uncontended debits against dynoxide over HTTP: {debits}");
    println!(
        "DynamoDB requests: {requests} ({:.2} per debit)",
        requests as f64 / debits as f64
    );
    println!(
        "wall time per debit: mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms",
        total.as_secs_f64() * 1e3 / debits as f64,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    Ok(())
}
