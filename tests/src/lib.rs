//! Test support: the real emulators (dynoxide over HTTP), SDK clients pointed at them,
//! and tables created from `infra/template.yaml`.

pub mod bus;
pub mod contract;
pub mod dynoxide;
pub mod events;
pub mod fake_gateway;
pub mod moto;
pub mod server;
pub mod streams;
pub mod table;
pub mod watch;

pub use events::{dashboard_event, iam_event, operator_event, runtime_event, with_query};

use std::sync::Mutex;

use agent_credits_domain::Clock;
use chrono::{DateTime, Utc};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;

/// The repository root, for reading `infra/`.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The agent runtime's IAM role locally (the identity of `infra/events/usage/`).
pub const RUNTIME_ROLE: &str = "arn:aws:iam::123456789012:role/agent-runtime";
/// An operator's IAM role locally (the identity of `infra/events/usage/put-rate.json`).
pub const OPERATOR_ROLE: &str = "arn:aws:iam::123456789012:role/agent-credits-operator";

/// The usage function's settings in tests: `table`, the local runtime and operator roles.
pub fn usage_setting(table: &str, name: &str) -> Option<String> {
    match name {
        "TABLE_NAME" => Some(table.to_owned()),
        "RUNTIME_ROLE_ARNS" => Some(RUNTIME_ROLE.to_owned()),
        "OPERATOR_ROLE_ARNS" => Some(OPERATOR_ROLE.to_owned()),
        _ => None,
    }
}

/// Counts HTTP requests the SDK sends (retries included), so figures are measured.
#[derive(Debug, Default, Clone)]
pub struct RequestCounter(Arc<AtomicU64>);

impl RequestCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A DynamoDB client for a local endpoint, with dummy credentials.
pub fn dynamodb_client(endpoint: &str, counter: Option<RequestCounter>) -> Client {
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "agent-credits-tests",
        ));
    if let Some(counter) = counter {
        config = config.interceptor(counter);
    }
    Client::from_conf(config.build())
}

/// A Secrets Manager client for a local endpoint (moto), with dummy credentials.
pub fn secrets_client(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version_latest()
        .endpoint_url(endpoint)
        .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "agent-credits-tests",
        ))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

/// A clock the test moves by hand.
#[derive(Debug)]
pub struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    pub fn at(t: DateTime<Utc>) -> TestClock {
        TestClock(Mutex::new(t))
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A sample event of `infra/events/` (e.g. `usage/debit-cost.json`), as JSON to adjust.
pub fn event(name: &str) -> serde_json::Value {
    let path = repo_root().join("infra/events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An API Gateway v2 event as the Lambda runtime would hand it to a handler.
pub fn request(event: &serde_json::Value) -> lambda_http::Request {
    lambda_http::request::from_str(&event.to_string())
        .unwrap_or_else(|e| panic!("not an API Gateway event: {e}"))
}

/// A fresh dynoxide server with the template's table created under `table`, without its
/// stream: dynoxide finds each stream record's sequence number by reading every earlier
/// record, so a long test on a streaming table slows with every write. Tests that consume
/// the stream use [`fresh_table_with_stream`].
pub async fn fresh_table(table: &str) -> (dynoxide::Dynoxide, aws_sdk_dynamodb::Client) {
    fresh(table, false).await
}

/// [`fresh_table`] with the template's stream, for the tests of its consumers.
pub async fn fresh_table_with_stream(table: &str) -> (dynoxide::Dynoxide, aws_sdk_dynamodb::Client) {
    fresh(table, true).await
}

async fn fresh(table: &str, stream: bool) -> (dynoxide::Dynoxide, aws_sdk_dynamodb::Client) {
    let server = dynoxide::Dynoxide::start();
    let client = dynamodb_client(server.endpoint(), None);
    let mut definition =
        table::TableDefinition::from_repo().unwrap_or_else(|e| panic!("infra/template.yaml: {e}"));
    if !stream {
        definition = definition.without_stream();
    }
    definition
        .create(&client, table)
        .await
        .unwrap_or_else(|e| panic!("create table {table}: {e}"));
    (server, client)
}

/// A purchase of `amount` into the purchased bucket, made once under `key`.
pub fn purchase(
    org: &agent_credits_domain::OrgId,
    amount: &str,
    key: &str,
) -> agent_credits_domain::ChangeRequest {
    use agent_credits_domain::{Bucket, ChangeRequest, EntryKind, IdempotencyKey, PositiveUsd};
    let amount = PositiveUsd::parse(amount).unwrap_or_else(|e| panic!("amount {amount}: {e}"));
    let key = IdempotencyKey::parse(key).unwrap_or_else(|e| panic!("key {key}: {e}"));
    ChangeRequest::credit(org.clone(), EntryKind::Purchase, Bucket::Purchased, amount, key)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A credits org on Claude Code, as the account function creates it.
pub fn credits_org(id: &agent_credits_domain::OrgId) -> agent_credits_domain::Org {
    use agent_credits_domain::{BillingMode, Org, PurchasePolicy, Runtime};
    Org {
        id: id.clone(),
        name: id.to_string(),
        runtime: Runtime::ClaudeCode,
        billing_mode: BillingMode::Credits,
        purchase_policy: PurchasePolicy::OwnersOnly,
        members_see_billing: true,
        credits_per_usd: agent_credits_domain::account::DEFAULT_CREDITS_PER_USD,
        created_at: Utc::now(),
        referred_by: None,
        revision: 0,
    }
}

/// Creates the credits org `id` owned by `owner` in `table`.
pub async fn create_credits_org(client: &Client, table: &str, id: &agent_credits_domain::OrgId, owner: &str) {
    use agent_credits_domain::{BillingMode, MemberId, WalletSettings};
    let settings = WalletSettings {
        billing_mode: Some(BillingMode::Credits),
        ..Default::default()
    };
    let owner = MemberId::parse(owner).unwrap_or_else(|e| panic!("{e}"));
    let created = agent_credits_dynamo::OrgStore::new(client.clone(), table)
        .create(&credits_org(id), &owner, &settings)
        .await
        .unwrap_or_else(|e| panic!("create {id}: {e}"));
    assert!(created, "{id} existed");
}

/// Stripe at `base` (the simulator) with `key`, behind the payment gateway port, as each
/// function's `main.rs` wires it.
pub fn payments(base: &str, key: &str) -> std::sync::Arc<agent_credits_stripe::StripeGateway> {
    match agent_credits_stripe::StripeGateway::connect(&key.into(), Some(base)) {
        Ok(gateway) => std::sync::Arc::new(gateway),
        Err(e) => panic!("{e}"),
    }
}
