//! The reconcile function: checks the money the table holds against itself and against
//! Stripe, per org or for the whole table, and publishes each mismatch to the alerts bus
//! as `reconciliation_mismatch` with its evidence. It never changes money: it reads the
//! table and Stripe, and writes only events.
//!
//! Per wallet (every wallet of the table, or one org's):
//! - `ledger_gap`: the entries are `TX#1..n` with `n` the wallet's version, none missing;
//! - `ledger_sum`: each entry's `balance_after` is the running sum of the amounts, and the
//!   sum is the stored balance;
//! - `buckets`: base + rollover + purchased is the stored balance, held is within it, and
//!   the stored available is balance less held.
//!
//! Against Stripe (the PaymentIntents of the last `RECONCILE_WINDOW_DAYS`, listed once):
//! - `payment_mismatch`: a credited payment (its `STRIPE#<pi>` record) whose PaymentIntent
//!   is not a succeeded one of the amount recorded, or whose credit entry is missing or of
//!   another amount;
//! - `payment_not_credited`: a succeeded PaymentIntent of ours (its metadata names an
//!   org) older than `RECONCILE_GRACE_SECONDS` that no entry credited; `payment_unrecorded`
//!   when it was credited but its record is missing (refunds could not find the org);
//! - `refund_not_taken`, `refund_amount`: a refund Stripe counts whose take-back is
//!   missing or is not the payment's share (taken plus shortfall); `refund_unknown`: a
//!   take-back of a refund Stripe does not have, or that failed and was not given back.
//!
//! And alerts: `notification_unpublished`, a notification of the last two days (older than
//! an hour) that the notifier never marked published.
//!
//! Plan invoices' PaymentIntents carry no metadata of ours; they are not listed here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use agent_credits_domain::{
    Bucket, BucketDelta, Clock, EntryKind, LedgerEntry, OrgId, PaymentLookup, SignedUsd, StoreError, Usd,
};
use agent_credits_dynamo::{DynamoWalletStore, PaymentRecord, StoredWallet};
use agent_credits_stripe::{PaymentSeen, StripeGateway};
use serde::Serialize;
use serde_json::{Value, json};

/// The reconcile function's settings, read once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub table: String,
    /// Where mismatches go (`EVENT_BUS_NAME`); absent: reported only.
    pub bus: Option<String>,
    pub stripe_api_base: Option<String>,
    /// How far back Stripe's PaymentIntents are listed (`RECONCILE_WINDOW_DAYS`, 35).
    pub window: chrono::Duration,
    /// How old a PaymentIntent must be before its credit is expected
    /// (`RECONCILE_GRACE_SECONDS`, 600: the webhook and the recharge settle it in seconds).
    pub grace: chrono::Duration,
}

impl agent_credits_aws::settings::FromEnv for Settings {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        use agent_credits_aws::settings::{required, seconds};
        let days = seconds(&get, "RECONCILE_WINDOW_DAYS", 35, 1..=400)?;
        let grace = seconds(&get, "RECONCILE_GRACE_SECONDS", 600, 0..=86_400)?;
        Ok(Settings {
            table: required(&get, "TABLE_NAME")?,
            bus: get("EVENT_BUS_NAME").filter(|b| !b.is_empty()),
            stripe_api_base: get("STRIPE_API_BASE"),
            window: chrono::Duration::days(days),
            grace: chrono::Duration::seconds(grace),
        })
    }
}

pub struct Reconciler {
    pub store: DynamoWalletStore,
    pub stripe: Arc<StripeGateway>,
    /// The EventBridge client and bus mismatches are published to.
    pub publish_to: Option<(aws_sdk_eventbridge::Client, String)>,
    pub clock: Arc<dyn Clock>,
    pub window: chrono::Duration,
    pub grace: chrono::Duration,
}

/// One thing that does not add up, with what shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    pub check: &'static str,
    pub org: Option<String>,
    pub evidence: Value,
}

/// What one run looked at and found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub run: String,
    pub org: Option<String>,
    pub wallets: usize,
    pub entries: usize,
    pub payments: usize,
    pub refunds: usize,
    pub intents: usize,
    pub mismatches: Vec<Mismatch>,
    /// Mismatches published to the bus.
    pub published: usize,
    /// Why the payments were not reconciled (Stripe out of reach), when they were not.
    pub incomplete: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Stripe: {0}")]
    Stripe(String),
    #[error("EventBridge: {0}")]
    Bus(String),
}

fn mismatch(check: &'static str, org: &OrgId, evidence: Value) -> Mismatch {
    Mismatch {
        check,
        org: Some(org.to_string()),
        evidence,
    }
}

/// The checks of one wallet against its own ledger.
pub fn check_wallet(wallet: &StoredWallet, ledger: &[LedgerEntry]) -> Vec<Mismatch> {
    let org = &wallet.org;
    let mut found = vec![];
    let mut sum = SignedUsd::ZERO;
    let mut buckets_moved = BucketDelta::default();
    for (i, e) in ledger.iter().enumerate() {
        let expected = i as u64 + 1;
        if e.seq != expected {
            found.push(mismatch(
                "ledger_gap",
                org,
                json!({"expected_seq": expected, "found_seq": e.seq}),
            ));
            break;
        }
        let added = sum.checked_add(e.amount).and_then(|total| {
            buckets_moved = BucketDelta {
                base: buckets_moved.base.checked_add(e.buckets.base)?,
                rollover: buckets_moved.rollover.checked_add(e.buckets.rollover)?,
                purchased: buckets_moved.purchased.checked_add(e.buckets.purchased)?,
                expiring: buckets_moved.expiring.checked_add(e.buckets.expiring)?,
                earned: buckets_moved.earned.checked_add(e.buckets.earned)?,
            };
            Ok(total)
        });
        sum = match added {
            Ok(s) => s,
            Err(_) => return vec![mismatch("ledger_sum", org, json!({"overflow_at_seq": e.seq}))],
        };
        if SignedUsd::credit(e.balance_after) != sum {
            found.push(mismatch(
                "ledger_sum",
                org,
                json!({"seq": e.seq, "balance_after": e.balance_after, "sum_of_amounts": sum}),
            ));
            break;
        }
    }
    let last = ledger.last().map_or(0, |e| e.seq);
    if last != wallet.version {
        found.push(mismatch(
            "ledger_gap",
            org,
            json!({"last_seq": last, "wallet_version": wallet.version}),
        ));
    }
    if sum != SignedUsd::credit(wallet.balance) {
        found.push(mismatch(
            "ledger_sum",
            org,
            json!({"sum_of_amounts": sum, "balance": wallet.balance, "entries": ledger.len()}),
        ));
    }
    // The buckets as stored: each the sum of what the entries moved in it, together the
    // balance, and held within it.
    let matches_moves = Bucket::DEBIT_ORDER
        .iter()
        .all(|b| SignedUsd::credit(wallet.buckets.get(*b)) == buckets_moved.get(*b));
    let total = wallet.buckets.total();
    let available = wallet.balance.saturating_sub(wallet.held);
    if !matches_moves
        || total.ok() != Some(wallet.balance)
        || wallet.held > wallet.balance
        || wallet.available != available
    {
        found.push(mismatch(
            "buckets",
            org,
            json!({
                "buckets": wallet.buckets,
                "balance": wallet.balance, "held": wallet.held, "available": wallet.available,
                "entries_moved": buckets_moved,
            }),
        ));
    }
    found
}

/// One run: every wallet (or `only`'s), then the payments against Stripe; mismatches
/// published when a bus is set.
pub async fn reconcile(r: &Reconciler, only: Option<&OrgId>) -> Result<Report, ReconcileError> {
    let now = r.clock.now();
    let mut report = Report {
        run: format!("rc_{}_{:08x}", now.format("%Y%m%dT%H%M%SZ"), fastrand::u32(..)),
        org: only.map(ToString::to_string),
        ..Default::default()
    };
    let orgs = match only {
        Some(org) => vec![org.clone()],
        None => r.store.wallet_orgs().await?,
    };
    let mut ledgers: HashMap<OrgId, Vec<LedgerEntry>> = HashMap::new();
    for org in orgs {
        let Some(wallet) = r.store.stored_wallet(&org).await? else {
            continue;
        };
        // The entries up to the version read: a change committed meanwhile is the next
        // run's, so a busy wallet is never reported for being busy.
        let ledger = r.store.ledger_through(&org, wallet.version).await?;
        report.wallets += 1;
        report.entries += ledger.len();
        report.mismatches.extend(check_wallet(&wallet, &ledger));
        ledgers.insert(org, ledger);
    }
    // Alerts the notifier never published (the bus refused them through every retry, or
    // they left the stream's 24 hours unread): written between two days and an hour ago,
    // so each is reported by a daily run once or twice, and one in flight never is.
    for (org, id, kind, created_at) in r
        .store
        .unpublished_notifications(
            only,
            now - chrono::Duration::days(2),
            now - chrono::Duration::hours(1),
        )
        .await?
    {
        report.mismatches.push(mismatch(
            "notification_unpublished",
            &org,
            json!({"notification": id, "kind": kind, "created_at": created_at}),
        ));
    }
    // Stripe out of reach (or refusing) leaves the run incomplete, never silent: what the
    // table's own checks found is still logged and published.
    if let Err(e) = payments(r, only, &ledgers, &mut report).await {
        tracing::error!(alarm = "reconciliation_incomplete", error = %e, "payments not reconciled");
        report.incomplete = Some(e.to_string());
    }
    for m in &report.mismatches {
        tracing::error!(alarm = "reconciliation_mismatch", check = m.check, org = ?m.org, evidence = %m.evidence);
    }
    if let Some((events, bus)) = &r.publish_to {
        report.published = publish(events, bus, &report).await?;
    }
    Ok(report)
}

/// The entry of `ledger` made under idempotency key `key`.
fn entry<'a>(ledger: &'a [LedgerEntry], key: &str) -> Option<&'a LedgerEntry> {
    ledger.iter().find(|e| e.idempotency_key.as_str() == key)
}

/// What a payment stands for when money goes back for it: an annual plan invoice whose
/// months were ended, its first month and every month granted before the end (as the
/// webhooks function takes it back); any other payment, what it credited.
fn stands_for(record: &PaymentRecord, ledger: &[LedgerEntry]) -> Usd {
    let Some(invoice) = record.credit_key.strip_prefix("stripe:invoice:") else {
        return record.credits;
    };
    if entry(ledger, &format!("stripe:invoice:{invoice}:ended")).is_none() {
        return record.credits;
    }
    let month = format!("stripe:invoice:{invoice}:m");
    let months = ledger
        .iter()
        .filter(|e| e.idempotency_key.as_str().starts_with(&month))
        .count();
    record
        .credits
        .checked_mul_u32(u32::try_from(months).unwrap_or(u32::MAX).saturating_add(1))
        .unwrap_or(record.credits)
}

async fn payments(
    r: &Reconciler,
    only: Option<&OrgId>,
    ledgers: &HashMap<OrgId, Vec<LedgerEntry>>,
    report: &mut Report,
) -> Result<(), ReconcileError> {
    let now = r.clock.now();
    let intents: BTreeMap<String, PaymentSeen> = r
        .stripe
        .payments_since(now - r.window)
        .await
        .map_err(|e| ReconcileError::Stripe(e.to_string()))?
        .into_iter()
        .filter(|p| only.is_none_or(|o| p.org.as_deref() == Some(o.as_str())))
        .map(|p| (p.id.clone(), p))
        .collect();
    report.intents = intents.len();
    let records: Vec<PaymentRecord> = match only {
        None => r.store.payment_records().await?,
        Some(org) => {
            let mut records = vec![];
            for e in ledgers.get(org).into_iter().flatten() {
                if let Some(pi) = e.idempotency_key.as_str().strip_prefix("stripe:payment:")
                    && let Some(record) = r.store.payment(pi).await?
                {
                    records.push(record);
                }
            }
            records
        }
    };
    // Credited payments against Stripe.
    for record in &records {
        let Some(ledger) = ledgers.get(&record.org) else {
            report.mismatches.push(mismatch(
                "payment_mismatch",
                &record.org,
                json!({"payment_intent": record.payment_intent, "why": "its org has no wallet"}),
            ));
            continue;
        };
        report.payments += 1;
        let credited = entry(ledger, &record.credit_key);
        let seen = match intents.get(&record.payment_intent) {
            Some(p) => Some(p.clone()),
            // Older than the window: looked up only when its credit is recent.
            None if credited.is_none_or(|e| e.created_at >= now - r.window) => r
                .stripe
                .payment_seen(&record.payment_intent)
                .await
                .map_err(|e| ReconcileError::Stripe(e.to_string()))?,
            None => continue,
        };
        // Paid moments ago: its credit may have committed after its ledger was read.
        if seen
            .as_ref()
            .is_some_and(|p| p.created > (now - r.grace).timestamp())
        {
            continue;
        }
        let evidence = json!({
            "payment_intent": record.payment_intent,
            "recorded_cents": record.charged_cents,
            "recorded_credits": record.credits,
            "stripe_status": seen.as_ref().map(|p| p.status.clone()),
            "stripe_amount_received": seen.as_ref().map(|p| p.amount_received),
            "credit_entry": credited.map(|e| json!({"seq": e.seq, "amount": e.amount})),
        });
        let amount_ok = seen.as_ref().is_some_and(|p| {
            p.succeeded && u64::try_from(p.amount_received).ok() == Some(record.charged_cents)
        });
        // A plan's renewal grants the base and, in the same entry, expires what passed the
        // rollover cap: its amount is not the grant, so only its presence is checked.
        let credit_ok = credited.is_some_and(|e| {
            e.amount == SignedUsd::credit(record.credits) || record.kind == EntryKind::PlanGrant
        });
        if !amount_ok || !credit_ok {
            report
                .mismatches
                .push(mismatch("payment_mismatch", &record.org, evidence));
        }
        if let Some(charge) = seen.as_ref().and_then(|p| p.charge.as_deref()) {
            refunds(r, record, charge, ledger, report).await?;
        }
    }
    // Credits of Stripe payments whose record is missing (refunds could not find them).
    let recorded: HashMap<&str, &PaymentRecord> =
        records.iter().map(|p| (p.payment_intent.as_str(), p)).collect();
    let mut unrecorded = std::collections::HashSet::new();
    for (org, ledger) in ledgers {
        for e in ledger {
            let Some(pi) = e.idempotency_key.as_str().strip_prefix("stripe:payment:") else {
                continue;
            };
            if recorded.contains_key(pi) || e.created_at > now - r.grace {
                continue;
            }
            unrecorded.insert(pi.to_owned());
            report.mismatches.push(mismatch(
                "payment_unrecorded",
                org,
                json!({"payment_intent": pi, "credit_entry": {"seq": e.seq, "amount": e.amount}}),
            ));
        }
    }
    // Stripe's succeeded payments of ours against the credits.
    for p in intents.values() {
        let Some(org) = p.org.as_deref().and_then(|o| OrgId::parse(o).ok()) else {
            continue;
        };
        // An org this table has no wallet of: another deployment's on the same account.
        if !ledgers.contains_key(&org) {
            continue;
        }
        if !p.succeeded
            || recorded.contains_key(p.id.as_str())
            || unrecorded.contains(&p.id)
            || p.created > (now - r.grace).timestamp()
        {
            continue;
        }
        let key = format!("stripe:payment:{}", p.id);
        let credited = ledgers.get(&org).and_then(|l| entry(l, &key));
        let evidence = json!({
            "payment_intent": p.id, "amount_received": p.amount_received, "created": p.created,
            "credit_entry": credited.map(|e| json!({"seq": e.seq, "amount": e.amount})),
        });
        let check = if credited.is_some() {
            "payment_unrecorded"
        } else {
            "payment_not_credited"
        };
        report.mismatches.push(mismatch(check, &org, evidence));
    }
    Ok(())
}

/// A credited payment's refunds at Stripe against its take-backs.
async fn refunds(
    r: &Reconciler,
    record: &PaymentRecord,
    charge: &str,
    ledger: &[LedgerEntry],
    report: &mut Report,
) -> Result<(), ReconcileError> {
    let org = &record.org;
    let seen = r
        .stripe
        .refunds(charge)
        .await
        .map_err(|e| ReconcileError::Stripe(e.to_string()))?;
    let whole = i64::try_from(record.charged_cents).unwrap_or(i64::MAX);
    for refund in &seen {
        report.refunds += 1;
        let taken = entry(ledger, &format!("stripe:refund:{}", refund.id));
        let given_back = entry(ledger, &format!("stripe:refund:{}:failed", refund.id)).is_some();
        let share = stands_for(record, ledger)
            .pro_rata(refund.amount_cents, whole)
            .map_err(|e| ReconcileError::Stripe(e.to_string()))?;
        let evidence = json!({
            "payment_intent": record.payment_intent, "refund": refund.id,
            "refund_cents": refund.amount_cents, "failed": refund.failed, "share": share,
            "take_back": taken.map(|e| json!({"seq": e.seq, "amount": e.amount, "shortfall": e.shortfall})),
        });
        match (refund.counts(), taken) {
            (true, None) => report
                .mismatches
                .push(mismatch("refund_not_taken", org, evidence)),
            (true, Some(e)) if e.amount.magnitude().checked_add(e.shortfall).ok() != Some(share) => {
                report.mismatches.push(mismatch("refund_amount", org, evidence));
            }
            // A failed refund that had taken nothing (the credits were spent) has nothing to
            // give back, and no entry says so.
            (false, Some(e)) if !given_back && !e.amount.is_zero() => {
                report.mismatches.push(mismatch("refund_unknown", org, evidence));
            }
            _ => {}
        }
    }
    // Take-backs of this payment's refunds that Stripe does not have.
    for e in ledger.iter().filter(|e| e.kind == EntryKind::Refund) {
        if e.external.payment_intent.as_deref() != Some(record.payment_intent.as_str()) {
            continue;
        }
        let Some(id) = e.external.refund.as_deref() else {
            continue;
        };
        if !seen.iter().any(|s| s.id == id) {
            report.mismatches.push(mismatch(
                "refund_unknown",
                org,
                json!({"payment_intent": record.payment_intent, "refund": id, "take_back": {"seq": e.seq, "amount": e.amount}}),
            ));
        }
    }
    Ok(())
}

/// Each mismatch as a `reconciliation_mismatch` event, ten to a `PutEvents`.
async fn publish(
    events: &aws_sdk_eventbridge::Client,
    bus: &str,
    report: &Report,
) -> Result<usize, ReconcileError> {
    let mut published = 0;
    for (chunk_no, chunk) in report.mismatches.chunks(10).enumerate() {
        let mut entries = vec![];
        for (i, m) in chunk.iter().enumerate() {
            let detail = json!({
                "event_id": format!("{}/{}", report.run, chunk_no * 10 + i),
                "run": report.run, "check": m.check, "org": m.org, "evidence": m.evidence,
            });
            entries.push(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(bus)
                    .source(notifier::SOURCE)
                    .detail_type("reconciliation_mismatch")
                    .detail(detail.to_string())
                    .build(),
            );
        }
        let out = events
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                ReconcileError::Bus(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string())
            })?;
        if out.failed_entry_count() > 0 {
            return Err(ReconcileError::Bus(format!(
                "{} entries refused",
                out.failed_entry_count()
            )));
        }
        published += chunk.len();
    }
    Ok(published)
}
