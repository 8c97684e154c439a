//! Creator earnings (reference 001: "You earn credits each time your agents are used").
//!
//! A usage report or capture may name `creator`, the org whose agent made the call. The
//! payer's debit is not touched by it: the call is charged as any other, and its ledger
//! entry carries the creator. The table's stream then delivers the entry to the earnings
//! function (`EarningsFunction`), which credits the creator's wallet a share
//! (`CREATOR_SHARE`, 10% by default) of what the call was charged, as a
//! `creator_earnings` grant to its earned bucket. So the creator never blocks or slows
//! the payer's call.
//!
//! Exactly once: the credit's idempotency key is the call's entry in the payer's ledger
//! (`creator:<payer>:<seq>`; the call's own key maps to that entry one to one), so a
//! redelivered batch, a duplicated record or a retry a day later finds the credit made
//! and changes nothing. The entry is read again from
//! the table (a consistent read), never trusted from the record. A failure answers that
//! record as failed: Lambda delivers it again (10 times), then puts its place in the
//! stream on the `EarningsDeadLetters` queue, and reconciliation's ledger stays the
//! record of what is owed.
//!
//! What is shared is what the payer's wallet paid: a shortfall (what a call cost beyond
//! the balance) was never paid, so it earns nothing, and a call on the org's own provider
//! key (never charged to the wallet) earns nothing.

use agent_credits_aws::stream::{BatchResponse, StreamEvent, StreamRecord};
use agent_credits_domain::{
    ChangeRequest, EntryKind, GrantKind, OrgId, PositiveUsd, Refusal, StoreError, Usd, WalletStore, keys,
};
use agent_credits_dynamo::{DynamoWalletStore, OrgStore};
use rust_decimal::Decimal;

/// The share of a call's charge its creator earns, from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatorShare(Decimal);

impl CreatorShare {
    pub const DEFAULT: CreatorShare = CreatorShare(Decimal::from_parts(1, 0, 0, false, 1));

    /// Reads `CREATOR_SHARE` (a decimal from 0 to 1; empty: the default, 0.1).
    pub fn parse(text: Option<&str>) -> Result<CreatorShare, String> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(CreatorShare::DEFAULT);
        };
        let share =
            Decimal::from_str_exact(text).map_err(|_| format!("CREATOR_SHARE {text:?} is not a decimal"))?;
        if share < Decimal::ZERO || share > Decimal::ONE {
            return Err(format!("CREATOR_SHARE {text:?} is not between 0 and 1"));
        }
        Ok(CreatorShare(share))
    }

    /// The creator's share of `charged`, rounded once like every charge.
    pub fn of(self, charged: Usd) -> Result<Usd, agent_credits_domain::MoneyError> {
        Usd::round_charge(charged.as_decimal() * self.0)
    }
}

pub struct Earnings {
    pub store: DynamoWalletStore,
    pub orgs: OrgStore,
    pub share: CreatorShare,
}

/// What crediting one call's creator did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Earned {
    /// Credited now, this much.
    Now(Usd),
    /// Credited before (a redelivery).
    Already,
    /// Nothing to credit: no creator, nothing charged, a share of zero, or not a call.
    Nothing,
    /// The creator is no org of this deployment: logged, nothing credited.
    UnknownCreator,
}

/// The payer and sequence number of a record that inserted a ledger entry.
pub fn entry_of(record: &StreamRecord) -> Option<(OrgId, u64)> {
    if record.event_name != "INSERT" {
        return None;
    }
    let (pk, sk) = record.key()?;
    let org = OrgId::parse(pk.strip_prefix("ORG#")?).ok()?;
    Some((org, sk.strip_prefix("TX#")?.parse().ok()?))
}

/// One batch, in stream order; the first record that fails is delivered again, with the
/// ones after it.
pub async fn handle(svc: &Earnings, event: &StreamEvent) -> BatchResponse {
    for record in &event.records {
        let Some((payer, seq)) = entry_of(record) else {
            continue;
        };
        match earn(svc, &payer, seq).await {
            Ok(done) => tracing::info!(%payer, seq, ?done, "creator earnings"),
            Err(e) => {
                tracing::error!(%payer, seq, error = %e, "creator earnings failed; delivered again");
                return BatchResponse::retry_from(record);
            }
        }
    }
    BatchResponse::default()
}

/// Credits the creator of the payer's entry `seq` its share, once.
pub async fn earn(svc: &Earnings, payer: &OrgId, seq: u64) -> Result<Earned, StoreError> {
    let Some(entry) = svc.store.entry(payer, seq).await? else {
        return Ok(Earned::Nothing);
    };
    let Some(creator) = entry.attribution.creator.clone() else {
        return Ok(Earned::Nothing);
    };
    if !matches!(entry.kind, EntryKind::Usage | EntryKind::Capture) || entry.amount.magnitude().is_zero() {
        return Ok(Earned::Nothing);
    }
    let share = svc
        .share
        .of(entry.amount.magnitude())
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let Ok(share) = PositiveUsd::new(share) else {
        return Ok(Earned::Nothing);
    };
    if svc.orgs.get(&creator).await?.is_none() {
        tracing::error!(alarm = "creator_unknown", %payer, seq, %creator, "a call named a creator that is no org");
        return Ok(Earned::UnknownCreator);
    }
    let key = keys::creator_earnings(payer, entry.seq);
    let req = ChangeRequest::grant(creator, GrantKind::CreatorEarnings, share, None, key)
        .map_err(|e| StoreError::Invalid(e.to_string()))?
        .with_note(format!("{payer} {}", entry.id()));
    match svc.store.apply(req).await? {
        Ok(applied) if applied.replayed() => Ok(Earned::Already),
        Ok(_) => Ok(Earned::Now(share.usd())),
        Err(Refusal::IdempotencyKeyReused) => {
            // The same call credited another share (the share setting changed between
            // deliveries): the first credit stands.
            Ok(Earned::Already)
        }
        Err(other) => Err(StoreError::Invalid(format!(
            "crediting {payer}'s creator: {other}"
        ))),
    }
}
