//! Wires the account function: SDK clients once per cold start, then the handler.

use std::sync::Arc;

use account::{Account, handle};
use agent_credits_aws::{dynamodb, sdk_config};
use agent_credits_domain::SystemClock;
use agent_credits_dynamo::{DynamoWalletStore, OrgStore};
use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is required")?;
    let client = dynamodb(&sdk_config().await);
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
