//! BYOK keys in Secrets Manager: one secret per org and provider, named
//! `<prefix><org>/<provider>` (the template grants the functions only that prefix) and
//! tagged with the org id and provider. The key is the secret's value and nothing else.

use agent_credits_domain::ports::Pending;
use agent_credits_domain::{KeySource, KeyStore, OrgId, Provider, ProviderKey, Stored};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_secretsmanager::types::Tag;
use secrecy::SecretString;

#[derive(Debug, Clone)]
pub struct KeyVault {
    client: Client,
    prefix: String,
}

impl KeyVault {
    pub fn new(client: Client, prefix: impl Into<String>) -> KeyVault {
        KeyVault {
            client,
            prefix: prefix.into(),
        }
    }
}

impl KeyStore for KeyVault {
    fn secret_name(&self, org: &OrgId, provider: Provider) -> String {
        format!("{}{org}/{provider}", self.prefix)
    }

    fn put<'a>(
        &'a self,
        org: &'a OrgId,
        provider: Provider,
        key: &'a ProviderKey,
    ) -> Pending<'a, Stored, String> {
        Box::pin(self.store(org, provider, key))
    }

    fn delete<'a>(&'a self, org: &'a OrgId, provider: Provider) -> Pending<'a, (), String> {
        Box::pin(self.remove(org, provider))
    }
}

impl KeySource for KeyVault {
    fn get<'a>(&'a self, org: &'a OrgId, provider: Provider) -> Pending<'a, Option<SecretString>, String> {
        Box::pin(self.read(org, provider))
    }
}

impl KeyVault {
    async fn store(&self, org: &OrgId, provider: Provider, key: &ProviderKey) -> Result<Stored, String> {
        let name = self.secret_name(org, provider);
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        let created = self
            .client
            .create_secret()
            .name(&name)
            .description(format!("agent-credits BYOK key: {provider} for org {org}"))
            .secret_string(key.expose())
            .tags(tag("agent-credits:org", org.as_str()))
            .tags(tag("agent-credits:provider", provider.as_str()))
            .send()
            .await;
        match created {
            Ok(_) => Ok(Stored::Created),
            Err(e) if e.code() == Some("ResourceExistsException") => {
                self.client
                    .put_secret_value()
                    .secret_id(&name)
                    .secret_string(key.expose())
                    .send()
                    .await
                    .map_err(|e| format!("storing {name}: {}", DisplayErrorContext(&e)))?;
                Ok(Stored::Rotated)
            }
            Err(e) => Err(format!("storing {name}: {}", DisplayErrorContext(&e))),
        }
    }

    async fn read(&self, org: &OrgId, provider: Provider) -> Result<Option<SecretString>, String> {
        let name = self.secret_name(org, provider);
        match self.client.get_secret_value().secret_id(&name).send().await {
            Ok(out) => Ok(out.secret_string().map(SecretString::from)),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(format!("reading {name}: {}", DisplayErrorContext(&e))),
        }
    }

    /// No recovery window: a deleted key must stop working.
    async fn remove(&self, org: &OrgId, provider: Provider) -> Result<(), String> {
        let name = self.secret_name(org, provider);
        match self
            .client
            .delete_secret()
            .secret_id(&name)
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(format!("deleting {name}: {}", DisplayErrorContext(&e))),
        }
    }
}
