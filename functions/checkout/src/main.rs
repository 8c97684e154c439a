//! Wires the checkout function: settings, the Stripe client and the DynamoDB client once
//! per cold start.

use std::sync::Arc;

use agent_credits_aws::{StripeKeys, dynamodb, env, sdk_config};
use agent_credits_stripe::StripeGateway;
use checkout::{Checkout, catalog_from, handle};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let env = |name: &str| env(name);
    let table = env("TABLE_NAME").ok_or("TABLE_NAME is required")?;
    let aws = sdk_config().await?;
    // From Secrets Manager in AWS (STRIPE_SECRET_ARN), from the environment locally.
    // Never logged.
    let keys = StripeKeys::load(&aws).await?;
    let svc = Checkout {
        orgs: agent_credits_dynamo::OrgStore::new(dynamodb(&aws), table.as_str()),
        recharges: agent_credits_dynamo::RechargeStore::new(dynamodb(&aws), table.as_str()),
        payments: Arc::new(StripeGateway::connect(
            keys.secret_key()?,
            env("STRIPE_API_BASE").as_deref(),
        )?),
        catalog: catalog_from(env)?,
        dashboard_url: env("DASHBOARD_URL").unwrap_or_else(|| "http://localhost:3000".to_owned()),
    };
    agent_credits_http::run(|req| async { Ok::<_, Error>(handle(&svc, req).await) }).await
}
