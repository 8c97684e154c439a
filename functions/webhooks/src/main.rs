//! Wires the webhooks function: settings and clients once per cold start, then the handler.

use std::sync::Arc;

use agent_credits_aws::{StripeKeys, dynamodb, sdk_config, settings::FromEnv};
use agent_credits_domain::{PaymentLookup, SystemClock};
use agent_credits_dynamo::{DynamoWalletStore, RechargeStore};
use agent_credits_stripe::StripeGateway;
use lambda_http::Error;
use webhooks::{Settings, Webhooks, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let aws = sdk_config().await?;
    // From Secrets Manager in AWS (STRIPE_SECRET_ARN), from the environment locally.
    let keys = StripeKeys::load(&aws).await?;
    // The secret key only looks up what an event leaves out (a charge's refunds): optional.
    let payments: Option<Arc<dyn PaymentLookup>> = match keys.secret_key() {
        Ok(key) => Some(Arc::new(StripeGateway::connect(
            key,
            settings.stripe_api_base.as_deref(),
        )?)),
        Err(_) => None,
    };
    if payments.is_none() {
        tracing::warn!("no Stripe secret key: refunds must arrive with their charge");
    }
    let (client, table) = (dynamodb(&aws), settings.table.as_str());
    let svc = Webhooks {
        store: DynamoWalletStore::new(client.clone(), table, Arc::new(SystemClock)),
        recharges: RechargeStore::new(client, table),
        signing_secret: keys.webhook_secret()?.clone(),
        payments,
        plans: settings.plans,
    };
    agent_credits_http::run(|req| async { Ok::<_, Error>(handle(&svc, req).await) }).await
}
