//! The operators' reconciliation, from a shell, with the function's settings from the
//! environment (`TABLE_NAME`, the Stripe keys or `STRIPE_SECRET_ARN`, `EVENT_BUS_NAME`
//! to publish, AWS credentials as usual):
//!
//! ```sh
//! reconcile-cli                 # the whole table; prints the report as JSON
//! reconcile-cli --org org_demo  # one org
//! reconcile-cli --no-publish    # report only, even with EVENT_BUS_NAME set
//! ```
//!
//! Exits 0 when everything adds up, 1 when a mismatch was found, 2 when it could not run.

use std::process::ExitCode;
use std::sync::Arc;

use agent_credits_aws::{StripeKeys, dynamodb, sdk_config, settings::FromEnv};
use agent_credits_domain::{OrgId, SystemClock};
use agent_credits_dynamo::DynamoWalletStore;
use agent_credits_stripe::StripeGateway;
use reconcile::{Reconciler, Settings, reconcile};

const USAGE: &str = "usage: reconcile-cli [--org ORG] [--no-publish]";

async fn run(args: &[String]) -> Result<bool, String> {
    let (mut org, mut publish) = (None, true);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--org" => org = Some(OrgId::parse(it.next().ok_or(USAGE)?.as_str()).map_err(|e| e.to_string())?),
            "--no-publish" => publish = false,
            _ => return Err(USAGE.into()),
        }
    }
    let settings = Settings::from_env()?;
    let aws = sdk_config().await?;
    let keys = StripeKeys::load(&aws).await?;
    let svc = Reconciler {
        store: DynamoWalletStore::new(dynamodb(&aws), settings.table.as_str(), Arc::new(SystemClock)),
        stripe: Arc::new(
            StripeGateway::connect(keys.secret_key()?, settings.stripe_api_base.as_deref())
                .map_err(|e| e.to_string())?,
        ),
        publish_to: settings
            .bus
            .clone()
            .filter(|_| publish)
            .map(|bus| (notifier::eventbridge(&aws), bus)),
        clock: Arc::new(SystemClock),
        window: settings.window,
        grace: settings.grace,
    };
    let report = reconcile(&svc, org.as_ref()).await.map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
    );
    if let Some(why) = &report.incomplete {
        return Err(format!("payments not reconciled: {why}"));
    }
    Ok(report.mismatches.is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("reconcile-cli: {e}");
            ExitCode::from(2)
        }
    }
}
