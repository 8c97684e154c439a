//! Members' months: the counters the wallet's plan moves (`spent`, `held`, `committed`
//! of billed usage; `unbilled` of calls on the org's own key), their limits, and the
//! usage that never touches the wallet.

use agent_credits_domain::{
    Attribution, IdempotencyKey, MemberId, MemberMonth, OrgId, Refusal, StoreError, Usd, month_of,
};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Get, TransactGetItem};
use chrono::{DateTime, Utc};

use crate::attr::{Reader, n_usd, s};
use crate::items::{self, key, member_month_sk, member_sk, org_pk};
use crate::store::{DynamoWalletStore, put, query_prefix, sdk_error, unbuilt};
use crate::update::UpdateExpr;

/// One member's row of a month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthRow {
    pub member: String,
    /// Billed to the wallet (charged and shortfall).
    pub spent: Usd,
    /// Reserved by their open holds.
    pub held: Usd,
    /// What their calls on the org's own key would have cost: never debited.
    pub unbilled: Usd,
}

/// A call recorded without touching the wallet (BYOK), as first recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unbilled {
    pub cost: Usd,
    pub replayed: bool,
}

impl DynamoWalletStore {
    /// Sets or clears a member's monthly limit (calendar month, UTC).
    pub async fn set_member_limit(
        &self,
        org: &OrgId,
        member: &MemberId,
        limit: Option<Usd>,
    ) -> Result<(), StoreError> {
        let mut req = self
            .client()
            .update_item()
            .table_name(self.table())
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

    /// A member's month (`at`'s, UTC) and limit, read together.
    pub async fn member_month(
        &self,
        org: &OrgId,
        member: &MemberId,
        at: DateTime<Utc>,
    ) -> Result<MemberMonth, StoreError> {
        let get = |sk: String| -> Result<TransactGetItem, StoreError> {
            let get = Get::builder()
                .table_name(self.table())
                .set_key(Some(key(org_pk(org), sk)))
                .build()
                .map_err(unbuilt)?;
            Ok(TransactGetItem::builder().get(get).build())
        };
        let out = self
            .client()
            .transact_get_items()
            .transact_items(get(member_sk(member))?)
            .transact_items(get(member_month_sk(&month_of(at), member.as_str()))?)
            .send()
            .await
            .map_err(sdk_error)?;
        let item = |i: usize| out.responses().get(i).and_then(|r| r.item());
        items::member_month_from(item(0), item(1))
    }

    /// Every member's row of `month` (`yyyy-mm`, UTC), from the month counters.
    pub async fn month_usage(&self, org: &OrgId, month: &str) -> Result<Vec<MonthRow>, StoreError> {
        let prefix = format!("USAGE#{month}#MEMBER#");
        query_prefix(self.client(), self.table(), org_pk(org), &prefix)
            .await?
            .iter()
            .map(|item| {
                let r = Reader::new(item);
                let member = r
                    .s(items::SK)?
                    .strip_prefix(prefix.as_str())
                    .ok_or_else(|| r.corrupt("a month counter outside its month"))?
                    .to_owned();
                let counted = items::member_month_from(None, Some(item))?;
                Ok(MonthRow {
                    member,
                    spent: counted.spent,
                    held: counted.held,
                    unbilled: r.opt_usd("unbilled")?.unwrap_or(Usd::ZERO),
                })
            })
            .collect()
    }

    /// Usage that never touches the wallet (BYOK): one record per request, kept for
    /// reporting and attribution, and the member's month counter of unbilled usage. A
    /// request recorded before answers its first record, or `idempotency_key_reused` when
    /// it reported something else (`fingerprint`); one billed to the wallet before is
    /// `Superseded` (its ledger entry stands).
    pub async fn record_unbilled(
        &self,
        org: &OrgId,
        key_: &IdempotencyKey,
        fingerprint: &str,
        cost: Usd,
        attribution: &Attribution,
    ) -> Result<Result<Unbilled, Refusal>, StoreError> {
        let now = self.now();
        // The same call billed to the wallet first (its key on the wallet's ledger) is not
        // recorded again off it.
        let billed = aws_sdk_dynamodb::types::ConditionCheck::builder()
            .table_name(self.table())
            .set_key(Some(key(org_pk(org), items::idem_sk(key_))))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unbuilt)?;
        let mut items = vec![
            put(
                self.table(),
                items::unbilled_item(org, key_, fingerprint, cost, attribution, now),
                Some("attribute_not_exists(pk)"),
                true,
            )?,
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .condition_check(billed)
                .build(),
        ];
        items.extend(crate::daily::day_counters(
            self.table(),
            org,
            now,
            attribution,
            Usd::ZERO,
            cost,
        )?);
        if let Some(member) = &attribution.member {
            let mut x = UpdateExpr::default();
            x.add("unbilled", n_usd(cost));
            x.set("type", s("member_month"));
            x.set("member", s(member.as_str()));
            x.set("month", s(month_of(now)));
            items.push(x.update(
                self.table(),
                key(org_pk(org), member_month_sk(&month_of(now), member.as_str())),
            )?);
        }
        // Calls of one org at the same instant add to the same day's counters: one that
        // loses that race (`TransactionConflict`, nothing written) is sent again, with
        // jitter. Its `USE#` item makes a repeat that did land a replay, never a second
        // record.
        let mut attempt = 0;
        let err = loop {
            let sent = self
                .client()
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            match sent {
                Ok(_) => {
                    return Ok(Ok(Unbilled {
                        cost,
                        replayed: false,
                    }));
                }
                Err(err) if only_conflicts(&err) && attempt + 1 < self.retry.max_attempts => {
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                    attempt += 1;
                }
                Err(err) => break err,
            }
        };
        let reasons = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                e.cancellation_reasons().to_vec()
            }
            _ => vec![],
        };
        let failed = |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
        if failed(1) {
            // Billed to the wallet before: that entry stands.
            return Ok(Err(Refusal::Superseded));
        }
        let first = reasons
            .first()
            .filter(|_| failed(0))
            .and_then(|r| r.item())
            .cloned();
        let Some(first) = first else {
            return Err(sdk_error(err));
        };
        let r = Reader::new(&first);
        if r.opt_s("fingerprint")? != Some(fingerprint) {
            return Ok(Err(Refusal::IdempotencyKeyReused));
        }
        Ok(Ok(Unbilled {
            cost: r.usd("cost")?,
            replayed: true,
        }))
    }

    /// The cost a call was recorded with off the wallet (BYOK), if it was.
    /// A call recorded off the wallet under `key_`: its cost and what its report promised
    /// (its fingerprint).
    pub async fn unbilled(
        &self,
        org: &OrgId,
        key_: &IdempotencyKey,
    ) -> Result<Option<(Usd, String)>, StoreError> {
        let item = crate::store::get_consistent(
            self.client(),
            self.table(),
            key(org_pk(org), items::unbilled_sk(key_)),
        )
        .await?;
        item.as_ref()
            .map(|i| {
                let r = Reader::new(i);
                Ok((r.usd("cost")?, r.s("fingerprint")?.to_owned()))
            })
            .transpose()
    }
}

impl agent_credits_domain::MemberLimits for DynamoWalletStore {
    fn set_limit<'a>(
        &'a self,
        org: &'a OrgId,
        member: &'a MemberId,
        limit: Option<Usd>,
    ) -> agent_credits_domain::ports::Pending<'a, ()> {
        Box::pin(self.set_member_limit(org, member, limit))
    }
}

impl agent_credits_domain::MemberMonths for DynamoWalletStore {
    fn month<'a>(
        &'a self,
        org: &'a OrgId,
        member: &'a MemberId,
        at: DateTime<Utc>,
    ) -> agent_credits_domain::ports::Pending<'a, MemberMonth> {
        Box::pin(self.member_month(org, member, at))
    }
}

/// Cancelled only because another transaction held an item at the same time: nothing was
/// written, and the same request may be sent again.
fn only_conflicts(err: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError>) -> bool {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
            let codes: Vec<_> = e.cancellation_reasons().iter().filter_map(|r| r.code()).collect();
            codes.contains(&"TransactionConflict")
                && codes.iter().all(|c| *c == "TransactionConflict" || *c == "None")
        }
        _ => false,
    }
}
