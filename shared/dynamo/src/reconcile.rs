//! What reconciliation reads of the table, and never writes: every wallet and every
//! credited payment (Scans: a reconciliation looks at the whole table, on a schedule), an
//! org's wallet as stored, field by field, and its whole ledger.

use agent_credits_domain::{LedgerEntry, OrgId, StoreError, Usd};

use crate::attr::{Item, Reader, s};
use crate::items::{self, WALLET_SK, key, org_pk};
use crate::payments::{PaymentRecord, payment_from_item};
use crate::store::{DynamoWalletStore, get_consistent, sdk_error};

/// A wallet as stored: each money attribute as written, not recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWallet {
    pub org: OrgId,
    pub base: Usd,
    pub rollover: Usd,
    pub purchased: Usd,
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

    /// The org's wallet as stored, or `None` when it has none.
    pub async fn stored_wallet(&self, org: &OrgId) -> Result<Option<StoredWallet>, StoreError> {
        let Some(item) = get_consistent(self.client(), self.table(), key(org_pk(org), WALLET_SK)).await?
        else {
            return Ok(None);
        };
        let r = Reader::new(&item);
        let usd = |name: &str| Ok::<_, StoreError>(r.opt_usd(name)?.unwrap_or(Usd::ZERO));
        Ok(Some(StoredWallet {
            org: org.clone(),
            base: usd("base")?,
            rollover: usd("rollover")?,
            purchased: usd("purchased")?,
            held: usd("held")?,
            balance: usd("balance")?,
            available: usd("available")?,
            version: if r.has("version") { r.u64("version")? } else { 0 },
        }))
    }

    /// The org's whole ledger, oldest first.
    pub async fn ledger(&self, org: &OrgId) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut entries = vec![];
        let mut start = None;
        loop {
            let out = self
                .client()
                .query()
                .table_name(self.table())
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(org_pk(org)))
                .expression_attribute_values(":from", s("TX#"))
                .expression_attribute_values(":to", s("TX#~"))
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
