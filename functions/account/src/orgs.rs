//! Creating an org (reference 000 §1–2: the runtime and the three-way billing choice are
//! required) and switching its billing mode.

use std::collections::HashMap;

use agent_credits_domain::{
    BillingMode, MemberId, Org, OrgId, Provider, PurchasePolicy, Role, Runtime, SecretString, WalletSettings,
    missing_byok_key, switch_billing_mode,
};
use agent_credits_dynamo::Reserved;
use agent_credits_http::{ApiError, ErrorCode, Reply, json_response};
use lambda_http::http::StatusCode;
use serde::Deserialize;

use crate::keys::{missing_key, org_changed, provider_key, runtimes_in_use, store_key, stored_keys};
use crate::{Account, views};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOrg {
    id: OrgId,
    name: String,
    /// Claude Code when not given (reference 000's default).
    runtime: Option<Runtime>,
    /// Required, with no default (reference 000).
    billing_mode: Option<BillingMode>,
    #[serde(default)]
    purchase_policy: PurchasePolicy,
    #[serde(default)]
    members_see_billing: Option<bool>,
    /// Provider keys to store at creation (a byok org on a runtime that needs one must
    /// bring it): provider → key. Stored in Secrets Manager only.
    #[serde(default)]
    keys: HashMap<Provider, SecretString>,
    /// The referral code (an org's id) the org was created with: that org earns a
    /// referral when this one's first purchase is credited.
    #[serde(default)]
    referred_by: Option<OrgId>,
}

pub(crate) async fn create_org(svc: &Account, me: &MemberId, body: NewOrg) -> Reply {
    if body.id.is_personal() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidOrg,
            "an id starting with @ is a person's own account, opened under /v1/me",
        ));
    }
    // Reference 000: Claude Code is the default runtime (the billing choice has none).
    let runtime = body.runtime.unwrap_or(Runtime::ClaudeCode);
    let Some(billing_mode) = body.billing_mode else {
        return Err(ApiError::bad_request(
            ErrorCode::BillingModeRequired,
            "choose how to pay: credits, byok or deferred",
        ));
    };
    if body.name.trim().is_empty() || body.name.len() > 200 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidName,
            "name must be 1 to 200 characters",
        ));
    }
    // A referral code is an org of this deployment, never the new org nor a person's own.
    if let Some(referrer) = &body.referred_by {
        let known =
            !referrer.is_personal() && *referrer != body.id && svc.orgs.get(referrer).await?.is_some();
        if !known {
            return Err(ApiError::bad_request(
                ErrorCode::UnknownReferrer,
                "referred_by is the referral code (the org id) of another org of this service",
            ));
        }
        // Nobody refers themself: an org earns nothing for its own members' new orgs.
        if svc.orgs.member(referrer, me).await?.is_some() {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidReferrer,
                "you are a member of that org: it earns no referral for your own orgs",
            ));
        }
    }
    let brought: Vec<Provider> = body.keys.keys().copied().collect();
    if let Some((runtime, provider)) = missing_byok_key(billing_mode, &[runtime], &brought) {
        return Err(missing_key(runtime, provider));
    }
    // Every key is checked before anything is written.
    let keys = body
        .keys
        .iter()
        .map(|(provider, key)| provider_key(*provider, key).map(|k| (*provider, k)))
        .collect::<Result<Vec<_>, _>>()?;
    let org = Org {
        id: body.id,
        name: body.name.trim().to_owned(),
        runtime,
        billing_mode,
        purchase_policy: body.purchase_policy,
        members_see_billing: body.members_see_billing.unwrap_or(true),
        credits_per_usd: agent_credits_domain::account::DEFAULT_CREDITS_PER_USD,
        created_at: svc.clock.now(),
        referred_by: body.referred_by,
        revision: 0,
    };
    let settings = WalletSettings {
        billing_mode: Some(billing_mode),
        ..Default::default()
    };
    // In two steps, so that an org never exists without the keys its rule needs: the org
    // is reserved for its creator (invisible to everyone, usage included), the keys are
    // stored, and only then does it open. A failure between leaves the reservation, and
    // the creator's retry of the same request finishes it.
    let open = match svc.orgs.reserve(&org, me).await? {
        Reserved::Ours => false,
        Reserved::AlreadyOpen => true,
        Reserved::Taken => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::OrgExists,
                "an org with this id exists",
            ));
        }
    };
    let mut stored = vec![];
    for (provider, key) in &keys {
        stored.push(store_key(svc, &org.id, *provider, key).await?);
    }
    if !open {
        svc.orgs.open(&org.id, me, &settings).await?;
    }
    let created = views::Created {
        org: &org,
        role: Role::Owner,
        keys: stored,
    };
    Ok(json_response(StatusCode::CREATED, &created))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BillingModeBody {
    billing_mode: BillingMode,
}

/// Reference 000: BYOK → credits, deferred → BYOK or credits; nothing else.
pub(crate) async fn set_billing_mode(svc: &Account, org: &Org, body: BillingModeBody) -> Reply {
    let to = switch_billing_mode(org.billing_mode, body.billing_mode)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, ErrorCode::SwitchRefused, e.to_string()))?;
    // The mode it already has: nothing changes, nothing is written.
    if to == org.billing_mode {
        let unchanged = views::BillingModeSet {
            billing_mode: to,
            changed: false,
        };
        return Ok(json_response(StatusCode::OK, &unchanged));
    }
    if let Some((runtime, provider)) = missing_byok_key(
        to,
        &runtimes_in_use(svc, org).await?,
        &stored_keys(svc, org).await?,
    ) {
        return Err(missing_key(runtime, provider));
    }
    if !svc.orgs.set_billing_mode(org, to).await? {
        return Err(org_changed());
    }
    let changed = views::BillingModeSet {
        billing_mode: to,
        changed: true,
    };
    Ok(json_response(StatusCode::OK, &changed))
}
