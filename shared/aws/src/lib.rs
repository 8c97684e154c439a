//! How every function reaches AWS, and where Stripe's keys are kept, from its environment,
//! once per cold start. (The Stripe client itself is `agent-credits-stripe`'s.)
//!
//! | variable | meaning |
//! |---|---|
//! | `DYNAMODB_ENDPOINT` | DynamoDB elsewhere than AWS (dynoxide locally) |
//! | `SECRETSMANAGER_ENDPOINT` | Secrets Manager elsewhere than AWS (moto locally) |
//! | `STRIPE_SECRET_ARN` | the secret holding Stripe's keys as JSON: `{"secret_key": "sk_...", "webhook_secret": "whsec_..."}`; read at start-up |
//! | `STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET` | the keys themselves, when there is no `STRIPE_SECRET_ARN` (local runs) |
//! | `AWS_CA_BUNDLE` | the roots the AWS client trusts, instead of Amazon Trust Services' ([`tls`]) |
//!
//! Keys are never logged: they are [`SecretString`]s, which print `[REDACTED]`.

mod keys;
pub mod settings;
pub mod stream;
pub mod tls;

pub use keys::KeyVault;

pub use aws_config::SdkConfig;
pub use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// A non-empty environment variable.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The shared AWS configuration: region and credentials from the Lambda environment, and
/// the SDK's HTTPS client trusting the roots [`tls::Roots::from_settings`] picks.
pub async fn sdk_config() -> Result<SdkConfig, String> {
    let http = tls::https_client(&tls::Roots::from_settings(env))?;
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await)
}

pub fn dynamodb(aws: &SdkConfig) -> aws_sdk_dynamodb::Client {
    let mut conf = aws_sdk_dynamodb::config::Builder::from(aws);
    if let Some(endpoint) = env("DYNAMODB_ENDPOINT") {
        conf = conf.endpoint_url(endpoint);
    }
    aws_sdk_dynamodb::Client::from_conf(conf.build())
}

pub fn secrets_manager(aws: &SdkConfig) -> aws_sdk_secretsmanager::Client {
    secrets_manager_with(aws, env)
}

/// [`secrets_manager`] with settings from `get` instead of the environment.
pub fn secrets_manager_with(
    aws: &SdkConfig,
    get: impl Fn(&str) -> Option<String>,
) -> aws_sdk_secretsmanager::Client {
    let mut conf = aws_sdk_secretsmanager::config::Builder::from(aws);
    if let Some(endpoint) = get("SECRETSMANAGER_ENDPOINT") {
        conf = conf.endpoint_url(endpoint);
    }
    aws_sdk_secretsmanager::Client::from_conf(conf.build())
}

/// Stripe's keys for this deployment.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StripeKeys {
    #[serde(default)]
    pub secret_key: Option<SecretString>,
    #[serde(default)]
    pub webhook_secret: Option<SecretString>,
}

impl StripeKeys {
    /// From Secrets Manager when `STRIPE_SECRET_ARN` is set, else from the environment.
    pub async fn load(aws: &SdkConfig) -> Result<StripeKeys, String> {
        StripeKeys::load_with(aws, env).await
    }

    /// [`StripeKeys::load`] with settings from `get` instead of the environment.
    pub async fn load_with(
        aws: &SdkConfig,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<StripeKeys, String> {
        let Some(arn) = get("STRIPE_SECRET_ARN") else {
            return Ok(StripeKeys {
                secret_key: get("STRIPE_SECRET_KEY").map(SecretString::from),
                webhook_secret: get("STRIPE_WEBHOOK_SECRET").map(SecretString::from),
            });
        };
        let out = secrets_manager_with(aws, get)
            .get_secret_value()
            .secret_id(&arn)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "reading the Stripe secret {arn}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )
            })?;
        let text = out
            .secret_string()
            .ok_or_else(|| format!("the Stripe secret {arn} has no string value"))?;
        // The parse error would quote the secret; say only what is wrong.
        serde_json::from_str(text)
            .map_err(|_| format!("the Stripe secret {arn} is not JSON with secret_key and webhook_secret"))
    }

    /// The secret key (`sk_...` or `rk_...`), required.
    pub fn secret_key(&self) -> Result<&SecretString, String> {
        self.secret_key
            .as_ref()
            .filter(|k| k.expose_secret().starts_with("sk_") || k.expose_secret().starts_with("rk_"))
            .ok_or_else(|| "a Stripe secret key (sk_... or rk_...) is required".to_owned())
    }

    /// The webhook signing secret (`whsec_...`), required.
    pub fn webhook_secret(&self) -> Result<&SecretString, String> {
        self.webhook_secret
            .as_ref()
            .filter(|k| k.expose_secret().starts_with("whsec_"))
            .ok_or_else(|| "a Stripe webhook signing secret (whsec_...) is required".to_owned())
    }
}
