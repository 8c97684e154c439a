//! The third baseline of the cold-start benchmark (`tests/bench/cold-start`): `hello-sdk`
//! plus async-stripe's client, built as the functions build it, able to send one request
//! (a customer creation, its answer left untyped). It shows what the Stripe client alone
//! weighs: the client's error type carries Stripe's largest objects (PaymentIntent,
//! PaymentMethod, SetupIntent, sources), so their decoders come with any request.
//!
//! The request goes out only for an event `{"send": true}`; the benchmark sends `{}`, so
//! the start-up is measured without a network.

use agent_credits_domain::OrgId;
use agent_credits_dynamo::items::{WALLET_SK, key, org_pk};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::{Value, json};
use stripe::StripeRequest;
use stripe_core::customer::CreateCustomer;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let table = agent_credits_aws::env("TABLE_NAME").ok_or("TABLE_NAME is required")?;
    let aws = agent_credits_aws::sdk_config().await?;
    let client = agent_credits_aws::dynamodb(&aws);
    // As `agent_credits_stripe::StripeGateway::connect` builds it.
    let stripe = stripe::ClientBuilder::new("sk_test_hello_stripe")
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let org = OrgId::parse("org_demo")?;
    let (client, stripe, table, org) = (&client, &stripe, table.as_str(), &org);
    run(service_fn(|event: LambdaEvent<Value>| async move {
        let out = client
            .get_item()
            .table_name(table)
            .set_key(Some(key(org_pk(org), WALLET_SK)))
            .send()
            .await?;
        let sent = if event.payload.get("send") == Some(&Value::Bool(true)) {
            let answer = CreateCustomer::new()
                .build()
                .customize::<miniserde::json::Value>()
                .send(stripe)
                .await;
            Some(answer.is_ok())
        } else {
            None
        };
        Ok::<_, Error>(json!({ "found": out.item.is_some(), "sent": sent }))
    }))
    .await
}
