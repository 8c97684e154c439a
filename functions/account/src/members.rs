//! Members, their roles and monthly limits (reference 003: owners manage both). An org
//! always keeps an owner.

use agent_credits_domain::{MemberId, Org, Role, Usd};
use agent_credits_dynamo::MemberChange;
use agent_credits_http::{ApiError, ErrorCode, Reply, json_response};
use lambda_http::http::StatusCode;
use serde::Deserialize;

use crate::{Account, views};

pub(crate) async fn members(svc: &Account, org: &Org) -> Reply {
    let list: Vec<_> = svc
        .orgs
        .members(&org.id)
        .await?
        .into_iter()
        .map(|m| views::MemberView {
            member: m.id,
            role: m.role,
            monthly_limit: m.monthly_limit,
        })
        .collect();
    Ok(json_response(StatusCode::OK, &views::Members { members: list }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemberBody {
    role: Role,
}

pub(crate) async fn set_member(svc: &Account, org: &Org, member: MemberId, body: MemberBody) -> Reply {
    match svc
        .orgs
        .set_role(&org.id, &member, body.role, svc.clock.now())
        .await?
    {
        MemberChange::Done => Ok(json_response(
            StatusCode::OK,
            &views::RoleSet {
                member,
                role: body.role,
            },
        )),
        MemberChange::LastOwner => Err(last_owner()),
        // Setting a role adds the member it does not find.
        MemberChange::NotAMember => Err(ApiError::internal(&"a role change found no member to add")),
    }
}

pub(crate) async fn remove_member(svc: &Account, org: &Org, member: MemberId) -> Reply {
    match svc.orgs.remove(&org.id, &member, svc.clock.now()).await? {
        MemberChange::Done => Ok(json_response(StatusCode::OK, &views::Removed { removed: member })),
        MemberChange::LastOwner => Err(last_owner()),
        MemberChange::NotAMember => Err(ApiError::not_found(ErrorCode::MemberNotFound, "no such member")),
    }
}

pub(crate) fn last_owner() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::LastOwner,
        "an org always keeps at least one owner",
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitBody {
    /// `null` removes the limit.
    monthly_limit_usd: Option<Usd>,
}

/// A member's monthly credit limit (reference 003: owners set them).
pub(crate) async fn set_limit(svc: &Account, org: &Org, member: MemberId, body: LimitBody) -> Reply {
    if !svc.orgs.members(&org.id).await?.iter().any(|m| m.id == member) {
        return Err(ApiError::not_found(ErrorCode::MemberNotFound, "no such member"));
    }
    svc.limits
        .set_limit(&org.id, &member, body.monthly_limit_usd)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &views::LimitSet {
            member,
            monthly_limit: body.monthly_limit_usd,
        },
    ))
}
