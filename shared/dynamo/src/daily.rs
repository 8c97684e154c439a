//! Usage by day ([`agent_credits_domain::daily`]): a `DAY#<yyyy-mm-dd>` item (the day's
//! total) and one `DAY#<yyyy-mm-dd>#<dimension>#<value>` item per dimension, each added to
//! in the call's own transaction: a call counts once, when it is billed or recorded.

use std::collections::BTreeMap;

use agent_credits_domain::daily::{Dimension, breakdown, day_of};
use agent_credits_domain::{Attribution, OrgId, StoreError, Usd};
use aws_sdk_dynamodb::types::TransactWriteItem;
use chrono::{DateTime, NaiveDate, Utc};

use crate::attr::{Item, Reader, n_u64, n_usd, s};
use crate::items::{key, org_pk};
use crate::store::{DynamoWalletStore, sdk_error};
use crate::update::UpdateExpr;

fn day_sk(day: NaiveDate) -> String {
    format!("DAY#{}", day.format("%Y-%m-%d"))
}

/// What a day (or a member, key, model or kind over the days asked) used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Used {
    /// What calls billed to the wallet cost (paid plus shortfall).
    pub billed: Usd,
    /// What calls on the org's own key would have cost: never debited.
    pub unbilled: Usd,
    pub calls: u64,
}

impl Used {
    fn add(&mut self, other: &Used) -> Result<(), StoreError> {
        let invalid = |e: agent_credits_domain::MoneyError| StoreError::Invalid(e.to_string());
        self.billed = self.billed.checked_add(other.billed).map_err(invalid)?;
        self.unbilled = self.unbilled.checked_add(other.unbilled).map_err(invalid)?;
        self.calls += other.calls;
        Ok(())
    }
}

/// The org's usage over a range of days: each day with usage, and each dimension's
/// values over the whole range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageByDay {
    pub days: BTreeMap<NaiveDate, Used>,
    pub by: BTreeMap<(Dimension, String), Used>,
}

/// The updates one call makes to its day's counters: `billed` (to the wallet) or
/// `unbilled` (on the org's own key), and one call.
pub(crate) fn day_counters(
    table: &str,
    org: &OrgId,
    at: DateTime<Utc>,
    attribution: &Attribution,
    billed: Usd,
    unbilled: Usd,
) -> Result<Vec<TransactWriteItem>, StoreError> {
    let day = day_of(at);
    let day_text = day.format("%Y-%m-%d").to_string();
    let mut sks = vec![(day_sk(day), None)];
    for (dim, value) in breakdown(attribution) {
        sks.push((
            format!("{}#{}#{value}", day_sk(day), dim.as_str()),
            Some((dim, value)),
        ));
    }
    sks.into_iter()
        .map(|(sk, dim)| {
            let mut x = UpdateExpr::default();
            x.add("billed", n_usd(billed));
            x.add("unbilled", n_usd(unbilled));
            x.add("calls", n_u64(1));
            x.set("type", s("usage_day"));
            x.set("day", s(day_text.as_str()));
            if let Some((dim, value)) = dim {
                x.set("dim", s(dim.as_str()));
                x.set("value", s(value));
            }
            x.update(table, key(org_pk(org), sk))
        })
        .collect()
}

fn used_from(r: &Reader<'_>) -> Result<Used, StoreError> {
    let usd = |name: &str| if r.has(name) { r.usd(name) } else { Ok(Usd::ZERO) };
    Ok(Used {
        billed: usd("billed")?,
        unbilled: usd("unbilled")?,
        calls: if r.has("calls") { r.u64("calls")? } else { 0 },
    })
}

impl DynamoWalletStore {
    /// The org's usage from `from` to `to`, both included.
    pub async fn usage_by_day(
        &self,
        org: &OrgId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<UsageByDay, StoreError> {
        let mut out = UsageByDay::default();
        let mut start = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(self.table())
                .key_condition_expression("pk = :pk AND sk BETWEEN :first AND :last")
                .expression_attribute_values(":pk", s(org_pk(org)))
                .expression_attribute_values(":first", s(day_sk(from)))
                // After every `DAY#<to>#...`: `~` sorts after every character of an id.
                .expression_attribute_values(":last", s(format!("{}#~", day_sk(to))))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in page.items() {
                add_item(&mut out, item)?;
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}

fn add_item(out: &mut UsageByDay, item: &Item) -> Result<(), StoreError> {
    let r = Reader::new(item);
    let used = used_from(&r)?;
    match r.opt_s("dim")? {
        None => {
            let day =
                NaiveDate::parse_from_str(r.s("day")?, "%Y-%m-%d").map_err(|e| r.corrupt(e.to_string()))?;
            out.days.entry(day).or_default().add(&used)
        }
        Some(dim) => {
            let dim = Dimension::parse(dim).ok_or_else(|| r.corrupt(format!("dimension {dim}")))?;
            out.by
                .entry((dim, r.s("value")?.to_owned()))
                .or_default()
                .add(&used)
        }
    }
}
