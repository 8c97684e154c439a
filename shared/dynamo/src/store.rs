//! The wallet store on DynamoDB.
//!
//! One change = one read and one write:
//! 1. `TransactGetItems` reads the wallet (with its settings), the idempotency record of the
//!    request's key and, when the request names them, the record of the key it yields to,
//!    its hold, and for a member's hold their month and limit. A replay is answered from
//!    here without planning anything;
//! 2. the domain plans the change against what was read ([`Wallet::plan`]): every rule
//!    (money, holds, member limits, pauses) is decided there;
//! 3. one `TransactWriteItems` commits the wallet update (conditioned on the version it
//!    was planned from, and on every field that goes down covering what is taken), the
//!    ledger entry, the idempotency record (`attribute_not_exists`), the check that the
//!    key it yields to is still unused, the members' month counters (a hold's under the
//!    room its limit leaves), the hold, and any notifications.
//!
//! A lost version race or a `TransactionConflict` re-reads and retries with bounded, fully
//! jittered exponential backoff. The version condition makes commits of one wallet a total
//! order, so each entry's running balance is the balance right after it.

use std::sync::Arc;
use std::time::Duration;

use agent_credits_domain::{
    Applied, ChangeRequest, Clock, CounterChange, DueMark, EntryKind, HistoryPage, HoldState, IdempotencyKey,
    LedgerEntry, MemberMonth, Movement, OrgId, Outcome, PageRequest, Payout, PayoutState, PayoutStep,
    PlanContext, Planned, Refusal, StoreError, Wallet, WalletSettings, WalletStore, WithdrawalId, month_of,
};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    CancellationReason, ConditionCheck, Get, Put, ReturnValuesOnConditionCheckFailure, TransactGetItem,
    TransactWriteItem, Update,
};
use chrono::{DateTime, SubsecRound, Utc};

use crate::attr::{Item, n_signed, n_u64, n_usd, s};
use crate::items::{
    self, ENTRY_SK_FIRST, ENTRY_SK_LAST, HoldRecord, IdemRecord, WALLET_SK, entry_from_item, entry_item,
    entry_sk, hold_sk, idem_from_item, idem_item, idem_sk, key, member_month_sk, member_sk, org_pk,
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
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
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
    pub(crate) retry: RetryPolicy,
}

/// What one attempt read.
struct Snapshot {
    wallet: Wallet,
    idem: Option<IdemRecord>,
    hold: Option<HoldRecord>,
    /// The key the request yields to was used.
    superseded: bool,
    member: Option<MemberMonth>,
}

/// The write transaction and where its conditioned items sit, to read cancellation
/// reasons by position.
struct Transaction {
    items: Vec<TransactWriteItem>,
    unless_at: Vec<usize>,
    counter_at: Vec<(usize, CounterChange)>,
    hold_at: Option<usize>,
    payout_at: Option<usize>,
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
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now().trunc_subsecs(3)
    }

    async fn read(&self, req: &ChangeRequest, now: DateTime<Utc>) -> Result<Snapshot, StoreError> {
        let pk = org_pk(req.org());
        let mut gets = vec![];
        let mut get = |sk: String| -> Result<usize, StoreError> {
            let get = Get::builder()
                .table_name(&*self.table)
                .set_key(Some(key(pk.clone(), sk)))
                .build()
                .map_err(unbuilt)?;
            gets.push(TransactGetItem::builder().get(get).build());
            Ok(gets.len() - 1)
        };
        let wallet_at = get(WALLET_SK.to_owned())?;
        let idem_at = get(idem_sk(req.key()))?;
        let hold_at = req.hold_id().map(|h| get(hold_sk(h))).transpose()?;
        let unless_at = req.unless_key().map(|k| get(idem_sk(k))).transpose()?;
        // A call's cost is recorded once, on the wallet or off it (BYOK): a consumption
        // yields to a record of the same call made without the wallet.
        let unbilled_at = req
            .is_consumption()
            .then(|| get(items::unbilled_sk(req.key())))
            .transpose()?;
        // A member's hold needs their month and limit: the room it must fit.
        let member = match (req.movement(), req.attribution().member.as_ref()) {
            (Movement::Hold { .. }, Some(m)) => Some((
                get(member_sk(m))?,
                get(member_month_sk(&month_of(now), m.as_str()))?,
            )),
            _ => None,
        };
        let out = self
            .client
            .transact_get_items()
            .set_transact_items(Some(gets))
            .send()
            .await
            .map_err(sdk_error)?;
        let responses = out.responses();
        let item = |i: usize| responses.get(i).and_then(|r| r.item());
        let wallet = match item(wallet_at) {
            Some(w) => wallet_from_item(req.org(), w)?,
            None => Wallet::empty(req.org().clone()),
        };
        let member = match member {
            Some((limit_at, month_at)) => Some(items::member_month_from(item(limit_at), item(month_at))?),
            None => None,
        };
        Ok(Snapshot {
            wallet,
            idem: item(idem_at).map(idem_from_item).transpose()?,
            hold: hold_at.and_then(item).map(items::hold_from_item).transpose()?,
            superseded: unless_at.and_then(item).is_some() || unbilled_at.and_then(item).is_some(),
            member,
        })
    }

    async fn replay(&self, req: &ChangeRequest, idem: IdemRecord) -> Result<Outcome, StoreError> {
        if idem.fingerprint != req.fingerprint() {
            return Ok(Err(Refusal::IdempotencyKeyReused));
        }
        Ok(Ok(Applied::Replayed(
            self.entry_of(req.org(), req.key(), &idem).await?,
        )))
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
    async fn attempt(
        &self,
        req: &ChangeRequest,
        snap: Snapshot,
        now: DateTime<Utc>,
    ) -> Result<Attempt, StoreError> {
        if matches!(req.movement(), Movement::Hold { .. }) && snap.hold.is_some() {
            // The hold id is taken by a hold made under another key.
            return Ok(Some(Err(Refusal::IdempotencyKeyReused)));
        }
        let ctx = PlanContext {
            now,
            hold: snap.hold.as_ref().map(|h| HoldState {
                amount: h.amount,
                open: h.open,
                member: h.member.clone(),
                counted_in: h.counted_in.clone(),
                made_at: h.made_at,
            }),
            member: snap.member,
            superseded: snap.superseded,
        };
        let planned = match snap.wallet.plan(req, &ctx) {
            Ok(p) => p,
            Err(Refusal::Money(e)) => return Err(StoreError::Invalid(e.to_string())),
            Err(refusal) => return Ok(Some(Err(refusal))),
        };
        let tx = self.transaction(req, &planned, snap.hold.as_ref())?;
        let (unless_at, counter_at, hold_at, payout_at) =
            (tx.unless_at, tx.counter_at, tx.hold_at, tx.payout_at);
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(tx.items))
            .send()
            .await;
        let err = match sent {
            Ok(_) => return Ok(Some(Ok(Applied::Committed(planned.entry)))),
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
        // A payout settled (or an id taken) is settled for good, whatever else moved.
        if failed(payout_at) {
            return Ok(Some(Err(Refusal::PayoutNotPending)));
        }
        // The wallet, the hold or the key it yields to moved on since they were read (or,
        // on real DynamoDB, another transaction held them): read afresh after the backoff.
        if failed(Some(WALLET_AT))
            || failed(hold_at)
            || unless_at.iter().any(|i| failed(Some(*i)))
            || reasons.iter().any(|r| r.code() == Some("TransactionConflict"))
        {
            return Ok(None);
        }
        // A member's month filled up meanwhile (parallel holds): no room for this one.
        if let Some((_, c)) = counter_at.iter().find(|(i, _)| failed(Some(*i))) {
            return match ctx.member.and_then(|m| m.limit) {
                Some(limit) => Ok(Some(Err(Refusal::MemberLimitReached { limit }))),
                None => Err(StoreError::Invalid(format!(
                    "the month counter of {} refused a change it had no limit for",
                    c.member
                ))),
            };
        }
        Err(StoreError::Unavailable(
            format!(
                "transaction cancelled: {:?}",
                reasons.iter().map(|r| r.code()).collect::<Vec<_>>()
            )
            .into(),
        ))
    }

    /// Every item the change writes.
    fn transaction(
        &self,
        req: &ChangeRequest,
        p: &Planned,
        hold: Option<&HoldRecord>,
    ) -> Result<Transaction, StoreError> {
        let now = p.entry.created_at;
        let mut items = vec![
            self.wallet_write(p)?,
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
        let mut unless_at = vec![];
        let yields_to = req
            .unless_key()
            .map(idem_sk)
            .into_iter()
            .chain(req.is_consumption().then(|| items::unbilled_sk(req.key())));
        for sk in yields_to {
            let check = ConditionCheck::builder()
                .table_name(&*self.table)
                .set_key(Some(key(org_pk(req.org()), sk)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(unbuilt)?;
            unless_at.push(items.len());
            items.push(TransactWriteItem::builder().condition_check(check).build());
        }
        let mut counter_at = vec![];
        for c in &p.counters {
            let mut x = UpdateExpr::default();
            x.add("spent", n_usd(c.spent));
            x.add("held", n_signed(c.held));
            x.add("committed", n_signed(c.committed().map_err(invalid)?));
            x.set("type", s("member_month"));
            x.set("member", s(c.member.as_str()));
            x.set("month", s(c.month.as_str()));
            if let Some(room) = c.at_most {
                // DynamoDB conditions cannot add: the plan gives the most the month may
                // already hold for the change to fit. A counter without `committed` is
                // new, unless it was written before `committed` was kept (then it has
                // `spent`, and is refused rather than trusted).
                x.condition(
                    "(attribute_not_exists(#committed) AND attribute_not_exists(#spent)) OR #committed <= :room",
                );
                x.value(":room", n_usd(room));
            }
            counter_at.push((items.len(), c.clone()));
            items.push(x.update(
                &self.table,
                key(org_pk(req.org()), member_month_sk(&c.month, c.member.as_str())),
            )?);
        }
        let mut hold_at = None;
        match (req.movement(), req.hold_id(), hold) {
            (Movement::Hold { amount, expires_at }, Some(id), _) => {
                hold_at = Some(items.len());
                let counted_in = p.counters.first().map(|c| c.month.as_str());
                let item = items::hold_item(
                    req.org(),
                    &items::NewHold {
                        id,
                        amount: amount.usd(),
                        expires: expires_at,
                        member: req.attribution().member.as_ref(),
                        counted_in,
                        made_at: p.entry.seq,
                        consumable: req.attribution().consumable,
                        feature: req.attribution().feature,
                    },
                    now,
                );
                items.push(put(&self.table, item, Some("attribute_not_exists(pk)"), false)?);
            }
            (Movement::Capture { .. }, Some(id), None) => {
                hold_at = Some(items.len());
                let item = items::captured_hold_item(req.org(), id, now);
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
        let payout_at = match req.payout() {
            Some(step) => {
                items.push(self.payout_write(req.org(), step, now)?);
                Some(items.len() - 1)
            }
            None => None,
        };
        // Each lot of expiring credits has a marker the expiry sweep finds by its date: put
        // with the lot and retired with it, in the same transaction. Retired, not deleted:
        // out of the index at once, gone by TTL later (the functions' roles may update the
        // table's items but not delete them).
        for lot in p.after.lots.iter() {
            if !p.before.lots.iter().any(|l| l.seq == lot.seq) {
                items.push(put(
                    &self.table,
                    items::lot_marker_item(req.org(), lot),
                    None,
                    false,
                )?);
            }
        }
        for lot in p.before.lots.iter() {
            if !p.after.lots.iter().any(|l| l.seq == lot.seq) {
                let mut x = UpdateExpr::default();
                x.remove("gsi1pk");
                x.remove("gsi1sk");
                x.set("expires_at", n_u64(items::retired_marker_ttl(now)));
                items.push(x.update(&self.table, key(org_pk(req.org()), items::lot_sk(lot.seq)))?);
            }
        }
        for (i, kind) in p.notifications.iter().enumerate() {
            let item = items::notification_item(&p.after, *kind, p.entry.seq, i, now)?;
            items.push(put(&self.table, item, None, false)?);
        }
        if req.is_consumption() {
            // What the call cost: what the wallet paid and what it could not.
            let billed = p
                .entry
                .amount
                .magnitude()
                .checked_add(p.entry.shortfall)
                .map_err(invalid)?;
            items.extend(crate::daily::day_counters(
                &self.table,
                req.org(),
                now,
                // The entry's: a capture belongs to the member its hold was made for.
                &p.entry.attribution,
                billed,
                agent_credits_domain::Usd::ZERO,
            )?);
        }
        Ok(Transaction {
            items,
            unless_at,
            counter_at,
            hold_at,
            payout_at,
        })
    }

    /// A payout's record, under its step's condition: a new one must not exist, a
    /// settlement needs it pending.
    fn payout_write(
        &self,
        org: &OrgId,
        step: &PayoutStep,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem, StoreError> {
        let at = key(org_pk(org), items::withdrawal_sk(step.id()));
        let mut x = UpdateExpr::default();
        match step {
            PayoutStep::Requested { id, amount, by } => {
                x.set("type", s("withdrawal"));
                x.set("id", s(id.as_str()));
                x.set("amount", n_usd(*amount));
                x.set("state", s(PayoutState::Pending.as_str()));
                x.set("requested_by", s(by.as_str()));
                x.set("requested_at", timestamp(now));
                x.set("org", s(org.as_str()));
                // Pending payouts are one index query for the operators who pay them.
                x.set("gsi1pk", s(items::PAYOUTS_PENDING_PK));
                x.set("gsi1sk", s(format!("{}#{org}#{id}", items::hold_time(now))));
                x.condition("attribute_not_exists(#type)");
            }
            PayoutStep::Paid { reference, .. }
            | PayoutStep::Failed {
                reason: reference, ..
            } => {
                let (state, field) = match step {
                    PayoutStep::Paid { .. } => (PayoutState::Paid, "reference"),
                    _ => (PayoutState::Failed, "reason"),
                };
                x.set("state", s(state.as_str()));
                x.set(field, s(reference.as_str()));
                x.set("settled_at", timestamp(now));
                x.remove("gsi1pk");
                x.remove("gsi1sk");
                x.condition("#state = :pending");
                x.value(":pending", s(PayoutState::Pending.as_str()));
            }
        }
        x.update(&self.table, at)
    }

    /// The answer to `req` if its key was used before (the original entry, or
    /// `idempotency_key_reused`): for a route whose other checks (a date still to come, a
    /// state that may change) must not refuse a retry of a change already made.
    pub async fn made_before(&self, req: &ChangeRequest) -> Result<Option<Outcome>, StoreError> {
        let out = get_consistent(
            &self.client,
            &self.table,
            key(org_pk(req.org()), idem_sk(req.key())),
        )
        .await?;
        match out.as_ref() {
            Some(item) => Ok(Some(self.replay(req, idem_from_item(item)?).await?)),
            None => Ok(None),
        }
    }

    /// The entry the org's idempotency key `key` made, if it was used.
    pub async fn entry_by_key(
        &self,
        org: &OrgId,
        key_: &IdempotencyKey,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let out = get_consistent(&self.client, &self.table, key(org_pk(org), idem_sk(key_))).await?;
        match out.as_ref() {
            Some(item) => Ok(Some(self.entry_of(org, key_, &idem_from_item(item)?).await?)),
            None => Ok(None),
        }
    }

    /// The org's oldest entry of one of `kinds` (its first purchase, say), read forward
    /// from the ledger's start; `None` when it has none.
    pub async fn first_entry_of(
        &self,
        org: &OrgId,
        kinds: &[EntryKind],
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let mut start = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&*self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :first AND :last")
                .expression_attribute_values(":pk", s(org_pk(org)))
                .expression_attribute_values(":first", s(ENTRY_SK_FIRST))
                .expression_attribute_values(":last", s(ENTRY_SK_LAST))
                .expression_attribute_names("#kind", "kind")
                .consistent_read(true)
                .set_exclusive_start_key(start);
            let mut wanted = vec![];
            for (i, k) in kinds.iter().enumerate() {
                let name = format!(":k{i}");
                q = q.expression_attribute_values(&name, s(k.as_str()));
                wanted.push(name);
            }
            let out = q
                .filter_expression(format!("#kind IN ({})", wanted.join(", ")))
                .send()
                .await
                .map_err(sdk_error)?;
            if let Some(item) = out.items().first() {
                return entry_from_item(org, item).map(Some);
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(None),
            }
        }
    }

    /// The org's ledger entry `seq`, if it exists (a consistent read).
    pub async fn entry(&self, org: &OrgId, seq: u64) -> Result<Option<LedgerEntry>, StoreError> {
        let out = get_consistent(&self.client, &self.table, key(org_pk(org), entry_sk(seq))).await?;
        out.as_ref().map(|item| entry_from_item(org, item)).transpose()
    }

    /// The org's payout `id`, if any.
    pub async fn payout(&self, org: &OrgId, id: &WithdrawalId) -> Result<Option<Payout>, StoreError> {
        let out = get_consistent(
            &self.client,
            &self.table,
            key(org_pk(org), items::withdrawal_sk(id)),
        )
        .await?;
        out.as_ref().map(items::payout_from_item).transpose()
    }

    /// Every org's pending payouts, oldest request first: what the operators have to pay.
    pub async fn pending_payouts(&self) -> Result<Vec<(OrgId, Payout)>, StoreError> {
        let mut found = vec![];
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&*self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :p")
                .expression_attribute_values(":p", s(items::PAYOUTS_PENDING_PK))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items() {
                let r = crate::attr::Reader::new(item);
                let org = OrgId::parse(r.s("org")?).map_err(|e| r.corrupt(e.to_string()))?;
                found.push((org, items::payout_from_item(item)?));
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(found),
            }
        }
    }

    /// The org's payouts, newest request first.
    pub async fn payouts(&self, org: &OrgId) -> Result<Vec<Payout>, StoreError> {
        let found = query_prefix(
            &self.client,
            &self.table,
            org_pk(org),
            items::WITHDRAWAL_SK_PREFIX,
        )
        .await?;
        let mut payouts = found
            .iter()
            .map(items::payout_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        payouts.sort_by(|a, b| {
            b.requested_at
                .cmp(&a.requested_at)
                .then(b.id.as_str().cmp(a.id.as_str()))
        });
        Ok(payouts)
    }

    /// The wallet update, by deltas that the database itself refuses when they would
    /// overdraw anything, under the version the change was planned from.
    fn wallet_write(&self, p: &Planned) -> Result<TransactWriteItem, StoreError> {
        let (before, after, e) = (&p.before, &p.after, &p.entry);
        let mut x = UpdateExpr::default();
        x.delta("base", e.buckets.base);
        x.delta("rollover", e.buckets.rollover);
        x.delta("purchased", e.buckets.purchased);
        x.delta("expiring", e.buckets.expiring);
        x.delta("earned", e.buckets.earned);
        if before.lots != after.lots {
            match items::lots_attr(&after.lots) {
                Some(lots) => x.set("lots", lots),
                None => x.remove("lots"),
            }
        }
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
            "lifetime_granted",
            before.lifetime_granted.delta_to(after.lifetime_granted),
        );
        x.delta(
            "lifetime_spent",
            before.lifetime_spent.delta_to(after.lifetime_spent),
        );
        for (name, from, to) in [
            (
                "lifetime_expired",
                before.lifetime_expired,
                after.lifetime_expired,
            ),
            (
                "lifetime_taken_back",
                before.lifetime_taken_back,
                after.lifetime_taken_back,
            ),
            (
                "lifetime_withdrawn",
                before.lifetime_withdrawn,
                after.lifetime_withdrawn,
            ),
        ] {
            x.delta(name, from.delta_to(to));
        }
        x.delta("forgiven", before.forgiven.delta_to(after.forgiven));
        if after.forgiven_at != before.forgiven_at {
            x.set("forgiven_at", n_u64(after.forgiven_at));
        }
        if after.low != before.low {
            x.set("low", aws_sdk_dynamodb::types::AttributeValue::Bool(after.low));
        }
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
        let mark = || s(items::due_mark(e.created_at, &after.org));
        match p.due {
            DueMark::Keep => {}
            // The first mark stands (its time orders the sweep); the recharge clears it.
            DueMark::Set => {
                x.set_if_absent("gsi1pk", s(items::RECHARGE_DUE_PK));
                x.set_if_absent("gsi1sk", mark());
            }
            // A fresh mark: a sweep clearing the mark it saw leaves this one standing.
            DueMark::Renew => {
                x.set("gsi1pk", s(items::RECHARGE_DUE_PK));
                x.set("gsi1sk", mark());
            }
            DueMark::Clear => {
                x.remove("gsi1pk");
                x.remove("gsi1sk");
            }
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
        .put(put.build().map_err(unbuilt)?)
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
            .map_err(unbuilt)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

fn invalid(e: agent_credits_domain::MoneyError) -> StoreError {
    StoreError::Invalid(e.to_string())
}

/// A request that did not build: a bug, never cured by a retry.
pub(crate) fn unbuilt<E: std::error::Error>(e: E) -> StoreError {
    StoreError::Rejected(e.to_string())
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

/// Every item `query` finds, page after page.
async fn all_pages(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
) -> Result<Vec<Item>, StoreError> {
    let mut items = vec![];
    let mut start = None;
    loop {
        let out = query
            .clone()
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

/// Every item of partition `pk` whose sort key starts with `prefix`, read consistently,
/// page after page.
pub(crate) async fn query_prefix(
    client: &Client,
    table: &str,
    pk: String,
    prefix: &str,
) -> Result<Vec<Item>, StoreError> {
    all_pages(
        client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk.as_str()))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true),
    )
    .await
}

/// Every item of `gsi1` under `gsi1pk` whose `gsi1sk` sorts at or before `upto` (the due
/// markers of a sweep: their `gsi1sk` starts with the time they are due), page after page.
pub(crate) async fn query_due(
    client: &Client,
    table: &str,
    gsi1pk: &str,
    upto: &str,
) -> Result<Vec<Item>, StoreError> {
    all_pages(
        client
            .query()
            .table_name(table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :p AND gsi1sk <= :upto")
            .expression_attribute_values(":p", s(gsi1pk))
            .expression_attribute_values(":upto", s(upto)),
    )
    .await
}

/// Keeps the whole SDK error chain, code and message included (its `Display` alone says
/// "service error").
/// An SDK error, classified: what a retry may cure (throttling, timeouts, the service
/// failing or unreachable, a transaction that lost a race) is `Unavailable`; what it
/// cannot (access denied, validation, a missing table, a request that did not build) is
/// `Rejected`, for an operator to fix.
pub(crate) fn sdk_error<E>(e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let text = DisplayErrorContext(&e).to_string();
    match &e {
        SdkError::ConstructionFailure(_) => StoreError::Rejected(text),
        SdkError::ServiceError(service) => {
            // Mocked and some modeled errors carry no code: their text names the type.
            let retryable = match service.err().code() {
                Some(code) => RETRYABLE.contains(&code),
                None => RETRYABLE.iter().any(|r| text.contains(&format!("{r}:"))),
            };
            if retryable || service.raw().status().is_server_error() {
                StoreError::Unavailable(text.into())
            } else {
                StoreError::Rejected(text)
            }
        }
        _ => StoreError::Unavailable(text.into()),
    }
}

/// DynamoDB's error codes that a retry may cure (throttling, the service failing, a
/// transaction that lost a race, credentials or a clock that a retry refreshes).
const RETRYABLE: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
    "TransactionCanceledException",
    "ConditionalCheckFailedException",
    "ReplicatedWriteConflictException",
    "ExpiredTokenException",
    "InvalidSignatureException",
];

impl WalletStore for DynamoWalletStore {
    async fn apply(&self, req: ChangeRequest) -> Result<Outcome, StoreError> {
        for attempt in 0..self.retry.max_attempts {
            let now = self.now();
            let snap = self.read(&req, now).await?;
            if let Some(idem) = snap.idem {
                return self.replay(&req, idem).await;
            }
            match self.attempt(&req, snap, now).await? {
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
