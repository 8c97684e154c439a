//! The key layout and item codecs of the one table. `infra/TABLE.md` is the written
//! design; this module is where it is true.

use std::collections::BTreeSet;

use agent_credits_domain::{
    Attribution, BillingMode, BucketDelta, Consumable, EntryKind, ExternalRefs, Feature, HoldId,
    IdempotencyKey, LedgerEntry, Lot, Lots, Markup, MemberId, MemberMonth, NotificationKind, OrgId,
    PauseReason, Payout, PayoutState, RechargeTrigger, SignedUsd, StoreError, Usd, Wallet, WalletSettings,
    WalletState, WithdrawalId,
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

pub fn hold_sk(id: &HoldId) -> String {
    format!("HOLD#{id}")
}

pub fn member_sk(member: &MemberId) -> String {
    format!("MEMBER#{member}")
}

/// `gsi1pk` of wallets due for an auto-recharge: the sweep's one query.
pub const RECHARGE_DUE_PK: &str = "DUE#RECHARGE";

/// The sort key of the recharge-due mark: its time orders the sweep.
pub fn due_mark(t: DateTime<Utc>, org: &OrgId) -> String {
    format!("{}#{org}", t.to_rfc3339())
}

/// Open holds are spread over this many `gsi1` partitions, by org, for the expiry sweep.
pub const HOLD_SHARDS: u32 = 10;
pub const HOLD_SHARD_PREFIX: &str = "HOLDS#OPEN#";

/// The `gsi1` partition of an org's open holds.
pub fn hold_shard_pk(org: &OrgId) -> String {
    let shard = org
        .as_str()
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % HOLD_SHARDS;
    format!("{HOLD_SHARD_PREFIX}{shard}")
}

/// A hold's expiry as stored (and compared as text): RFC 3339, milliseconds, UTC.
pub fn hold_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `gsi1pk` of the markers of dated grants: the expiry sweep's one query, by date.
pub const LOTS_DUE_PK: &str = "DUE#EXPIRY";

/// The marker of one lot of a wallet's expiring credits: `gsi1sk` is its date, then the
/// org and the lot, so the sweep reads the lots past their date in date order.
pub fn lot_sk(seq: u64) -> String {
    format!("LOT#{seq:020}")
}

pub fn lot_marker_item(org: &OrgId, lot: &Lot) -> Item {
    let mut item = key(org_pk(org), lot_sk(lot.seq));
    item.extend([
        ("type".to_owned(), s("lot")),
        ("org".to_owned(), s(org.as_str())),
        ("gsi1pk".to_owned(), s(LOTS_DUE_PK)),
        (
            "gsi1sk".to_owned(),
            s(format!("{}#{org}#{}", hold_time(lot.expires_at), lot.seq)),
        ),
    ]);
    item
}

/// When a retired lot marker disappears (TTL, epoch seconds): a day after.
pub fn retired_marker_ttl(now: DateTime<Utc>) -> u64 {
    u64::try_from((now + chrono::Duration::days(1)).timestamp()).unwrap_or(0)
}

/// The lots as one attribute, `<seq>|<expires_at>|<left>` space-separated; `None` (the
/// attribute removed) for none.
pub fn lots_attr(lots: &Lots) -> Option<AttributeValue> {
    (!lots.is_empty()).then(|| {
        s(lots
            .iter()
            .map(|l| {
                format!(
                    "{}|{}|{}",
                    l.seq,
                    hold_time(l.expires_at),
                    l.left.as_decimal().normalize()
                )
            })
            .collect::<Vec<_>>()
            .join(" "))
    })
}

fn lots_from(r: &Reader<'_>) -> Result<Lots, StoreError> {
    let Some(text) = r.opt_s("lots")? else {
        return Ok(Lots::default());
    };
    let lot = |part: &str| -> Option<Lot> {
        let mut it = part.split('|');
        let seq = it.next()?.parse().ok()?;
        let expires_at = DateTime::parse_from_rfc3339(it.next()?).ok()?.with_timezone(&Utc);
        let left = rust_decimal::Decimal::from_str_exact(it.next()?).ok()?;
        let left = Usd::from_stored(left).ok()?;
        it.next().is_none().then_some(Lot {
            seq,
            expires_at,
            left,
        })
    };
    let lots = text
        .split_whitespace()
        .map(|p| lot(p).ok_or_else(|| r.corrupt(format!("unreadable lot {p}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Lots::from_stored(lots))
}

/// A payout's record (see `agent_credits_domain::withdrawals`).
pub fn withdrawal_sk(id: &WithdrawalId) -> String {
    format!("WITHDRAWAL#{id}")
}

pub const WITHDRAWAL_SK_PREFIX: &str = "WITHDRAWAL#";

/// `gsi1pk` of pending payouts (removed when one is settled).
pub const PAYOUTS_PENDING_PK: &str = "PAYOUTS#PENDING";

pub fn payout_from_item(item: &Item) -> Result<Payout, StoreError> {
    let r = Reader::new(item);
    let state = r.s("state")?;
    Ok(Payout {
        id: WithdrawalId::parse(r.s("id")?).map_err(|e| r.corrupt(e.to_string()))?,
        amount: r.usd("amount")?,
        state: PayoutState::parse(state).ok_or_else(|| r.corrupt(format!("unknown payout state {state}")))?,
        requested_by: MemberId::parse(r.s("requested_by")?).map_err(|e| r.corrupt(e.to_string()))?,
        requested_at: parse_time(&r, "requested_at")?,
        settled_at: if r.has("settled_at") {
            Some(parse_time(&r, "settled_at")?)
        } else {
            None
        },
        reference: r.opt_s("reference")?.map(str::to_owned),
        reason: r.opt_s("reason")?.map(str::to_owned),
    })
}

pub fn key(pk: String, sk: impl Into<String>) -> Item {
    Item::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

pub fn timestamp(t: DateTime<Utc>) -> AttributeValue {
    s(t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

pub(crate) fn parse_time(r: &Reader<'_>, name: &str) -> Result<DateTime<Utc>, StoreError> {
    let v = r.s(name)?;
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| r.corrupt(format!("{name} is not a timestamp: {v}")))
}

// --- wallet -------------------------------------------------------------------------

pub fn wallet_from_item(org: &OrgId, item: &Item) -> Result<Wallet, StoreError> {
    let r = Reader::new(item);
    let mut wallet = Wallet::empty(org.clone());
    wallet.settings = settings_from(&r)?;
    // An item that settings created before any money moved has no money attributes yet.
    if !item.contains_key("version") {
        return Ok(wallet);
    }
    wallet.state = match (r.s("state")?, r.opt_s("pause_reason")?) {
        ("active", _) => WalletState::Active,
        ("paused", Some(reason)) => WalletState::Paused(
            PauseReason::parse(reason).ok_or_else(|| r.corrupt(format!("unknown pause reason {reason}")))?,
        ),
        (other, _) => return Err(r.corrupt(format!("unknown state {other}"))),
    };
    // Money fields are written by delta (`if_not_exists(x, 0) + d`): one that no change
    // has moved yet is absent, and zero.
    let money = |name: &str| if r.has(name) { r.usd(name) } else { Ok(Usd::ZERO) };
    wallet.buckets.base = money("base")?;
    wallet.buckets.rollover = money("rollover")?;
    wallet.buckets.purchased = money("purchased")?;
    wallet.buckets.expiring = money("expiring")?;
    wallet.buckets.earned = money("earned")?;
    wallet.lots = lots_from(&r)?;
    wallet.held = money("held")?;
    wallet.lifetime_added = money("lifetime_added")?;
    wallet.lifetime_granted = money("lifetime_granted")?;
    wallet.lifetime_spent = money("lifetime_spent")?;
    wallet.lifetime_expired = money("lifetime_expired")?;
    wallet.lifetime_taken_back = money("lifetime_taken_back")?;
    wallet.lifetime_withdrawn = money("lifetime_withdrawn")?;
    wallet.forgiven = money("forgiven")?;
    wallet.forgiven_at = if r.has("forgiven_at") {
        r.u64("forgiven_at")?
    } else {
        0
    };
    wallet.low = r.opt_bool("low")?.unwrap_or(false);
    wallet.version = r.u64("version")?;
    if let Some(ids) = r.opt_s("open_disputes")? {
        wallet.open_disputes = ids.split_whitespace().map(str::to_owned).collect();
    }
    Ok(wallet)
}

/// The open disputes as one attribute, their ids space-separated; `None` (the attribute
/// removed) for none.
pub fn disputes_attr(ids: &BTreeSet<String>) -> Option<AttributeValue> {
    (!ids.is_empty()).then(|| s(ids.iter().map(String::as_str).collect::<Vec<_>>().join(" ")))
}

fn settings_from(r: &Reader<'_>) -> Result<WalletSettings, StoreError> {
    let opt_usd = |name: &str| -> Result<Option<Usd>, StoreError> {
        if r.has(name) {
            r.usd(name).map(Some)
        } else {
            Ok(None)
        }
    };
    let billing_mode = match r.opt_s("billing_mode")? {
        Some(m) => Some(BillingMode::parse(m).ok_or_else(|| r.corrupt(format!("unknown billing mode {m}")))?),
        None => None,
    };
    let markup = match r.has("markup") {
        true => Some(Markup::from_decimal(r.decimal("markup")?).map_err(|e| r.corrupt(e.to_string()))?),
        false => None,
    };
    Ok(WalletSettings {
        billing_mode,
        markup,
        low_threshold: opt_usd("low_threshold")?,
        recharge: RechargeTrigger {
            enabled: r.opt_bool("recharge_enabled")?.unwrap_or(false),
            threshold: opt_usd("recharge_threshold")?.unwrap_or(Usd::ZERO),
        },
    })
}

/// The settings attributes of the wallet item; `None` removes one.
pub fn settings_attrs(s_: &WalletSettings) -> Vec<(&'static str, Option<AttributeValue>)> {
    vec![
        ("billing_mode", s_.billing_mode.map(|m| s(m.as_str()))),
        ("markup", s_.markup.map(|m| crate::attr::n_dec(m.as_decimal()))),
        ("low_threshold", s_.low_threshold.map(n_usd)),
        (
            "recharge_enabled",
            Some(AttributeValue::Bool(s_.recharge.enabled)),
        ),
        ("recharge_threshold", Some(n_usd(s_.recharge.threshold))),
    ]
}

pub fn state_attrs(state: WalletState) -> (AttributeValue, Option<AttributeValue>) {
    match state {
        WalletState::Active => (s("active"), None),
        WalletState::Paused(reason) => (s("paused"), Some(s(reason.as_str()))),
    }
}

/// A whole wallet item as the store keeps it (for fixtures and tests).
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
        ("expiring".to_owned(), n_usd(w.buckets.expiring)),
        ("earned".to_owned(), n_usd(w.buckets.earned)),
        ("held".to_owned(), n_usd(w.held)),
        ("balance".to_owned(), n_usd(balance)),
        ("available".to_owned(), n_usd(available)),
        ("lifetime_added".to_owned(), n_usd(w.lifetime_added)),
        ("lifetime_granted".to_owned(), n_usd(w.lifetime_granted)),
        ("lifetime_spent".to_owned(), n_usd(w.lifetime_spent)),
        ("lifetime_expired".to_owned(), n_usd(w.lifetime_expired)),
        ("lifetime_taken_back".to_owned(), n_usd(w.lifetime_taken_back)),
        ("lifetime_withdrawn".to_owned(), n_usd(w.lifetime_withdrawn)),
        ("forgiven".to_owned(), n_usd(w.forgiven)),
        ("forgiven_at".to_owned(), n_u64(w.forgiven_at)),
        ("state".to_owned(), state),
        ("version".to_owned(), n_u64(w.version)),
        ("updated_at".to_owned(), timestamp(now)),
    ]);
    if let Some(reason) = reason {
        item.insert("pause_reason".to_owned(), reason);
    }
    if let Some(ids) = disputes_attr(&w.open_disputes) {
        item.insert("open_disputes".to_owned(), ids);
    }
    if let Some(lots) = lots_attr(&w.lots) {
        item.insert("lots".to_owned(), lots);
    }
    for (name, value) in settings_attrs(&w.settings) {
        if let Some(v) = value {
            item.insert(name.to_owned(), v);
        }
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
        ("shortfall".to_owned(), n_usd(e.shortfall)),
        ("balance_after".to_owned(), n_usd(e.balance_after)),
        ("available_after".to_owned(), n_usd(e.available_after)),
        ("idempotency_key".to_owned(), s(e.idempotency_key.as_str())),
        ("created_at".to_owned(), timestamp(e.created_at)),
    ]);
    if let Some(hold) = &e.hold {
        item.insert("hold".to_owned(), s(hold.as_str()));
    }
    // Written only when they moved, as before these buckets existed.
    for (name, d) in [("d_expiring", e.buckets.expiring), ("d_earned", e.buckets.earned)] {
        if !d.is_zero() {
            item.insert(name.to_owned(), n_signed(d));
        }
    }
    if let Some(note) = &e.note {
        item.insert("note".to_owned(), s(note.as_str()));
    }
    let a = &e.attribution;
    for (name, v) in [
        ("member", a.member.as_ref().map(|m| m.as_str())),
        ("api_key", a.api_key.as_ref().map(|m| m.as_str())),
        ("agent", a.agent.as_ref().map(|m| m.as_str())),
        ("model", a.model.as_ref().map(|m| m.as_str())),
        // A model call is the default and is not written, as before kinds existed.
        (
            "consumable",
            (!a.consumable.is_model_call()).then(|| a.consumable.as_str()),
        ),
        ("feature", a.feature.map(|f| f.as_str())),
        ("creator", a.creator.as_ref().map(|c| c.as_str())),
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

/// What a use consumed, as its item says: a model call when it says nothing (items
/// written before kinds existed).
fn consumable_of(r: &Reader<'_>) -> Result<Consumable, StoreError> {
    match r.opt_s("consumable")? {
        Some(k) => Consumable::parse(k).ok_or_else(|| r.corrupt(format!("unknown consumable {k}"))),
        None => Ok(Consumable::Llm),
    }
}

fn feature_of(r: &Reader<'_>) -> Result<Option<Feature>, StoreError> {
    r.opt_s("feature")?
        .map(|f| Feature::parse(f).ok_or_else(|| r.corrupt(format!("unknown feature {f}"))))
        .transpose()
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
        model: parse_id("model")?
            .map(|v| v.parse())
            .transpose()
            .map_err(|e| r.corrupt(format!("{e}")))?,
        consumable: consumable_of(&r)?,
        feature: feature_of(&r)?,
        creator: parse_id("creator")?
            .map(OrgId::parse)
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
            expiring: if r.has("d_expiring") {
                r.signed("d_expiring")?
            } else {
                SignedUsd::ZERO
            },
            earned: if r.has("d_earned") {
                r.signed("d_earned")?
            } else {
                SignedUsd::ZERO
            },
        },
        held_change: r.signed("held_change")?,
        shortfall: r.usd("shortfall")?,
        hold: r
            .opt_s("hold")?
            .map(HoldId::parse)
            .transpose()
            .map_err(|e| r.corrupt(e.to_string()))?,
        balance_after: r.usd("balance_after")?,
        available_after: r.usd("available_after")?,
        attribution,
        idempotency_key: IdempotencyKey::parse(r.s("idempotency_key")?)
            .map_err(|e| r.corrupt(e.to_string()))?,
        external,
        note: r.opt_s("note")?.map(str::to_owned),
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

// --- holds ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRecord {
    pub id: HoldId,
    /// The member the hold was made for: its capture is theirs.
    pub member: Option<MemberId>,
    pub amount: Usd,
    pub open: bool,
    pub state: String,
    pub expires: DateTime<Utc>,
    /// The month whose member counter holds its reservation.
    pub counted_in: Option<String>,
    /// The wallet version it was made at.
    pub made_at: u64,
    /// What the call it reserves for consumes, and the feature it serves: its capture's.
    pub consumable: Consumable,
    pub feature: Option<Feature>,
}

/// A hold as it is made.
pub struct NewHold<'a> {
    pub id: &'a HoldId,
    pub amount: Usd,
    pub expires: DateTime<Utc>,
    /// The member it is made for.
    pub member: Option<&'a MemberId>,
    /// The month whose member counter holds its reservation.
    pub counted_in: Option<&'a str>,
    /// The wallet version it is made at.
    pub made_at: u64,
    pub consumable: Consumable,
    pub feature: Option<Feature>,
}

pub fn hold_item(org: &OrgId, h: &NewHold<'_>, now: DateTime<Utc>) -> Item {
    let NewHold {
        id,
        amount,
        expires,
        member,
        counted_in,
        made_at,
        consumable,
        feature,
    } = *h;
    let mut item = key(org_pk(org), hold_sk(id));
    let expires_s = hold_time(expires);
    item.extend([
        ("type".to_owned(), s("hold")),
        ("hold".to_owned(), s(id.as_str())),
        ("org".to_owned(), s(org.as_str())),
        ("amount".to_owned(), n_usd(amount)),
        ("state".to_owned(), s("open")),
        ("hold_expires".to_owned(), s(expires_s.clone())),
        ("opened_at".to_owned(), timestamp(now)),
        ("made_at".to_owned(), n_u64(made_at)),
        // While open: one org's holds sort together by expiry within their shard.
        ("gsi1pk".to_owned(), s(hold_shard_pk(org))),
        ("gsi1sk".to_owned(), s(format!("{org}#{expires_s}#{id}"))),
    ]);
    if let Some(m) = member {
        item.insert("member".to_owned(), s(m.as_str()));
    }
    if let Some(month) = counted_in {
        item.insert("counted_in".to_owned(), s(month));
    }
    if !consumable.is_model_call() {
        item.insert("consumable".to_owned(), s(consumable.as_str()));
    }
    if let Some(f) = feature {
        item.insert("feature".to_owned(), s(f.as_str()));
    }
    item
}

/// A hold that was never made, closed by the capture that named it: a hold asked for
/// later under the same id finds it closed, as it would any other.
pub fn captured_hold_item(org: &OrgId, id: &HoldId, now: DateTime<Utc>) -> Item {
    let mut item = key(org_pk(org), hold_sk(id));
    item.extend([
        ("type".to_owned(), s("hold")),
        ("hold".to_owned(), s(id.as_str())),
        ("org".to_owned(), s(org.as_str())),
        ("amount".to_owned(), n_usd(Usd::ZERO)),
        ("state".to_owned(), s("captured")),
        ("hold_expires".to_owned(), s(hold_time(now))),
        ("opened_at".to_owned(), timestamp(now)),
        ("closed_at".to_owned(), timestamp(now)),
    ]);
    item
}

/// The org and id of an open hold, as the expiry index lists it.
pub fn open_hold_ref(item: &Item) -> Result<(OrgId, HoldId), StoreError> {
    let r = Reader::new(item);
    let org = r
        .s(PK)?
        .strip_prefix("ORG#")
        .and_then(|o| OrgId::parse(o).ok())
        .ok_or_else(|| r.corrupt("a hold outside an org"))?;
    let id = HoldId::parse(r.s("hold")?).map_err(|e| r.corrupt(e.to_string()))?;
    Ok((org, id))
}

pub fn hold_from_item(item: &Item) -> Result<HoldRecord, StoreError> {
    let r = Reader::new(item);
    let state = r.s("state")?.to_owned();
    Ok(HoldRecord {
        id: HoldId::parse(r.s("hold")?).map_err(|e| r.corrupt(e.to_string()))?,
        member: r
            .opt_s("member")?
            .map(MemberId::parse)
            .transpose()
            .map_err(|e| r.corrupt(e.to_string()))?,
        amount: r.usd("amount")?,
        open: state == "open",
        state,
        expires: parse_time(&r, "hold_expires")?,
        counted_in: r.opt_s("counted_in")?.map(str::to_owned),
        made_at: if r.has("made_at") { r.u64("made_at")? } else { 0 },
        consumable: consumable_of(&r)?,
        feature: feature_of(&r)?,
    })
}

// --- members --------------------------------------------------------------------------

pub fn member_limit_from_item(item: &Item) -> Result<Option<Usd>, StoreError> {
    Reader::new(item).opt_usd("monthly_limit")
}

/// A member's month from their member item (the limit) and their month counter, either
/// absent when nothing was ever set or counted.
pub fn member_month_from(member: Option<&Item>, counter: Option<&Item>) -> Result<MemberMonth, StoreError> {
    let limit = member.map(member_limit_from_item).transpose()?.flatten();
    let (spent, held) = match counter {
        Some(item) => {
            let r = Reader::new(item);
            (
                r.opt_usd("spent")?.unwrap_or(Usd::ZERO),
                r.opt_usd("held")?.unwrap_or(Usd::ZERO),
            )
        }
        None => (Usd::ZERO, Usd::ZERO),
    };
    Ok(MemberMonth { spent, held, limit })
}

// --- notifications --------------------------------------------------------------------

/// A notification's id is its sort key without `NOTIF#`.
pub use agent_credits_domain::Notification;

pub fn notification_item(
    w: &Wallet,
    kind: NotificationKind,
    seq: u64,
    i: usize,
    now: DateTime<Utc>,
) -> Result<Item, StoreError> {
    let available = w.available().map_err(|e| StoreError::Invalid(e.to_string()))?;
    let sk = format!(
        "NOTIF#{}#{seq:020}#{i}",
        now.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    let mut item = key(org_pk(&w.org), sk);
    item.extend([
        ("type".to_owned(), s("notification")),
        ("kind".to_owned(), s(kind.as_str())),
        ("available".to_owned(), n_usd(available)),
        ("threshold".to_owned(), n_usd(w.settings.low_threshold())),
        ("seq".to_owned(), n_u64(seq)),
        ("created_at".to_owned(), timestamp(now)),
        ("read".to_owned(), AttributeValue::Bool(false)),
    ]);
    Ok(item)
}

pub fn notification_from_item(item: &Item) -> Result<Notification, StoreError> {
    let r = Reader::new(item);
    Ok(Notification {
        id: r.s(SK)?.trim_start_matches("NOTIF#").to_owned(),
        reason: r.opt_s("reason")?.map(str::to_owned),
        kind: r.s("kind")?.to_owned(),
        available: r.usd("available")?,
        seq: r.u64("seq")?,
        created_at: parse_time(&r, "created_at")?,
        read: r.opt_bool("read")?.unwrap_or(false),
    })
}

// --- unbilled usage (BYOK) ------------------------------------------------------------

/// The sort key of a call recorded without touching the wallet (BYOK).
pub fn unbilled_sk(key_: &IdempotencyKey) -> String {
    format!("USE#{key_}")
}

pub fn unbilled_item(
    org: &OrgId,
    key_: &IdempotencyKey,
    fingerprint: &str,
    cost: Usd,
    a: &Attribution,
    now: DateTime<Utc>,
) -> Item {
    let mut item = key(org_pk(org), unbilled_sk(key_));
    item.extend([
        ("type".to_owned(), s("unbilled_usage")),
        ("fingerprint".to_owned(), s(fingerprint)),
        ("cost".to_owned(), n_usd(cost)),
        ("created_at".to_owned(), timestamp(now)),
    ]);
    for (name, v) in [
        ("member", a.member.as_ref().map(|m| m.as_str())),
        ("api_key", a.api_key.as_ref().map(|m| m.as_str())),
        ("agent", a.agent.as_ref().map(|m| m.as_str())),
        ("model", a.model.as_ref().map(|m| m.as_str())),
        // A model call is the default and is not written, as before kinds existed.
        (
            "consumable",
            (!a.consumable.is_model_call()).then(|| a.consumable.as_str()),
        ),
        ("feature", a.feature.map(|f| f.as_str())),
        ("creator", a.creator.as_ref().map(|c| c.as_str())),
    ] {
        if let Some(v) = v {
            item.insert(name.to_owned(), s(v));
        }
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_credits_domain::{MemberId, SignedUsd, Usd};

    #[test]
    fn a_wallet_with_lots_survives_the_round_trip_through_an_item() {
        let org = OrgId::parse("org_1").unwrap();
        let mut w = Wallet::empty(org.clone());
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        w.lots = Lots::from_stored(vec![
            Lot {
                seq: 3,
                expires_at: at("2026-12-24T00:00:00.500Z"),
                left: Usd::parse("2.5").unwrap(),
            },
            Lot {
                seq: 1,
                expires_at: at("2026-12-20T00:00:00Z"),
                left: Usd::parse("0.000001").unwrap(),
            },
        ]);
        w.buckets.expiring = Usd::parse("2.500001").unwrap();
        w.buckets.earned = Usd::parse("4").unwrap();
        w.lifetime_added = Usd::parse("6.500001").unwrap();
        w.lifetime_withdrawn = Usd::parse("1").unwrap();
        w.lifetime_expired = Usd::parse("0.5").unwrap();
        w.lifetime_taken_back = Usd::parse("0.25").unwrap();
        w.version = 4;
        let item = wallet_item(&w, Utc::now()).unwrap();
        assert_eq!(wallet_from_item(&org, &item).unwrap(), w);
        let mut bad = item.clone();
        bad.insert("lots".into(), s("3|2026-12-24T00:00:00Z"));
        assert!(wallet_from_item(&org, &bad).is_err());
    }

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
                expiring: SignedUsd::debit(Usd::parse("0.001").unwrap()),
                earned: SignedUsd::ZERO,
            },
            held_change: SignedUsd::ZERO,
            shortfall: Usd::parse("0.001").unwrap(),
            hold: Some(HoldId::parse("h_1").unwrap()),
            balance_after: Usd::parse("9.98155").unwrap(),
            available_after: Usd::parse("9.98155").unwrap(),
            attribution: Attribution {
                member: Some(MemberId::parse("m_1").unwrap()),
                api_key: None,
                agent: None,
                model: None,
                consumable: Consumable::Sms,
                feature: Some(Feature::Rag),
                creator: Some(OrgId::parse("org_creator").unwrap()),
            },
            idempotency_key: IdempotencyKey::parse("usage:req_1").unwrap(),
            external: ExternalRefs {
                charge: Some("ch_1".into()),
                ..Default::default()
            },
            note: Some("a note".into()),
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
