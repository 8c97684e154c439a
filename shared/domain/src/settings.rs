//! The org's billing settings the money paths need on every change. They live on the
//! wallet item so that a debit reads them with the wallet, in the same request.

use serde::{Deserialize, Serialize};

use crate::money::Usd;
use crate::pricing::Markup;

/// How an org pays for model calls: a required choice at creation, with no default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingMode {
    /// Prepaid wallet: usage debits it live.
    Credits,
    /// The org's own provider key: usage is recorded for attribution, never debited.
    Byok,
    /// Decide later: runs on a key if one is configured, else on credits if any.
    Deferred,
}

impl BillingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingMode::Credits => "credits",
            BillingMode::Byok => "byok",
            BillingMode::Deferred => "deferred",
        }
    }

    pub fn parse(s: &str) -> Option<BillingMode> {
        [BillingMode::Credits, BillingMode::Byok, BillingMode::Deferred]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// Auto-recharge as the debit path needs it: whether a low balance marks the org due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RechargeTrigger {
    pub enabled: bool,
    pub threshold: Usd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WalletSettings {
    /// `None` until the org is created with its choice.
    pub billing_mode: Option<BillingMode>,
    /// `None`: the deployment's default markup.
    pub markup: Option<Markup>,
    /// Threshold of `credit_balance_low` when auto-recharge is off; `None`: the default.
    pub low_threshold: Option<Usd>,
    pub recharge: RechargeTrigger,
}

/// The low-balance threshold when neither auto-recharge nor the org sets one.
pub const DEFAULT_LOW_THRESHOLD: Usd = Usd::from_whole_dollars(20);

impl WalletSettings {
    /// `credit_balance_low` fires when available falls below this: the auto-recharge
    /// threshold when auto-recharge is on, else the org's or the default.
    pub fn low_threshold(&self) -> Usd {
        if self.recharge.enabled {
            self.recharge.threshold
        } else {
            self.low_threshold.unwrap_or(DEFAULT_LOW_THRESHOLD)
        }
    }
}
