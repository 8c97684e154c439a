//! What reconciliation reads of the table, and never writes: every wallet and every
//! credited payment (Scans: a reconciliation looks at the whole table, on a schedule), an
//! org's wallet as stored, field by field, and its whole ledger.

use agent_credits_domain::{Bucket, Buckets, LedgerEntry, OrgId, StoreError, Usd};
use chrono::{DateTime, Utc};

use crate::attr::{Item, Reader, s};
use crate::items::{self, WALLET_SK, key, org_pk, timestamp};
use crate::payments::{PaymentRecord, payment_from_item};
use crate::store::{DynamoWalletStore, get_consistent, sdk_error};

/// A wallet as stored: each money attribute as written, not recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWallet {
    pub org: OrgId,
    pub buckets: Buckets,
    pub held: Usd,
    /// The stored `balance` (the buckets' sum, if all is well).
    pub balance: Usd,
    /// The stored `available` (balance less held, if all is well).
    pub available: Usd,
    pub version: u64,
}

impl DynamoWalletStore {
    /// Every wallet's org (a Scan, filtered to wallets, reading their keys only).
    pub async fn wallet_orgs(&self) -> Result<Vec<OrgId>, StoreError> {
        let items = self.scan_sk(WALLET_SK).await?;
        items
            .iter()
            .map(|item| {
                let r = Reader::new(item);
                let pk = r.s(items::PK)?;
                pk.strip_prefix("ORG#")
                    .and_then(|o| OrgId::parse(o).ok())
                    .ok_or_else(|| r.corrupt("a wallet outside an org"))
            })
            .collect()
    }

    /// Every credited payment's record (a Scan, filtered to them).
    pub async fn payment_records(&self) -> Result<Vec<PaymentRecord>, StoreError> {
        let items = self.scan_sk("PAYMENT").await?;
        items
            .iter()
            .map(|item| {
                let r = Reader::new(item);
                let pk = r.s(items::PK)?;
                let pi = pk
                    .strip_prefix("STRIPE#")
                    .ok_or_else(|| r.corrupt("a payment record outside STRIPE#"))?;
                payment_from_item(pi, item)
            })
            .collect()
    }

    /// The notifications (of `org`, or of every org) created in `from..to` that the notifier
    /// never marked published: `(org, notification id, kind, created_at)`.
    pub async fn unpublished_notifications(
        &self,
        org: Option<&OrgId>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(OrgId, String, String, String)>, StoreError> {
        let unpublished = "attribute_not_exists(published_at) AND created_at BETWEEN :from AND :to";
        let mut values = std::collections::HashMap::from([
            (":notif".to_owned(), s("NOTIF#")),
            (":from".to_owned(), timestamp(from)),
            (":to".to_owned(), timestamp(to)),
        ]);
        if let Some(org) = org {
            values.insert(":pk".to_owned(), s(org_pk(org)));
        }
        let mut found = vec![];
        let mut start = None;
        loop {
            // One org's: a Query of its partition; every org's: a Scan.
            let page = match org {
                Some(_) => {
                    let out = self
                        .client()
                        .query()
                        .table_name(self.table())
                        .key_condition_expression("pk = :pk AND begins_with(sk, :notif)")
                        .filter_expression(unpublished)
                        .set_expression_attribute_values(Some(values.clone()))
                        .set_exclusive_start_key(start)
                        .send()
                        .await
                        .map_err(sdk_error)?;
                    (out.items.unwrap_or_default(), out.last_evaluated_key)
                }
                None => {
                    let out = self
                        .client()
                        .scan()
                        .table_name(self.table())
                        .filter_expression(format!("begins_with(sk, :notif) AND {unpublished}"))
                        .set_expression_attribute_values(Some(values.clone()))
                        .set_exclusive_start_key(start)
                        .send()
                        .await
                        .map_err(sdk_error)?;
                    (out.items.unwrap_or_default(), out.last_evaluated_key)
                }
            };
            for item in &page.0 {
                let r = Reader::new(item);
                let owner = r
                    .s(items::PK)?
                    .strip_prefix("ORG#")
                    .and_then(|o| OrgId::parse(o).ok())
                    .ok_or_else(|| r.corrupt("a notification outside an org"))?;
                found.push((
                    owner,
                    r.s(items::SK)?.trim_start_matches("NOTIF#").to_owned(),
                    r.s("kind")?.to_owned(),
                    r.s("created_at")?.to_owned(),
                ));
            }
            match page.1 {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(found),
            }
        }
    }

    /// The org's wallet as stored, or `None` when it has none.
    pub async fn stored_wallet(&self, org: &OrgId) -> Result<Option<StoredWallet>, StoreError> {
        let Some(item) = get_consistent(self.client(), self.table(), key(org_pk(org), WALLET_SK)).await?
        else {
            return Ok(None);
        };
        let r = Reader::new(&item);
        let usd = |name: &str| Ok::<_, StoreError>(r.opt_usd(name)?.unwrap_or(Usd::ZERO));
        let mut buckets = Buckets::default();
        for b in Bucket::DEBIT_ORDER {
            let stored = usd(b.as_str())?;
            match b {
                Bucket::Expiring => buckets.expiring = stored,
                Bucket::Base => buckets.base = stored,
                Bucket::Rollover => buckets.rollover = stored,
                Bucket::Purchased => buckets.purchased = stored,
                Bucket::Earned => buckets.earned = stored,
            }
        }
        Ok(Some(StoredWallet {
            org: org.clone(),
            buckets,
            held: usd("held")?,
            balance: usd("balance")?,
            available: usd("available")?,
            version: if r.has("version") { r.u64("version")? } else { 0 },
        }))
    }

    /// The org's whole ledger, oldest first.
    pub async fn ledger(&self, org: &OrgId) -> Result<Vec<LedgerEntry>, StoreError> {
        self.entries_between(org, "TX#".to_owned(), "TX#~".to_owned())
            .await
    }

    /// The org's ledger up to entry `version` (the wallet's version when it was read),
    /// oldest first: entries committed after that read are left out.
    pub async fn ledger_through(&self, org: &OrgId, version: u64) -> Result<Vec<LedgerEntry>, StoreError> {
        self.entries_between(org, "TX#".to_owned(), items::entry_sk(version))
            .await
    }

    async fn entries_between(
        &self,
        org: &OrgId,
        from: String,
        to: String,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut entries = vec![];
        let mut start = None;
        loop {
            let out = self
                .client()
                .query()
                .table_name(self.table())
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(org_pk(org)))
                .expression_attribute_values(":from", s(from.as_str()))
                .expression_attribute_values(":to", s(to.as_str()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items() {
                entries.push(items::entry_from_item(org, item)?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(entries),
            }
        }
    }

    async fn scan_sk(&self, sk: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = vec![];
        let mut start = None;
        loop {
            let out = self
                .client()
                .scan()
                .table_name(self.table())
                .filter_expression("sk = :sk")
                .expression_attribute_values(":sk", s(sk))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }
}
