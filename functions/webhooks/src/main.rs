//! Wires the webhooks function: settings and clients once per cold start.

use std::sync::Arc;

use agent_credits_aws::{StripeKeys, dynamodb, env, sdk_config};
use agent_credits_domain::PaymentGateway;
use agent_credits_domain::SystemClock;
use agent_credits_dynamo::DynamoWalletStore;
use agent_credits_stripe::StripeGateway;
use lambda_http::Error;
use webhooks::{Plans, Webhooks, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let table = env("TABLE_NAME").ok_or("TABLE_NAME is required")?;
    let aws = sdk_config().await?;
    // From Secrets Manager in AWS (STRIPE_SECRET_ARN), from the environment locally;
    // never from the table or a log line.
    let keys = StripeKeys::load(&aws).await?;
    let signing_secret = keys.webhook_secret()?.to_owned();
    // The secret key only lists a charge's refunds when an event leaves them out.
    let payments: Option<Arc<dyn PaymentGateway>> = match keys.secret_key() {
        Ok(key) => Some(Arc::new(StripeGateway::connect(
            key,
            env("STRIPE_API_BASE").as_deref(),
        )?)),
        Err(_) => {
            tracing::warn!("no Stripe secret key: refunds must arrive with their charge");
            None
        }
    };
    let plans = Plans::parse(&env("PLANS").unwrap_or_default())?;
    let svc = Webhooks {
        store: DynamoWalletStore::new(dynamodb(&aws), table.as_str(), Arc::new(SystemClock)),
        signing_secret,
        payments,
        plans,
    };
    agent_credits_http::run(|req| async { Ok::<_, Error>(handle(&svc, req).await) }).await
}
