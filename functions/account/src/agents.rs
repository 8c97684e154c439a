//! Agents that run another runtime than the org's (reference 000: "you can change it
//! later per agent").

use agent_credits_domain::{AgentId, MemberId, Org, Runtime, missing_byok_key};
use agent_credits_http::{ApiError, ErrorCode, Reply, json_response};
use lambda_http::http::StatusCode;
use serde::Deserialize;

use crate::keys::{missing_key, org_changed, stored_keys};
use crate::{Account, views};

/// The org's runtime and the agents that run another (reference 000: "you can change it
/// later per agent"). Any member may read it.
pub(crate) async fn agents(svc: &Account, org: &Org) -> Reply {
    let agents = svc.orgs.agent_runtimes(&org.id).await?;
    Ok(json_response(
        StatusCode::OK,
        &views::Agents {
            runtime: org.runtime,
            agents,
        },
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentRuntimeBody {
    runtime: Runtime,
}

pub(crate) async fn set_agent_runtime(
    svc: &Account,
    org: &Org,
    me: &MemberId,
    agent: AgentId,
    body: AgentRuntimeBody,
) -> Reply {
    // The same rule as at creation: a byok org brings the key a runtime needs.
    if let Some((runtime, provider)) =
        missing_byok_key(org.billing_mode, &[body.runtime], &stored_keys(svc, org).await?)
    {
        return Err(missing_key(runtime, provider));
    }
    let set = svc
        .orgs
        .set_agent_runtime(org, &agent, body.runtime, me, svc.clock.now())
        .await?
        .ok_or_else(org_changed)?;
    Ok(json_response(StatusCode::OK, &views::AgentSet { agent: set }))
}

pub(crate) async fn clear_agent_runtime(svc: &Account, org: &Org, agent: AgentId) -> Reply {
    if !svc.orgs.clear_agent_runtime(&org.id, &agent).await? {
        return Err(ApiError::not_found(
            ErrorCode::AgentNotFound,
            "this agent has no runtime of its own",
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &views::AgentCleared {
            agent,
            runtime: org.runtime,
        },
    ))
}
