//! `PUT /v1/orgs/{org}/markup` (operators): the org's markup (billable = provider cost ×
//! markup), or `null` for the deployment's default. Recorded in the org's settings history
//! with the operator's role, never the account's id.

use agent_credits_domain::{Markup, OrgId, WalletStore};
use agent_credits_http::{ApiError, ErrorCode, Reply, json_response};
use lambda_http::http::StatusCode;
use serde::{Deserialize, Deserializer};

use crate::handler::Usage;
use crate::views;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MarkupBody {
    /// Required; `null`: the deployment's default.
    #[serde(deserialize_with = "present")]
    markup: Option<String>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// Who an operator is in the history, which members who see billing read: the role of
/// their IAM identity (`Ops` of `...:assumed-role/Ops/alice`), without the account id or
/// the session name (often a person's email).
fn operator(arn: &str) -> String {
    let resource = arn.rsplit(':').next().unwrap_or(arn);
    let role = match resource.split('/').collect::<Vec<_>>().as_slice() {
        ["assumed-role", role, ..] | ["role", .., role] => (*role).to_owned(),
        _ => "unknown".to_owned(),
    };
    format!("operator:{role}")
}

pub(crate) async fn put(svc: &Usage, org: OrgId, arn: &str, body: MarkupBody) -> Reply {
    let to = body
        .markup
        .as_deref()
        .map(Markup::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidMarkup, e.to_string()))?;
    let Some(profile) = svc.orgs.get(&org).await? else {
        return Err(ApiError::not_found(
            ErrorCode::UnknownOrg,
            format!("no org {org}"),
        ));
    };
    let seen = svc.store.wallet(&org).await?.settings.markup;
    let changed = svc
        .orgs
        .set_markup(&profile, seen, to, &operator(arn), svc.clock.now())
        .await?
        .ok_or_else(|| {
            ApiError::conflict(
                ErrorCode::OrgChanged,
                "the org's settings changed meanwhile; send it again",
            )
        })?;
    Ok(json_response(
        StatusCode::OK,
        &views::MarkupSet {
            org: &org,
            markup: to.map(|m| m.to_string()),
            billed_at: to.unwrap_or(svc.settings.default_markup).to_string(),
            changed: !changed.is_empty(),
        },
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_operator_is_named_without_the_account() {
        assert_eq!(
            super::operator("arn:aws:sts::123456789012:assumed-role/Ops/alice@example.com"),
            "operator:Ops"
        );
        assert_eq!(
            super::operator("arn:aws:iam::123456789012:role/agent-credits-operator"),
            "operator:agent-credits-operator"
        );
    }
}
