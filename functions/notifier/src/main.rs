//! Wires the notifier: settings and clients once per cold start, then one batch of the
//! table's stream per invocation (the event source mapping of `infra/template.yaml`).

use std::sync::Arc;

use agent_credits_aws::stream::StreamEvent;
use agent_credits_aws::{dynamodb, sdk_config, settings::FromEnv};
use agent_credits_domain::SystemClock;
use agent_credits_dynamo::{DynamoWalletStore, OrgStore};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use notifier::{Notifier, Settings, eventbridge, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let aws = sdk_config().await?;
    let client = dynamodb(&aws);
    let svc = Notifier {
        store: DynamoWalletStore::new(client.clone(), settings.table.as_str(), Arc::new(SystemClock)),
        orgs: OrgStore::new(client, settings.table.as_str()),
        events: eventbridge(&aws),
        bus: settings.bus,
        clock: Arc::new(SystemClock),
    };
    let svc = &svc;
    run(service_fn(move |e: LambdaEvent<StreamEvent>| async move {
        Ok::<_, Error>(handle(svc, &e.payload).await)
    }))
    .await
}
