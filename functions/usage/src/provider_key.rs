//! The runtime's fetch of its org's own provider key: the one answer that carries a key.

use agent_credits_domain::{OrgId, Provider};
use agent_credits_http::{ApiError, ErrorCode, Reply, json_response};
use lambda_http::http::StatusCode;

use crate::handler::Usage;
use crate::views;

/// The org's own provider key, for the agent runtime (IAM-authorized): the one answer
/// that carries a key. Never logged.
pub(crate) async fn provider_key(svc: &Usage, org: OrgId, provider: Provider) -> Reply {
    let keys = svc.keys.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::KeysUnavailable,
            "no key store configured",
        )
    })?;
    let key = keys.get(&org, provider).await.map_err(|e| {
        tracing::error!(org = %org, provider = %provider, error = %e, "reading a provider key failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::KeysUnavailable,
            "try again",
        )
    })?;
    match key {
        Some(key) => Ok(json_response(
            StatusCode::OK,
            &views::OwnKey {
                org: &org,
                provider,
                key: &key,
            },
        )),
        None => Err(ApiError::not_found(
            ErrorCode::KeyNotFound,
            "the org has no key for this provider",
        )),
    }
}
