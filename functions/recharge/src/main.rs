//! Wires the recharge function: clients once per cold start, then one sweep per
//! scheduled event (EventBridge Scheduler).

use std::sync::Arc;

use agent_credits_aws::{StripeKeys, dynamodb, env, sdk_config};
use agent_credits_domain::SystemClock;
use agent_credits_dynamo::{DynamoWalletStore, RechargeStore};
use agent_credits_stripe::StripeGateway;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use recharge::{Recharge, sweep};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let table = env("TABLE_NAME").ok_or("TABLE_NAME is required")?;
    let resume_after = match env("RECHARGE_RESUME_AFTER_SECONDS") {
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or("RECHARGE_RESUME_AFTER_SECONDS must be a whole number of seconds")?,
        None => 120,
    };
    let aws = sdk_config().await?;
    let keys = StripeKeys::load(&aws).await?;
    let client = dynamodb(&aws);
    let svc = Recharge {
        store: DynamoWalletStore::new(client.clone(), table.as_str(), Arc::new(SystemClock)),
        recharges: RechargeStore::new(client, table.as_str()),
        payments: Arc::new(StripeGateway::connect(
            keys.secret_key()?,
            env("STRIPE_API_BASE").as_deref(),
        )?),
        clock: Arc::new(SystemClock),
        resume_after: chrono::Duration::seconds(resume_after),
    };
    run(service_fn(|_: LambdaEvent<Value>| async {
        let report = sweep(&svc).await?;
        Ok::<_, Error>(serde_json::to_value(report)?)
    }))
    .await
}
