//! Stripe's keys read from Secrets Manager (moto over HTTP, the real SDK), as the
//! functions read them in AWS; never shown by `Debug` or an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_credits_aws::{ExposeSecret, SdkConfig, StripeKeys, secrets_manager_with};
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use support::moto::Moto;

fn aws() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "local", "local", None, None, "tests",
        )))
        .build()
}

#[tokio::test]
async fn the_keys_come_from_the_secret_named_by_its_arn_and_never_show() {
    let moto = Moto::start();
    let endpoint = moto.endpoint().to_owned();
    let get_env = |arn: Option<String>| {
        let endpoint = endpoint.clone();
        move |name: &str| match name {
            "SECRETSMANAGER_ENDPOINT" => Some(endpoint.clone()),
            "STRIPE_SECRET_ARN" => arn.clone(),
            // Ignored when the secret is named: Secrets Manager wins.
            "STRIPE_SECRET_KEY" => Some("sk_test_from_the_environment".to_owned()),
            _ => None,
        }
    };
    let client = secrets_manager_with(&aws(), get_env(None));
    let secret =
        r#"{"secret_key":"sk_test_51SecretFromSecretsManager","webhook_secret":"whsec_FromSecretsManager"}"#;
    let created = client
        .create_secret()
        .name("agent-credits/dev/stripe")
        .secret_string(secret)
        .send()
        .await
        .unwrap();
    let arn = created.arn().unwrap().to_owned();

    let keys = StripeKeys::load_with(&aws(), get_env(Some(arn.clone())))
        .await
        .unwrap();
    assert_eq!(
        keys.secret_key().unwrap().expose_secret(),
        "sk_test_51SecretFromSecretsManager"
    );
    assert_eq!(
        keys.webhook_secret().unwrap().expose_secret(),
        "whsec_FromSecretsManager"
    );
    let shown = format!("{keys:?}");
    assert!(
        !shown.contains("SecretFromSecretsManager") && !shown.contains("FromSecretsManager"),
        "{shown}"
    );

    // Without an ARN, the environment (local runs).
    let local = StripeKeys::load_with(&aws(), get_env(None)).await.unwrap();
    assert_eq!(
        local.secret_key().unwrap().expose_secret(),
        "sk_test_from_the_environment"
    );
    assert!(local.webhook_secret().is_err());

    // A secret that is not the expected JSON: an error that does not quote it.
    client
        .put_secret_value()
        .secret_id(&arn)
        .secret_string("sk_test_51NotJsonButSecret")
        .send()
        .await
        .unwrap();
    let err = StripeKeys::load_with(&aws(), get_env(Some(arn.clone())))
        .await
        .unwrap_err();
    assert!(!err.contains("NotJsonButSecret"), "{err}");
    // A secret that does not exist: an error naming it.
    let err = StripeKeys::load_with(
        &aws(),
        get_env(Some(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing".into(),
        )),
    )
    .await
    .unwrap_err();
    assert!(err.contains("missing"), "{err}");
}
