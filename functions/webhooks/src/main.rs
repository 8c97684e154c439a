//! Wires the webhooks function: settings and SDK clients once per cold start.

use std::sync::Arc;

use agent_credits_domain::SystemClock;
use agent_credits_dynamo::DynamoWalletStore;
use lambda_http::{Error, run, service_fn};
use webhooks::{Webhooks, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is required")?;
    // Locally the secret comes from the environment; in AWS the template passes it from
    // Secrets Manager (a dynamic reference), never from the table or a log line.
    let signing_secret = std::env::var("STRIPE_WEBHOOK_SECRET")
        .ok()
        .filter(|s| s.starts_with("whsec_"))
        .ok_or("STRIPE_WEBHOOK_SECRET (whsec_...) is required")?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let mut dynamo = aws_sdk_dynamodb::config::Builder::from(&aws);
    if let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") {
        dynamo = dynamo.endpoint_url(endpoint);
    }
    let client = aws_sdk_dynamodb::Client::from_conf(dynamo.build());
    let svc = Webhooks {
        store: DynamoWalletStore::new(client, table.as_str(), Arc::new(SystemClock)),
        signing_secret,
    };
    run(service_fn(|req| async {
        Ok::<_, Error>(handle(&svc, req).await)
    }))
    .await
}
