//! Wires the checkout function: settings, the Stripe client and the DynamoDB client once
//! per cold start.

use checkout::{Checkout, catalog_from, handle};
use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let table = env("TABLE_NAME").ok_or("TABLE_NAME is required")?;
    // Locally the key comes from the environment; in AWS the template passes it from
    // Secrets Manager. It is never logged.
    let key = env("STRIPE_SECRET_KEY").ok_or("STRIPE_SECRET_KEY is required")?;
    let mut stripe = stripe::ClientBuilder::new(key).timeout(std::time::Duration::from_secs(10));
    // The project's Stripe simulator locally; Stripe itself when unset.
    if let Some(base) = env("STRIPE_API_BASE") {
        stripe = stripe.url(base);
    }
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let mut dynamo = aws_sdk_dynamodb::config::Builder::from(&aws);
    if let Some(endpoint) = env("DYNAMODB_ENDPOINT") {
        dynamo = dynamo.endpoint_url(endpoint);
    }
    let svc = Checkout {
        orgs: agent_credits_dynamo::OrgStore::new(aws_sdk_dynamodb::Client::from_conf(dynamo.build()), table),
        stripe: stripe.build()?,
        catalog: catalog_from(env)?,
        dashboard_url: env("DASHBOARD_URL").unwrap_or_else(|| "http://localhost:3000".to_owned()),
    };
    run(service_fn(|req| async {
        Ok::<_, Error>(handle(&svc, req).await)
    }))
    .await
}
