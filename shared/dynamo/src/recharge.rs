//! Auto-recharge records (see `infra/TABLE.md`):
//!
//! - `ORG#<org>` / `RECHARGE`: the org's settings, the saved card to charge and the member
//!   it belongs to (`card_owner`), why it is suspended, and the attempt in flight
//!   (`in_flight`, one at most).
//! - `ORG#<org>` / `RECHARGE#<attempt>`: one charge attempt, pending → succeeded, failed,
//!   requires_action or abandoned, with exactly what it charges (amount, customer, card).
//! - `ORG#<org>` / `RECHARGE_DAY#<yyyy-mm-dd>`: top-ups claimed that day (UTC), `count`
//!   and `usd`, under the daily cap.
//!
//! The wallet carries the trigger (enabled, threshold) so that the debit that takes it
//! below the threshold marks it due (`gsi1pk = DUE#RECHARGE`) in the same transaction; the
//! sweep reads only marked wallets.
//!
//! Whose card: a card is charged only while the member it belongs to is a member with a
//! role that may manage auto-recharge ([`recharge::CARD_OWNER_ROLES`]). The claim checks it
//! in its own transaction; a membership change that takes that away suspends
//! auto-recharge and drops the card in the same transaction as the change
//! ([`card_owner_leaves`]).

use agent_credits_domain::{
    BillingMode, MemberId, NotificationKind, OrgId, RechargeSettings, StoreError, Usd, Wallet, recharge,
};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::attr::{Item, Reader, n_u64, n_usd, s};
use crate::items::{self, RECHARGE_DUE_PK, WALLET_SK, key, member_sk, org_pk, timestamp, wallet_from_item};
use crate::store::{get_consistent, put, sdk_error, unbuilt};
use crate::update::UpdateExpr;

pub(crate) const CONFIG_SK: &str = "RECHARGE";

fn attempt_sk(attempt: &str) -> String {
    format!("RECHARGE#{attempt}")
}

fn day_sk(now: DateTime<Utc>) -> String {
    format!("RECHARGE_DAY#{}", now.format("%Y-%m-%d"))
}

/// A saved card and the member it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// The member's own Stripe customer.
    pub customer: String,
    pub payment_method: String,
    pub owner: MemberId,
}

/// An org's auto-recharge as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RechargeConfig {
    pub settings: RechargeSettings,
    /// The card to charge off-session; `None` once its owner left.
    pub card: Option<Card>,
    /// Why recharge is suspended (a declined charge, the card's owner left); `None` when
    /// it may run.
    pub suspended: Option<String>,
    /// The attempt in flight and when it was claimed.
    pub in_flight: Option<(String, DateTime<Utc>)>,
}

/// One charge attempt, with exactly what it was claimed to charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: String,
    pub state: String,
    pub amount: Usd,
    pub customer: String,
    pub payment_method: String,
    pub card_owner: Option<MemberId>,
    pub payment_intent: Option<String>,
    pub created_at: DateTime<Utc>,
    /// How many times it was sent to Stripe.
    pub tries: u32,
}

/// Whether an attempt may be sent (again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Counted; send it.
    Go,
    /// It is no longer pending: settled meanwhile.
    Settled,
    /// What it was claimed under no longer holds (its card left, auto-recharge was turned
    /// off or suspended): never send it again; look its PaymentIntent up instead.
    Stop,
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
    /// The wallet gained credits since it was read (a top-up to a target is computed from
    /// what it held): nothing claimed, the next sweep looks again.
    Moved,
    /// Auto-recharge is off or suspended, or there is no card.
    Off,
    /// The card's owner is no longer a member with a role that may use it.
    CardOwnerLeft,
    /// The org has an open dispute: no top-up until it closes.
    Disputed,
}

/// Conditions a write of the wallet on its org being a credits org: only its wallet is
/// ever charged for (reference 000: byok and deferred wallets stay empty).
fn credits_only(w: &mut UpdateExpr) {
    w.name_only("billing_mode");
    w.condition("#billing_mode = :credits");
    w.value(":credits", s(BillingMode::Credits.as_str()));
}

/// What saving an org's auto-recharge settings did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Configured {
    Saved,
    /// The card's owner is not a member who may manage auto-recharge: nothing written.
    CardOwnerGone,
    /// Enabling, on an org that is not a credits org: its wallet stays empty (reference
    /// 000), so nothing is written.
    NotCredits,
}

#[derive(Debug, Clone)]
pub struct RechargeStore {
    client: Client,
    table: std::sync::Arc<str>,
}

/// A `ConditionCheck` that `member` is a member of `org` whose card auto-recharge may
/// charge: their role is one of [`recharge::CARD_OWNER_ROLES`].
fn card_owner_check(table: &str, org: &OrgId, member: &MemberId) -> Result<TransactWriteItem, StoreError> {
    let mut check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key(org_pk(org), member_sk(member))))
        .expression_attribute_names("#role", "role");
    let mut names = vec![];
    for (i, role) in recharge::CARD_OWNER_ROLES.iter().enumerate() {
        let name = format!(":card_role{i}");
        check = check.expression_attribute_values(&name, s(role.as_str()));
        names.push(name);
    }
    let check = check
        .condition_expression(format!("#role IN ({})", names.join(", ")))
        .build()
        .map_err(unbuilt)?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
}

/// What a membership change must write with it when it takes away the right of `member`
/// to have their card charged (they leave, or lose the role): the card leaves the org's
/// settings with them and, when auto-recharge was on, it is suspended (`card_owner_left`)
/// with a notification for the owners, and the org's due mark goes. When the card is not
/// theirs, a check that it still is not: a card saved by them meanwhile makes the change
/// retry and see it. `config` is the settings as read.
pub(crate) fn card_owner_leaves(
    table: &str,
    org: &OrgId,
    member: &MemberId,
    config: Option<&RechargeConfig>,
    now: DateTime<Utc>,
) -> Result<Vec<TransactWriteItem>, StoreError> {
    let theirs = config.filter(|c| c.card.as_ref().is_some_and(|card| &card.owner == member));
    let Some(config) = theirs else {
        let check = ConditionCheck::builder()
            .table_name(table)
            .set_key(Some(key(org_pk(org), CONFIG_SK)))
            .condition_expression("attribute_not_exists(#owner) OR #owner <> :member")
            .expression_attribute_names("#owner", "card_owner")
            .expression_attribute_values(":member", s(member.as_str()))
            .build()
            .map_err(unbuilt)?;
        return Ok(vec![TransactWriteItem::builder().condition_check(check).build()]);
    };
    let mut x = UpdateExpr::default();
    x.remove("card_owner");
    x.remove("customer");
    x.remove("payment_method");
    x.condition("#card_owner = :member");
    x.value(":member", s(member.as_str()));
    let mut items = vec![];
    if config.settings.enabled {
        x.set("suspended", s(recharge::CARD_OWNER_LEFT));
        let mut w = UpdateExpr::default();
        w.set("recharge_enabled", AttributeValue::Bool(false));
        w.remove("gsi1pk");
        w.remove("gsi1sk");
        items.push(w.update(table, key(org_pk(org), WALLET_SK))?);
        let notice = owners_notice(org, member, now);
        items.push(put(table, notice, None, false)?);
    }
    items.insert(0, x.update(table, key(org_pk(org), CONFIG_SK))?);
    Ok(items)
}

/// `credit_auto_recharge_suspended` for the owners: the card's owner left.
fn owners_notice(org: &OrgId, member: &MemberId, now: DateTime<Utc>) -> Item {
    let sk = format!(
        "NOTIF#{}#card_owner_left#{member}",
        now.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    let mut item = key(org_pk(org), sk);
    item.extend([
        ("type".to_owned(), s("notification")),
        (
            "kind".to_owned(),
            s(NotificationKind::CreditAutoRechargeSuspended.as_str()),
        ),
        ("reason".to_owned(), s(recharge::CARD_OWNER_LEFT)),
        ("recipients".to_owned(), s("owners")),
        ("member".to_owned(), s(member.as_str())),
        ("available".to_owned(), n_usd(Usd::ZERO)),
        ("seq".to_owned(), n_u64(0)),
        ("created_at".to_owned(), timestamp(now)),
        ("read".to_owned(), AttributeValue::Bool(false)),
    ]);
    item
}

/// An org's auto-recharge settings, read consistently.
pub(crate) async fn read_config(
    client: &Client,
    table: &str,
    org: &OrgId,
) -> Result<Option<RechargeConfig>, StoreError> {
    get_consistent(client, table, key(org_pk(org), CONFIG_SK))
        .await?
        .as_ref()
        .map(config_from_item)
        .transpose()
}

fn config_from_item(item: &Item) -> Result<RechargeConfig, StoreError> {
    let r = Reader::new(item);
    let invalid = |e: agent_credits_domain::RechargeSettingsError| r.corrupt(e.to_string());
    let target = r.opt_usd("target")?;
    let settings = RechargeSettings::new(
        r.opt_bool("enabled")?.unwrap_or(false),
        r.usd("threshold")?,
        r.usd("amount")?,
        u32::try_from(r.u64("max_per_day")?).map_err(|_| r.corrupt("max_per_day"))?,
        r.usd("max_usd_per_day")?,
    )
    .and_then(|s| s.with_target(target))
    .map_err(invalid)?;
    let in_flight = match r.opt_s("in_flight")? {
        Some(a) => Some((a.to_owned(), items::parse_time(&r, "in_flight_since")?)),
        None => None,
    };
    // A card is charged only with the member it belongs to: settings saved before cards
    // had owners have no card here, and so charge nothing until they are saved again.
    let card = match (
        r.opt_s("customer")?,
        r.opt_s("payment_method")?,
        r.opt_s("card_owner")?,
    ) {
        (Some(customer), Some(pm), Some(owner)) if !customer.is_empty() && !pm.is_empty() => Some(Card {
            customer: customer.to_owned(),
            payment_method: pm.to_owned(),
            owner: MemberId::parse(owner).map_err(|e| r.corrupt(e.to_string()))?,
        }),
        _ => None,
    };
    Ok(RechargeConfig {
        settings,
        card,
        suspended: r.opt_s("suspended")?.map(str::to_owned),
        in_flight,
    })
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

    /// Saves the org's settings, lifts any suspension (the settings or the card changed),
    /// and sets the wallet's trigger; an org already below the threshold is marked due at
    /// once. Enabling charges `card` (the caller's own), in the same transaction as a check
    /// that its owner is a member who may manage auto-recharge; disabling keeps the card
    /// on file (still theirs). The attempt in flight, if any, is left to finish. Enabling
    /// is conditioned on the wallet being a credits org's, in the same write.
    pub async fn configure(
        &self,
        org: &OrgId,
        settings: &RechargeSettings,
        card: Option<&Card>,
        by: &MemberId,
        now: DateTime<Utc>,
    ) -> Result<Configured, StoreError> {
        let mut config = UpdateExpr::default();
        config.set("type", s("recharge"));
        config.set("enabled", AttributeValue::Bool(settings.enabled));
        config.set("threshold", n_usd(settings.threshold));
        config.set("amount", n_usd(settings.amount.usd()));
        config.set("max_per_day", n_u64(u64::from(settings.max_per_day)));
        config.set("max_usd_per_day", n_usd(settings.max_usd_per_day));
        match settings.target {
            Some(target) => config.set("target", n_usd(target)),
            None => config.remove("target"),
        }
        if let Some(card) = card {
            config.set("customer", s(card.customer.as_str()));
            config.set("payment_method", s(card.payment_method.as_str()));
            config.set("card_owner", s(card.owner.as_str()));
        }
        config.set("updated_by", s(by.as_str()));
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
            w.set_if_absent("gsi1sk", s(items::due_mark(now, org)));
        } else if !settings.enabled {
            w.remove("gsi1pk");
            w.remove("gsi1sk");
        }
        w.condition("attribute_exists(pk)");
        if settings.enabled {
            credits_only(&mut w);
        }
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(config.update(&self.table, key(org_pk(org), CONFIG_SK))?)
            .transact_items(w.update(&self.table, key(org_pk(org), WALLET_SK))?);
        if let Some(card) = card {
            tx = tx.transact_items(card_owner_check(&self.table, org, &card.owner)?);
        }
        match tx.send().await {
            Ok(_) => Ok(Configured::Saved),
            Err(e) if cancelled_at(&e, 2) => Ok(Configured::CardOwnerGone),
            Err(e) if settings.enabled && cancelled_at(&e, 1) => Ok(Configured::NotCredits),
            Err(e) => Err(sdk_error(e)),
        }
    }

    pub async fn wallet(&self, org: &OrgId) -> Result<Wallet, StoreError> {
        match get_consistent(&self.client, &self.table, key(org_pk(org), WALLET_SK)).await? {
            Some(item) => wallet_from_item(org, &item),
            None => Ok(Wallet::empty(org.clone())),
        }
    }

    pub async fn config(&self, org: &OrgId) -> Result<Option<RechargeConfig>, StoreError> {
        read_config(&self.client, &self.table, org).await
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

    /// Ends the due mark the sweep saw, if the wallet is still as the sweep read it
    /// (`version`): a debit that crossed the threshold meanwhile, or a newer mark, stands.
    pub async fn clear_due(&self, due: &Due, version: u64) -> Result<(), StoreError> {
        let mut x = UpdateExpr::default();
        x.remove("gsi1pk");
        x.remove("gsi1sk");
        x.condition("#gsi1sk = :seen");
        x.value(":seen", s(due.mark.as_str()));
        x.name_only("version");
        if version == 0 {
            x.condition("attribute_not_exists(#version)");
        } else {
            x.condition("#version = :version");
            x.value(":version", n_u64(version));
        }
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
    /// on the conditions that the card's owner is still a member who may use it and that
    /// no dispute is open, all in one transaction or not at all. The attempt records
    /// exactly what it will charge.
    pub async fn claim(
        &self,
        due: &Due,
        attempt: &str,
        config: &RechargeConfig,
        available: Usd,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let org = &due.org;
        let Some(card) = config.card.as_ref() else {
            return Ok(Claim::Off);
        };
        let amount = config
            .settings
            .top_up(available)
            .map_err(|e| StoreError::Invalid(e.to_string()))?
            .usd();
        let mut c = UpdateExpr::default();
        c.set("in_flight", s(attempt));
        c.set("in_flight_since", timestamp(now));
        c.condition(
            "#enabled = :true AND attribute_not_exists(#suspended) AND attribute_not_exists(#in_flight) \
             AND #card_owner = :owner AND #payment_method = :pm",
        );
        c.value(":true", AttributeValue::Bool(true));
        c.value(":owner", s(card.owner.as_str()));
        c.value(":pm", s(card.payment_method.as_str()));
        c.name_only("suspended");
        c.name_only("enabled");
        c.name_only("card_owner");
        c.name_only("payment_method");
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
            ("customer".to_owned(), s(card.customer.as_str())),
            ("payment_method".to_owned(), s(card.payment_method.as_str())),
            ("card_owner".to_owned(), s(card.owner.as_str())),
            ("tries".to_owned(), n_u64(0)),
            ("created_at".to_owned(), timestamp(now)),
        ]);
        // Only a credits org's wallet is topped up; one with an open dispute waits. It must
        // still carry the due mark that was read: a top-up that another run (the sweep and
        // the stream path run side by side) charged and credited since then cleared or
        // renewed it, so a claim read before that charges nothing. A top-up to a target is
        // what was missing from `available`: claimed only while the wallet holds no more
        // than that, so it never lifts the balance past the target.
        let mut undisputed = ConditionCheck::builder()
            .table_name(&*self.table)
            .set_key(Some(key(org_pk(org), WALLET_SK)))
            .expression_attribute_names("#billing_mode", "billing_mode")
            .expression_attribute_names("#gsi1sk", "gsi1sk")
            .expression_attribute_values(":credits", s(BillingMode::Credits.as_str()))
            .expression_attribute_values(":mark", s(due.mark.as_str()));
        let base = "attribute_not_exists(open_disputes) AND #billing_mode = :credits AND #gsi1sk = :mark";
        undisputed = match config.settings.target {
            Some(_) => undisputed
                .condition_expression(format!("{base} AND #available <= :seen"))
                .expression_attribute_names("#available", "available")
                .expression_attribute_values(":seen", n_usd(available)),
            None => undisputed.condition_expression(base),
        };
        let undisputed = undisputed.build().map_err(unbuilt)?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(c.update(&self.table, key(org_pk(org), CONFIG_SK))?)
            .transact_items(day.update(&self.table, key(org_pk(org), day_sk(now)))?)
            .transact_items(put(&self.table, record, Some("attribute_not_exists(pk)"), false)?)
            .transact_items(card_owner_check(&self.table, org, &card.owner)?)
            .transact_items(TransactWriteItem::builder().condition_check(undisputed).build())
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
        if failed(3) {
            return Ok(Claim::CardOwnerLeft);
        }
        if failed(4) {
            let wallet = self.wallet(org).await?;
            return Ok(match wallet.settings.billing_mode {
                Some(BillingMode::Credits) if !wallet.open_disputes.is_empty() => Claim::Disputed,
                Some(BillingMode::Credits) => Claim::Moved,
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

    /// Suspends auto-recharge because its card's owner is gone (found by a sweep): the
    /// card leaves with them, the owners are notified once. Idempotent.
    pub async fn card_owner_left(
        &self,
        org: &OrgId,
        config: &RechargeConfig,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(card) = config.card.as_ref() else {
            return Ok(());
        };
        let items = card_owner_leaves(&self.table, org, &card.owner, Some(config), now)?;
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if cancelled(&e) => Ok(()),
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// The attempt as claimed.
    pub async fn attempt(&self, org: &OrgId, attempt: &str) -> Result<Option<Attempt>, StoreError> {
        let Some(item) =
            get_consistent(&self.client, &self.table, key(org_pk(org), attempt_sk(attempt))).await?
        else {
            return Ok(None);
        };
        let r = Reader::new(&item);
        Ok(Some(Attempt {
            id: attempt.to_owned(),
            state: r.s("state")?.to_owned(),
            amount: r.usd("amount")?,
            customer: r.s("customer")?.to_owned(),
            payment_method: r.s("payment_method")?.to_owned(),
            card_owner: r
                .opt_s("card_owner")?
                .map(MemberId::parse)
                .transpose()
                .map_err(|e| r.corrupt(e.to_string()))?,
            payment_intent: r.opt_s("payment_intent")?.map(str::to_owned),
            created_at: items::parse_time(&r, "created_at")?,
            tries: if r.has("tries") {
                u32::try_from(r.u64("tries")?).map_err(|_| r.corrupt("tries"))?
            } else {
                0
            },
        }))
    }

    /// Counts one more send of a pending attempt, before it goes to Stripe, on the
    /// conditions it was claimed under, in one transaction: it is still the org's attempt
    /// in flight, auto-recharge is on and not suspended, the card on file is still the
    /// attempt's, and its owner is still a member who may use it.
    pub async fn count_try(&self, org: &OrgId, a: &Attempt, now: DateTime<Utc>) -> Result<Gate, StoreError> {
        let Some(owner) = a.card_owner.as_ref() else {
            return Ok(Gate::Stop);
        };
        let mut t = UpdateExpr::default();
        t.add("tries", n_u64(1));
        t.set("last_try_at", timestamp(now));
        t.name_only("state");
        t.condition("#state = :pending");
        t.value(":pending", s("pending"));
        let config = ConditionCheck::builder()
            .table_name(&*self.table)
            .set_key(Some(key(org_pk(org), CONFIG_SK)))
            .condition_expression(
                "#in_flight = :attempt AND #enabled = :true AND attribute_not_exists(#suspended) \
                 AND #card_owner = :owner AND #payment_method = :pm",
            )
            .expression_attribute_names("#in_flight", "in_flight")
            .expression_attribute_names("#enabled", "enabled")
            .expression_attribute_names("#suspended", "suspended")
            .expression_attribute_names("#card_owner", "card_owner")
            .expression_attribute_names("#payment_method", "payment_method")
            .expression_attribute_values(":attempt", s(a.id.as_str()))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":owner", s(owner.as_str()))
            .expression_attribute_values(":pm", s(a.payment_method.as_str()))
            .build()
            .map_err(unbuilt)?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(t.update(&self.table, key(org_pk(org), attempt_sk(&a.id)))?)
            .transact_items(TransactWriteItem::builder().condition_check(config).build())
            .transact_items(card_owner_check(&self.table, org, owner)?)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(Gate::Go),
            Err(e) if cancelled_at(&e, 0) => Ok(Gate::Settled),
            Err(e) if cancelled(&e) => Ok(Gate::Stop),
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// Records the PaymentIntent Stripe made for the attempt, before anything is settled
    /// from it: a crash after this finds it. Idempotent.
    pub async fn record_intent(&self, org: &OrgId, attempt: &str, intent: &str) -> Result<(), StoreError> {
        let mut a = UpdateExpr::default();
        a.set("payment_intent", s(intent));
        a.condition("attribute_exists(pk)");
        let sent = self
            .client
            .transact_write_items()
            .transact_items(a.update(&self.table, key(org_pk(org), attempt_sk(attempt)))?)
            .send()
            .await;
        sent.map(|_| ()).map_err(sdk_error)
    }

    /// The attempt's PaymentIntent, once Stripe named it.
    pub async fn attempt_intent(&self, org: &OrgId, attempt: &str) -> Result<Option<String>, StoreError> {
        Ok(self.attempt(org, attempt).await?.and_then(|a| a.payment_intent))
    }

    /// The attempt's state (`pending`, `succeeded`, `failed`, `requires_action`,
    /// `abandoned`).
    pub async fn attempt_state(&self, org: &OrgId, attempt: &str) -> Result<Option<String>, StoreError> {
        Ok(self.attempt(org, attempt).await?.map(|a| a.state))
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

    /// The attempt charged nothing and never will (Stripe has no PaymentIntent for it,
    /// and it is no longer sent): it ends without suspending anything, and the org stays
    /// due for a new attempt within the day's cap. Idempotent.
    pub async fn abandoned(
        &self,
        org: &OrgId,
        attempt: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut a = UpdateExpr::default();
        a.set("state", s("abandoned"));
        a.set("reason", s(reason));
        a.set("updated_at", timestamp(now));
        a.condition("#state = :pending");
        a.value(":pending", s("pending"));
        self.end(org, attempt, a, None).await
    }

    /// The card was declined (or needs its owner to authenticate): recorded, the org
    /// notified once (`credit_purchase_failed` with the reason), and auto-recharge
    /// suspended until the settings or the card change. Idempotent.
    pub async fn failed(
        &self,
        org: &OrgId,
        attempt: &str,
        decline: &recharge::Decline,
        intent: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let reason = decline.reason.as_str();
        let mut a = UpdateExpr::default();
        a.set("state", s(decline.state()));
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

/// Cancelled because the condition of item `i` failed.
fn cancelled_at<R>(e: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>, i: usize) -> bool {
    matches!(
        e.as_service_error(),
        Some(TransactWriteItemsError::TransactionCanceledException(c))
            if c.cancellation_reasons().get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
    )
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
