//! Why an org may not run, and what it is told: the pause reasons of the may-I-run
//! verdict and the durable notifications of reference 002.

use serde::{Deserialize, Serialize};

/// Why an org's agents may not run on credits right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    CreditsExhausted,
    MemberLimitReached,
    NoKeyConfigured,
    RechargeFailed,
    Disputed,
    /// A consumable other than a model call, in an org that does not run on credits: a
    /// provider key pays for model calls only, and its wallet stays empty.
    CreditsRequired,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::CreditsExhausted => "credits_exhausted",
            PauseReason::MemberLimitReached => "member_limit_reached",
            PauseReason::NoKeyConfigured => "no_key_configured",
            PauseReason::RechargeFailed => "recharge_failed",
            PauseReason::Disputed => "disputed",
            PauseReason::CreditsRequired => "credits_required",
        }
    }

    pub fn parse(s: &str) -> Option<PauseReason> {
        [
            PauseReason::CreditsExhausted,
            PauseReason::MemberLimitReached,
            PauseReason::NoKeyConfigured,
            PauseReason::RechargeFailed,
            PauseReason::Disputed,
            PauseReason::CreditsRequired,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum WalletState {
    Active,
    Paused(PauseReason),
}

/// The durable notifications of reference 002, each emitted once per occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    CreditBalanceLow,
    CreditBalanceDepleted,
    CreditAutoRechargeTriggered,
    CreditPurchaseFailed,
    /// Auto-recharge stopped for a reason other than a failed charge (the member whose
    /// card it charged left the org or lost the role): for the owners.
    CreditAutoRechargeSuspended,
    /// The balance climbed back to the low-balance threshold or over it, after being
    /// below it: the counterpart of `credit_balance_low`, once per climb.
    CreditBalanceRecovered,
    /// An owner asked for earned credits to be paid out: for the operators who pay.
    CreditWithdrawalRequested,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::CreditBalanceLow => "credit_balance_low",
            NotificationKind::CreditBalanceDepleted => "credit_balance_depleted",
            NotificationKind::CreditAutoRechargeTriggered => "credit_auto_recharge_triggered",
            NotificationKind::CreditPurchaseFailed => "credit_purchase_failed",
            NotificationKind::CreditAutoRechargeSuspended => "credit_auto_recharge_suspended",
            NotificationKind::CreditBalanceRecovered => "credit_balance_recovered",
            NotificationKind::CreditWithdrawalRequested => "credit_withdrawal_requested",
        }
    }
}
