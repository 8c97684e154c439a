//! The second baseline of the cold-start benchmark (`tests/bench/cold-start`): the
//! hello-world function plus what any function on DynamoDB pays before its first answer:
//! the AWS SDK configuration and client, built as the functions build them, and one
//! `GetItem` (org_demo's wallet) per event.

use agent_credits_domain::OrgId;
use agent_credits_dynamo::items::{WALLET_SK, key, org_pk};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let table = agent_credits_aws::env("TABLE_NAME").ok_or("TABLE_NAME is required")?;
    let aws = agent_credits_aws::sdk_config().await?;
    let client = agent_credits_aws::dynamodb(&aws);
    let org = OrgId::parse("org_demo")?;
    let (client, table, org) = (&client, table.as_str(), &org);
    run(service_fn(|_: LambdaEvent<Value>| async move {
        let out = client
            .get_item()
            .table_name(table)
            .set_key(Some(key(org_pk(org), WALLET_SK)))
            .send()
            .await?;
        Ok::<_, Error>(json!({ "found": out.item.is_some() }))
    }))
    .await
}
