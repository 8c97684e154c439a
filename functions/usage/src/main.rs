//! Wires the usage function: settings and SDK clients once per cold start, then the
//! handler for every request.

use std::sync::Arc;

use agent_credits_aws::{KeyVault, dynamodb, env, sdk_config, secrets_manager};
use agent_credits_domain::SystemClock;
use agent_credits_dynamo::{DynamoWalletStore, RateStore};
use lambda_http::Error;
use usage::{Config, Usage, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = sdk_config().await?;
    let client = dynamodb(&aws);
    let prefix = env("BYOK_SECRET_PREFIX").unwrap_or_else(|| "agent-credits/local/byok/".to_owned());
    let usage = Usage {
        store: DynamoWalletStore::new(client.clone(), config.table.as_str(), Arc::new(SystemClock)),
        rates: RateStore::new(client, config.table.as_str()),
        clock: Arc::new(SystemClock),
        config,
        keys: Some(KeyVault::new(secrets_manager(&aws), prefix)),
    };
    agent_credits_http::run(|req| async { Ok::<_, Error>(handle(&usage, req).await) }).await
}
