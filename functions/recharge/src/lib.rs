//! The recharge function: one sweep per EventBridge Scheduler tick (every minute in the
//! template) over the orgs marked due, topping each up from its saved card.
//!
//! The debit that takes an org's available credits below its threshold marks the wallet
//! due in the same transaction (sparse `gsi1`, `DUE#RECHARGE`), so a sweep reads only the
//! marked wallets, never the table. The schedule is the only trigger: a due org waits at
//! most a minute, and the debit path stays free of Stripe calls and their latency.
//!
//! For each due org:
//! 1. Off, suspended (the last charge failed), or no longer below the threshold: the mark
//!    is cleared (only the mark that was read; a newer one stands).
//! 2. Claim: the org's one attempt in flight and one count against the day's cap (top-ups
//!    and dollars), in one conditional transaction. Two sweeps at once: one claims.
//! 3. Charge: an off-session PaymentIntent on the saved card, confirmed, with the attempt
//!    id as Stripe's idempotency key and `metadata[purpose]=auto_recharge`.
//! 4. Succeeded: the `auto_top_up` credit, keyed on the PaymentIntent (the webhook's
//!    `payment_intent.succeeded` credits under the same key, so once between them), with
//!    `credit_auto_recharge_triggered` and the end of the mark in the same write; then the
//!    attempt ends.
//! 5. Declined, authentication required, no card: the attempt fails with the reason,
//!    `credit_purchase_failed` is written once, auto-recharge is suspended until the
//!    settings or card change, and the org stays as it is (paused at zero).
//! 6. Anything else (Stripe unreachable, a crash after Stripe's success): the attempt
//!    stays in flight and the mark stays; a later sweep, once the attempt is older than
//!    `RECHARGE_RESUME_AFTER_SECONDS`, sends the same request again under the same
//!    idempotency key (Stripe answers with the first result, charging nothing twice) and
//!    settles it.

use std::sync::Arc;

use agent_credits_domain::{Clock, OrgId, Outcome, StoreError, recharge};
use agent_credits_dynamo::{Claim, Due, DynamoWalletStore, PaymentRecord, RechargeConfig, RechargeStore};
use serde::Serialize;
use stripe::{IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_core::payment_intent::{CreatePaymentIntent, CreatePaymentIntentOffSession};
use stripe_shared::{PaymentIntent, PaymentIntentStatus};
use stripe_types::Currency;

pub struct Recharge {
    pub store: DynamoWalletStore,
    pub recharges: RechargeStore,
    pub stripe: stripe::Client,
    pub clock: Arc<dyn Clock>,
    /// How old an attempt in flight must be before a sweep takes it over.
    pub resume_after: chrono::Duration,
}

/// What one sweep did, logged and returned to the scheduler.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub due: usize,
    pub charged: usize,
    pub failed: usize,
    pub pending: usize,
    pub in_flight: usize,
    pub cap_reached: usize,
    pub not_due: usize,
    pub errors: usize,
}

/// What happened to one due org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Charged,
    Failed(String),
    /// Stripe's answer is not final (or did not come): a later sweep settles it.
    Pending,
    InFlight,
    CapReached,
    NotDue,
}

/// One sweep over every due org.
pub async fn sweep(svc: &Recharge) -> Result<SweepReport, StoreError> {
    let due = svc.recharges.due().await?;
    let mut report = SweepReport {
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
    let Some(config) = svc.recharges.config(org).await? else {
        svc.recharges.clear_due(due).await?;
        return Ok(Step::NotDue);
    };
    if let Some((attempt, since)) = &config.in_flight {
        if now - *since < svc.resume_after {
            return Ok(Step::InFlight);
        }
        tracing::warn!(org = %org, attempt, "resuming an attempt left in flight");
        return charge(svc, org, attempt, &config).await;
    }
    let wallet = svc.recharges.wallet(org).await?;
    let available = wallet
        .available()
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    if !config.settings.enabled || config.suspended.is_some() || available >= config.settings.threshold {
        svc.recharges.clear_due(due).await?;
        return Ok(Step::NotDue);
    }
    let attempt = new_attempt_id();
    match svc.recharges.claim(org, &attempt, &config, now).await? {
        Claim::Claimed => charge(svc, org, &attempt, &config).await,
        Claim::InFlight(..) => Ok(Step::InFlight),
        // The mark stays: tomorrow's first sweep tops it up.
        Claim::CapReached => Ok(Step::CapReached),
        Claim::Off => {
            svc.recharges.clear_due(due).await?;
            Ok(Step::NotDue)
        }
    }
}

fn new_attempt_id() -> String {
    let mut rng = fastrand::Rng::new();
    let tail: String = std::iter::repeat_with(|| rng.alphanumeric()).take(24).collect();
    format!("ra_{tail}")
}

/// Sends the attempt's PaymentIntent (again, for a resumed attempt: the idempotency key
/// makes Stripe answer with the first result) and settles what Stripe answered.
pub async fn charge(
    svc: &Recharge,
    org: &OrgId,
    attempt: &str,
    config: &RechargeConfig,
) -> Result<Step, StoreError> {
    let sent = send_intent(svc, org, attempt, config).await;
    settle(svc, org, attempt, config, sent).await
}

/// The off-session PaymentIntent of `attempt`, as Stripe answers it.
pub async fn send_intent(
    svc: &Recharge,
    org: &OrgId,
    attempt: &str,
    config: &RechargeConfig,
) -> Result<PaymentIntent, StripeError> {
    let amount = config.settings.amount.usd();
    let key = IdempotencyKey::new(attempt).map_err(|e| StripeError::ClientError(e.to_string()))?;
    CreatePaymentIntent::new(config.settings.amount_cents(), Currency::USD)
        .customer(config.customer.as_str())
        .payment_method(config.payment_method.as_str())
        .confirm(true)
        .off_session(CreatePaymentIntentOffSession::Bool(true))
        .description("agent-credits auto-recharge")
        .metadata(std::collections::HashMap::from([
            ("purpose".to_owned(), recharge::RECHARGE_PURPOSE.to_owned()),
            ("org".to_owned(), org.to_string()),
            ("attempt".to_owned(), attempt.to_owned()),
            ("credits_usd".to_owned(), amount.to_string()),
            ("price_usd".to_owned(), amount.to_string()),
        ]))
        .customize()
        .request_strategy(RequestStrategy::Idempotent(key))
        .send(&svc.stripe)
        .await
}

pub async fn settle(
    svc: &Recharge,
    org: &OrgId,
    attempt: &str,
    config: &RechargeConfig,
    sent: Result<PaymentIntent, StripeError>,
) -> Result<Step, StoreError> {
    let now = svc.clock.now();
    match sent {
        Ok(pi) if pi.status == PaymentIntentStatus::Succeeded => {
            credit(svc, org, config, pi.id.as_str()).await?;
            svc.recharges.succeeded(org, attempt, pi.id.as_str(), now).await?;
            Ok(Step::Charged)
        }
        Ok(pi) if pi.status == PaymentIntentStatus::RequiresAction => {
            let reason = "authentication_required";
            svc.recharges
                .failed(org, attempt, "requires_action", reason, Some(pi.id.as_str()), now)
                .await?;
            Ok(Step::Failed(reason.to_owned()))
        }
        Ok(pi) => {
            tracing::info!(org = %org, attempt, status = %pi.status, "payment not final; settled later");
            Ok(Step::Pending)
        }
        Err(StripeError::Stripe(e, status)) if e.type_.as_str() == "card_error" || status == 402 => {
            let reason = e
                .decline_code
                .clone()
                .or_else(|| e.code.as_ref().map(|c| c.as_str().to_owned()))
                .unwrap_or_else(|| "card_error".to_owned());
            let intent = e.payment_intent.as_ref().map(|p| p.id.to_string());
            let state = if reason == "authentication_required" {
                "requires_action"
            } else {
                "failed"
            };
            svc.recharges
                .failed(org, attempt, state, &reason, intent.as_deref(), now)
                .await?;
            Ok(Step::Failed(reason))
        }
        Err(StripeError::Stripe(e, status)) if (400..500).contains(&status) => {
            // No such customer or payment method: the saved card is gone.
            let reason = e
                .code
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_else(|| "no_saved_card".to_owned());
            svc.recharges
                .failed(org, attempt, "failed", &reason, None, now)
                .await?;
            Ok(Step::Failed(reason))
        }
        Err(e) => {
            tracing::warn!(org = %org, attempt, error = %e, "Stripe did not answer; the attempt stays in flight");
            Ok(Step::Pending)
        }
    }
}

/// The top-up's credit, once (the webhook may have made it already), and the payment
/// remembered for its refunds and disputes.
async fn credit(
    svc: &Recharge,
    org: &OrgId,
    config: &RechargeConfig,
    intent: &str,
) -> Result<(), StoreError> {
    let amount = config.settings.amount;
    let req = recharge::top_up(org.clone(), amount, intent)
        .ok_or_else(|| StoreError::Invalid(format!("unusable payment intent id {intent}")))?;
    let record = PaymentRecord {
        payment_intent: intent.to_owned(),
        org: org.clone(),
        kind: agent_credits_domain::EntryKind::AutoTopUp,
        credits: amount.usd(),
        charged_cents: u64::try_from(config.settings.amount_cents()).unwrap_or(0),
        credit_key: req.key().to_string(),
    };
    match svc.store.credit_payment(req, &record).await? {
        Outcome::Committed(_) | Outcome::Replayed(_) => Ok(()),
        other => Err(StoreError::Invalid(format!("a top-up came back {other:?}"))),
    }
}
