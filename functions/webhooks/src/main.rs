//! Wires the webhooks function: settings and clients once per cold start, then the
//! handler for every event Stripe delivers.

use std::sync::Arc;

use agent_credits_aws::{StripeKeys, dynamodb, sdk_config};
use agent_credits_domain::{PaymentGateway, SystemClock};
use agent_credits_dynamo::DynamoWalletStore;
use agent_credits_stripe::StripeGateway;
use lambda_http::Error;
use webhooks::{Settings, Webhooks, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let aws = sdk_config().await?;
    // From Secrets Manager in AWS (STRIPE_SECRET_ARN), from the environment locally;
    // never from the table or a log line.
    let keys = StripeKeys::load(&aws).await?;
    // The secret key only looks up what an event leaves out (a charge's refunds).
    let payments: Option<Arc<dyn PaymentGateway>> = match keys.secret_key() {
        Ok(key) => Some(Arc::new(StripeGateway::connect(
            key,
            settings.stripe_api_base.as_deref(),
        )?)),
        Err(_) => {
            tracing::warn!("no Stripe secret key: refunds must arrive with their charge");
            None
        }
    };
    let svc = Webhooks {
        store: DynamoWalletStore::new(dynamodb(&aws), settings.table.as_str(), Arc::new(SystemClock)),
        signing_secret: keys.webhook_secret()?.clone(),
        payments,
        plans: settings.plans,
    };
    agent_credits_http::run(|req| async { Ok::<_, Error>(handle(&svc, req).await) }).await
}
