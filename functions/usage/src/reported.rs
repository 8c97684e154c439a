//! A call already made, reported: debited from the wallet (`POST .../usage`, and a
//! capture against its hold), or recorded off the wallet when it ran on the org's own key.
//! Each request id is billed once, at its first price.

use agent_credits_domain::{
    AgentId, ApiKeyId, Applied, Attribution, Billing, BillingMode, ChangeRequest, Consumable, Context,
    Feature, HoldId, IdempotencyKey, MemberId, ModelId, OrgId, Outcome, PositiveUsd, ProviderCost, Quantity,
    Refusal, TokenUsage, Usd, Wallet, WalletStore, keys,
};
use agent_credits_http::{ApiError, ErrorCode, Reply, json_response, named};
use chrono::NaiveDate;
use lambda_http::http::StatusCode;
use serde::Deserialize;

use crate::handler::{
    Usage, held_elsewhere, opened, refused, release_expired, runtime_and_keys, wallet_in, wallet_of,
};
use crate::views;

/// What the runtime reports about one use: a model call, or another consumable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallReport {
    /// What was consumed (`llm` when absent); read by [`CallReport::checked`].
    #[serde(default, rename = "kind")]
    kind_named: Option<String>,
    /// The product feature it served; read by [`CallReport::checked`].
    #[serde(default, rename = "feature")]
    feature_named: Option<String>,
    /// How much of a consumable other than a model call: priced from the rate card.
    #[serde(default)]
    quantity: Option<Quantity>,
    /// Whose wallet pays: the org's (default) or, `personal`, the member's own.
    #[serde(default)]
    context: Context,
    #[serde(skip)]
    kind: Consumable,
    #[serde(skip)]
    feature: Option<Feature>,
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
    /// The org whose agent made the call: it earns a share of what the call is charged.
    #[serde(default)]
    creator: Option<OrgId>,
    #[serde(default)]
    model: Option<ModelId>,
    /// The exact provider cost, when the runtime knows it.
    #[serde(default)]
    cost: Option<ProviderCost>,
    /// Token usage, priced at the model's current rate when no cost is reported.
    #[serde(default)]
    tokens: Option<TokenUsage>,
}

/// A consumable's kind as a request names it (a model call when it names none): `400
/// unknown_kind` otherwise.
pub(crate) fn kind_named(name: Option<&str>) -> Result<Consumable, ApiError> {
    Ok(named(name)?.unwrap_or(Consumable::Llm))
}

impl CallReport {
    /// The wallet the use is billed to, in its context. A creator is another org: never
    /// the payer itself (its calls would pay it back) nor a person's own account.
    pub(crate) fn wallet(&self, org: OrgId) -> Result<OrgId, ApiError> {
        let payer = wallet_in(org.clone(), self.context, self.member.as_ref())?;
        // Nor, for a call billed to a person's own account, the org it ran under: a
        // personal wallet is the person's alone (reference 003).
        if let Some(creator) = &self.creator
            && (creator.is_personal() || *creator == payer || *creator == org)
        {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidCreator,
                "creator is the org whose agent made the call: another org than the one that pays",
            ));
        }
        Ok(payer)
    }

    /// A capture of a hold: the use its hold was made for (its kind, and its feature when
    /// the capture names none). A capture of another kind is a 400.
    fn of_hold(mut self, kind: Consumable, feature: Option<Feature>) -> Result<CallReport, ApiError> {
        match self.kind_named {
            None => self.kind = kind,
            Some(_) if self.kind != kind => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidRequest,
                    format!("the hold was made for a {kind}: its capture is of the same kind"),
                ));
            }
            Some(_) => {}
        }
        self.feature = self.feature.or(feature);
        Ok(self)
    }

    /// The report with its kind and feature read: unknown ones are a 400.
    pub(crate) fn checked(mut self) -> Result<CallReport, ApiError> {
        self.kind = kind_named(self.kind_named.as_deref())?;
        self.feature = named(self.feature_named.as_deref())?;
        Ok(self)
    }

    fn attribution(&self) -> Attribution {
        Attribution {
            member: self.member.clone(),
            api_key: self.api_key.clone(),
            agent: self.agent.clone(),
            model: self.model.clone(),
            consumable: self.kind,
            feature: self.feature,
            creator: self.creator.clone(),
        }
    }

    /// What the request id promises: the report itself, not the price computed from it,
    /// so a retry priced after a rate or markup change still replays the first answer.
    /// A model call's is written as before kinds existed, so a retry across the change
    /// still matches.
    fn fingerprint(&self) -> String {
        if self.kind.priced_by_unit() {
            return match (&self.cost, &self.quantity) {
                (Some(cost), _) => format!("{}:cost:{cost}", self.kind),
                (None, Some(q)) => format!("{}:quantity:{q}", self.kind),
                (None, None) => self.kind.to_string(),
            };
        }
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

/// Provider cost × markup, rounded once. The cost is the runtime's report, else tokens
/// at the model's rate in force today, else (for a consumable other than a model call)
/// the quantity at its unit price on the rate card today.
pub(crate) async fn billable(
    svc: &Usage,
    wallet: &Wallet,
    report: &CallReport,
    today: NaiveDate,
) -> Result<Usd, ApiError> {
    let cost = if report.kind.priced_by_unit() {
        unit_cost(svc, report, today).await?
    } else {
        model_cost(svc, report, today).await?
    };
    let markup = wallet.settings.markup.unwrap_or(svc.settings.default_markup);
    markup.bill(cost).map_err(ApiError::money)
}

/// A consumable other than a model call: its cost, or its quantity × its unit price.
async fn unit_cost(svc: &Usage, report: &CallReport, today: NaiveDate) -> Result<ProviderCost, ApiError> {
    let kind = report.kind;
    if report.model.is_some() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidModel,
            format!("model is for model calls (kind llm), not a {kind}"),
        ));
    }
    if report.tokens.is_some() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidTokens,
            format!("tokens are for model calls (kind llm); a {kind} sends quantity or cost"),
        ));
    }
    match (&report.cost, &report.quantity) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            ErrorCode::AmbiguousCost,
            "send either cost or quantity, not both",
        )),
        (None, None) => Err(ApiError::bad_request(
            ErrorCode::MissingCost,
            format!("a {kind} sends quantity (priced from the rate card) or cost"),
        )),
        (Some(cost), None) => Ok(*cost),
        (None, Some(q)) if q.as_decimal().is_zero() => Err(ApiError::bad_request(
            ErrorCode::InvalidQuantity,
            "quantity must be more than 0",
        )),
        (None, Some(q)) if kind.whole_units() && !q.as_decimal().fract().is_zero() => {
            Err(ApiError::bad_request(
                ErrorCode::InvalidQuantity,
                format!("a {kind} is counted in whole units"),
            ))
        }
        (None, Some(q)) => {
            let rate = svc.rates.unit_on(kind, today).await?.ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::NoUnitRate,
                    format!("the rate card has no unit price for {kind} on {today}"),
                )
            })?;
            rate.cost(*q)
                .map_err(|e| ApiError::bad_request(ErrorCode::InvalidQuantity, e.to_string()))
        }
    }
}

/// A model call: its cost, or its tokens at the model's rate.
async fn model_cost(svc: &Usage, report: &CallReport, today: NaiveDate) -> Result<ProviderCost, ApiError> {
    if report.quantity.is_some() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuantity,
            "quantity is for the other kinds; a model call sends cost or tokens",
        ));
    }
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
    Ok(cost)
}

/// The answer for a debit or capture that stands.
pub(crate) fn answered(wallet: &Wallet, applied: Applied) -> Reply {
    let replayed = applied.replayed();
    Ok(json_response(
        StatusCode::OK,
        &views::Charged::new(wallet, applied.entry(), replayed),
    ))
}

/// A call on the org's own key: recorded for attribution, never debited.
pub(crate) async fn record_unbilled(
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
        Err(Refusal::Superseded) => return billed_before(svc, org, key, report).await,
        Err(other) => return Err(refused(other)),
    };
    Ok(json_response(
        StatusCode::OK,
        &views::NotCharged::on_own_key(recorded.cost, recorded.replayed),
    ))
}

/// Who pays for a reported call ([`agent_credits_domain::billing_of_call`]): what the runtime
/// says it ran on, held against the keys the org has; a credits org, or a use no provider
/// key pays for, reads nothing more.
pub(crate) async fn pays(
    svc: &Usage,
    org: &OrgId,
    mode: BillingMode,
    report: &CallReport,
) -> Result<Billing, ApiError> {
    if mode == BillingMode::Credits
        || report.billed_to == Some(Billing::Credits)
        || !report.kind.is_model_call()
    {
        return Ok(Billing::Credits);
    }
    let (runtime, keys) = runtime_and_keys(svc, org, report.agent.as_ref()).await?;
    Ok(agent_credits_domain::billing_of_call(
        report.kind,
        mode,
        runtime,
        &keys,
        report.billed_to,
    ))
}

/// The answer of a call billed to the wallet under `key` before, when this report is the
/// same call (else `409 idempotency_key_reused`, as on one path).
pub(crate) async fn billed_before(
    svc: &Usage,
    org: &OrgId,
    key: &IdempotencyKey,
    report: &CallReport,
) -> Reply {
    let wallet = svc.store.wallet(org).await?;
    match svc.store.billed_under(org, key).await? {
        Some((_, promised)) if promised != report.fingerprint() => {
            Err(refused(Refusal::IdempotencyKeyReused))
        }
        Some((entry, _)) => answered(&wallet, Applied::Replayed(entry)),
        None => Err(ApiError::internal(&format!(
            "{key} yielded to an entry that is not there"
        ))),
    }
}

/// The answer of a call recorded off the wallet under `key` before, when this report is
/// the same call (else `409 idempotency_key_reused`: a request id recorded on the org's
/// own key never makes another use free).
pub(crate) async fn unbilled_before(
    svc: &Usage,
    org: &OrgId,
    key: &IdempotencyKey,
    report: &CallReport,
) -> Reply {
    match svc.store.unbilled(org, key).await? {
        Some((_, promised)) if promised != report.fingerprint() => {
            Err(refused(Refusal::IdempotencyKeyReused))
        }
        Some((cost, _)) => Ok(json_response(
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
pub(crate) async fn settled(
    svc: &Usage,
    wallet: &Wallet,
    org: &OrgId,
    key: &IdempotencyKey,
    report: &CallReport,
    outcome: Outcome,
) -> Reply {
    match outcome {
        Ok(applied) => answered(wallet, applied),
        Err(Refusal::Superseded) => unbilled_before(svc, org, key, report).await,
        Err(other) => Err(refused(other)),
    }
}

pub(crate) async fn debit(svc: &Usage, org: OrgId, report: CallReport) -> Reply {
    let report = report.checked()?;
    let org = report.wallet(org)?;
    let request_id = report
        .request_id
        .clone()
        .ok_or_else(|| ApiError::bad_request(ErrorCode::MissingRequestId, "request_id is required"))?;
    let key = keys::usage(&request_id);
    tracing::info!(%org, kind = %report.kind, runtime = ?report.runtime, model = ?report.model, "usage reported");
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
    opened(svc, &wallet).await?;
    let req = ChangeRequest::usage(org.clone(), amount, key.clone())
        .attributed_to(report.attribution())
        .with_fingerprint(report.fingerprint());
    let outcome = svc.store.apply(req).await?;
    settled(svc, &wallet, &org, &key, &report, outcome).await
}

/// The actual cost of a call against its hold. A hold that was made reserved credits, so
/// its call is billed to the wallet whatever keys changed since; a capture with no hold
/// (the call ran on the org's own key, or its hold was never made) follows who pays now.
pub(crate) async fn capture(svc: &Usage, path_org: OrgId, hold: HoldId, report: CallReport) -> Reply {
    let report = report.checked()?;
    let org = report.wallet(path_org.clone())?;
    let key = keys::capture(&hold);
    let ((wallet, mode), made) = tokio::try_join!(wallet_of(svc, &org), async {
        Ok::<_, ApiError>(svc.store.hold(&org, &hold).await?)
    })?;
    let report = match &made {
        Some(h) => report.of_hold(h.consumable, h.feature)?,
        None => {
            held_elsewhere(svc, &path_org, report.context, report.member.as_ref(), &hold).await?;
            report
        }
    };
    let amount = billable(svc, &wallet, &report, svc.clock.now().date_naive()).await?;
    if made.is_none() && pays(svc, &org, mode, &report).await? == Billing::ProviderKey {
        return record_unbilled(svc, &org, &key, amount, &report).await;
    }
    release_expired(svc, &wallet).await?;
    opened(svc, &wallet).await?;
    let req = ChangeRequest::capture(org.clone(), hold, amount, key.clone())
        .attributed_to(report.attribution())
        .with_fingerprint(report.fingerprint());
    let outcome = svc.store.apply(req).await?;
    settled(svc, &wallet, &org, &key, &report, outcome).await
}
