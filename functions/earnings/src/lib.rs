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
//! record as failed: Lambda delivers the batch again from it (10 times), then puts the
//! batch's place in the stream on the `EarningsDeadLetters` queue (the stream keeps it 24
//! hours, to replay from), and moves on.
//!
//! What is shared is what the payer's wallet paid, less what it drew from dated grants
//! and earned credits: a shortfall (what a call cost beyond the balance) was never paid,
//! so it earns nothing, and a call on the org's own provider key (never charged to the
//! wallet) earns nothing.

use agent_credits_aws::stream::{BatchResponse, StreamEvent, StreamRecord};
use agent_credits_domain::{
    BillingMode, Bucket, ChangeRequest, EntryKind, ExternalRefs, GrantKind, LedgerEntry, OrgId, PositiveUsd,
    Refusal, StoreError, Usd, WalletStore, keys,
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

/// What a referrer earns for an org's first purchase (`REFERRAL_REWARD`): a fixed amount
/// (`"10.00"`, the default) or a share of the purchase's credits (`"10%"`); `"0"` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferralReward {
    Fixed(Usd),
    Share(Decimal),
}

impl ReferralReward {
    pub const DEFAULT: ReferralReward = ReferralReward::Fixed(Usd::from_whole_dollars(10));

    pub fn parse(text: Option<&str>) -> Result<ReferralReward, String> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(ReferralReward::DEFAULT);
        };
        if let Some(percent) = text.strip_suffix('%') {
            let p = Decimal::from_str_exact(percent.trim())
                .map_err(|_| format!("REFERRAL_REWARD {text:?} is not a percentage"))?;
            if p < Decimal::ZERO || p > Decimal::ONE_HUNDRED {
                return Err(format!("REFERRAL_REWARD {text:?} is not from 0% to 100%"));
            }
            return Ok(ReferralReward::Share(p / Decimal::ONE_HUNDRED));
        }
        Usd::parse(text)
            .map(ReferralReward::Fixed)
            .map_err(|e| format!("REFERRAL_REWARD {text:?}: {e}"))
    }

    /// The reward for a purchase of `credits`.
    pub fn for_purchase(self, credits: Usd) -> Result<Usd, agent_credits_domain::MoneyError> {
        match self {
            ReferralReward::Fixed(amount) => Ok(amount),
            ReferralReward::Share(share) => Usd::round_charge(credits.as_decimal() * share),
        }
    }
}

pub struct Earnings {
    pub store: DynamoWalletStore,
    pub orgs: OrgStore,
    pub share: CreatorShare,
    pub referral: ReferralReward,
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
    /// The creator (or referrer) is no org of this deployment: logged, nothing credited.
    UnknownCreator,
    /// A referral taken back, this much (the rest was shortfall).
    TakenBack(Usd),
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

/// What the payer's entry `seq` earns someone: its creator's share (a call), its
/// referrer's reward (a first purchase), or the reward taken back (that purchase
/// refunded or disputed). Once each.
pub async fn earn(svc: &Earnings, payer: &OrgId, seq: u64) -> Result<Earned, StoreError> {
    let Some(entry) = svc.store.entry(payer, seq).await? else {
        return Ok(Earned::Nothing);
    };
    match entry.kind {
        EntryKind::Purchase | EntryKind::AutoTopUp => return referral(svc, payer, &entry).await,
        EntryKind::Refund | EntryKind::Dispute => return referral_back(svc, payer, &entry).await,
        _ => {}
    }
    let Some(creator) = entry.attribution.creator.clone() else {
        return Ok(Earned::Nothing);
    };
    if !matches!(entry.kind, EntryKind::Usage | EntryKind::Capture) {
        return Ok(Earned::Nothing);
    }
    // What the call drew from dated grants (promotions) and from earned credits is no
    // money anyone paid this service: it earns nothing, or free and earned credits would
    // turn into withdrawable ones. (Undated support and promotional grants sit with
    // purchased credits and cannot be told apart: README, "Creator earnings".)
    let unpaid = entry
        .buckets
        .expiring
        .magnitude()
        .checked_add(entry.buckets.earned.magnitude())
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let paid = entry.amount.magnitude().saturating_sub(unpaid);
    let share = svc
        .share
        .of(paid)
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

/// The kinds of entry that are a purchase credited.
const PURCHASES: [EntryKind; 2] = [EntryKind::Purchase, EntryKind::AutoTopUp];

/// A purchase entry's PaymentIntent: on the entry, or in its key (an auto top-up credited
/// by the recharge function carries it there).
fn intent_of(entry: &LedgerEntry) -> Option<String> {
    entry.external.payment_intent.clone().or_else(|| {
        entry
            .idempotency_key
            .as_str()
            .strip_prefix("stripe:payment:")
            .map(str::to_owned)
    })
}

/// The referrer of `payer`, when it is an org on credits (a byok or deferred org takes
/// no grant: its wallet is not used).
async fn referrer_of(svc: &Earnings, payer: &OrgId) -> Result<Option<OrgId>, StoreError> {
    let Some(referrer) = svc.orgs.get(payer).await?.and_then(|o| o.referred_by) else {
        return Ok(None);
    };
    match svc.orgs.get(&referrer).await? {
        Some(org) if org.billing_mode == BillingMode::Credits => Ok(Some(referrer)),
        _ => {
            tracing::warn!(%payer, %referrer, "a referrer that is no org on credits: no reward");
            Ok(None)
        }
    }
}

/// The referrer of an org earns its reward for the org's first purchase: the oldest
/// purchase entry of its ledger (not the first the stream happens to deliver), once per
/// referred org, ever (`referral:<org>`), never more than the purchase's credits. It
/// yields to the reward's reversal (`unless`): money that went back for that purchase
/// before the reward was made leaves nothing to grant.
async fn referral(svc: &Earnings, payer: &OrgId, entry: &LedgerEntry) -> Result<Earned, StoreError> {
    let Some(referrer) = referrer_of(svc, payer).await? else {
        return Ok(Earned::Nothing);
    };
    let first = svc.store.first_entry_of(payer, &PURCHASES).await?;
    if first.as_ref().map(|f| f.seq) != Some(entry.seq) {
        return Ok(Earned::Nothing);
    }
    let credits = entry.amount.magnitude();
    let reward = svc
        .referral
        .for_purchase(credits)
        .map_err(|e| StoreError::Invalid(e.to_string()))?
        .min(credits);
    let Ok(reward) = PositiveUsd::new(reward) else {
        return Ok(Earned::Nothing);
    };
    let req = ChangeRequest::grant(referrer, GrantKind::Referral, reward, None, keys::referral(payer))
        .map_err(|e| StoreError::Invalid(e.to_string()))?
        .unless(keys::referral_reversed(payer))
        .with_note(format!("{payer}'s first purchase ({})", entry.id()))
        .with_external(ExternalRefs {
            payment_intent: intent_of(entry),
            ..ExternalRefs::default()
        });
    match svc.store.apply(req).await? {
        Ok(applied) if applied.replayed() => Ok(Earned::Already),
        Ok(_) => Ok(Earned::Now(reward.usd())),
        // Made before with another amount (a share, after the setting changed): it stands.
        Err(Refusal::IdempotencyKeyReused) => Ok(Earned::Already),
        // Money went back for the purchase first: no reward.
        Err(Refusal::Superseded) => Ok(Earned::Nothing),
        Err(other) => Err(StoreError::Invalid(format!("{payer}'s referral: {other}"))),
    }
}

/// Money going back to the card for the org's first purchase (a refund, a lost dispute)
/// takes the whole reward back from the referrer, once: earned credits first, never below
/// zero, the rest recorded as shortfall. When the reward is not made yet (its delivery
/// failed, or comes later), the reversal is recorded on its own, moving nothing, and the
/// reward yields to it; each of the two is written on the condition that the other's key
/// is unused, so whichever commits first, the second sees it.
async fn referral_back(svc: &Earnings, payer: &OrgId, entry: &LedgerEntry) -> Result<Earned, StoreError> {
    // Only money that went back: a dispute's opening (a pause) or a won dispute moves
    // nothing; a lost one takes credits (or records them as shortfall).
    if !entry.amount.is_negative() && entry.shortfall.is_zero() {
        return Ok(Earned::Nothing);
    }
    let Some(intent) = entry.external.payment_intent.clone() else {
        return Ok(Earned::Nothing);
    };
    let Some(referrer) = referrer_of(svc, payer).await? else {
        return Ok(Earned::Nothing);
    };
    let Some(first) = svc.store.first_entry_of(payer, &PURCHASES).await? else {
        return Ok(Earned::Nothing);
    };
    if intent_of(&first).as_deref() != Some(intent.as_str()) {
        return Ok(Earned::Nothing);
    }
    let external = ExternalRefs {
        payment_intent: Some(intent),
        ..ExternalRefs::default()
    };
    let note = format!("{payer}'s first purchase went back to the card ({})", entry.id());
    // Twice at most: a reward made between the read and the write supersedes the note,
    // and the second pass takes it back.
    for _ in 0..2 {
        let reward = svc.store.entry_by_key(&referrer, &keys::referral(payer)).await?;
        let req = match reward.as_ref().map(|r| PositiveUsd::new(r.amount.magnitude())) {
            Some(Ok(amount)) => ChangeRequest::take_back(
                referrer.clone(),
                EntryKind::ReferralReversed,
                amount,
                Bucket::Earned,
                keys::referral_reversed(payer),
            )
            .map_err(|e| StoreError::Invalid(e.to_string()))?,
            Some(Err(_)) => return Ok(Earned::Nothing),
            None => ChangeRequest::note(
                referrer.clone(),
                EntryKind::ReferralReversed,
                keys::referral_reversed(payer),
            )
            .unless(keys::referral(payer)),
        }
        .with_note(note.clone())
        .with_external(external.clone());
        match svc.store.apply(req).await? {
            Ok(applied) if applied.replayed() => return Ok(Earned::Already),
            Ok(applied) => return Ok(Earned::TakenBack(applied.entry().amount.magnitude())),
            Err(Refusal::IdempotencyKeyReused) => return Ok(Earned::Already),
            Err(Refusal::Superseded) => continue,
            Err(other) => return Err(StoreError::Invalid(format!("{payer}'s referral back: {other}"))),
        }
    }
    Err(StoreError::Invalid(format!(
        "{payer}'s referral back: raced twice"
    )))
}
