//! The usage function's routes and what they share: who pays for a call, the org's
//! wallet and runtime, and the refusals.

use std::sync::Arc;

use agent_credits_domain::{
    AgentId, Billing, BillingMode, Clock, Consumable, Context, HoldId, KeySource, MemberId, MemberMonths,
    OrgId, PauseReason, Provider, Refusal, Runtime, Wallet, WalletStore,
};
use agent_credits_dynamo::{DynamoWalletStore, OrgStore, RateStore};
use agent_credits_http::{ApiError, Edge, ErrorCode, Route, Router, Table, answer};
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

use crate::{Settings, grants, holds, markup, payouts, provider_key, rates, reported, verdict};

/// Everything the handler needs, built once per cold start.
pub struct Usage {
    pub store: DynamoWalletStore,
    /// The org directory: runtimes, agents and which keys an org has.
    pub orgs: OrgStore,
    pub rates: RateStore,
    /// Members' months so far, for their limits.
    pub months: Arc<dyn MemberMonths>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// BYOK keys, for the runtime's own fetch; `None` answers 503.
    pub keys: Option<Arc<dyn KeySource>>,
}

/// Every route of the function: who may call it and what answers it.
pub fn routes() -> Vec<Route<Usage>> {
    vec![
        Route::runtime(Method::POST, "/v1/orgs/{org}/usage", |svc, c| {
            Box::pin(async move { reported::debit(svc, c.param("org")?, c.body()?).await })
        }),
        Route::runtime(Method::POST, "/v1/orgs/{org}/holds", |svc, c| {
            Box::pin(async move { holds::hold(svc, c.param("org")?, c.body()?).await })
        }),
        Route::runtime(Method::POST, "/v1/orgs/{org}/holds/{hold}/capture", |svc, c| {
            Box::pin(
                async move { reported::capture(svc, c.param("org")?, c.param("hold")?, c.body()?).await },
            )
        }),
        Route::runtime(Method::POST, "/v1/orgs/{org}/holds/{hold}/release", |svc, c| {
            Box::pin(async move {
                let member = c.query("member").map(member_id).transpose()?;
                let context = context(c.query("context"))?;
                holds::release(svc, c.param("org")?, context, member, c.param("hold")?).await
            })
        }),
        Route::runtime(Method::GET, "/v1/orgs/{org}/may-i-run", |svc, c| {
            Box::pin(async move {
                let member = c.query("member").map(member_id).transpose()?;
                let org = wallet_in(c.param("org")?, context(c.query("context"))?, member.as_ref())?;
                let agent = c
                    .query("agent")
                    .map(|a| {
                        AgentId::parse(a)
                            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidAgent, e.to_string()))
                    })
                    .transpose()?;
                let kind = reported::kind_named(c.query("kind").as_deref())?;
                verdict::may_i_run(svc, org, member, agent, kind).await
            })
        }),
        Route::operator(Method::PUT, "/v1/orgs/{org}/markup", |svc, c| {
            Box::pin(async move { markup::put(svc, c.param("org")?, &c.who.arn, c.body()?).await })
        }),
        Route::operator(Method::POST, "/v1/orgs/{org}/grants", |svc, c| {
            Box::pin(async move { grants::grant(svc, c.param("org")?, c.body()?).await })
        }),
        Route::operator(Method::GET, "/v1/withdrawals/pending", |svc, _| {
            Box::pin(async move { payouts::pending(svc).await })
        }),
        Route::operator(
            Method::POST,
            "/v1/orgs/{org}/withdrawals/{withdrawal}/paid",
            |svc, c| {
                Box::pin(async move {
                    payouts::paid(svc, c.param("org")?, c.param("withdrawal")?, c.body()?).await
                })
            },
        ),
        Route::operator(
            Method::POST,
            "/v1/orgs/{org}/withdrawals/{withdrawal}/failed",
            |svc, c| {
                Box::pin(async move {
                    payouts::failed(svc, c.param("org")?, c.param("withdrawal")?, c.body()?).await
                })
            },
        ),
        Route::operator(Method::PUT, "/v1/rates/{model}", |svc, c| {
            Box::pin(async move { rates::put_rate(svc, c.param("model")?, c.body()?).await })
        }),
        Route::operator(Method::PUT, "/v1/unit-rates/{kind}", |svc, c| {
            Box::pin(async move { rates::put_unit_rate(svc, c.param("kind")?, c.body()?).await })
        }),
        Route::runtime(
            Method::GET,
            "/v1/orgs/{org}/provider-keys/{provider}",
            |svc, c| {
                Box::pin(async move {
                    provider_key::provider_key(svc, c.param("org")?, c.param("provider")?).await
                })
            },
        ),
    ]
}

impl Edge for Usage {
    fn iam_roles(&self) -> Option<&agent_credits_http::IamRoles> {
        Some(&self.settings.iam)
    }
}

static ROUTER: Table<Usage> = Table::new(|| Router::new(routes()));

/// Routes one request. Never fails: every error is an HTTP answer.
pub async fn handle(svc: &Usage, req: Request) -> Response<Body> {
    answer(&ROUTER, svc, req).await
}

/// The context a query names (`?context=org|personal`; the org's by default).
fn context(named: Option<String>) -> Result<Context, ApiError> {
    named.map_or(Ok(Context::Org), |c| {
        Context::parse(&c)
            .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidRequest, "context is org or personal"))
    })
}

/// The wallet a use in `context` is billed to: the path's org, or in the personal context
/// the member's own account, whatever org the path names (reference 003).
pub(crate) fn wallet_in(org: OrgId, context: Context, member: Option<&MemberId>) -> Result<OrgId, ApiError> {
    context.wallet(org, member).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::MissingMember,
            "a use in the personal context names its member, whose own wallet pays",
        )
    })
}

pub(crate) fn member_id(s: String) -> Result<MemberId, ApiError> {
    MemberId::parse(s).map_err(|e| ApiError::bad_request(ErrorCode::InvalidMember, e.to_string()))
}

/// Holds that expired still count against the wallet until released: release them before
/// charging a call, so the call is not short of credits that are really there.
pub(crate) async fn release_expired(svc: &Usage, wallet: &Wallet) -> Result<(), ApiError> {
    if !wallet.held.is_zero() {
        svc.store.expire_holds(&wallet.org).await?;
    }
    Ok(())
}

/// Who pays for a use of `kind` by `agent` (the key rule of
/// [`agent_credits_domain::verdict`]): a credits org, or a use no provider key pays for,
/// pays from the wallet without another read; any other reads the runtime the agent runs
/// and the keys the org stored.
pub(crate) async fn billing_of(
    svc: &Usage,
    org: &OrgId,
    mode: BillingMode,
    kind: Consumable,
    agent: Option<&AgentId>,
    want_runtime: bool,
) -> Result<(Result<Billing, PauseReason>, Option<Runtime>), ApiError> {
    if (mode == BillingMode::Credits || !kind.is_model_call()) && !want_runtime {
        return Ok((Ok(Billing::Credits), None));
    }
    let (runtime, keys) = runtime_and_keys(svc, org, agent).await?;
    Ok((
        agent_credits_domain::billing_for(kind, mode, runtime, &keys),
        Some(runtime),
    ))
}

/// The runtime of the agent (the org's default without one) and the providers the org
/// has keys for, read together.
pub(crate) async fn runtime_and_keys(
    svc: &Usage,
    org: &OrgId,
    agent: Option<&AgentId>,
) -> Result<(Runtime, Vec<Provider>), ApiError> {
    let keys = async { svc.orgs.keys(org).await.map_err(ApiError::from) };
    let (runtime, keys) = tokio::try_join!(runtime_of(svc, org, agent), keys)?;
    Ok((runtime, keys.iter().map(|k| k.provider).collect()))
}

/// The org's settings; an org nobody created has no billing mode and is unknown here. A
/// personal account not opened yet is an empty wallet on credits: read, never written
/// here ([`opened`] opens it before a use is written).
pub(crate) async fn wallet_of(svc: &Usage, org: &OrgId) -> Result<(Wallet, BillingMode), ApiError> {
    let wallet = svc.store.wallet(org).await?;
    match wallet.settings.billing_mode {
        Some(mode) => Ok((wallet, mode)),
        None if org.is_personal() => Ok((wallet, BillingMode::Credits)),
        None => Err(ApiError::not_found(
            ErrorCode::UnknownOrg,
            format!("no org {org}"),
        )),
    }
}

/// A capture or release that found no hold in its context's wallet, of a hold made in the
/// other context (the path's org, or the member's own wallet): `409 wrong_context`, so
/// that a hold is never captured as a call without one in the wrong wallet. Without the
/// member, the org's context cannot see a personal hold.
pub(crate) async fn held_elsewhere(
    svc: &Usage,
    path_org: &OrgId,
    context: Context,
    member: Option<&MemberId>,
    hold: &HoldId,
) -> Result<(), ApiError> {
    let other = match context {
        Context::Personal => Some(path_org.clone()),
        Context::Org => member.map(OrgId::personal),
    };
    if let Some(other) = other
        && svc.store.hold(&other, hold).await?.is_some()
    {
        return Err(ApiError::conflict(
            ErrorCode::WrongContext,
            format!("hold {hold} was made in the other context: capture or release it there"),
        ));
    }
    Ok(())
}

/// Opens the personal account `wallet` belongs to if it is not yet: just before the first
/// use of it is written, once the request is known to be good.
pub(crate) async fn opened(svc: &Usage, wallet: &Wallet) -> Result<(), ApiError> {
    if let (None, Some(owner)) = (wallet.settings.billing_mode, wallet.org.personal_owner()) {
        svc.orgs.personal(&owner).await?;
    }
    Ok(())
}

/// A change that was refused: nothing was written (see [`ApiError::refused`]).
pub(crate) fn refused(refusal: Refusal) -> ApiError {
    ApiError::refused(refusal)
}

pub(crate) fn paused(reason: PauseReason) -> ApiError {
    ApiError::paused(reason)
}

/// The agent's own runtime, else the org's.
pub(crate) async fn runtime_of(
    svc: &Usage,
    org: &OrgId,
    agent: Option<&AgentId>,
) -> Result<Runtime, ApiError> {
    let own = async {
        match agent {
            Some(agent) => svc.orgs.agent_runtime(org, agent).await,
            None => Ok(None),
        }
    };
    // The agent's own and the org's, read at once: the runtime asks before every call.
    match tokio::try_join!(own, svc.orgs.get(org))? {
        (Some(own), _) => Ok(own.runtime),
        (None, Some(profile)) => Ok(profile.runtime),
        // A personal account not opened yet runs on the runtime it will open with.
        (None, None) if org.is_personal() => Ok(Runtime::ClaudeCode),
        (None, None) => Err(ApiError::not_found(
            ErrorCode::UnknownOrg,
            format!("no org {org}"),
        )),
    }
}
