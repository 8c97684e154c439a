//! Wires the reconcile function: settings and clients once per cold start, then one run
//! per scheduled event (the whole table), or one org's when the event names it
//! (`{"org": "org_demo"}`).

use std::sync::Arc;

use agent_credits_aws::{StripeKeys, dynamodb, sdk_config, settings::FromEnv};
use agent_credits_domain::{OrgId, SystemClock};
use agent_credits_dynamo::DynamoWalletStore;
use agent_credits_stripe::StripeGateway;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use reconcile::{Reconciler, Settings, reconcile};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let aws = sdk_config().await?;
    let keys = StripeKeys::load(&aws).await?;
    let svc = Reconciler {
        store: DynamoWalletStore::new(dynamodb(&aws), settings.table.as_str(), Arc::new(SystemClock)),
        stripe: Arc::new(StripeGateway::connect(
            keys.secret_key()?,
            settings.stripe_api_base.as_deref(),
        )?),
        publish_to: settings.bus.clone().map(|bus| (notifier::eventbridge(&aws), bus)),
        clock: Arc::new(SystemClock),
        window: settings.window,
        grace: settings.grace,
    };
    let svc = &svc;
    run(service_fn(move |e: LambdaEvent<serde_json::Value>| async move {
        let org = match e.payload.get("org").and_then(|o| o.as_str()) {
            Some(o) => Some(OrgId::parse(o).map_err(|e| format!("org: {e}"))?),
            None => None,
        };
        Ok::<_, Error>(serde_json::to_value(reconcile(svc, org.as_ref()).await?)?)
    }))
    .await
}
