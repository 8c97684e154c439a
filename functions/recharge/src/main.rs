//! Wires the recharge function: settings and clients once per cold start, then one sweep
//! per scheduled event (EventBridge Scheduler), or one batch of the table's stream.

use std::sync::Arc;

use agent_credits_aws::stream::StreamEvent;
use agent_credits_aws::{StripeKeys, dynamodb, sdk_config, settings::FromEnv};
use agent_credits_domain::SystemClock;
use agent_credits_dynamo::{DynamoWalletStore, RechargeStore};
use agent_credits_stripe::StripeGateway;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use recharge::{Recharge, Settings, on_stream, sweep};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let aws = sdk_config().await?;
    let keys = StripeKeys::load(&aws).await?;
    let (client, table) = (dynamodb(&aws), settings.table.as_str());
    let svc = Recharge {
        store: DynamoWalletStore::new(client.clone(), table, Arc::new(SystemClock)),
        recharges: RechargeStore::new(client, table),
        payments: Arc::new(StripeGateway::connect(
            keys.secret_key()?,
            settings.stripe_api_base.as_deref(),
        )?),
        clock: Arc::new(SystemClock),
        resume_after: settings.resume_after,
    };
    // A batch of the table's stream (the RechargeOnCrossing function), or the schedule's
    // tick (anything else).
    run(service_fn(|e: LambdaEvent<serde_json::Value>| async {
        if e.payload.get("Records").is_some() {
            let batch: StreamEvent = serde_json::from_value(e.payload)?;
            return Ok::<_, Error>(serde_json::to_value(on_stream(&svc, &batch).await)?);
        }
        Ok::<_, Error>(serde_json::to_value(sweep(&svc).await?)?)
    }))
    .await
}
