//! Wires the account function: SDK clients once per cold start, then the handler.

use std::sync::Arc;

use account::{Account, handle};
use agent_credits_aws::{KeyVault, dynamodb, env, sdk_config, secrets_manager};
use agent_credits_domain::SystemClock;
use agent_credits_dynamo::{DynamoWalletStore, OrgStore};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is required")?;
    let aws = sdk_config().await?;
    let client = dynamodb(&aws);
    // One secret per org and provider under this prefix; the template grants no other.
    let prefix = env("BYOK_SECRET_PREFIX").unwrap_or_else(|| "agent-credits/local/byok/".to_owned());
    let account = Account {
        store: DynamoWalletStore::new(client.clone(), table.as_str(), Arc::new(SystemClock)),
        orgs: OrgStore::new(client, table.as_str()),
        clock: Arc::new(SystemClock),
        keys: KeyVault::new(secrets_manager(&aws), prefix),
    };
    agent_credits_http::run(|req| async { Ok::<_, Error>(handle(&account, req).await) }).await
}
