//! Wires the usage function: settings and SDK clients once per cold start, then the
//! handler for every request.

use std::sync::Arc;

use agent_credits_aws::{KeyVault, dynamodb, sdk_config, secrets_manager, settings::FromEnv};
use agent_credits_domain::SystemClock;
use agent_credits_dynamo::{DynamoWalletStore, OrgStore, RateStore};
use lambda_http::Error;
use usage::{Settings, Usage, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let aws = sdk_config().await?;
    let (client, table) = (dynamodb(&aws), settings.table.as_str());
    let store = DynamoWalletStore::new(client.clone(), table, Arc::new(SystemClock));
    let usage = Usage {
        months: Arc::new(store.clone()),
        store,
        orgs: OrgStore::new(client.clone(), table),
        rates: RateStore::new(client, table),
        clock: Arc::new(SystemClock),
        keys: Some(Arc::new(KeyVault::new(
            secrets_manager(&aws),
            settings.byok_prefix.as_str(),
        ))),
        settings,
    };
    agent_credits_http::run(|req| async { Ok::<_, Error>(handle(&usage, req).await) }).await
}
