//! Settings after creation: owners change who may buy (`purchase_policy`), whether members
//! see billing (`members_see_billing`) and the low-balance threshold (reference 002: the
//! one `credit_balance_low` uses while auto-recharge is off). Each change is recorded in
//! the org's settings history with who made it, in the same transaction.

use agent_credits_domain::{Org, PurchasePolicy, SettingsChange, Usd, WalletStore};
use agent_credits_http::{ApiError, ErrorCode, Membership, Reply, json_response};
use lambda_http::http::StatusCode;
use serde::{Deserialize, Deserializer};

use crate::{Account, keys::org_changed, views};

/// How many changes the settings answer shows, newest first.
const HISTORY: u16 = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Patch {
    purchase_policy: Option<PurchasePolicy>,
    members_see_billing: Option<bool>,
    /// Absent: unchanged; `null`: back to the default.
    #[serde(default, deserialize_with = "present")]
    low_balance_threshold_usd: Option<Option<Usd>>,
}

/// A field that is present, `null` included: `Some(None)` for `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

pub(crate) async fn get(svc: &Account, org: &Org) -> Reply {
    let (wallet, changes) = tokio::try_join!(
        async { Ok::<_, ApiError>(svc.store.wallet(&org.id).await?) },
        async { Ok::<_, ApiError>(svc.orgs.settings_history(org, HISTORY).await?) },
    )?;
    Ok(json_response(
        StatusCode::OK,
        &views::OrgSettings::of(org, &wallet.settings, &changes),
    ))
}

pub(crate) async fn patch(svc: &Account, who: &Membership, body: Patch) -> Reply {
    let change = SettingsChange {
        purchase_policy: body.purchase_policy,
        members_see_billing: body.members_see_billing,
        low_threshold: body.low_balance_threshold_usd,
    };
    if change.is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            "name at least one of purchase_policy, members_see_billing, low_balance_threshold_usd",
        ));
    }
    let org = &who.org;
    let wallet = svc.store.wallet(&org.id).await?;
    let now = svc.clock.now();
    if svc
        .orgs
        .change_settings(org, &wallet.settings, &change, &who.member.id, now)
        .await?
        .is_none()
    {
        return Err(org_changed());
    }
    let Some(org) = svc.orgs.get(&org.id).await? else {
        return Err(ApiError::internal(&"the org vanished after its settings changed"));
    };
    get(svc, &org).await
}
