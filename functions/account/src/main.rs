//! Wires the account function: SDK clients once per cold start, then the handler.

use std::sync::Arc;

use account::{Account, handle};
use agent_credits_domain::SystemClock;
use agent_credits_dynamo::{DynamoWalletStore, OrgStore};
use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is required")?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let mut dynamo = aws_sdk_dynamodb::config::Builder::from(&aws);
    if let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") {
        dynamo = dynamo.endpoint_url(endpoint);
    }
    let client = aws_sdk_dynamodb::Client::from_conf(dynamo.build());
    let account = Account {
        store: DynamoWalletStore::new(client.clone(), table.as_str(), Arc::new(SystemClock)),
        orgs: OrgStore::new(client, table.as_str()),
        clock: Arc::new(SystemClock),
    };
    run(service_fn(|req| async {
        Ok::<_, Error>(handle(&account, req).await)
    }))
    .await
}
