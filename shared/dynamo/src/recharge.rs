//! Auto-recharge records (see `infra/TABLE.md`):
//!
//! - `ORG#<org>` / `RECHARGE`: the org's settings, the saved card to charge, why it is
//!   suspended (a failed charge), and the attempt in flight (`in_flight`, one at most).
//! - `ORG#<org>` / `RECHARGE#<attempt>`: one charge attempt, pending → succeeded, failed
//!   or requires_action.
//! - `ORG#<org>` / `RECHARGE_DAY#<yyyy-mm-dd>`: top-ups claimed that day (UTC), `count`
//!   and `usd`, under the daily cap.
//!
//! The wallet carries the trigger (enabled, threshold) so that the debit that takes it
//! below the threshold marks it due (`gsi1pk = DUE#RECHARGE`) in the same transaction; the
//! sweep reads only marked wallets.

use agent_credits_domain::{NotificationKind, OrgId, RechargeSettings, StoreError, Wallet};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::attr::{Item, Reader, n_u64, n_usd, s};
use crate::items::{self, RECHARGE_DUE_PK, WALLET_SK, key, org_pk, timestamp, wallet_from_item};
use crate::store::{get_consistent, put, sdk_error};
use crate::update::UpdateExpr;

const CONFIG_SK: &str = "RECHARGE";

fn attempt_sk(attempt: &str) -> String {
    format!("RECHARGE#{attempt}")
}

fn day_sk(now: DateTime<Utc>) -> String {
    format!("RECHARGE_DAY#{}", now.format("%Y-%m-%d"))
}

/// An org's auto-recharge as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RechargeConfig {
    pub settings: RechargeSettings,
    /// The Stripe customer and saved card to charge off-session.
    pub customer: String,
    pub payment_method: String,
    /// Why recharge is suspended (the last charge failed); `None` when it may run.
    pub suspended: Option<String>,
    /// The attempt in flight and when it was claimed.
    pub in_flight: Option<(String, DateTime<Utc>)>,
}

/// A due org as the sweep finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub org: OrgId,
    /// The mark's sort key: clearing the mark is conditioned on it, so a newer mark stands.
    pub mark: String,
}

/// What claiming a top-up found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Claimed,
    /// Another attempt is in flight (claimed at the time given).
    InFlight(String, DateTime<Utc>),
    /// The day's cap is reached.
    CapReached,
    /// Auto-recharge is off or suspended.
    Off,
}

#[derive(Debug, Clone)]
pub struct RechargeStore {
    client: Client,
    table: std::sync::Arc<str>,
}

impl RechargeStore {
    pub fn new(client: Client, table: impl Into<std::sync::Arc<str>>) -> RechargeStore {
        RechargeStore {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Saves the org's settings and card, lifts any suspension (the settings or the card
    /// changed), and sets the wallet's trigger; an org already below the threshold is
    /// marked due at once. The attempt in flight, if any, is left to finish.
    pub async fn configure(
        &self,
        org: &OrgId,
        settings: &RechargeSettings,
        customer: &str,
        payment_method: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut config = UpdateExpr::default();
        config.set("type", s("recharge"));
        config.set("enabled", AttributeValue::Bool(settings.enabled));
        config.set("threshold", n_usd(settings.threshold));
        config.set("amount", n_usd(settings.amount.usd()));
        config.set("max_per_day", n_u64(u64::from(settings.max_per_day)));
        config.set("max_usd_per_day", n_usd(settings.max_usd_per_day));
        config.set("customer", s(customer));
        config.set("payment_method", s(payment_method));
        config.set("updated_by", s(by));
        config.set("updated_at", timestamp(now));
        config.remove("suspended");
        let wallet = self.wallet(org).await?;
        let mut w = UpdateExpr::default();
        w.set("recharge_enabled", AttributeValue::Bool(settings.enabled));
        w.set("recharge_threshold", n_usd(settings.threshold));
        let available = wallet
            .available()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        if settings.enabled && available < settings.threshold {
            w.set_if_absent("gsi1pk", s(RECHARGE_DUE_PK));
            w.set_if_absent("gsi1sk", s(mark(now, org)));
        } else if !settings.enabled {
            w.remove("gsi1pk");
            w.remove("gsi1sk");
        }
        w.condition("attribute_exists(pk)");
        self.client
            .transact_write_items()
            .transact_items(config.update(&self.table, key(org_pk(org), CONFIG_SK))?)
            .transact_items(w.update(&self.table, key(org_pk(org), WALLET_SK))?)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    pub async fn wallet(&self, org: &OrgId) -> Result<Wallet, StoreError> {
        match get_consistent(&self.client, &self.table, key(org_pk(org), WALLET_SK)).await? {
            Some(item) => wallet_from_item(org, &item),
            None => Ok(Wallet::empty(org.clone())),
        }
    }

    pub async fn config(&self, org: &OrgId) -> Result<Option<RechargeConfig>, StoreError> {
        let Some(item) = get_consistent(&self.client, &self.table, key(org_pk(org), CONFIG_SK)).await? else {
            return Ok(None);
        };
        let r = Reader::new(&item);
        let invalid = |e: agent_credits_domain::RechargeSettingsError| r.corrupt(e.to_string());
        let settings = RechargeSettings::new(
            r.opt_bool("enabled")?.unwrap_or(false),
            r.usd("threshold")?,
            r.usd("amount")?,
            u32::try_from(r.u64("max_per_day")?).map_err(|_| r.corrupt("max_per_day"))?,
            r.usd("max_usd_per_day")?,
        )
        .map_err(invalid)?;
        let in_flight = match r.opt_s("in_flight")? {
            Some(a) => Some((a.to_owned(), items::parse_time(&r, "in_flight_since")?)),
            None => None,
        };
        Ok(Some(RechargeConfig {
            settings,
            customer: r.s("customer")?.to_owned(),
            payment_method: r.s("payment_method")?.to_owned(),
            suspended: r.opt_s("suspended")?.map(str::to_owned),
            in_flight,
        }))
    }

    /// Every due org, oldest mark first: one Query of the sparse index, never a scan.
    pub async fn due(&self) -> Result<Vec<Due>, StoreError> {
        let mut due = vec![];
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&*self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :due")
                .expression_attribute_values(":due", s(RECHARGE_DUE_PK))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items() {
                let r = Reader::new(item);
                let pk = r.s(items::PK)?;
                let org = pk
                    .strip_prefix("ORG#")
                    .and_then(|o| OrgId::parse(o).ok())
                    .ok_or_else(|| r.corrupt("a due mark on an item that is no wallet"))?;
                due.push(Due {
                    org,
                    mark: r.s("gsi1sk")?.to_owned(),
                });
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(due),
            }
        }
    }

    /// Ends the due mark the sweep saw (a newer mark stands).
    pub async fn clear_due(&self, due: &Due) -> Result<(), StoreError> {
        let mut x = UpdateExpr::default();
        x.remove("gsi1pk");
        x.remove("gsi1sk");
        x.condition("#gsi1sk = :seen");
        x.value(":seen", s(due.mark.as_str()));
        let update = x.update(&self.table, key(org_pk(&due.org), WALLET_SK))?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(update)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if cancelled(&e) => Ok(()),
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// Claims one top-up: the org's only attempt in flight, counted against the day's cap,
    /// all in one transaction or not at all.
    pub async fn claim(
        &self,
        org: &OrgId,
        attempt: &str,
        config: &RechargeConfig,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let amount = config.settings.amount.usd();
        let mut c = UpdateExpr::default();
        c.set("in_flight", s(attempt));
        c.set("in_flight_since", timestamp(now));
        c.condition(
            "#enabled = :true AND attribute_not_exists(#suspended) AND attribute_not_exists(#in_flight)",
        );
        c.value(":true", AttributeValue::Bool(true));
        c.name_only("suspended");
        c.name_only("enabled");
        let room = config
            .settings
            .max_usd_per_day
            .checked_sub(amount)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut day = UpdateExpr::default();
        day.add("count", n_u64(1));
        day.add("usd", n_usd(amount));
        day.set("type", s("recharge_day"));
        // Kept a week for the record, then expired.
        let expires = (now + chrono::Duration::days(7)).timestamp();
        day.set("expires_at", n_u64(u64::try_from(expires).unwrap_or(0)));
        day.condition("attribute_not_exists(#count) OR (#count < :max_count AND #usd <= :room)");
        day.value(":max_count", n_u64(u64::from(config.settings.max_per_day)));
        day.value(":room", n_usd(room));
        let mut record = key(org_pk(org), attempt_sk(attempt));
        record.extend([
            ("type".to_owned(), s("recharge_attempt")),
            ("state".to_owned(), s("pending")),
            ("amount".to_owned(), n_usd(amount)),
            ("customer".to_owned(), s(config.customer.as_str())),
            ("payment_method".to_owned(), s(config.payment_method.as_str())),
            ("created_at".to_owned(), timestamp(now)),
        ]);
        let sent = self
            .client
            .transact_write_items()
            .transact_items(c.update(&self.table, key(org_pk(org), CONFIG_SK))?)
            .transact_items(day.update(&self.table, key(org_pk(org), day_sk(now)))?)
            .transact_items(put(&self.table, record, Some("attribute_not_exists(pk)"), false)?)
            .send()
            .await;
        let err = match sent {
            Ok(_) => return Ok(Claim::Claimed),
            Err(e) => e,
        };
        let reasons = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                e.cancellation_reasons().to_vec()
            }
            _ => return Err(sdk_error(err)),
        };
        let failed = |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
        if failed(0) {
            return Ok(match self.config(org).await? {
                Some(RechargeConfig {
                    in_flight: Some((a, since)),
                    ..
                }) => Claim::InFlight(a, since),
                _ => Claim::Off,
            });
        }
        if failed(1) {
            return Ok(Claim::CapReached);
        }
        Err(StoreError::Unavailable(
            format!(
                "claim cancelled: {:?}",
                reasons.iter().map(|r| r.code()).collect::<Vec<_>>()
            )
            .into(),
        ))
    }

    /// The attempt's PaymentIntent, once Stripe named it.
    pub async fn attempt_intent(&self, org: &OrgId, attempt: &str) -> Result<Option<String>, StoreError> {
        let item = get_consistent(&self.client, &self.table, key(org_pk(org), attempt_sk(attempt))).await?;
        Ok(match item {
            Some(item) => Reader::new(&item).opt_s("payment_intent")?.map(str::to_owned),
            None => None,
        })
    }

    /// The attempt's state (`pending`, `succeeded`, `failed`, `requires_action`).
    pub async fn attempt_state(&self, org: &OrgId, attempt: &str) -> Result<Option<String>, StoreError> {
        let item = get_consistent(&self.client, &self.table, key(org_pk(org), attempt_sk(attempt))).await?;
        Ok(match item {
            Some(item) => Some(Reader::new(&item).s("state")?.to_owned()),
            None => None,
        })
    }

    /// The attempt succeeded (its credit is committed): it ends, and the org may be
    /// charged again. Idempotent.
    pub async fn succeeded(
        &self,
        org: &OrgId,
        attempt: &str,
        intent: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut a = UpdateExpr::default();
        a.set("state", s("succeeded"));
        a.set("payment_intent", s(intent));
        a.set("updated_at", timestamp(now));
        a.condition("#state = :pending");
        a.value(":pending", s("pending"));
        self.end(org, attempt, a, None).await
    }

    /// The attempt failed (a decline, authentication required, no card): recorded, the
    /// org notified once (`credit_purchase_failed` with the reason), and auto-recharge
    /// suspended until the settings or the card change. Idempotent.
    pub async fn failed(
        &self,
        org: &OrgId,
        attempt: &str,
        state: &str,
        reason: &str,
        intent: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut a = UpdateExpr::default();
        a.set("state", s(state));
        a.set("reason", s(reason));
        if let Some(pi) = intent {
            a.set("payment_intent", s(pi));
        }
        a.set("updated_at", timestamp(now));
        a.condition("#state = :pending");
        a.value(":pending", s("pending"));
        let wallet = self.wallet(org).await?;
        let notice = failure_notification(&wallet, attempt, reason, now)?;
        self.end(org, attempt, a, Some((reason, notice))).await
    }

    async fn end(
        &self,
        org: &OrgId,
        attempt: &str,
        record: UpdateExpr,
        failure: Option<(&str, Item)>,
    ) -> Result<(), StoreError> {
        let mut config = UpdateExpr::default();
        config.remove("in_flight");
        config.remove("in_flight_since");
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(record.update(&self.table, key(org_pk(org), attempt_sk(attempt)))?);
        if let Some((reason, notice)) = failure {
            config.set("suspended", s(reason));
            // No more marks, and no mark left: nothing charges until the settings change.
            let mut w = UpdateExpr::default();
            w.set("recharge_enabled", AttributeValue::Bool(false));
            w.remove("gsi1pk");
            w.remove("gsi1sk");
            tx = tx
                .transact_items(w.update(&self.table, key(org_pk(org), WALLET_SK))?)
                .transact_items(put(&self.table, notice, None, false)?);
        }
        config.condition("#in_flight = :attempt");
        config.value(":attempt", s(attempt));
        tx = tx.transact_items(config.update(&self.table, key(org_pk(org), CONFIG_SK))?);
        match tx.send().await {
            Ok(_) => Ok(()),
            // Ended before (by the sweep or the webhook): nothing to do.
            Err(e) if cancelled(&e) => Ok(()),
            Err(e) => Err(sdk_error(e)),
        }
    }
}

fn cancelled<R>(e: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("TransactionCanceledException")
        && matches!(
            e.as_service_error(),
            Some(TransactWriteItemsError::TransactionCanceledException(c))
                if c.cancellation_reasons().iter().all(|r| matches!(r.code(), None | Some("None" | "ConditionalCheckFailed")))
        )
}

fn mark(now: DateTime<Utc>, org: &OrgId) -> String {
    format!("{}#{org}", now.to_rfc3339())
}

fn failure_notification(
    w: &Wallet,
    attempt: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Item, StoreError> {
    let available = w.available().map_err(|e| StoreError::Invalid(e.to_string()))?;
    let sk = format!(
        "NOTIF#{}#recharge#{attempt}",
        now.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    let mut item = key(org_pk(&w.org), sk);
    item.extend([
        ("type".to_owned(), s("notification")),
        (
            "kind".to_owned(),
            s(NotificationKind::CreditPurchaseFailed.as_str()),
        ),
        ("available".to_owned(), n_usd(available)),
        ("threshold".to_owned(), n_usd(w.settings.low_threshold())),
        ("seq".to_owned(), n_u64(w.version)),
        ("reason".to_owned(), s(reason)),
        ("attempt".to_owned(), s(attempt)),
        ("created_at".to_owned(), timestamp(now)),
        ("read".to_owned(), AttributeValue::Bool(false)),
    ]);
    Ok(item)
}
