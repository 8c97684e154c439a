//! Auto-recharge (references 000 and 002): off by default; when available credits fall
//! below the threshold (default $20), the saved card is charged the top-up amount (default
//! $100), or, with a target, what brings the available credits back to it ("when below X,
//! bring the balance back to Y", as Anthropic's and Metronome's consoles offer), at most
//! so many times and so many dollars a day. A failed charge alerts and
//! suspends auto-recharge until the settings or the card change; it never retries on its
//! own.

use serde::Serialize;

use crate::account::Role;
use crate::buckets::Bucket;
use crate::change::ChangeRequest;
use crate::ids::OrgId;
use crate::ledger::EntryKind;
use crate::money::{PositiveUsd, Usd};
use crate::state::NotificationKind;

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
    /// Recharge to a target: each top-up brings the available credits back to it (whole
    /// cents, at least $0.50) instead of adding `amount`.
    pub target: Option<Usd>,
}

/// The smallest charge Stripe makes.
pub const MIN_TOP_UP_CENTS: i64 = 50;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RechargeSettingsError {
    #[error("the threshold must be between $0 and the top-up amount")]
    ThresholdAboveAmount,
    #[error("the top-up amount must be whole cents between $0.50 and $100,000")]
    Amount,
    #[error("the daily cap must allow at least one top-up of the amount")]
    Cap,
    #[error(
        "the target must be whole cents, at least $0.50 above the threshold, at most $100,000, and the daily cap must allow a top-up from the threshold to it"
    )]
    Target,
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
        let cents = amount.to_cents().map_err(|_| RechargeSettingsError::Amount)?;
        if amount > MAX_AMOUNT || cents < 50 {
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
            target: None,
        })
    }

    /// The same settings recharging to `target` (`None`: by the amount). The target is
    /// above the threshold by at least Stripe's smallest charge, within the amount limits,
    /// and the daily cap allows the smallest top-up it makes (from the threshold to it).
    pub fn with_target(mut self, target: Option<Usd>) -> Result<RechargeSettings, RechargeSettingsError> {
        if let Some(t) = target {
            let gap = t
                .checked_sub(self.threshold)
                .map_err(|_| RechargeSettingsError::Target)?;
            let whole = t.to_cents().is_ok();
            let gap_cents = gap.to_cents().unwrap_or(0);
            if !whole || t > MAX_AMOUNT || gap_cents < MIN_TOP_UP_CENTS || self.max_usd_per_day < gap {
                return Err(RechargeSettingsError::Target);
            }
        }
        self.target = target;
        Ok(self)
    }

    /// What one top-up charges while `available` credits are there: the amount, or what
    /// brings them back to the target, rounded up to whole cents and at least $0.50.
    pub fn top_up(&self, available: Usd) -> Result<PositiveUsd, crate::money::MoneyError> {
        let Some(target) = self.target else {
            return Ok(self.amount);
        };
        let short = target.saturating_sub(available).as_decimal() * rust_decimal::Decimal::ONE_HUNDRED;
        let cents = rust_decimal::prelude::ToPrimitive::to_i64(&short.ceil())
            .ok_or(crate::money::MoneyError::TooLarge)?;
        PositiveUsd::new(Usd::from_cents(cents.max(MIN_TOP_UP_CENTS))?)
    }

    /// The amount in cents, as Stripe charges it (whole cents by construction).
    pub fn amount_cents(&self) -> Result<i64, crate::money::MoneyError> {
        self.amount.usd().to_cents()
    }
}

/// The roles whose saved card auto-recharge may charge: those that may manage it
/// ([`crate::Action::ManageAutoRecharge`]). A member who leaves the org or loses the role
/// takes their card with them: auto-recharge is suspended with [`CARD_OWNER_LEFT`].
pub const CARD_OWNER_ROLES: [Role; 2] = [Role::Owner, Role::Admin];

/// Why auto-recharge is suspended when the member whose card it charged left the org or
/// lost the role.
pub const CARD_OWNER_LEFT: &str = "card_owner_left";

/// How a charge attempt that Stripe answered went, for what happens next. Only a card's
/// own answer (a decline, a needed authentication) is the customer's failure: it suspends
/// auto-recharge and tells them. Anything else (a bad key, rate limits, Stripe down, the
/// network, an idempotency mismatch) is ours: the attempt stays in flight for a bounded
/// retry and an operator is alarmed; no org is suspended and no customer told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeFailure {
    /// The card refused (`402`, a `card_error`).
    Card,
    /// Not the card: retried, never suspended.
    Ours,
}

impl ChargeFailure {
    /// Classifies an error of Stripe's by its `type` (of an error answer, or of a
    /// PaymentIntent's `last_payment_error`): only `card_error` is the card's.
    pub fn of(error_type: &str) -> ChargeFailure {
        if error_type == "card_error" {
            ChargeFailure::Card
        } else {
            ChargeFailure::Ours
        }
    }
}

/// What a card's refusal says: Stripe's decline code, else its error code. An attempt
/// that needs its card's owner to authenticate ends `requires_action`; any other decline
/// ends `failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    pub reason: String,
}

impl Decline {
    pub fn of(decline_code: Option<&str>, code: Option<&str>) -> Decline {
        Decline {
            reason: decline_code.or(code).unwrap_or("card_declined").to_owned(),
        }
    }

    /// The attempt's state after it.
    pub fn state(&self) -> &'static str {
        if self.reason == "authentication_required" {
            "requires_action"
        } else {
            "failed"
        }
    }
}

/// How many times an attempt is sent before it is looked up and, if Stripe never made
/// its PaymentIntent, abandoned (the org stays due, within the day's cap).
pub const MAX_TRIES: u32 = 5;

/// Past this age an attempt is never sent again: Stripe keeps idempotency keys for 24
/// hours, and a send after that could charge twice. It is looked up instead.
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 23;

/// The `metadata[purpose]` of the PaymentIntents the recharge function creates.
pub const RECHARGE_PURPOSE: &str = "auto_recharge";

/// The credit of a successful top-up: `auto_top_up` into the purchased bucket, keyed on
/// the payment so that the recharge function and the webhook credit it once between them,
/// with its notification and the end of the org's due mark in the same write.
pub fn top_up(org: OrgId, amount: PositiveUsd, payment_intent: &str) -> Option<ChangeRequest> {
    let key = crate::keys::payment(payment_intent).ok()?;
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
    fn card_owners_are_exactly_the_roles_that_manage_auto_recharge() {
        use crate::account::Action;
        let org = crate::account::tests::org();
        for role in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(
                CARD_OWNER_ROLES.contains(&role),
                org.allows(role, Action::ManageAutoRecharge),
                "{role:?}"
            );
        }
    }

    #[test]
    fn a_decline_names_its_reason_and_the_state_it_leaves() {
        let d = Decline::of(Some("insufficient_funds"), Some("card_declined"));
        assert_eq!((d.reason.as_str(), d.state()), ("insufficient_funds", "failed"));
        let d = Decline::of(None, Some("authentication_required"));
        assert_eq!(d.state(), "requires_action");
        assert_eq!(Decline::of(None, None).reason, "card_declined");
    }

    #[test]
    fn only_the_card_refusing_is_the_customers_failure() {
        assert_eq!(ChargeFailure::of("card_error"), ChargeFailure::Card);
        for kind in [
            "invalid_request_error",
            "rate_limit_error",
            "api_error",
            "idempotency_error",
            "authentication_error",
            "",
        ] {
            assert_eq!(ChargeFailure::of(kind), ChargeFailure::Ours, "{kind}");
        }
    }

    #[test]
    fn a_target_tops_up_what_is_missing_in_whole_cents_and_at_least_fifty_cents() {
        let s = RechargeSettings::new(true, usd("20"), usd("100"), 3, usd("1000"))
            .unwrap()
            .with_target(Some(usd("150")))
            .unwrap();
        let top = |available: &str| s.top_up(usd(available)).unwrap().usd().to_string();
        assert_eq!(top("19.99"), "130.01");
        assert_eq!(top("0"), "150.00");
        assert_eq!(top("12.345678"), "137.66", "rounded up: never below the target");
        assert_eq!(top("149.80"), "0.50", "Stripe's smallest charge");
        assert_eq!(top("200"), "0.50");
        // Without a target: the amount, whatever is there.
        let fixed = s.with_target(None).unwrap();
        assert_eq!(fixed.top_up(usd("19.99")).unwrap().usd().to_string(), "100.00");
        use RechargeSettingsError as E;
        for (target, cap) in [
            ("20.49", "1000"),
            ("20.499", "1000"),
            ("100000.01", "1000000"),
            ("150", "129.99"),
        ] {
            let base = RechargeSettings::new(true, usd("20"), usd("100"), 3, usd(cap));
            let refused = base.and_then(|b| b.with_target(Some(usd(target))));
            assert!(
                matches!(refused, Err(E::Target) | Err(E::Cap)),
                "{target} {cap}: {refused:?}"
            );
        }
        let low = RechargeSettings::new(true, usd("20"), usd("100"), 3, usd("1000")).unwrap();
        assert!(low.with_target(Some(usd("20.50"))).is_ok());
    }

    #[test]
    fn settings_keep_the_threshold_within_the_amount_and_the_cap_above_one_top_up() {
        let ok = RechargeSettings::new(true, usd("20"), usd("100"), 3, usd("1000")).unwrap();
        assert_eq!(ok.amount_cents().unwrap(), 10_000);
        assert_eq!(
            RechargeSettings::new(true, usd("0"), usd("12.34"), 1, usd("12.34"))
                .unwrap()
                .amount_cents()
                .unwrap(),
            1_234
        );
        use RechargeSettingsError as E;
        for (threshold, amount, per_day, usd_day, refused) in [
            ("100.01", "100", 3, "1000", E::ThresholdAboveAmount),
            ("0", "0", 3, "1000", E::Amount),
            ("0", "0.49", 3, "1000", E::Amount),
            ("0", "10.005", 3, "1000", E::Amount),
            ("0", "100000.01", 3, "1000000", E::Amount),
            ("20", "100", 0, "1000", E::Cap),
            ("20", "100", 3, "99.99", E::Cap),
        ] {
            let err =
                RechargeSettings::new(true, usd(threshold), usd(amount), per_day, usd(usd_day)).unwrap_err();
            assert_eq!(err, refused, "{threshold} {amount} {per_day} {usd_day}");
        }
    }
}
