//! The recharge function: one sweep per EventBridge Scheduler tick (every minute in the
//! template). It first releases expired holds (so that what is available is what is
//! really there), then tops up each org marked due from its saved card.
//!
//! The debit that takes an org's available credits below its threshold marks the wallet
//! due in the same transaction (sparse `gsi1`, `DUE#RECHARGE`), so a sweep reads only the
//! marked wallets, never the table. The same function also consumes the table's stream
//! ([`on_stream`]): the wallet's change that sets the mark starts that org's recharge
//! within seconds, and the schedule stays as the backstop for anything the stream path
//! missed. Either way the debit path stays free of Stripe calls and their latency.
//!
//! For each due org:
//! 1. Off, suspended, without a card, or no longer below the threshold: the mark is
//!    cleared, only if the wallet is still as read (a crossing meanwhile stands).
//! 2. Claim: the org's one attempt in flight and one count against the day's cap (top-ups
//!    and dollars), on the conditions that the card's owner is still a member who may
//!    manage auto-recharge and that no dispute is open, in one conditional transaction.
//!    The attempt records exactly what it charges (amount, customer, card).
//! 3. Charge: an off-session PaymentIntent on the attempt's card, confirmed, with the
//!    attempt id as Stripe's idempotency key and `metadata[purpose]=auto_recharge`. The
//!    PaymentIntent's id is recorded on the attempt before anything is settled from it.
//! 4. Succeeded: the `auto_top_up` credit, keyed on the PaymentIntent (the webhook's
//!    `payment_intent.succeeded` credits under the same key, so once between them), with
//!    `credit_auto_recharge_triggered` and the end of the mark in the same write; then the
//!    attempt ends.
//! 5. The card refused (`402 card_error`: declined, authentication required): the attempt
//!    fails with the reason, `credit_purchase_failed` is written once, auto-recharge is
//!    suspended until the settings or card change, and the org stays as it is.
//! 6. Anything else (a bad key, rate limits, Stripe down, the network, an idempotency
//!    error, a crash after Stripe's success): nobody is told or suspended; an operator
//!    alarm is logged (`alarm = "recharge_stripe"`) and the attempt stays in flight. A
//!    later sweep, once it is older than `RECHARGE_RESUME_AFTER_SECONDS`, sends exactly
//!    the same request again under the same key (Stripe answers with the first result).
//!    After [`recharge::MAX_TRIES`] sends, or past Stripe's 24-hour idempotency window, or
//!    when the card's owner is gone, it is never sent again: the attempt's PaymentIntent
//!    is looked up instead and settled, or, when Stripe never made one, the attempt is
//!    abandoned and the org stays due.

use std::sync::Arc;

use agent_credits_aws::stream::{BatchResponse, Image, StreamEvent, StreamRecord, string};
use agent_credits_domain::recharge::{self, Decline};
use agent_credits_domain::{
    ChargeGateway, Clock, EntryKind, GatewayError, Intent, IntentStatus, OffSessionCharge, OrgId, StoreError,
    Usd,
};
use agent_credits_dynamo::{
    Attempt, Claim, Due, DynamoWalletStore, Expired, Gate, PaymentRecord, RechargeStore, items,
};
use serde::Serialize;

/// The recharge function's settings, read once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The credits table (`TABLE_NAME`).
    pub table: String,
    /// How old an attempt in flight must be before a sweep takes it over
    /// (`RECHARGE_RESUME_AFTER_SECONDS`, default 120).
    pub resume_after: chrono::Duration,
    /// Stripe elsewhere than api.stripe.com (`STRIPE_API_BASE`: the project's simulator).
    pub stripe_api_base: Option<String>,
}

impl agent_credits_aws::settings::FromEnv for Settings {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        use agent_credits_aws::settings::{required, seconds};
        let resume_after = seconds(&get, "RECHARGE_RESUME_AFTER_SECONDS", 120, 0..=86_400)?;
        Ok(Settings {
            table: required(&get, "TABLE_NAME")?,
            resume_after: chrono::Duration::seconds(resume_after),
            stripe_api_base: get("STRIPE_API_BASE"),
        })
    }
}

pub struct Recharge {
    pub store: DynamoWalletStore,
    pub recharges: RechargeStore,
    /// Stripe, behind the domain's port (`agent_credits_stripe::StripeGateway`).
    pub payments: Arc<dyn ChargeGateway>,
    pub clock: Arc<dyn Clock>,
    /// How old an attempt in flight must be before a sweep takes it over.
    pub resume_after: chrono::Duration,
}

/// What one sweep did, logged and returned to the scheduler.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Expired holds released first.
    pub holds: Expired,
    /// Then dated credits past their date expired (before the due orgs are read, so an
    /// org that an expiry took below its threshold is topped up in the same sweep).
    pub lots: agent_credits_dynamo::LotsExpired,
    /// Then annual plans' monthly grants whose day has come.
    pub plan_grants: agent_credits_dynamo::GrantsMade,
    pub due: usize,
    pub charged: usize,
    pub failed: usize,
    pub pending: usize,
    pub in_flight: usize,
    pub cap_reached: usize,
    pub not_due: usize,
    pub card_owner_left: usize,
    pub disputed: usize,
    pub abandoned: usize,
    pub errors: usize,
}

/// What happened to one due org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Charged,
    /// The card refused: suspended, the org told.
    Failed(String),
    /// Stripe's answer is not final, or did not come, or was an error of ours: a later
    /// sweep settles it.
    Pending,
    InFlight,
    CapReached,
    NotDue,
    /// The card's owner left or lost the role: suspended, the owners told.
    CardOwnerLeft,
    /// An open dispute: no top-up until it closes; the org stays due.
    Disputed,
    /// Stripe never made the attempt's PaymentIntent and it is no longer sent: nothing
    /// was charged, and the org stays due.
    Abandoned,
}

/// The wallet that a stream record shows newly marked due (the mark set, or set afresh by
/// a top-up that left it below its threshold), as the sweep would read it.
pub fn newly_due(record: &StreamRecord) -> Option<Due> {
    let (pk, sk) = record.key()?;
    if sk != items::WALLET_SK {
        return None;
    }
    let mark = due_mark(record.dynamodb.new_image.as_ref()?)?;
    if record.dynamodb.old_image.as_ref().and_then(due_mark) == Some(mark) {
        return None;
    }
    Some(Due {
        org: OrgId::parse(pk.strip_prefix("ORG#")?).ok()?,
        mark: mark.to_owned(),
    })
}

/// The due mark an image of a wallet carries, if any.
fn due_mark(image: &Image) -> Option<&str> {
    (string(image, "gsi1pk") == Some(items::RECHARGE_DUE_PK))
        .then(|| string(image, "gsi1sk"))
        .flatten()
}

/// The stream path: each org newly marked due in the batch is recharged at once, through
/// the same [`recharge_org`] as the sweep (one claim per attempt, so the two never charge
/// twice). Nothing is delivered again: an org whose recharge fails here keeps its mark,
/// and the minute's sweep is the backstop.
pub async fn on_stream(svc: &Recharge, event: &StreamEvent) -> BatchResponse {
    let mut seen = std::collections::HashSet::new();
    for due in event.records.iter().filter_map(newly_due) {
        if !seen.insert(due.org.clone()) {
            continue;
        }
        match recharge_org(svc, &due).await {
            Ok(step) => tracing::info!(org = %due.org, ?step, "recharge on crossing"),
            Err(e) => {
                tracing::error!(org = %due.org, error = %e, "recharge on crossing failed; the sweep retries")
            }
        }
    }
    BatchResponse::default()
}

/// One sweep: expired holds, dated credits past their date, annual plans' monthly grants,
/// then every due org.
pub async fn sweep(svc: &Recharge) -> Result<SweepReport, StoreError> {
    let holds = svc.store.sweep_expired_holds().await?;
    // Dated credits' trouble must not stop the top-ups: logged, and tried next sweep.
    let lots = svc.store.sweep_expired_lots().await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "expiring dated credits failed; retried next sweep");
        agent_credits_dynamo::LotsExpired {
            errors: 1,
            ..Default::default()
        }
    });
    // Likewise annual plans' monthly grants: a grant failing waits for the next sweep.
    let plan_grants = svc.store.sweep_monthly_grants().await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "annual plans' monthly grants failed; retried next sweep");
        agent_credits_dynamo::GrantsMade {
            errors: 1,
            ..Default::default()
        }
    });
    let due = svc.recharges.due().await?;
    let mut report = SweepReport {
        holds,
        lots,
        plan_grants,
        due: due.len(),
        ..Default::default()
    };
    for d in &due {
        match recharge_org(svc, d).await {
            Ok(Step::Charged) => report.charged += 1,
            Ok(Step::Failed(_)) => report.failed += 1,
            Ok(Step::Pending) => report.pending += 1,
            Ok(Step::InFlight) => report.in_flight += 1,
            Ok(Step::CapReached) => report.cap_reached += 1,
            Ok(Step::NotDue) => report.not_due += 1,
            Ok(Step::CardOwnerLeft) => report.card_owner_left += 1,
            Ok(Step::Disputed) => report.disputed += 1,
            Ok(Step::Abandoned) => report.abandoned += 1,
            Err(e) => {
                // One org's trouble must not stop the others; its mark stays for the next sweep.
                tracing::error!(org = %d.org, error = %e, "recharge failed; retried next sweep");
                report.errors += 1;
            }
        }
    }
    tracing::info!(?report, "recharge sweep");
    Ok(report)
}

pub async fn recharge_org(svc: &Recharge, due: &Due) -> Result<Step, StoreError> {
    let org = &due.org;
    let now = svc.clock.now();
    let (config, wallet) = tokio::try_join!(svc.recharges.config(org), svc.recharges.wallet(org))?;
    let Some(config) = config else {
        svc.recharges.clear_due(due, wallet.version).await?;
        return Ok(Step::NotDue);
    };
    if let Some((attempt, since)) = &config.in_flight {
        if now - *since < svc.resume_after {
            return Ok(Step::InFlight);
        }
        tracing::warn!(org = %org, attempt, "resuming an attempt left in flight");
        return resume(svc, org, attempt).await;
    }
    let available = wallet
        .available()
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    if !config.settings.enabled
        || config.suspended.is_some()
        || config.card.is_none()
        || available >= config.settings.threshold
    {
        svc.recharges.clear_due(due, wallet.version).await?;
        return Ok(Step::NotDue);
    }
    let attempt = new_attempt_id();
    match svc
        .recharges
        .claim(due, &attempt, &config, available, now)
        .await?
    {
        Claim::Claimed => match svc.recharges.attempt(org, &attempt).await? {
            Some(a) => send(svc, org, &a).await,
            None => Err(StoreError::Invalid(format!(
                "attempt {attempt} claimed but not found"
            ))),
        },
        Claim::InFlight(..) => Ok(Step::InFlight),
        // The mark stays: tomorrow's first sweep tops it up.
        Claim::CapReached => Ok(Step::CapReached),
        // The mark stays: the org is topped up once its disputes close.
        Claim::Disputed => Ok(Step::Disputed),
        // The mark stays: the next sweep tops up what is missing then, if anything is.
        Claim::Moved => Ok(Step::Pending),
        Claim::CardOwnerLeft => {
            svc.recharges.card_owner_left(org, &config, now).await?;
            Ok(Step::CardOwnerLeft)
        }
        Claim::Off => {
            svc.recharges.clear_due(due, wallet.version).await?;
            Ok(Step::NotDue)
        }
    }
}

fn new_attempt_id() -> String {
    let mut rng = fastrand::Rng::new();
    let tail: String = std::iter::repeat_with(|| rng.alphanumeric()).take(24).collect();
    format!("ra_{tail}")
}

/// An attempt left in flight: sent again exactly as claimed while that is safe (few
/// sends, inside Stripe's idempotency window, its card's owner still a member who may
/// use it); otherwise looked up, never sent.
pub async fn resume(svc: &Recharge, org: &OrgId, attempt: &str) -> Result<Step, StoreError> {
    let Some(a) = svc.recharges.attempt(org, attempt).await? else {
        return Err(StoreError::Invalid(format!(
            "attempt {attempt} in flight but not found"
        )));
    };
    if a.state != "pending" {
        return Ok(Step::Pending);
    }
    let age = svc.clock.now() - a.created_at;
    if a.tries < recharge::MAX_TRIES && age < chrono::Duration::hours(recharge::IDEMPOTENCY_WINDOW_HOURS) {
        return send(svc, org, &a).await;
    }
    look_up(svc, org, &a).await
}

/// An attempt that is never sent again: its PaymentIntent, if Stripe made one, is
/// settled; if not, the attempt is abandoned (nothing was charged).
async fn look_up(svc: &Recharge, org: &OrgId, a: &Attempt) -> Result<Step, StoreError> {
    let attempt = a.id.as_str();
    tracing::warn!(org = %org, attempt, tries = a.tries, "not sending again; looking its PaymentIntent up");
    match find_intent(svc, a).await {
        Ok(Some(pi)) => settle(svc, org, a, Ok(pi)).await,
        Ok(None) => {
            svc.recharges
                .abandoned(org, attempt, "never_charged", svc.clock.now())
                .await?;
            Ok(Step::Abandoned)
        }
        Err(e) => {
            alarm(org, attempt, &e);
            Ok(Step::Pending)
        }
    }
}

/// The PaymentIntent Stripe made for the attempt, if it made one: by the id recorded on
/// the attempt, else among its customer's PaymentIntents since the attempt began, by the
/// attempt id in its metadata.
async fn find_intent(svc: &Recharge, a: &Attempt) -> Result<Option<Intent>, GatewayError> {
    if let Some(id) = &a.payment_intent {
        // Recorded, so Stripe made it: not finding it is Stripe's trouble (or a key of
        // another account), never a sign that nothing was charged.
        return match svc.payments.payment_intent(id).await? {
            Some(pi) => Ok(Some(pi)),
            None => Err(GatewayError::Refused {
                code: "resource_missing".into(),
                status: 404,
                payment_intent: None,
            }),
        };
    }
    // An hour of slack for clocks that disagree; the attempt id decides.
    let since = a.created_at - chrono::Duration::hours(1);
    svc.payments.find_attempt(&a.customer, &a.id, since).await
}

/// Counts the send, then sends the attempt's PaymentIntent (again, for a resumed attempt:
/// the idempotency key makes Stripe answer with the first result) and settles what
/// Stripe answered.
pub async fn send(svc: &Recharge, org: &OrgId, a: &Attempt) -> Result<Step, StoreError> {
    match svc.recharges.count_try(org, a, svc.clock.now()).await? {
        Gate::Go => {
            let sent = send_intent(svc, org, a).await;
            settle(svc, org, a, sent).await
        }
        Gate::Settled => Ok(Step::Pending),
        Gate::Stop => look_up(svc, org, a).await,
    }
}

/// The off-session PaymentIntent of the attempt `a`, exactly as it was claimed.
pub async fn send_intent(svc: &Recharge, org: &OrgId, a: &Attempt) -> Result<Intent, GatewayError> {
    svc.payments
        .charge(&OffSessionCharge {
            org,
            attempt: &a.id,
            customer: &a.customer,
            payment_method: &a.payment_method,
            amount: a.amount,
        })
        .await
}

fn alarm(org: &OrgId, attempt: &str, e: &GatewayError) {
    tracing::error!(alarm = "recharge_stripe", org = %org, attempt, status = e.status(), error = %e,
        "Stripe did not take the charge for a reason that is not the card; the attempt stays in flight");
}

/// What Stripe answered, settled: the PaymentIntent's id is recorded on the attempt first.
pub async fn settle(
    svc: &Recharge,
    org: &OrgId,
    a: &Attempt,
    sent: Result<Intent, GatewayError>,
) -> Result<Step, StoreError> {
    let now = svc.clock.now();
    let intent = match &sent {
        Ok(pi) => Some(pi.id.clone()),
        // Any error Stripe answers may name the PaymentIntent it made: recorded, so a later
        // lookup finds it by id.
        Err(GatewayError::Declined { payment_intent, .. } | GatewayError::Refused { payment_intent, .. }) => {
            payment_intent.clone()
        }
        Err(GatewayError::Unreachable(_)) => None,
    };
    if let Some(pi) = &intent
        && a.payment_intent.as_deref() != Some(pi.as_str())
    {
        svc.recharges.record_intent(org, &a.id, pi).await?;
    }
    let decline = match sent {
        Ok(pi) => match pi.status {
            IntentStatus::Succeeded => {
                credit(svc, org, a, &pi.id).await?;
                svc.recharges.succeeded(org, &a.id, &pi.id, now).await?;
                return Ok(Step::Charged);
            }
            IntentStatus::RequiresAction => Decline::of(Some("authentication_required"), None),
            // Not charged: a decline is the card's own answer; anything else (never
            // confirmed, cancelled) charged nothing and is nobody's failure.
            IntentStatus::NotCharged(Some(decline)) => decline,
            IntentStatus::NotCharged(None) => {
                svc.recharges.abandoned(org, &a.id, "not_charged", now).await?;
                return Ok(Step::Abandoned);
            }
            IntentStatus::InProgress(status) => {
                tracing::info!(org = %org, attempt = a.id, %status, "payment not final; settled later");
                return Ok(Step::Pending);
            }
        },
        Err(GatewayError::Declined { decline, .. }) => decline,
        Err(e) => {
            alarm(org, &a.id, &e);
            return Ok(Step::Pending);
        }
    };
    svc.recharges
        .failed(org, &a.id, &decline, intent.as_deref(), now)
        .await?;
    Ok(Step::Failed(decline.reason))
}

/// The top-up's credit, once (the webhook may have made it already), and the payment
/// remembered for its refunds and disputes.
async fn credit(svc: &Recharge, org: &OrgId, a: &Attempt, intent: &str) -> Result<(), StoreError> {
    let amount =
        agent_credits_domain::PositiveUsd::new(a.amount).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let req = recharge::top_up(org.clone(), amount, intent)
        .ok_or_else(|| StoreError::Invalid(format!("unusable payment intent id {intent}")))?;
    let record = PaymentRecord {
        payment_intent: intent.to_owned(),
        org: org.clone(),
        kind: EntryKind::AutoTopUp,
        credits: a.amount,
        charged_cents: cents_of(a.amount)?,
        credit_key: req.key().to_string(),
    };
    match svc.store.credit_payment(req, &record).await? {
        Ok(_) => Ok(()),
        Err(refusal) => Err(StoreError::Invalid(format!("a top-up came back {refusal:?}"))),
    }
}

fn cents_of(amount: Usd) -> Result<u64, StoreError> {
    amount
        .to_cents()
        .ok()
        .and_then(|c| u64::try_from(c).ok())
        .ok_or_else(|| StoreError::Invalid(format!("{amount} is not whole cents")))
}
