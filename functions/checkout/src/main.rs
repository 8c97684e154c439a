//! Wires the checkout function: settings, Stripe and DynamoDB once per cold start, then
//! the handler for every request.

use std::sync::Arc;

use agent_credits_aws::{StripeKeys, dynamodb, sdk_config, settings::FromEnv};
use agent_credits_dynamo::{OrgStore, RechargeStore};
use agent_credits_stripe::StripeGateway;
use checkout::{Checkout, Settings, handle};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let aws = sdk_config().await?;
    // From Secrets Manager in AWS (STRIPE_SECRET_ARN), from the environment locally.
    let keys = StripeKeys::load(&aws).await?;
    let table = settings.table.as_str();
    let stripe = Arc::new(StripeGateway::connect(
        keys.secret_key()?,
        settings.stripe_api_base.as_deref(),
    )?);
    let svc = Checkout {
        orgs: OrgStore::new(dynamodb(&aws), table),
        recharges: RechargeStore::new(dynamodb(&aws), table),
        payments: stripe.clone(),
        billing: stripe,
        catalog: settings.catalog,
        plans: settings.plans,
        portal_configuration: settings.portal_configuration,
        dashboard_url: settings.dashboard_url,
    };
    agent_credits_http::run(|req| async { Ok::<_, Error>(handle(&svc, req).await) }).await
}
