//! The wallet store on DynamoDB.
//!
//! One change = one read and one write:
//! 1. `TransactGetItems` reads the wallet (with its settings), the idempotency record of the
//!    request's key, and, when the request names them, its hold and its member (for the
//!    monthly limit). A replay is answered from here without planning anything;
//! 2. the domain plans the change against what was read;
//! 3. one `TransactWriteItems` commits the wallet update (conditioned on the version it
//!    was planned from, and on every field that goes down covering what is taken), the
//!    ledger entry, the idempotency record (`attribute_not_exists`), the member's month
//!    counter (conditioned on the member's limit), the hold, and any notifications.
//!
//! A lost version race or a `TransactionConflict` re-reads and retries with bounded, fully
//! jittered exponential backoff. The version condition makes commits of one wallet a total
//! order, so each entry's running balance is the balance right after it.

use std::sync::Arc;
use std::time::Duration;

use agent_credits_domain::{
    Attribution, ChangeRequest, Clock, HistoryPage, HoldId, HoldState, IdempotencyKey, LedgerEntry, MemberId,
    Movement, OrgId, Outcome, PageRequest, PlanContext, Planned, Refusal, StoreError, Usd, Wallet,
    WalletSettings, WalletStore,
};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    CancellationReason, ConditionCheck, Get, Put, ReturnValuesOnConditionCheckFailure, TransactGetItem,
    TransactWriteItem, Update,
};
use chrono::{DateTime, SubsecRound, Utc};

use crate::attr::{Item, Reader, n_u64, n_usd, s};
use crate::items::{
    self, ENTRY_SK_FIRST, ENTRY_SK_LAST, HoldRecord, IdemRecord, WALLET_SK, entry_from_item, entry_item,
    entry_sk, hold_sk, idem_from_item, idem_item, idem_sk, key, member_month_sk, member_sk, month_of, org_pk,
    timestamp, wallet_from_item,
};
use crate::update::UpdateExpr;

/// How hard to try when other writers keep winning the race for one wallet.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// About 8 s of waiting in the expected worst case, inside a Lambda's timeout, and
    /// enough for 64 writers racing on one wallet (dynoxide, 2 cores) to get through.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 50,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(320),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: a uniform delay in [0, min(max, base × 2^attempt)].
    fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

#[derive(Clone)]
pub struct DynamoWalletStore {
    client: Client,
    table: Arc<str>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
}

/// What one attempt read.
struct Snapshot {
    wallet: Wallet,
    idem: Option<IdemRecord>,
    hold: Option<HoldRecord>,
    member_limit: Option<Usd>,
}

/// The write transaction and where its conditioned items sit, to read cancellation
/// reasons by position.
struct Transaction {
    items: Vec<TransactWriteItem>,
    counter_at: Option<usize>,
    hold_at: Option<usize>,
    limit: Option<Usd>,
}

const WALLET_AT: usize = 0;
const IDEM_AT: usize = 2;

/// `Some(outcome)`: done. `None`: lost a race; wait, read again, plan again.
type Attempt = Option<Outcome>;

impl DynamoWalletStore {
    pub fn new(client: Client, table: impl Into<Arc<str>>, clock: Arc<dyn Clock>) -> DynamoWalletStore {
        DynamoWalletStore {
            client,
            table: table.into(),
            clock,
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> DynamoWalletStore {
        self.retry = retry;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Stored timestamps keep milliseconds: everything is planned with exactly what will
    /// be stored, so that a replay answers the very entry the first call did.
    fn now(&self) -> DateTime<Utc> {
        self.clock.now().trunc_subsecs(3)
    }

    async fn read(&self, req: &ChangeRequest) -> Result<Snapshot, StoreError> {
        let pk = org_pk(req.org());
        let get = |sk: String| -> Result<TransactGetItem, StoreError> {
            let get = Get::builder()
                .table_name(&*self.table)
                .set_key(Some(key(pk.clone(), sk)))
                .build();
            Ok(TransactGetItem::builder().get(get.map_err(unavailable)?).build())
        };
        let mut gets = vec![get(WALLET_SK.to_owned())?, get(idem_sk(req.key()))?];
        let hold_at = req.hold_id().map(|h| (gets.len(), hold_sk(h)));
        if let Some((_, sk)) = &hold_at {
            gets.push(get(sk.clone())?);
        }
        let member = req.attribution().member.as_ref().filter(|_| limit_applies(req));
        let member_at = member.map(|m| (gets.len(), member_sk(m)));
        if let Some((_, sk)) = &member_at {
            gets.push(get(sk.clone())?);
        }
        let out = self
            .client
            .transact_get_items()
            .set_transact_items(Some(gets))
            .send()
            .await
            .map_err(sdk_error)?;
        let responses = out.responses();
        let item = |i: usize| responses.get(i).and_then(|r| r.item());
        let wallet = match item(0) {
            Some(w) => wallet_from_item(req.org(), w)?,
            None => Wallet::empty(req.org().clone()),
        };
        let hold = match hold_at {
            Some((i, _)) => item(i).map(items::hold_from_item).transpose()?,
            None => None,
        };
        let member_limit = match member_at {
            Some((i, _)) => item(i).map(items::member_limit_from_item).transpose()?.flatten(),
            None => None,
        };
        Ok(Snapshot {
            wallet,
            idem: item(1).map(idem_from_item).transpose()?,
            hold,
            member_limit,
        })
    }

    async fn replay(&self, req: &ChangeRequest, idem: IdemRecord) -> Result<Outcome, StoreError> {
        if idem.fingerprint != req.fingerprint() {
            return Ok(Outcome::IdempotencyKeyReused);
        }
        Ok(Outcome::Replayed(
            self.entry_of(req.org(), req.key(), &idem).await?,
        ))
    }

    /// The entry an idempotency record points at.
    pub(crate) async fn entry_of(
        &self,
        org: &OrgId,
        idem_key: &IdempotencyKey,
        idem: &IdemRecord,
    ) -> Result<LedgerEntry, StoreError> {
        let out = get_consistent(&self.client, &self.table, key(org_pk(org), entry_sk(idem.seq))).await?;
        let item = out.as_ref().ok_or_else(|| StoreError::Corrupt {
            key: format!("{}/{}", org_pk(org), entry_sk(idem.seq)),
            reason: format!("idempotency key {idem_key} points at a missing entry"),
        })?;
        entry_from_item(org, item)
    }

    /// One try at committing `req` on top of what was read.
    async fn attempt(&self, req: &ChangeRequest, snap: Snapshot) -> Result<Attempt, StoreError> {
        if matches!(req.movement(), Movement::Hold { .. }) && snap.hold.is_some() {
            // The hold id is taken by a hold made under another key.
            return Ok(Some(Outcome::IdempotencyKeyReused));
        }
        // A capture belongs to the member its hold was made for, whatever the report says.
        let adopted;
        let req = match (req.movement(), snap.hold.as_ref().and_then(|h| h.member.clone())) {
            (Movement::Capture { .. }, Some(member)) => {
                adopted = req.clone().attributed_to(Attribution {
                    member: Some(member),
                    ..req.attribution().clone()
                });
                &adopted
            }
            _ => req,
        };
        let ctx = PlanContext {
            now: self.now(),
            hold: snap.hold.as_ref().map(|h| HoldState {
                amount: h.amount,
                open: h.open,
            }),
        };
        let planned = match snap.wallet.plan(req, &ctx) {
            Ok(p) => p,
            Err(Refusal::InsufficientFunds { available }) => {
                return Ok(Some(Outcome::InsufficientFunds { available }));
            }
            Err(Refusal::HoldNotFound) => return Ok(Some(Outcome::HoldNotFound)),
            Err(Refusal::HoldClosed) => return Ok(Some(Outcome::HoldClosed)),
            Err(Refusal::Paused(reason)) => return Ok(Some(Outcome::Paused { reason })),
            Err(Refusal::Money(e)) => return Err(StoreError::Invalid(e.to_string())),
        };
        let limit = req.member_limit().or(snap.member_limit);
        let Some(tx) = self.transaction(req, &planned, snap.hold.as_ref(), limit)? else {
            return Ok(Some(Outcome::MemberLimitReached {
                limit: limit.unwrap_or(Usd::ZERO),
            }));
        };
        let (counter_at, hold_at, limit) = (tx.counter_at, tx.hold_at, tx.limit);
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(tx.items))
            .send()
            .await;
        let err = match sent {
            Ok(_) => return Ok(Some(Outcome::Committed(planned.entry))),
            Err(err) => err,
        };
        let reasons: Vec<CancellationReason> = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                e.cancellation_reasons().to_vec()
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => return Ok(None),
            _ => return Err(sdk_error(err)),
        };
        let failed = |i: Option<usize>| {
            i.and_then(|i| reasons.get(i)).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
        };
        // A replay wins over everything: the key's first change stands.
        if failed(Some(IDEM_AT)) {
            return match reasons.get(IDEM_AT).and_then(|r| r.item()) {
                Some(item) => self.replay(req, idem_from_item(item)?).await.map(Some),
                None => Ok(None),
            };
        }
        // The wallet or the hold moved on since they were read (or, on real DynamoDB,
        // another transaction held them): read afresh after the backoff.
        if failed(Some(WALLET_AT))
            || failed(hold_at)
            || reasons.iter().any(|r| r.code() == Some("TransactionConflict"))
        {
            return Ok(None);
        }
        if let (true, Some(limit)) = (failed(counter_at), limit) {
            return Ok(Some(Outcome::MemberLimitReached { limit }));
        }
        Err(StoreError::Unavailable(
            format!(
                "transaction cancelled: {:?}",
                reasons.iter().map(|r| r.code()).collect::<Vec<_>>()
            )
            .into(),
        ))
    }

    /// Every item the change writes. `None` when the member limit cannot cover the
    /// amount even before anything else is counted.
    fn transaction(
        &self,
        req: &ChangeRequest,
        p: &Planned,
        hold: Option<&HoldRecord>,
        limit: Option<Usd>,
    ) -> Result<Option<Transaction>, StoreError> {
        let now = p.entry.created_at;
        let mut items = vec![
            self.wallet_write(req, p)?,
            put(
                &self.table,
                entry_item(&p.entry),
                Some("attribute_not_exists(pk)"),
                false,
            )?,
            put(
                &self.table,
                idem_item(req.org(), req.key(), p.entry.seq, &req.fingerprint(), now),
                Some("attribute_not_exists(pk)"),
                true,
            )?,
        ];
        let mut counter_at = None;
        let member = req.attribution().member.as_ref();
        if req.member_limit().is_some() && member.is_none() {
            return Err(StoreError::Invalid("a member limit needs a member".into()));
        }
        let month_key = |m: &MemberId| key(org_pk(req.org()), member_month_sk(&month_of(now), m.as_str()));
        // DynamoDB conditions cannot add, so the counter is compared before the write with
        // the room the limit leaves for the whole request.
        let room = |wanted: Usd| limit.map(|l| l.checked_sub(wanted).ok());
        match (req.movement(), member) {
            (Movement::Debit(a) | Movement::DebitUpTo(a), Some(m)) if req.is_consumption() => {
                // A call made without a hold must fit the limit whole, or it is refused.
                let mut x = counter_update(m, now, p.entry.amount.magnitude());
                match room(a.usd()) {
                    Some(None) => return Ok(None),
                    Some(Some(room)) => {
                        x.condition("attribute_not_exists(#spent) OR #spent <= :room");
                        x.value(":room", n_usd(room));
                    }
                    None => {}
                }
                counter_at = Some(items.len());
                items.push(x.update(&self.table, month_key(m))?);
            }
            (Movement::Hold { amount, .. }, Some(m)) => {
                // A hold is admitted only within the member's room; its capture is then
                // always charged and counted, so no admitted call goes unbilled.
                match room(amount.usd()) {
                    Some(None) => return Ok(None),
                    Some(Some(room)) => {
                        let check = ConditionCheck::builder()
                            .table_name(&*self.table)
                            .set_key(Some(month_key(m)))
                            .condition_expression("attribute_not_exists(#spent) OR #spent <= :room")
                            .expression_attribute_names("#spent", "spent")
                            .expression_attribute_values(":room", n_usd(room))
                            .build()
                            .map_err(unavailable)?;
                        counter_at = Some(items.len());
                        items.push(TransactWriteItem::builder().condition_check(check).build());
                    }
                    None => {}
                }
            }
            (Movement::Capture { .. }, Some(m)) => {
                items.push(
                    counter_update(m, now, p.entry.amount.magnitude()).update(&self.table, month_key(m))?,
                );
            }
            _ => {}
        }
        let mut hold_at = None;
        match (req.movement(), req.hold_id(), hold) {
            (Movement::Hold { amount, expires_at }, Some(id), _) => {
                hold_at = Some(items.len());
                let item = items::hold_item(
                    req.org(),
                    id,
                    amount.usd(),
                    expires_at,
                    &req.attribution().member,
                    now,
                );
                items.push(put(&self.table, item, Some("attribute_not_exists(pk)"), false)?);
            }
            (Movement::Capture { .. } | Movement::Release, Some(id), Some(h)) if h.open => {
                let state = if matches!(req.movement(), Movement::Release) {
                    "released"
                } else {
                    "captured"
                };
                let mut x = UpdateExpr::default();
                x.set("state", s(state));
                // Kept for good, like the idempotency records that point at it: a hold id
                // reused later must find its hold closed, not start a new one.
                x.set("closed_at", timestamp(now));
                x.remove("gsi1pk");
                x.remove("gsi1sk");
                x.condition("#state = :open");
                x.value(":open", s("open"));
                hold_at = Some(items.len());
                items.push(x.update(&self.table, key(org_pk(req.org()), hold_sk(id)))?);
            }
            _ => {}
        }
        for (i, kind) in p.notifications.iter().enumerate() {
            let item = items::notification_item(&p.after, *kind, p.entry.seq, i, now)?;
            items.push(put(&self.table, item, None, false)?);
        }
        Ok(Some(Transaction {
            items,
            counter_at,
            hold_at,
            limit,
        }))
    }

    /// The wallet update, by deltas that the database itself refuses when they would
    /// overdraw anything, under the version the change was planned from.
    fn wallet_write(&self, req: &ChangeRequest, p: &Planned) -> Result<TransactWriteItem, StoreError> {
        let (before, after, e) = (&p.before, &p.after, &p.entry);
        let mut x = UpdateExpr::default();
        x.delta("base", e.buckets.base);
        x.delta("rollover", e.buckets.rollover);
        x.delta("purchased", e.buckets.purchased);
        x.delta("held", e.held_change);
        x.delta("balance", e.amount);
        x.delta(
            "available",
            before
                .available()
                .map_err(invalid)?
                .delta_to(after.available().map_err(invalid)?),
        );
        x.delta(
            "lifetime_added",
            before.lifetime_added.delta_to(after.lifetime_added),
        );
        x.delta(
            "lifetime_spent",
            before.lifetime_spent.delta_to(after.lifetime_spent),
        );
        x.set("type", s("wallet"));
        x.set("version", n_u64(after.version));
        if before.version == 0 {
            // Settings may have created the item; money has never touched it.
            x.condition("attribute_not_exists(#version)");
        } else {
            x.condition("#version = :expected_version");
            x.value(":expected_version", n_u64(before.version));
        }
        let (state, reason) = items::state_attrs(after.state);
        x.set("state", state);
        match reason {
            Some(reason) => x.set("pause_reason", reason),
            None => x.remove("pause_reason"),
        }
        if before.open_disputes != after.open_disputes {
            match items::disputes_attr(&after.open_disputes) {
                Some(ids) => x.set("open_disputes", ids),
                None => x.remove("open_disputes"),
            }
        }
        if req.ends_recharge_due() {
            x.remove("gsi1pk");
            x.remove("gsi1sk");
        } else if p.recharge_due {
            // The first mark stands (its time orders the sweep); the recharge clears it.
            x.set_if_absent("gsi1pk", s(items::RECHARGE_DUE_PK));
            x.set_if_absent(
                "gsi1sk",
                s(format!("{}#{}", e.created_at.to_rfc3339(), after.org)),
            );
        }
        x.set("updated_at", timestamp(e.created_at));
        x.update(&self.table, key(org_pk(&after.org), WALLET_SK))
    }

    /// Writes the org's billing settings onto its wallet item (creating the item if the
    /// org has none yet). Money is untouched and the version does not move.
    pub async fn put_settings(&self, org: &OrgId, settings: &WalletSettings) -> Result<(), StoreError> {
        let mut x = UpdateExpr::default();
        x.set("type", s("wallet"));
        for (name, value) in items::settings_attrs(settings) {
            match value {
                Some(v) => x.set(name, v),
                None => x.remove(name),
            }
        }
        self.client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(key(org_pk(org), WALLET_SK)))
            .update_expression(x.update_expression())
            .set_expression_attribute_names(Some(x.names.clone()))
            .set_expression_attribute_values(x.values())
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Sets or clears a member's monthly limit (calendar month, UTC).
    pub async fn set_member_limit(
        &self,
        org: &OrgId,
        member: &MemberId,
        limit: Option<Usd>,
    ) -> Result<(), StoreError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(key(org_pk(org), member_sk(member))))
            .expression_attribute_names("#type", "type")
            .expression_attribute_names("#limit", "monthly_limit")
            .expression_attribute_values(":type", s("member"));
        req = match limit {
            Some(l) => req
                .update_expression("SET #type = :type, #limit = :limit")
                .expression_attribute_values(":limit", n_usd(l)),
            None => req.update_expression("SET #type = :type REMOVE #limit"),
        };
        req.send().await.map_err(sdk_error)?;
        Ok(())
    }

    /// A member's monthly limit, if one is set.
    pub async fn member_limit(&self, org: &OrgId, member: &MemberId) -> Result<Option<Usd>, StoreError> {
        let out = get_consistent(&self.client, &self.table, key(org_pk(org), member_sk(member))).await?;
        Ok(out
            .as_ref()
            .map(items::member_limit_from_item)
            .transpose()?
            .flatten())
    }

    /// What a member spent in the calendar month (UTC) of `at`.
    /// What each member spent in `month` (`yyyy-mm`, UTC), from the month counters.
    pub async fn month_usage(&self, org: &OrgId, month: &str) -> Result<Vec<(String, Usd)>, StoreError> {
        query_prefix(
            &self.client,
            &self.table,
            org_pk(org),
            &format!("USAGE#{month}#MEMBER#"),
        )
        .await?
        .iter()
        .map(|item| {
            let r = Reader::new(item);
            let member = r
                .s(items::SK)?
                .rsplit("#MEMBER#")
                .next()
                .unwrap_or_default()
                .to_owned();
            Ok((member, r.usd("spent")?))
        })
        .collect()
    }

    /// Marks notifications read; `ids` of `None` marks every unread one. Returns how many
    /// changed; unknown ids change nothing.
    pub async fn mark_read(&self, org: &OrgId, ids: Option<&[String]>) -> Result<usize, StoreError> {
        let ids: Vec<String> = match ids {
            Some(ids) => ids.to_vec(),
            None => query_prefix(&self.client, &self.table, org_pk(org), "NOTIF#")
                .await?
                .iter()
                .map(items::notification_from_item)
                .filter(|n| n.as_ref().map_or(true, |n| !n.read))
                .map(|n| n.map(|n| n.id))
                .collect::<Result<_, _>>()?,
        };
        let mut changed = 0;
        for id in ids {
            let sent = self
                .client
                .update_item()
                .table_name(&*self.table)
                .set_key(Some(key(org_pk(org), format!("NOTIF#{id}"))))
                .update_expression("SET #read = :true")
                .condition_expression("attribute_exists(pk) AND #read = :false")
                .expression_attribute_names("#read", "read")
                .expression_attribute_values(":true", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
                .expression_attribute_values(":false", aws_sdk_dynamodb::types::AttributeValue::Bool(false))
                .send()
                .await;
            match sent {
                Ok(_) => changed += 1,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(sdk_error(e)),
            }
        }
        Ok(changed)
    }

    pub async fn member_month_spent(
        &self,
        org: &OrgId,
        member: &MemberId,
        at: DateTime<Utc>,
    ) -> Result<Usd, StoreError> {
        let out = get_consistent(
            &self.client,
            &self.table,
            key(org_pk(org), member_month_sk(&month_of(at), member.as_str())),
        )
        .await?;
        match out.as_ref() {
            Some(item) if item.contains_key("spent") => Reader::new(item).usd("spent"),
            _ => Ok(Usd::ZERO),
        }
    }

    /// Releases the org's open holds that expired by now, each once. Returns how many.
    pub async fn expire_holds(&self, org: &OrgId) -> Result<usize, StoreError> {
        let now = self.now();
        let mut expired = vec![];
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&*self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :hold)")
                .filter_expression("#state = :open AND hold_expires <= :now")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":pk", s(org_pk(org)))
                .expression_attribute_values(":hold", s("HOLD#"))
                .expression_attribute_values(":open", s("open"))
                .expression_attribute_values(":now", timestamp(now))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items() {
                expired.push(items::hold_from_item(item)?.id);
            }
            match out.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => break,
            }
        }
        let mut released = 0;
        for id in expired {
            let key = IdempotencyKey::parse(format!("expire:{id}"))
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            if let Outcome::Committed(_) = self.apply(ChangeRequest::release(org.clone(), id, key)).await? {
                released += 1;
            }
        }
        Ok(released)
    }

    /// Usage that never touches the wallet (BYOK): one record per request, kept for
    /// reporting and attribution, and the member's month counter of unbilled usage.
    /// `false` when the request was recorded before.
    pub async fn record_unbilled(
        &self,
        org: &OrgId,
        key_: &IdempotencyKey,
        cost: Usd,
        attribution: &Attribution,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let mut items = vec![put(
            &self.table,
            items::unbilled_item(org, key_, cost, attribution, now),
            Some("attribute_not_exists(pk)"),
            false,
        )?];
        if let Some(member) = &attribution.member {
            let mut x = UpdateExpr::default();
            x.add("unbilled", n_usd(cost));
            x.set("type", s("member_month"));
            x.set("member", s(member.as_str()));
            x.set("month", s(month_of(now)));
            items.push(x.update(
                &self.table,
                key(org_pk(org), member_month_sk(&month_of(now), member.as_str())),
            )?);
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) => match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e))
                    if e.cancellation_reasons().first().and_then(|r| r.code())
                        == Some("ConditionalCheckFailed") =>
                {
                    Ok(false)
                }
                _ => Err(sdk_error(err)),
            },
        }
    }

    /// The org's notifications, newest first.
    pub async fn notifications(
        &self,
        org: &OrgId,
        limit: i32,
    ) -> Result<Vec<items::Notification>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :n)")
            .expression_attribute_values(":pk", s(org_pk(org)))
            .expression_attribute_values(":n", s("NOTIF#"))
            .scan_index_forward(false)
            .limit(limit)
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        out.items().iter().map(items::notification_from_item).collect()
    }

    /// The hold named `id`, if any.
    pub async fn hold(&self, org: &OrgId, id: &HoldId) -> Result<Option<HoldRecord>, StoreError> {
        let out = get_consistent(&self.client, &self.table, key(org_pk(org), hold_sk(id))).await?;
        out.as_ref().map(items::hold_from_item).transpose()
    }
}

/// Whether the member's monthly limit is checked for this change.
fn limit_applies(req: &ChangeRequest) -> bool {
    matches!(
        req.movement(),
        Movement::Debit(_) | Movement::DebitUpTo(_) | Movement::Hold { .. }
    )
}

fn counter_update(member: &MemberId, now: DateTime<Utc>, taken: Usd) -> UpdateExpr {
    let mut x = UpdateExpr::default();
    x.add("spent", n_usd(taken));
    x.set("type", s("member_month"));
    x.set("member", s(member.as_str()));
    x.set("month", s(month_of(now)));
    x
}

pub(crate) fn put(
    table: &str,
    item: Item,
    condition: Option<&str>,
    old_on_failure: bool,
) -> Result<TransactWriteItem, StoreError> {
    let mut put = Put::builder().table_name(table).set_item(Some(item));
    if let Some(c) = condition {
        put = put.condition_expression(c);
    }
    if old_on_failure {
        put = put.return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    }
    Ok(TransactWriteItem::builder()
        .put(put.build().map_err(unavailable)?)
        .build())
}

impl UpdateExpr {
    pub(crate) fn update(self, table: &str, key: Item) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(table)
            .set_key(Some(key))
            .update_expression(self.update_expression())
            .set_condition_expression(self.condition_expression())
            .set_expression_attribute_values(self.values())
            .set_expression_attribute_names(Some(self.names))
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

fn invalid(e: agent_credits_domain::MoneyError) -> StoreError {
    StoreError::Invalid(e.to_string())
}

pub(crate) fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

/// One item by key, read strongly consistent.
pub(crate) async fn get_consistent(
    client: &Client,
    table: &str,
    key: Item,
) -> Result<Option<Item>, StoreError> {
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .map_err(sdk_error)?;
    Ok(out.item)
}

/// Every item of partition `pk` whose sort key starts with `prefix`, read consistently,
/// page after page.
pub(crate) async fn query_prefix(
    client: &Client,
    table: &str,
    pk: String,
    prefix: &str,
) -> Result<Vec<Item>, StoreError> {
    let mut items = vec![];
    let mut start = None;
    loop {
        let out = client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk.as_str()))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk_error)?;
        items.extend(out.items().iter().cloned());
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(items),
        }
    }
}

/// Keeps the whole SDK error chain, code and message included (its `Display` alone says
/// "service error").
pub(crate) fn sdk_error<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Unavailable(DisplayErrorContext(&e).to_string().into())
}

impl WalletStore for DynamoWalletStore {
    async fn apply(&self, req: ChangeRequest) -> Result<Outcome, StoreError> {
        for attempt in 0..self.retry.max_attempts {
            let snap = self.read(&req).await?;
            if let Some(idem) = snap.idem {
                return self.replay(&req, idem).await;
            }
            match self.attempt(&req, snap).await? {
                Some(outcome) => return Ok(outcome),
                None => {
                    tracing::debug!(org = %req.org(), attempt, "lost the race for the wallet; retrying");
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
            }
        }
        Err(StoreError::Contention {
            attempts: self.retry.max_attempts,
        })
    }

    async fn wallet(&self, org: &OrgId) -> Result<Wallet, StoreError> {
        let out = get_consistent(&self.client, &self.table, key(org_pk(org), WALLET_SK)).await?;
        match out.as_ref() {
            Some(item) => wallet_from_item(org, item),
            None => Ok(Wallet::empty(org.clone())),
        }
    }

    async fn history(&self, org: &OrgId, page: PageRequest) -> Result<HistoryPage, StoreError> {
        let upper = match page.before {
            Some(0 | 1) => {
                return Ok(HistoryPage {
                    entries: vec![],
                    next: None,
                });
            }
            Some(before) => entry_sk(before - 1),
            None => ENTRY_SK_LAST.to_owned(),
        };
        let out = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :first AND :last")
            .expression_attribute_values(":pk", s(org_pk(org)))
            .expression_attribute_values(":first", s(ENTRY_SK_FIRST))
            .expression_attribute_values(":last", s(upper))
            .scan_index_forward(false)
            .limit(i32::from(page.limit))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let entries = out
            .items()
            .iter()
            .map(|i| entry_from_item(org, i))
            .collect::<Result<Vec<_>, _>>()?;
        let next = match (out.last_evaluated_key(), entries.last()) {
            (Some(_), Some(last)) if last.seq > 1 => Some(last.seq),
            _ => None,
        };
        Ok(HistoryPage { entries, next })
    }
}
