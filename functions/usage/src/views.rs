//! What the usage function answers the agent runtime: one type per answer, as
//! `infra/openapi.yaml` describes it.

use agent_credits_domain::{
    Billing, BillingMode, Consumable, ExposeSecret, HoldId, LedgerEntry, OrgId, PauseReason, Provider,
    Runtime, SecretString, Usd, Wallet, WalletState,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Active,
    Paused,
}

/// A reported call (a debit or a capture) charged to the wallet.
#[derive(Debug, Serialize)]
pub struct Charged {
    pub entry_id: String,
    pub billed_to: Billing,
    /// Provider cost × markup.
    pub billed: Usd,
    /// What the wallet paid: `billed` less any shortfall.
    pub charged: Usd,
    pub shortfall: Usd,
    pub available: Usd,
    pub state: State,
    pub pause_reason: Option<PauseReason>,
    pub low_balance: bool,
    /// Answered before under the same request id.
    pub replayed: bool,
}

impl Charged {
    /// The call charged by `entry` (now, or before when `replayed`).
    pub fn new(wallet: &Wallet, entry: &LedgerEntry, replayed: bool) -> Charged {
        let available = entry.available_after;
        // At zero, what the org is told may-i-run would answer for this use: a byok or
        // deferred org (its wallet stays empty) is not told to top up.
        let mode = wallet.settings.billing_mode.unwrap_or(BillingMode::Credits);
        let (state, pause_reason) = match wallet.state {
            WalletState::Paused(r) if r != PauseReason::CreditsExhausted => (State::Paused, Some(r)),
            _ if available.is_zero() => (
                State::Paused,
                Some(agent_credits_domain::reason_at_zero(
                    mode,
                    entry.attribution.consumable,
                )),
            ),
            _ => (State::Active, None),
        };
        let taken = entry.amount.magnitude();
        Charged {
            entry_id: entry.id(),
            billed_to: Billing::Credits,
            billed: taken.checked_add(entry.shortfall).unwrap_or(taken),
            charged: taken,
            shortfall: entry.shortfall,
            available,
            state,
            pause_reason,
            low_balance: available <= wallet.settings.low_threshold(),
            replayed,
        }
    }
}

/// A reported call that moved nothing on the wallet: run on the org's own key
/// (recorded for attribution), or free.
#[derive(Debug, Serialize)]
pub struct NotCharged {
    /// Always `null`: no ledger entry.
    pub entry_id: Option<String>,
    pub billed_to: Billing,
    pub billed: Usd,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charged: Option<Usd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<bool>,
}

impl NotCharged {
    /// A call on the org's own key: recorded, never debited.
    pub fn on_own_key(cost: Usd, replayed: bool) -> NotCharged {
        NotCharged {
            entry_id: None,
            billed_to: Billing::ProviderKey,
            billed: cost,
            charged: Some(Usd::ZERO),
            replayed: Some(replayed),
        }
    }

    /// A call that cost nothing.
    pub fn free() -> NotCharged {
        NotCharged {
            entry_id: None,
            billed_to: Billing::Credits,
            billed: Usd::ZERO,
            charged: None,
            replayed: None,
        }
    }
}

/// A hold made (201), or none needed because the call runs on the org's own key (200).
#[derive(Debug, Serialize)]
pub struct Hold {
    pub hold_id: HoldId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
    pub held: Usd,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<Usd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billed_to: Option<Billing>,
}

#[derive(Debug, Serialize)]
pub struct Released {
    pub hold_id: HoldId,
    pub released: Usd,
    pub available: Usd,
}

/// May the org's agents run now, and who pays.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub allowed: bool,
    pub reason: Option<PauseReason>,
    pub billing_mode: BillingMode,
    /// The consumable asked about (`?kind=`, a model call by default).
    pub kind: Consumable,
    /// Who pays for the call, when it may run.
    pub billed_to: Option<Billing>,
    pub available: Usd,
    pub low_balance: bool,
    /// The runtime the asking agent runs (its own, else the org's), when it gave its id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// With `no_key_configured`: the key-setup guide of the runtime, which its terminal
    /// links to (reference 000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_setup_url: Option<String>,
}

/// The org's own provider key, for the runtime: the one answer that carries a key.
#[derive(Debug, Serialize)]
pub struct OwnKey<'a> {
    pub org: &'a OrgId,
    pub provider: Provider,
    #[serde(serialize_with = "exposed")]
    pub key: &'a SecretString,
}

/// The one place a key is written out: to the runtime that fetched it.
fn exposed<S: serde::Serializer>(key: &&SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(key.expose_secret())
}

/// An org's markup as an operator set it.
#[derive(Debug, Serialize)]
pub struct MarkupSet<'a> {
    pub org: &'a OrgId,
    /// `null`: the deployment's default.
    pub markup: Option<String>,
    /// The markup its calls are billed at now.
    pub billed_at: String,
    pub changed: bool,
}

/// A grant made (`201`) or found made before under its `request_id` (`200`).
#[derive(Debug, Serialize)]
pub struct Granted<'a> {
    pub org: &'a OrgId,
    pub request_id: &'a HoldId,
    pub entry_id: String,
    pub kind: agent_credits_domain::EntryKind,
    pub amount_usd: Usd,
    /// Where the credits went: `earned`, `expiring` or `purchased`.
    pub bucket: &'static str,
    pub expires_at: Option<DateTime<Utc>>,
    pub note: Option<&'a str>,
    pub balance: Usd,
    pub available: Usd,
    pub withdrawable: Usd,
    pub replayed: bool,
}

impl<'a> Granted<'a> {
    pub fn new(
        org: &'a OrgId,
        request_id: &'a HoldId,
        expires_at: Option<DateTime<Utc>>,
        wallet: &Wallet,
        entry: &'a LedgerEntry,
        replayed: bool,
    ) -> Granted<'a> {
        let bucket = agent_credits_domain::Bucket::DEBIT_ORDER
            .into_iter()
            .find(|b| !entry.buckets.get(*b).is_zero())
            .map_or("purchased", |b| b.as_str());
        Granted {
            org,
            request_id,
            entry_id: entry.id(),
            kind: entry.kind,
            amount_usd: entry.amount.magnitude(),
            bucket,
            expires_at,
            note: entry.note.as_deref(),
            balance: wallet.balance().unwrap_or(Usd::ZERO),
            available: wallet.available().unwrap_or(Usd::ZERO),
            withdrawable: wallet.withdrawable().unwrap_or(Usd::ZERO),
            replayed,
        }
    }
}

/// A payout settled (or found settled so before, `replayed`).
#[derive(Debug, Serialize)]
pub struct Settled<'a> {
    pub withdrawal: &'a agent_credits_domain::Payout,
    pub entry_id: String,
    pub replayed: bool,
}

/// A payout waiting to be paid, with its org.
#[derive(Debug, Serialize)]
pub struct PendingPayout<'a> {
    pub org: &'a OrgId,
    pub withdrawal: &'a agent_credits_domain::Payout,
}

#[derive(Debug, Serialize)]
pub struct PendingPayouts<'a> {
    pub withdrawals: Vec<PendingPayout<'a>>,
}
