//! Auto-recharge (references 000 and 002): off by default; when available credits fall
//! below the threshold (default $20), the saved card is charged the top-up amount (default
//! $100), at most so many times and so many dollars a day. A failed charge alerts and
//! suspends auto-recharge until the settings or the card change; it never retries on its
//! own.

use serde::Serialize;

use crate::ids::{IdempotencyKey, OrgId};
use crate::ledger::{ChangeRequest, EntryKind};
use crate::money::{PositiveUsd, Usd};
use crate::wallet::{Bucket, NotificationKind};

pub const DEFAULT_THRESHOLD: Usd = Usd::from_whole_dollars(20);
pub const DEFAULT_AMOUNT: Usd = Usd::from_whole_dollars(100);
/// Top-ups a day when the org sets none: enough for a busy day, not for a runaway loop.
pub const DEFAULT_MAX_PER_DAY: u32 = 3;
/// Dollars a day when the org sets none.
pub const DEFAULT_MAX_USD_PER_DAY: Usd = Usd::from_whole_dollars(1_000);
/// The largest top-up (reference 002's purchase range).
pub const MAX_AMOUNT: Usd = Usd::from_whole_dollars(100_000);

/// What an org chose, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RechargeSettings {
    pub enabled: bool,
    pub threshold: Usd,
    pub amount: PositiveUsd,
    pub max_per_day: u32,
    pub max_usd_per_day: Usd,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RechargeSettingsError {
    #[error("the threshold must be between $0 and the top-up amount")]
    ThresholdAboveAmount,
    #[error("the top-up amount must be whole cents between $0.50 and $100,000")]
    Amount,
    #[error("the daily cap must allow at least one top-up of the amount")]
    Cap,
}

impl RechargeSettingsError {
    pub fn code(&self) -> &'static str {
        match self {
            RechargeSettingsError::ThresholdAboveAmount => "threshold_above_amount",
            RechargeSettingsError::Amount => "invalid_amount",
            RechargeSettingsError::Cap => "invalid_daily_cap",
        }
    }
}

impl RechargeSettings {
    pub fn new(
        enabled: bool,
        threshold: Usd,
        amount: Usd,
        max_per_day: u32,
        max_usd_per_day: Usd,
    ) -> Result<RechargeSettings, RechargeSettingsError> {
        // Stripe charges whole cents, at least $0.50.
        let cents = amount.as_decimal() * rust_decimal::Decimal::ONE_HUNDRED;
        if amount > MAX_AMOUNT
            || cents.fract() != rust_decimal::Decimal::ZERO
            || cents < rust_decimal::Decimal::from(50)
        {
            return Err(RechargeSettingsError::Amount);
        }
        let amount = PositiveUsd::new(amount).map_err(|_| RechargeSettingsError::Amount)?;
        if threshold > amount.usd() {
            return Err(RechargeSettingsError::ThresholdAboveAmount);
        }
        if max_per_day == 0 || max_usd_per_day < amount.usd() {
            return Err(RechargeSettingsError::Cap);
        }
        Ok(RechargeSettings {
            enabled,
            threshold,
            amount,
            max_per_day,
            max_usd_per_day,
        })
    }

    /// The amount in cents, as Stripe charges it.
    pub fn amount_cents(&self) -> i64 {
        use rust_decimal::prelude::ToPrimitive;
        (self.amount.usd().as_decimal() * rust_decimal::Decimal::ONE_HUNDRED)
            .to_i64()
            .unwrap_or(0)
    }
}

/// The `metadata[purpose]` of the PaymentIntents the recharge function creates.
pub const RECHARGE_PURPOSE: &str = "auto_recharge";

/// The credit of a successful top-up: `auto_top_up` into the purchased bucket, keyed on
/// the payment so that the recharge function and the webhook credit it once between them,
/// with its notification and the end of the org's due mark in the same write.
pub fn top_up(org: OrgId, amount: PositiveUsd, payment_intent: &str) -> Option<ChangeRequest> {
    let key = IdempotencyKey::parse(format!("stripe:payment:{payment_intent}")).ok()?;
    let req = ChangeRequest::credit(org, EntryKind::AutoTopUp, Bucket::Purchased, amount, key).ok()?;
    Some(
        req.notifying(NotificationKind::CreditAutoRechargeTriggered)
            .ending_recharge_due(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        Usd::parse(s).unwrap()
    }

    #[test]
    fn settings_keep_the_threshold_within_the_amount_and_the_cap_above_one_top_up() {
        let ok = RechargeSettings::new(true, usd("20"), usd("100"), 3, usd("1000")).unwrap();
        assert_eq!(ok.amount_cents(), 10_000);
        assert_eq!(
            RechargeSettings::new(true, usd("0"), usd("12.34"), 1, usd("12.34"))
                .unwrap()
                .amount_cents(),
            1_234
        );
        for (threshold, amount, per_day, usd_day, code) in [
            ("100.01", "100", 3, "1000", "threshold_above_amount"),
            ("0", "0", 3, "1000", "invalid_amount"),
            ("0", "0.49", 3, "1000", "invalid_amount"),
            ("0", "10.005", 3, "1000", "invalid_amount"),
            ("0", "100000.01", 3, "1000000", "invalid_amount"),
            ("20", "100", 0, "1000", "invalid_daily_cap"),
            ("20", "100", 3, "99.99", "invalid_daily_cap"),
        ] {
            let err =
                RechargeSettings::new(true, usd(threshold), usd(amount), per_day, usd(usd_day)).unwrap_err();
            assert_eq!(err.code(), code, "{threshold} {amount} {per_day} {usd_day}");
        }
    }
}
