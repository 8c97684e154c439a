//! BYOK keys: stored in Secrets Manager only, shown by their last four characters, and
//! kept while a byok org's runtimes need them. Also the key rule's reads that orgs and
//! agents share.

use agent_credits_domain::{
    ExposeSecret, Org, OrgId, Provider, ProviderKey, Runtime, SecretString, missing_byok_key,
};
use agent_credits_http::{ApiError, Details, ErrorCode, Reply, json_response};
use lambda_http::http::StatusCode;
use serde::Deserialize;

use crate::{Account, views};

pub(crate) fn missing_key(runtime: Runtime, provider: Provider) -> ApiError {
    ApiError::bad_request(
        ErrorCode::ProviderKeyRequired,
        format!("a byok org on {runtime} needs its own {provider} key"),
    )
    .with_details(Details {
        provider: Some(provider),
        runtime: Some(runtime),
        ..Default::default()
    })
}

pub(crate) fn provider_key(provider: Provider, key: &SecretString) -> Result<ProviderKey, ApiError> {
    ProviderKey::parse(provider, key.expose_secret()).map_err(|e| {
        ApiError::bad_request(ErrorCode::InvalidKey, e.to_string()).with_details(Details {
            provider: Some(provider),
            ..Default::default()
        })
    })
}

/// The key in Secrets Manager first, then what the dashboard may see of it.
pub(crate) async fn store_key(
    svc: &Account,
    org: &OrgId,
    provider: Provider,
    key: &ProviderKey,
) -> Result<agent_credits_dynamo::KeyMeta, ApiError> {
    svc.keys.put(org, provider, key).await.map_err(|e| {
        tracing::error!(org = %org, provider = %provider, error = %e, "storing a provider key failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::KeyStoreUnavailable,
            "the key could not be stored; try again",
        )
    })?;
    let name = svc.keys.secret_name(org, provider);
    Ok(svc
        .orgs
        .record_key(org, provider, &key.last4(), &name, svc.clock.now())
        .await?)
}

pub(crate) async fn keys(svc: &Account, org: &Org) -> Reply {
    let keys = svc.orgs.keys(&org.id).await?;
    Ok(json_response(StatusCode::OK, &views::Keys { keys }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyBody {
    key: SecretString,
}

pub(crate) async fn put_key(svc: &Account, org: &Org, provider: Provider, body: KeyBody) -> Reply {
    let key = provider_key(provider, &body.key)?;
    let meta = store_key(svc, &org.id, provider, &key).await?;
    Ok(json_response(StatusCode::OK, &views::KeyStored { key: meta }))
}

pub(crate) async fn delete_key(svc: &Account, org: &Org, provider: Provider) -> Reply {
    if !has_key(svc, org, provider).await? {
        return Err(ApiError::not_found(
            ErrorCode::KeyNotFound,
            "the org has no key for this provider",
        ));
    }
    // A byok org keeps the keys its runtimes need: its agents would stop.
    let after: Vec<Provider> = stored_keys(svc, org)
        .await?
        .into_iter()
        .filter(|p| *p != provider)
        .collect();
    if let Some((runtime, _)) = missing_byok_key(org.billing_mode, &runtimes_in_use(svc, org).await?, &after)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::KeyInUse,
            format!("this byok org's agents on {runtime} use this key; switch them or the org first"),
        )
        .with_details(Details {
            provider: Some(provider),
            runtime: Some(runtime),
            ..Default::default()
        }));
    }
    // The table forgets the key first, on the condition that the org is as the rule above
    // saw it (an agent moving onto this key's runtime meanwhile wins, and this is refused);
    // only then does the secret go, so no runtime is ever pointed at a secret that is gone.
    if !svc.orgs.forget_key(org, provider).await? {
        return Err(org_changed());
    }
    svc.keys.delete(&org.id, provider).await.map_err(|e| {
        // Unused from now on; the next key stored for this provider overwrites it, or an
        // operator deletes it (the error names the secret, never its value).
        tracing::error!(org = %org.id, provider = %provider, error = %e, "the key is forgotten; deleting its secret failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::KeyStoreUnavailable,
            "the key is no longer used, but Secrets Manager did not delete it; an operator should",
        )
    })?;
    Ok(json_response(
        StatusCode::OK,
        &views::KeyDeleted { deleted: provider },
    ))
}

/// A rule-checked change lost to another change of the org (its billing mode or an
/// agent's runtime) made meanwhile: nothing was written.
pub(crate) fn org_changed() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::OrgChanged,
        "the org's billing mode, an agent's runtime or its keys changed meanwhile; read the org again",
    )
}

/// The providers the org stored keys for.
pub(crate) async fn stored_keys(svc: &Account, org: &Org) -> Result<Vec<Provider>, ApiError> {
    Ok(svc.orgs.keys(&org.id).await?.iter().map(|k| k.provider).collect())
}

/// Whether the org has stored a key for `provider`.
pub(crate) async fn has_key(svc: &Account, org: &Org, provider: Provider) -> Result<bool, ApiError> {
    Ok(stored_keys(svc, org).await?.contains(&provider))
}

/// The org's runtime and every agent's own, each once.
pub(crate) async fn runtimes_in_use(svc: &Account, org: &Org) -> Result<Vec<Runtime>, ApiError> {
    let mut runtimes = vec![org.runtime];
    for agent in svc.orgs.agent_runtimes(&org.id).await? {
        if !runtimes.contains(&agent.runtime) {
            runtimes.push(agent.runtime);
        }
    }
    Ok(runtimes)
}
