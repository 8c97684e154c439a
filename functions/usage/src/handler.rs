use std::sync::Arc;

use agent_credits_domain::{
    AgentId, ApiKeyId, Applied, Attribution, Billing, BillingMode, ChangeRequest, Clock, HoldId,
    IdempotencyKey, MemberId, ModelId, ModelRate, OrgId, Outcome, PauseReason, PositiveUsd, Provider,
    ProviderCost, RatePerMillion, Refusal, Runtime, TokenUsage, Usd, Wallet, WalletStore, keys,
};
use agent_credits_dynamo::{DynamoWalletStore, OrgStore, RateStore};
use agent_credits_http::{
    ApiError, Details, Edge, ErrorCode, Reply, Route, Router, Table, answer, json_response,
};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

use crate::{Config, views};

/// Everything the handler needs, built once per cold start.
pub struct Usage {
    pub store: DynamoWalletStore,
    pub rates: RateStore,
    pub clock: Arc<dyn Clock>,
    pub config: Config,
    /// BYOK keys, for the runtime's own fetch; `None` answers 503.
    pub keys: Option<agent_credits_aws::KeyVault>,
}

/// Every route of the function: who may call it and what answers it.
pub fn routes() -> Vec<Route<Usage>> {
    vec![
        Route::runtime(Method::POST, "/v1/orgs/{org}/usage", |svc, c| {
            Box::pin(async move { debit(svc, c.param("org")?, c.body()?).await })
        }),
        Route::runtime(Method::POST, "/v1/orgs/{org}/holds", |svc, c| {
            Box::pin(async move { hold(svc, c.param("org")?, c.body()?).await })
        }),
        Route::runtime(Method::POST, "/v1/orgs/{org}/holds/{hold}/capture", |svc, c| {
            Box::pin(async move { capture(svc, c.param("org")?, c.param("hold")?, c.body()?).await })
        }),
        Route::runtime(Method::POST, "/v1/orgs/{org}/holds/{hold}/release", |svc, c| {
            Box::pin(async move { release(svc, c.param("org")?, c.param("hold")?).await })
        }),
        Route::runtime(Method::GET, "/v1/orgs/{org}/may-i-run", |svc, c| {
            Box::pin(async move {
                let org = c.param("org")?;
                let member = c.query("member").map(member_id).transpose()?;
                let agent = c
                    .query("agent")
                    .map(|a| {
                        AgentId::parse(a)
                            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidAgent, e.to_string()))
                    })
                    .transpose()?;
                may_i_run(svc, org, member, agent).await
            })
        }),
        Route::operator(Method::PUT, "/v1/rates/{model}", |svc, c| {
            Box::pin(async move { put_rate(svc, c.param("model")?, c.body()?).await })
        }),
        Route::runtime(
            Method::GET,
            "/v1/orgs/{org}/provider-keys/{provider}",
            |svc, c| Box::pin(async move { provider_key(svc, c.param("org")?, c.param("provider")?).await }),
        ),
    ]
}

impl Edge for Usage {
    fn iam_roles(&self) -> Option<&agent_credits_http::IamRoles> {
        Some(&self.config.iam)
    }
}

static ROUTER: Table<Usage> = Table::new(|| Router::new(routes()));

/// Routes one request. Never fails: every error is an HTTP answer.
pub async fn handle(svc: &Usage, req: Request) -> Response<Body> {
    answer(&ROUTER, svc, req).await
}

/// The org's own provider key, for the agent runtime (IAM-authorized): the one answer
/// that carries a key. Never logged.
async fn provider_key(svc: &Usage, org: OrgId, provider: Provider) -> Reply {
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

fn member_id(s: String) -> Result<MemberId, ApiError> {
    MemberId::parse(s).map_err(|e| ApiError::bad_request(ErrorCode::InvalidMember, e.to_string()))
}

/// What the runtime reports about one model call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallReport {
    /// The runtime's id of the call: the idempotency key of its debit.
    #[serde(default)]
    request_id: Option<HoldId>,
    /// What the call ran on, as may-i-run answered before it.
    #[serde(default)]
    billed_to: Option<Billing>,
    #[serde(default)]
    member: Option<MemberId>,
    #[serde(default)]
    api_key: Option<ApiKeyId>,
    #[serde(default)]
    agent: Option<AgentId>,
    #[serde(default)]
    runtime: Option<AgentId>,
    #[serde(default)]
    model: Option<ModelId>,
    /// The exact provider cost, when the runtime knows it.
    #[serde(default)]
    cost: Option<ProviderCost>,
    /// Token usage, priced at the model's current rate when no cost is reported.
    #[serde(default)]
    tokens: Option<TokenUsage>,
}

impl CallReport {
    fn attribution(&self) -> Attribution {
        Attribution {
            member: self.member.clone(),
            api_key: self.api_key.clone(),
            agent: self.agent.clone(),
        }
    }

    /// What the request id promises: the report itself, not the price computed from it,
    /// so a retry priced after a rate or markup change still replays the first answer.
    fn fingerprint(&self) -> String {
        match (&self.cost, &self.tokens) {
            (Some(cost), _) => format!("cost:{cost}"),
            (None, Some(t)) => format!(
                "tokens:{}:{}:{}:{}:{}",
                self.model.as_ref().map_or("", |m| m.as_str()),
                t.input,
                t.output,
                t.cache_read,
                t.cache_write
            ),
            (None, None) => String::new(),
        }
    }
}

/// Holds that expired still count against the wallet until released: release them before
/// charging a call, so the call is not short of credits that are really there.
async fn release_expired(svc: &Usage, wallet: &Wallet) -> Result<(), ApiError> {
    if !wallet.held.is_zero() {
        svc.store.expire_holds(&wallet.org).await?;
    }
    Ok(())
}

/// Who pays for a call of `agent` (the key rule of [`agent_credits_domain::verdict`]): a
/// credits org pays from its wallet without another read; any other reads the runtime
/// the agent runs and the keys the org stored.
async fn billing_of(
    svc: &Usage,
    org: &OrgId,
    mode: BillingMode,
    agent: Option<&AgentId>,
    want_runtime: bool,
) -> Result<(Result<Billing, PauseReason>, Option<Runtime>), ApiError> {
    if mode == BillingMode::Credits && !want_runtime {
        return Ok((Ok(Billing::Credits), None));
    }
    let (runtime, keys) = runtime_and_keys(svc, org, agent).await?;
    Ok((agent_credits_domain::billing(mode, runtime, &keys), Some(runtime)))
}

/// The runtime of the agent (the org's default without one) and the providers the org
/// has keys for, read together.
async fn runtime_and_keys(
    svc: &Usage,
    org: &OrgId,
    agent: Option<&AgentId>,
) -> Result<(Runtime, Vec<Provider>), ApiError> {
    let orgs = OrgStore::new(svc.store.client().clone(), svc.store.table());
    let keys = async { orgs.keys(org).await.map_err(ApiError::from) };
    let (runtime, keys) = tokio::try_join!(runtime_of(svc, org, agent), keys)?;
    Ok((runtime, keys.iter().map(|k| k.provider).collect()))
}

/// The org's settings; an org nobody created has no billing mode and is unknown here.
async fn wallet_of(svc: &Usage, org: &OrgId) -> Result<(Wallet, BillingMode), ApiError> {
    let wallet = svc.store.wallet(org).await?;
    match wallet.settings.billing_mode {
        Some(mode) => Ok((wallet, mode)),
        None => Err(ApiError::not_found(
            ErrorCode::UnknownOrg,
            format!("no org {org}"),
        )),
    }
}

/// Provider cost × markup, rounded once. The cost is the runtime's report, else tokens
/// at the rate in force today.
async fn billable(
    svc: &Usage,
    wallet: &Wallet,
    report: &CallReport,
    today: NaiveDate,
) -> Result<Usd, ApiError> {
    let cost = match (&report.cost, &report.tokens) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                ErrorCode::AmbiguousCost,
                "send either cost or tokens, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                ErrorCode::MissingCost,
                "send cost or tokens",
            ));
        }
        (Some(cost), None) => *cost,
        (None, Some(tokens)) => {
            let Some(model) = &report.model else {
                return Err(ApiError::bad_request(
                    ErrorCode::MissingModel,
                    "tokens are priced by model: send model",
                ));
            };
            let rate = svc.rates.on(model, today).await?.ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::UnknownModel,
                    format!("no rate for model {model} on {today}"),
                )
            })?;
            rate.cost(tokens)
                .map_err(|e| ApiError::bad_request(ErrorCode::InvalidTokens, e.to_string()))?
        }
    };
    let markup = wallet.settings.markup.unwrap_or(svc.config.default_markup);
    markup.bill(cost).map_err(ApiError::money)
}

/// A debit, capture or hold that was refused: nothing was written.
fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::InsufficientFunds { available } => ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            ErrorCode::InsufficientCredits,
            format!("{available} available"),
        )
        .with_details(Details {
            available: Some(available),
            ..Default::default()
        }),
        Refusal::MemberLimitReached { limit } => ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::MemberLimitReached,
            format!("the member's monthly limit of {limit} is reached"),
        )
        .with_details(Details {
            limit: Some(limit),
            ..Default::default()
        }),
        Refusal::IdempotencyKeyReused => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::IdempotencyKeyReused,
            "this request id was used for a different request",
        ),
        Refusal::HoldNotFound => ApiError::not_found(ErrorCode::HoldNotFound, "no such hold"),
        Refusal::HoldClosed => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::HoldClosed,
            "the hold is already closed",
        ),
        Refusal::Paused(reason) => paused(reason),
        Refusal::Superseded | Refusal::Money(_) => ApiError::internal(&refusal),
    }
}

fn paused(reason: PauseReason) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::OrgPaused,
        format!("the org is paused: {}", reason.as_str()),
    )
    .with_details(Details {
        reason: Some(reason),
        ..Default::default()
    })
}

/// The answer for a debit or capture that stands.
fn answered(wallet: &Wallet, applied: Applied) -> Reply {
    let replayed = applied.replayed();
    Ok(json_response(
        StatusCode::OK,
        &views::Charged::new(wallet, applied.entry(), replayed),
    ))
}

/// A call on the org's own key: recorded for attribution, never debited.
async fn record_unbilled(
    svc: &Usage,
    org: &OrgId,
    key: &IdempotencyKey,
    cost: Usd,
    report: &CallReport,
) -> Reply {
    let recorded = match svc
        .store
        .record_unbilled(org, key, &report.fingerprint(), cost, &report.attribution())
        .await?
    {
        Ok(recorded) => recorded,
        // Billed to the wallet when it was first reported: that answer stands.
        Err(Refusal::Superseded) => return billed_before(svc, org, key).await,
        Err(other) => return Err(refused(other)),
    };
    Ok(json_response(
        StatusCode::OK,
        &views::NotCharged::on_own_key(recorded.cost, recorded.replayed),
    ))
}

/// Who pays for a reported call ([`agent_credits_domain::billing_of_call`]): what the runtime
/// says it ran on, held against the keys the org has; a credits org reads nothing more.
async fn pays(svc: &Usage, org: &OrgId, mode: BillingMode, report: &CallReport) -> Result<Billing, ApiError> {
    if mode == BillingMode::Credits || report.billed_to == Some(Billing::Credits) {
        return Ok(Billing::Credits);
    }
    let (runtime, keys) = runtime_and_keys(svc, org, report.agent.as_ref()).await?;
    Ok(agent_credits_domain::billing_of_call(
        mode,
        runtime,
        &keys,
        report.billed_to,
    ))
}

/// The answer of a call billed to the wallet under `key` before.
async fn billed_before(svc: &Usage, org: &OrgId, key: &IdempotencyKey) -> Reply {
    let wallet = svc.store.wallet(org).await?;
    match svc.store.entry_for_key(org, key).await? {
        Some(entry) => answered(&wallet, Applied::Replayed(entry)),
        None => Err(ApiError::internal(&format!(
            "{key} yielded to an entry that is not there"
        ))),
    }
}

/// The answer of a call recorded off the wallet under `key` before.
async fn unbilled_before(svc: &Usage, org: &OrgId, key: &IdempotencyKey) -> Reply {
    match svc.store.unbilled(org, key).await? {
        Some(cost) => Ok(json_response(
            StatusCode::OK,
            &views::NotCharged::on_own_key(cost, true),
        )),
        None => Err(ApiError::internal(&format!(
            "{key} yielded to a record that is not there"
        ))),
    }
}

/// A debit or capture as the store answered it: a call recorded off the wallet before
/// under the same key answers that record.
async fn settled(svc: &Usage, wallet: &Wallet, org: &OrgId, key: &IdempotencyKey, outcome: Outcome) -> Reply {
    match outcome {
        Ok(applied) => answered(wallet, applied),
        Err(Refusal::Superseded) => unbilled_before(svc, org, key).await,
        Err(other) => Err(refused(other)),
    }
}

async fn debit(svc: &Usage, org: OrgId, report: CallReport) -> Reply {
    let request_id = report
        .request_id
        .clone()
        .ok_or_else(|| ApiError::bad_request(ErrorCode::MissingRequestId, "request_id is required"))?;
    let key = keys::usage(&request_id);
    tracing::info!(%org, runtime = ?report.runtime, model = ?report.model, "usage reported");
    let (wallet, mode) = wallet_of(svc, &org).await?;
    let now = svc.clock.now();
    let amount = billable(svc, &wallet, &report, now.date_naive()).await?;
    if pays(svc, &org, mode, &report).await? == Billing::ProviderKey {
        return record_unbilled(svc, &org, &key, amount, &report).await;
    }
    let Ok(amount) = PositiveUsd::new(amount) else {
        // A free call moves no money; there is nothing to record on the ledger.
        return Ok(json_response(StatusCode::OK, &views::NotCharged::free()));
    };
    release_expired(svc, &wallet).await?;
    let req = ChangeRequest::usage(org.clone(), amount, key.clone())
        .attributed_to(report.attribution())
        .with_fingerprint(report.fingerprint());
    let outcome = svc.store.apply(req).await?;
    settled(svc, &wallet, &org, &key, outcome).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldRequest {
    hold_id: HoldId,
    amount: PositiveUsd,
    #[serde(default)]
    ttl_seconds: Option<i64>,
    #[serde(default)]
    member: Option<MemberId>,
    #[serde(default)]
    api_key: Option<ApiKeyId>,
    #[serde(default)]
    agent: Option<AgentId>,
}

async fn hold(svc: &Usage, org: OrgId, body: HoldRequest) -> Reply {
    let (wallet, mode) = wallet_of(svc, &org).await?;
    match billing_of(svc, &org, mode, body.agent.as_ref(), false).await?.0 {
        Ok(Billing::Credits) => {}
        Ok(Billing::ProviderKey) => {
            return Ok(json_response(
                StatusCode::OK,
                &views::Hold {
                    hold_id: body.hold_id,
                    entry_id: None,
                    held: Usd::ZERO,
                    available: None,
                    expires_at: None,
                    billed_to: Some(Billing::ProviderKey),
                },
            ));
        }
        Err(reason) => return Err(paused(reason)),
    }
    let ttl = body.ttl_seconds.unwrap_or(svc.config.hold_ttl_seconds);
    if !(1..=svc.config.max_hold_ttl_seconds).contains(&ttl) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidTtl,
            format!(
                "ttl_seconds must be from 1 to {}",
                svc.config.max_hold_ttl_seconds
            ),
        ));
    }
    let expires_at: DateTime<Utc> = svc.clock.now() + Duration::seconds(ttl);
    let attribution = Attribution {
        member: body.member,
        api_key: body.api_key,
        agent: body.agent,
    };
    let req = ChangeRequest::hold(
        org.clone(),
        body.hold_id.clone(),
        body.amount,
        expires_at,
        keys::hold(&body.hold_id),
    )
    .attributed_to(attribution);
    let mut outcome = svc.store.apply(req.clone()).await?;
    if matches!(outcome, Err(Refusal::InsufficientFunds { .. }))
        && !wallet.held.is_zero()
        && svc.store.expire_holds(&org).await?.released > 0
    {
        // Expired holds were still counted against the wallet: released now, try again.
        outcome = svc.store.apply(req).await?;
    }
    let (entry, expires_at) = match outcome.map_err(refused)? {
        Applied::Committed(e) => (e, expires_at),
        // The hold as it was made: its expiry then, not one counted from this retry.
        Applied::Replayed(e) => {
            let made = svc.store.hold(&org, &body.hold_id).await?;
            (e, made.map_or(expires_at, |h| h.expires))
        }
    };
    Ok(json_response(
        StatusCode::CREATED,
        &views::Hold {
            hold_id: body.hold_id,
            entry_id: Some(entry.id()),
            held: body.amount.usd(),
            available: Some(entry.available_after),
            expires_at: Some(expires_at),
            billed_to: None,
        },
    ))
}

/// The actual cost of a call against its hold. A hold that was made reserved credits, so
/// its call is billed to the wallet whatever keys changed since; a capture with no hold
/// (the call ran on the org's own key, or its hold was never made) follows who pays now.
async fn capture(svc: &Usage, org: OrgId, hold: HoldId, report: CallReport) -> Reply {
    let key = keys::capture(&hold);
    let ((wallet, mode), made) = tokio::try_join!(wallet_of(svc, &org), async {
        Ok::<_, ApiError>(svc.store.hold(&org, &hold).await?)
    })?;
    let amount = billable(svc, &wallet, &report, svc.clock.now().date_naive()).await?;
    if made.is_none() && pays(svc, &org, mode, &report).await? == Billing::ProviderKey {
        return record_unbilled(svc, &org, &key, amount, &report).await;
    }
    release_expired(svc, &wallet).await?;
    let req = ChangeRequest::capture(org.clone(), hold, amount, key.clone())
        .attributed_to(report.attribution())
        .with_fingerprint(report.fingerprint());
    let outcome = svc.store.apply(req).await?;
    settled(svc, &wallet, &org, &key, outcome).await
}

async fn release(svc: &Usage, org: OrgId, hold: HoldId) -> Reply {
    let req = ChangeRequest::release(org, hold.clone(), keys::release(&hold));
    let e = svc.store.apply(req).await?.map_err(refused)?.into_entry();
    Ok(json_response(
        StatusCode::OK,
        &views::Released {
            hold_id: hold,
            released: e.held_change.magnitude(),
            available: e.available_after,
        },
    ))
}

/// The agent's own runtime, else the org's.
async fn runtime_of(svc: &Usage, org: &OrgId, agent: Option<&AgentId>) -> Result<Runtime, ApiError> {
    let orgs = OrgStore::new(svc.store.client().clone(), svc.store.table());
    let own = async {
        match agent {
            Some(agent) => orgs.agent_runtime(org, agent).await,
            None => Ok(None),
        }
    };
    // The agent's own and the org's, read at once: the runtime asks before every call.
    match tokio::try_join!(own, orgs.get(org))? {
        (Some(own), _) => Ok(own.runtime),
        (None, Some(profile)) => Ok(profile.runtime),
        (None, None) => Err(ApiError::not_found(
            ErrorCode::UnknownOrg,
            format!("no org {org}"),
        )),
    }
}

async fn may_i_run(svc: &Usage, org: OrgId, member: Option<MemberId>, agent: Option<AgentId>) -> Reply {
    let (mut wallet, mode) = wallet_of(svc, &org).await?;
    let now = svc.clock.now();
    let month = async {
        match &member {
            Some(m) => svc.store.member_month(&org, m, now).await.map(Some),
            None => Ok(None),
        }
    };
    let ((billing, runtime), month) = tokio::try_join!(
        async { billing_of(svc, &org, mode, agent.as_ref(), agent.is_some()).await },
        async { month.await.map_err(ApiError::from) }
    )?;
    if !wallet.held.is_zero() && svc.store.expire_holds(&org).await?.released > 0 {
        wallet = svc.store.wallet(&org).await?;
    }
    let v = agent_credits_domain::verdict(mode, &wallet, billing, month.as_ref())
        .map_err(|e| ApiError::internal(&e))?;
    Ok(json_response(
        StatusCode::OK,
        &views::Verdict {
            allowed: v.allowed,
            reason: v.reason,
            billing_mode: mode,
            billed_to: v.billed_to,
            available: v.available,
            low_balance: v.low_balance,
            runtime: agent.is_some().then_some(runtime).flatten(),
        },
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateBody {
    effective_from: Day,
    input: RatePerMillion,
    output: RatePerMillion,
    #[serde(default)]
    cache_read: RatePerMillion,
    #[serde(default)]
    cache_write: RatePerMillion,
}

/// A calendar day written exactly `yyyy-mm-dd` (chrono alone reads `26-01-01` as the
/// year 26).
#[derive(Debug, Clone, Copy)]
struct Day(NaiveDate);

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Day, D::Error> {
        let s = String::deserialize(d)?;
        let shaped = s.len() == 10
            && s.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        shaped
            .then(|| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok())
            .flatten()
            .map(Day)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a date written yyyy-mm-dd")))
    }
}

/// A model's prices from a date on. Never for a day gone: calls already billed at the
/// old rate stay billed at it, and a retried report of one answers its first price.
async fn put_rate(svc: &Usage, model: ModelId, body: RateBody) -> Reply {
    let today = svc.clock.now().date_naive();
    if body.effective_from.0 < today {
        return Err(ApiError::bad_request(
            ErrorCode::RateInThePast,
            format!("effective_from must be today ({today}) or later"),
        ));
    }
    let rate = ModelRate {
        model,
        effective_from: body.effective_from.0,
        input: body.input,
        output: body.output,
        cache_read: body.cache_read,
        cache_write: body.cache_write,
    };
    svc.rates.put(&rate).await?;
    Ok(json_response(StatusCode::OK, &rate))
}
