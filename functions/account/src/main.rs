//! Wires the account function: settings and SDK clients once per cold start, then the
//! handler for every request.

use std::sync::Arc;

use account::{Account, Settings, handle};
use agent_credits_aws::{KeyVault, dynamodb, sdk_config, secrets_manager, settings::FromEnv};
use agent_credits_domain::SystemClock;
use agent_credits_dynamo::{DynamoWalletStore, OrgStore};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let aws = sdk_config().await?;
    let client = dynamodb(&aws);
    let table = settings.table.as_str();
    let store = DynamoWalletStore::new(client.clone(), table, Arc::new(SystemClock));
    let account = Account {
        directory: Arc::new(OrgStore::new(client.clone(), table)),
        orgs: OrgStore::new(client, table),
        clock: Arc::new(SystemClock),
        // One secret per org and provider under this prefix; the template grants no other.
        keys: Arc::new(KeyVault::new(secrets_manager(&aws), settings.byok_prefix)),
        feed: Arc::new(store.clone()),
        limits: Arc::new(store.clone()),
        store,
        withdrawal_minimum: settings.withdrawal_minimum,
    };
    agent_credits_http::run(|req| async { Ok::<_, Error>(handle(&account, req).await) }).await
}
