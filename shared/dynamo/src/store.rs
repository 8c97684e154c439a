//! The wallet store on DynamoDB.
//!
//! One change = one read and one write:
//! 1. `TransactGetItems` reads the wallet and the idempotency record of the request's key
//!    (a replay is answered from here without planning anything);
//! 2. the domain plans the change against the wallet it read;
//! 3. one `TransactWriteItems` commits the wallet update (conditioned on the version it
//!    was planned from, and on every bucket and the available amount covering what is
//!    taken), the ledger entry, the idempotency record (`attribute_not_exists`), and the
//!    member's month counter (conditioned on the member's limit).
//!
//! A lost version race or a `TransactionConflict` re-reads and retries with bounded, fully
//! jittered exponential backoff. The version condition makes commits of one wallet a total
//! order, so each entry's running balance is the balance right after it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agent_credits_domain::{
    ChangeRequest, Clock, HistoryPage, Movement, OrgId, Outcome, PageRequest, Planned, Refusal, StoreError,
    Usd, Wallet, WalletStore,
};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Get, Put, ReturnValuesOnConditionCheckFailure, TransactGetItem,
    TransactWriteItem, Update,
};
use chrono::SubsecRound;

use crate::attr::{n_u64, n_usd, s};
use crate::items::{
    ENTRY_SK_FIRST, ENTRY_SK_LAST, IdemRecord, WALLET_SK, entry_from_item, entry_item, entry_sk,
    idem_from_item, idem_item, idem_sk, key, member_month_sk, month_of, org_pk, state_attrs, timestamp,
    wallet_from_item, wallet_item,
};

/// How hard to try when other writers keep winning the race for one wallet.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// About 8 s of waiting in the expected worst case, inside a Lambda's timeout, and
    /// enough for 64 writers racing on one wallet (dynoxide, 2 cores) to all get through.
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

/// Where each item sits in the write transaction, to read its cancellation reason.
const WALLET_AT: usize = 0;
const IDEM_AT: usize = 2;
const COUNTER_AT: usize = 3;

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

    async fn read(&self, req: &ChangeRequest) -> Result<(Wallet, Option<IdemRecord>), StoreError> {
        let pk = org_pk(req.org());
        let get = |sk: String| -> Result<TransactGetItem, StoreError> {
            let get = Get::builder()
                .table_name(&*self.table)
                .set_key(Some(key(pk.clone(), sk)))
                .build();
            Ok(TransactGetItem::builder().get(get.map_err(unavailable)?).build())
        };
        let out = self
            .client
            .transact_get_items()
            .transact_items(get(WALLET_SK.to_owned())?)
            .transact_items(get(idem_sk(req.key()))?)
            .send()
            .await
            .map_err(sdk_error)?;
        let responses = out.responses();
        let item = |i: usize| responses.get(i).and_then(|r| r.item());
        let wallet = match item(0) {
            Some(w) => wallet_from_item(req.org(), w)?,
            None => Wallet::empty(req.org().clone()),
        };
        let idem = item(1).map(idem_from_item).transpose()?;
        Ok((wallet, idem))
    }

    async fn replay(&self, req: &ChangeRequest, idem: IdemRecord) -> Result<Outcome, StoreError> {
        if idem.fingerprint != req.fingerprint() {
            return Ok(Outcome::IdempotencyKeyReused);
        }
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key(org_pk(req.org()), entry_sk(idem.seq))))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let item = out.item().ok_or_else(|| StoreError::Corrupt {
            key: format!("{}/{}", org_pk(req.org()), entry_sk(idem.seq)),
            reason: format!("idempotency key {} points at a missing entry", req.key()),
        })?;
        Ok(Outcome::Replayed(entry_from_item(req.org(), item)?))
    }

    /// One try at committing `req` on top of `wallet` (as read, or as a lost race
    /// returned it).
    async fn attempt(&self, req: &ChangeRequest, wallet: Wallet) -> Result<Attempt, StoreError> {
        // Stored timestamps keep milliseconds: plan with exactly what will be stored, so
        // that a replay answers the very entry the first call did.
        let now = self.clock.now().trunc_subsecs(3);
        let planned = match wallet.plan(req, now) {
            Ok(p) => p,
            Err(Refusal::InsufficientFunds { available }) => {
                return Ok(Some(Outcome::InsufficientFunds { available }));
            }
            Err(Refusal::Money(e)) => return Err(StoreError::Invalid(e.to_string())),
        };
        let counter = self.member_counter(req, &planned)?;
        if let Some(Counter::Unaffordable { limit }) = counter {
            return Ok(Some(Outcome::MemberLimitReached { limit }));
        }
        let mut items = vec![
            self.wallet_write(&planned)?,
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&*self.table)
                        .set_item(Some(entry_item(&planned.entry)))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .map_err(unavailable)?,
                )
                .build(),
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&*self.table)
                        .set_item(Some(idem_item(
                            req.org(),
                            req.key(),
                            planned.entry.seq,
                            &req.fingerprint(),
                            planned.entry.created_at,
                        )))
                        .condition_expression("attribute_not_exists(pk)")
                        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                        .build()
                        .map_err(unavailable)?,
                )
                .build(),
        ];
        let limit = match counter {
            Some(Counter::Write { item, limit }) => {
                items.push(*item);
                limit
            }
            _ => None,
        };
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(Some(Outcome::Committed(planned.entry))),
            Err(err) => self.after_cancel(req, err, limit).await,
        }
    }

    /// Reads a cancelled transaction: a replay wins over everything, then a lost race
    /// (retry), then the member limit.
    async fn after_cancel(
        &self,
        req: &ChangeRequest,
        err: SdkError<TransactWriteItemsError>,
        limit: Option<Usd>,
    ) -> Result<Attempt, StoreError> {
        let reasons: Vec<CancellationReason> = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                e.cancellation_reasons().to_vec()
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => return Ok(None),
            _ => return Err(sdk_error(err)),
        };
        let failed = |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
        if failed(IDEM_AT) {
            let existing = reasons.get(IDEM_AT).and_then(|r| r.item());
            return match existing {
                Some(item) => self.replay(req, idem_from_item(item)?).await.map(Some),
                // No copy of the record came back: read it on the next attempt.
                None => Ok(None),
            };
        }
        // The wallet moved on since it was read (or, real DynamoDB only, another
        // transaction held it). Retrying on the wallet the failure returns would lose
        // again after the backoff, so the next attempt reads afresh.
        if failed(WALLET_AT) || reasons.iter().any(|r| r.code() == Some("TransactionConflict")) {
            return Ok(None);
        }
        if let (true, Some(limit)) = (failed(COUNTER_AT), limit) {
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

    /// The wallet write: a whole new item for an org's first change; afterwards an update
    /// by deltas that the database itself refuses when it would overdraw anything.
    fn wallet_write(&self, p: &Planned) -> Result<TransactWriteItem, StoreError> {
        let now = p.entry.created_at;
        if p.before.version == 0 {
            let put = Put::builder()
                .table_name(&*self.table)
                .set_item(Some(wallet_item(&p.after, now)?))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(unavailable)?;
            return Ok(TransactWriteItem::builder().put(put).build());
        }
        let mut x = DeltaExpr::default();
        x.delta("base", p.entry.buckets.base);
        x.delta("rollover", p.entry.buckets.rollover);
        x.delta("purchased", p.entry.buckets.purchased);
        x.delta("held", p.entry.held_change);
        x.delta("balance", p.entry.amount);
        x.delta(
            "available",
            p.before
                .available()
                .map_err(invalid)?
                .delta_to(p.after.available().map_err(invalid)?),
        );
        x.delta(
            "lifetime_added",
            p.before.lifetime_added.delta_to(p.after.lifetime_added),
        );
        x.delta(
            "lifetime_spent",
            p.before.lifetime_spent.delta_to(p.after.lifetime_spent),
        );
        x.set("version", n_u64(p.after.version));
        x.condition(
            "#version = :expected_version",
            ":expected_version",
            n_u64(p.before.version),
        );
        let (state, reason) = state_attrs(p.after.state);
        x.set("state", state);
        match reason {
            Some(reason) => x.set("pause_reason", reason),
            None => x.remove("pause_reason"),
        }
        x.set("updated_at", timestamp(now));
        let update = Update::builder()
            .table_name(&*self.table)
            .set_key(Some(key(org_pk(&p.after.org), WALLET_SK)))
            .update_expression(x.update_expression())
            .condition_expression(x.conditions.join(" AND "))
            .set_expression_attribute_names(Some(x.names))
            .set_expression_attribute_values(Some(x.values))
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The member's month counter: always kept for debits a member made, so month usage
    /// per member is one query; conditioned when the member has a limit.
    fn member_counter(&self, req: &ChangeRequest, p: &Planned) -> Result<Option<Counter>, StoreError> {
        let Movement::Debit(amount) = req.movement() else {
            return Ok(None);
        };
        let member = match (&req.attribution().member, req.member_limit()) {
            (Some(m), _) if req.kind().counts_as_spent() => m,
            (None, Some(_)) => return Err(StoreError::Invalid("a member limit needs a member".into())),
            _ => return Ok(None),
        };
        let month = month_of(p.entry.created_at);
        let mut builder = Update::builder()
            .table_name(&*self.table)
            .set_key(Some(key(
                org_pk(req.org()),
                member_month_sk(&month, member.as_str()),
            )))
            .update_expression("ADD spent :amount SET #type = :type, #member = :member, #month = :month")
            .expression_attribute_names("#type", "type")
            .expression_attribute_names("#member", "member")
            .expression_attribute_names("#month", "month")
            .expression_attribute_values(":amount", n_usd(amount.usd()))
            .expression_attribute_values(":type", s("member_month"))
            .expression_attribute_values(":member", s(member.as_str()))
            .expression_attribute_values(":month", s(month));
        if let Some(limit) = req.member_limit() {
            // DynamoDB conditions cannot add, so compare the counter before the write
            // with what the limit leaves room for.
            let Ok(room) = limit.checked_sub(amount.usd()) else {
                return Ok(Some(Counter::Unaffordable { limit }));
            };
            builder = builder
                .condition_expression("attribute_not_exists(spent) OR spent <= :room")
                .expression_attribute_values(":room", n_usd(room));
        }
        let update = builder.build().map_err(unavailable)?;
        Ok(Some(Counter::Write {
            item: Box::new(TransactWriteItem::builder().update(update).build()),
            limit: req.member_limit(),
        }))
    }
}

enum Counter {
    Write {
        item: Box<TransactWriteItem>,
        limit: Option<Usd>,
    },
    /// The amount alone is over the limit: refuse without a round trip.
    Unaffordable { limit: Usd },
}

/// Builds `SET x = x + :x` / `SET x = x - :x` with `x >= :x` conditions, so that the
/// database refuses any write that would take a field below zero.
#[derive(Default)]
struct DeltaExpr {
    sets: Vec<String>,
    removes: Vec<String>,
    conditions: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl DeltaExpr {
    fn delta(&mut self, field: &str, d: agent_credits_domain::SignedUsd) {
        if d.is_zero() {
            return;
        }
        let (name, value) = (format!("#{field}"), format!(":{field}"));
        if d.is_negative() {
            self.sets.push(format!("{name} = {name} - {value}"));
            self.conditions.push(format!("{name} >= {value}"));
        } else {
            self.sets.push(format!("{name} = {name} + {value}"));
        }
        self.names.insert(name, field.to_owned());
        self.values.insert(value, n_usd(d.magnitude()));
    }

    fn set(&mut self, field: &str, v: AttributeValue) {
        let (name, value) = (format!("#{field}"), format!(":{field}"));
        self.sets.push(format!("{name} = {value}"));
        self.names.insert(name, field.to_owned());
        self.values.insert(value, v);
    }

    fn remove(&mut self, field: &str) {
        let name = format!("#{field}");
        self.removes.push(name.clone());
        self.names.insert(name, field.to_owned());
    }

    fn condition(&mut self, cond: &str, value_name: &str, v: AttributeValue) {
        self.conditions.push(cond.to_owned());
        self.values.insert(value_name.to_owned(), v);
    }

    fn update_expression(&self) -> String {
        let mut expr = format!("SET {}", self.sets.join(", "));
        if !self.removes.is_empty() {
            expr.push_str(&format!(" REMOVE {}", self.removes.join(", ")));
        }
        expr
    }
}

fn invalid(e: agent_credits_domain::MoneyError) -> StoreError {
    StoreError::Invalid(e.to_string())
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

/// Keeps the whole SDK error chain, code and message included (its `Display` alone says
/// "service error").
fn sdk_error<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Unavailable(DisplayErrorContext(&e).to_string().into())
}

impl WalletStore for DynamoWalletStore {
    async fn apply(&self, req: ChangeRequest) -> Result<Outcome, StoreError> {
        for attempt in 0..self.retry.max_attempts {
            let wallet = match self.read(&req).await? {
                (_, Some(idem)) => return self.replay(&req, idem).await,
                (wallet, None) => wallet,
            };
            match self.attempt(&req, wallet).await? {
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
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key(org_pk(org), WALLET_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        match out.item() {
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
