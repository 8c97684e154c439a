//! `GET .../may-i-run`: may the org's agents run now, and who pays; per consumable
//! (`?kind=`, a model call by default): at zero every kind is refused until a top-up.

use agent_credits_domain::{AgentId, Consumable, MemberId, OrgId, PauseReason, WalletStore};
use agent_credits_http::{ApiError, Reply, json_response};
use lambda_http::http::StatusCode;

use crate::handler::{Usage, billing_of, wallet_of};
use crate::views;

pub(crate) async fn may_i_run(
    svc: &Usage,
    org: OrgId,
    member: Option<MemberId>,
    agent: Option<AgentId>,
    kind: Consumable,
) -> Reply {
    let (mut wallet, mode) = wallet_of(svc, &org).await?;
    let now = svc.clock.now();
    let month = async {
        match &member {
            Some(m) => svc.months.month(&org, m, now).await.map(Some),
            None => Ok(None),
        }
    };
    let ((billing, runtime), month) = tokio::try_join!(
        async { billing_of(svc, &org, mode, kind, agent.as_ref(), agent.is_some()).await },
        async { month.await.map_err(ApiError::from) }
    )?;
    if !wallet.held.is_zero() && svc.store.expire_holds(&org).await?.released > 0 {
        wallet = svc.store.wallet(&org).await?;
    }
    let v = agent_credits_domain::verdict(mode, kind, &wallet, billing, month.as_ref())
        .map_err(|e| ApiError::internal(&e))?;
    Ok(json_response(
        StatusCode::OK,
        &views::Verdict {
            allowed: v.allowed,
            reason: v.reason,
            billing_mode: mode,
            kind,
            billed_to: v.billed_to,
            available: v.available,
            low_balance: v.low_balance,
            runtime: agent.is_some().then_some(runtime).flatten(),
            key_setup_url: match (v.reason, runtime) {
                (Some(PauseReason::NoKeyConfigured), Some(r)) => {
                    Some(r.key_setup_guide(svc.settings.key_setup_guide.as_deref()))
                }
                _ => None,
            },
        },
    ))
}
