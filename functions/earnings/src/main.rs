//! Wires the earnings function: clients once per cold start, then one batch of the
//! table's stream per invocation (its event source mapping in `infra/template.yaml`).

use std::sync::Arc;

use agent_credits_aws::stream::StreamEvent;
use agent_credits_aws::{dynamodb, sdk_config};
use agent_credits_domain::SystemClock;
use agent_credits_dynamo::{DynamoWalletStore, OrgStore};
use earnings::{CreatorShare, Earnings, ReferralReward, handle};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let table = agent_credits_aws::env("TABLE_NAME").ok_or("TABLE_NAME is required")?;
    let share = CreatorShare::parse(agent_credits_aws::env("CREATOR_SHARE").as_deref())?;
    let referral = ReferralReward::parse(agent_credits_aws::env("REFERRAL_REWARD").as_deref())?;
    let aws = sdk_config().await?;
    let client = dynamodb(&aws);
    let svc = Earnings {
        store: DynamoWalletStore::new(client.clone(), table.as_str(), Arc::new(SystemClock)),
        orgs: OrgStore::new(client, table.as_str()),
        share,
        referral,
    };
    let svc = &svc;
    run(service_fn(move |e: LambdaEvent<StreamEvent>| async move {
        Ok::<_, Error>(handle(svc, &e.payload).await)
    }))
    .await
}
