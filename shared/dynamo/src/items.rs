//! The key layout and item codecs of the one table. `infra/TABLE.md` is the written
//! design; this module is where it is true.

use agent_credits_domain::{
    Attribution, BucketDelta, EntryKind, ExternalRefs, IdempotencyKey, LedgerEntry, OrgId, PauseReason,
    StoreError, Wallet, WalletState,
};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::attr::{Item, Reader, n_signed, n_u64, n_usd, s};

pub const PK: &str = "pk";
pub const SK: &str = "sk";

pub fn org_pk(org: &OrgId) -> String {
    format!("ORG#{org}")
}

pub const WALLET_SK: &str = "WALLET";

pub fn entry_sk(seq: u64) -> String {
    format!("TX#{seq:020}")
}

/// Lowest and highest possible entry sort keys, for range queries.
pub const ENTRY_SK_FIRST: &str = "TX#";
pub const ENTRY_SK_LAST: &str = "TX#~";

pub fn idem_sk(key: &IdempotencyKey) -> String {
    format!("IDEM#{key}")
}

/// Per-member usage of one calendar month (UTC), e.g. `USAGE#2026-11#MEMBER#m_1`: one
/// Query with `begins_with(sk, "USAGE#2026-11#")` lists every member's month.
pub fn member_month_sk(month: &str, member: &str) -> String {
    format!("USAGE#{month}#MEMBER#{member}")
}

pub fn month_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m").to_string()
}

pub fn key(pk: String, sk: impl Into<String>) -> Item {
    Item::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

pub fn timestamp(t: DateTime<Utc>) -> AttributeValue {
    s(t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn parse_time(r: &Reader<'_>, name: &str) -> Result<DateTime<Utc>, StoreError> {
    let v = r.s(name)?;
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| r.corrupt(format!("{name} is not a timestamp: {v}")))
}

// --- wallet -------------------------------------------------------------------------

pub fn wallet_from_item(org: &OrgId, item: &Item) -> Result<Wallet, StoreError> {
    let r = Reader::new(item);
    let state = match (r.s("state")?, r.opt_s("pause_reason")?) {
        ("active", _) => WalletState::Active,
        ("paused", Some(reason)) => WalletState::Paused(
            PauseReason::parse(reason).ok_or_else(|| r.corrupt(format!("unknown pause reason {reason}")))?,
        ),
        (other, _) => return Err(r.corrupt(format!("unknown state {other}"))),
    };
    let mut wallet = Wallet::empty(org.clone());
    wallet.buckets.base = r.usd("base")?;
    wallet.buckets.rollover = r.usd("rollover")?;
    wallet.buckets.purchased = r.usd("purchased")?;
    wallet.held = r.usd("held")?;
    wallet.lifetime_added = r.usd("lifetime_added")?;
    wallet.lifetime_spent = r.usd("lifetime_spent")?;
    wallet.state = state;
    wallet.version = r.u64("version")?;
    Ok(wallet)
}

pub fn state_attrs(state: WalletState) -> (AttributeValue, Option<AttributeValue>) {
    match state {
        WalletState::Active => (s("active"), None),
        WalletState::Paused(reason) => (s("paused"), Some(s(reason.as_str()))),
    }
}

/// A whole wallet item, for the first change of an org.
pub fn wallet_item(w: &Wallet, now: DateTime<Utc>) -> Result<Item, StoreError> {
    let balance = w.balance().map_err(|e| StoreError::Invalid(e.to_string()))?;
    let available = w.available().map_err(|e| StoreError::Invalid(e.to_string()))?;
    let (state, reason) = state_attrs(w.state);
    let mut item = key(org_pk(&w.org), WALLET_SK);
    item.extend([
        ("type".to_owned(), s("wallet")),
        ("base".to_owned(), n_usd(w.buckets.base)),
        ("rollover".to_owned(), n_usd(w.buckets.rollover)),
        ("purchased".to_owned(), n_usd(w.buckets.purchased)),
        ("held".to_owned(), n_usd(w.held)),
        ("balance".to_owned(), n_usd(balance)),
        ("available".to_owned(), n_usd(available)),
        ("lifetime_added".to_owned(), n_usd(w.lifetime_added)),
        ("lifetime_spent".to_owned(), n_usd(w.lifetime_spent)),
        ("state".to_owned(), state),
        ("version".to_owned(), n_u64(w.version)),
        ("updated_at".to_owned(), timestamp(now)),
    ]);
    if let Some(reason) = reason {
        item.insert("pause_reason".to_owned(), reason);
    }
    Ok(item)
}

// --- ledger entries -----------------------------------------------------------------

pub fn entry_item(e: &LedgerEntry) -> Item {
    let mut item = key(org_pk(&e.org), entry_sk(e.seq));
    item.extend([
        ("type".to_owned(), s("entry")),
        ("seq".to_owned(), n_u64(e.seq)),
        ("kind".to_owned(), s(e.kind.as_str())),
        ("amount".to_owned(), n_signed(e.amount)),
        ("d_base".to_owned(), n_signed(e.buckets.base)),
        ("d_rollover".to_owned(), n_signed(e.buckets.rollover)),
        ("d_purchased".to_owned(), n_signed(e.buckets.purchased)),
        ("held_change".to_owned(), n_signed(e.held_change)),
        ("balance_after".to_owned(), n_usd(e.balance_after)),
        ("available_after".to_owned(), n_usd(e.available_after)),
        ("idempotency_key".to_owned(), s(e.idempotency_key.as_str())),
        ("created_at".to_owned(), timestamp(e.created_at)),
    ]);
    let a = &e.attribution;
    for (name, v) in [
        ("member", a.member.as_ref().map(|m| m.as_str())),
        ("api_key", a.api_key.as_ref().map(|m| m.as_str())),
        ("agent", a.agent.as_ref().map(|m| m.as_str())),
    ] {
        if let Some(v) = v {
            item.insert(name.to_owned(), s(v));
        }
    }
    let ext = e.external.pairs();
    if !ext.is_empty() {
        let map = ext.into_iter().map(|(k, v)| (k.to_owned(), s(v))).collect();
        item.insert("ext".to_owned(), AttributeValue::M(map));
    }
    item
}

pub fn entry_from_item(org: &OrgId, item: &Item) -> Result<LedgerEntry, StoreError> {
    let r = Reader::new(item);
    let kind = r.s("kind")?;
    let parse_id =
        |name: &str| -> Result<Option<String>, StoreError> { Ok(r.opt_s(name)?.map(str::to_owned)) };
    let attribution = Attribution {
        member: parse_id("member")?
            .map(|v| v.parse())
            .transpose()
            .map_err(|e| r.corrupt(format!("{e}")))?,
        api_key: parse_id("api_key")?
            .map(|v| v.parse())
            .transpose()
            .map_err(|e| r.corrupt(format!("{e}")))?,
        agent: parse_id("agent")?
            .map(|v| v.parse())
            .transpose()
            .map_err(|e| r.corrupt(format!("{e}")))?,
    };
    let mut external = ExternalRefs::default();
    if let Some(map) = r.map("ext")? {
        for (k, v) in map {
            let v = v
                .as_s()
                .map_err(|_| r.corrupt(format!("ext.{k} is not a string")))?;
            if !external.set(k, v.clone()) {
                return Err(r.corrupt(format!("unknown external reference {k}")));
            }
        }
    }
    Ok(LedgerEntry {
        org: org.clone(),
        seq: r.u64("seq")?,
        kind: EntryKind::parse(kind).ok_or_else(|| r.corrupt(format!("unknown kind {kind}")))?,
        amount: r.signed("amount")?,
        buckets: BucketDelta {
            base: r.signed("d_base")?,
            rollover: r.signed("d_rollover")?,
            purchased: r.signed("d_purchased")?,
        },
        held_change: r.signed("held_change")?,
        balance_after: r.usd("balance_after")?,
        available_after: r.usd("available_after")?,
        attribution,
        idempotency_key: IdempotencyKey::parse(r.s("idempotency_key")?)
            .map_err(|e| r.corrupt(e.to_string()))?,
        external,
        created_at: parse_time(&r, "created_at")?,
    })
}

// --- idempotency records ------------------------------------------------------------

/// Claims an idempotency key for the entry `seq`. Written under `attribute_not_exists`
/// in the same transaction as the entry, so a key maps to at most one entry, forever.
pub fn idem_item(
    org: &OrgId,
    key_: &IdempotencyKey,
    seq: u64,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Item {
    let mut item = key(org_pk(org), idem_sk(key_));
    item.extend([
        ("type".to_owned(), s("idem")),
        ("seq".to_owned(), n_u64(seq)),
        ("fingerprint".to_owned(), s(fingerprint)),
        ("created_at".to_owned(), timestamp(now)),
    ]);
    item
}

pub struct IdemRecord {
    pub seq: u64,
    pub fingerprint: String,
}

pub fn idem_from_item(item: &Item) -> Result<IdemRecord, StoreError> {
    let r = Reader::new(item);
    Ok(IdemRecord {
        seq: r.u64("seq")?,
        fingerprint: r.s("fingerprint")?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_credits_domain::{MemberId, SignedUsd, Usd};

    #[test]
    fn an_entry_survives_the_round_trip_through_an_item() {
        let org = OrgId::parse("org_1").unwrap();
        let entry = LedgerEntry {
            org: org.clone(),
            seq: 42,
            kind: EntryKind::Usage,
            amount: SignedUsd::debit(Usd::parse("0.01845").unwrap()),
            buckets: BucketDelta {
                base: SignedUsd::debit(Usd::parse("0.01").unwrap()),
                rollover: SignedUsd::ZERO,
                purchased: SignedUsd::debit(Usd::parse("0.00845").unwrap()),
            },
            held_change: SignedUsd::ZERO,
            balance_after: Usd::parse("9.98155").unwrap(),
            available_after: Usd::parse("9.98155").unwrap(),
            attribution: Attribution {
                member: Some(MemberId::parse("m_1").unwrap()),
                api_key: None,
                agent: None,
            },
            idempotency_key: IdempotencyKey::parse("usage:req_1").unwrap(),
            external: ExternalRefs {
                charge: Some("ch_1".into()),
                ..Default::default()
            },
            created_at: DateTime::parse_from_rfc3339("2026-11-22T05:00:00.123Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        assert_eq!(entry_from_item(&org, &entry_item(&entry)).unwrap(), entry);
        assert_eq!(entry_item(&entry)["amount"], AttributeValue::N("-0.01845".into()));
    }

    #[test]
    fn a_number_in_scientific_form_still_reads_exactly() {
        let item = Item::from([("x".to_owned(), AttributeValue::N("1.5E-2".into()))]);
        assert_eq!(Reader::new(&item).usd("x").unwrap(), Usd::parse("0.015").unwrap());
    }
}
