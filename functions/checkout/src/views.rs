//! What the checkout function answers: one type per answer, as `infra/openapi.yaml`
//! describes it.

use agent_credits_domain::{MemberId, Package, RechargeSettings, Usd, recharge};
use agent_credits_dynamo::RechargeConfig;
use serde::Serialize;

/// What can be bought.
#[derive(Debug, Serialize)]
pub struct Offers<'a> {
    pub bulk_usd: Usd,
    pub packages: &'a [Package],
    pub custom_min_usd: Usd,
    pub custom_max_usd: Usd,
    pub credits_per_usd: u32,
}

/// What the billing page shows (`GET /v1/orgs/{org}/offers`).
#[derive(Debug, Serialize)]
pub struct OffersPage<'a> {
    pub credits_per_usd: u32,
    pub can_purchase: bool,
    pub bulk: BulkOffer,
    pub packages: Vec<PackageOffer<'a>>,
    pub custom: CustomOffer,
}

/// One bulk: its price buys as many dollars of credits.
#[derive(Debug, Serialize)]
pub struct BulkOffer {
    pub price_usd: Usd,
    pub credits: u64,
}

#[derive(Debug, Serialize)]
pub struct PackageOffer<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub price_usd: Usd,
    pub credits_usd: Usd,
    /// What the package gives beyond its price.
    pub bonus_usd: Usd,
    /// `credits_usd` as credits at the org's rate, rounded down.
    pub credits: u64,
}

/// Any amount in this range, a dollar of credits for each dollar paid.
#[derive(Debug, Serialize)]
pub struct CustomOffer {
    pub min_usd: Usd,
    pub max_usd: Usd,
}

/// A Checkout Session made: where to send the buyer, and what they buy.
#[derive(Debug, Serialize)]
pub struct Session<'a> {
    pub session_id: &'a str,
    pub url: Option<&'a str>,
    pub price: Usd,
    pub credits: Usd,
    pub offer: &'a str,
}

/// The org's auto-recharge settings, with the card it charges and whose it is.
#[derive(Debug, Serialize)]
pub struct AutoRecharge<'a> {
    pub enabled: bool,
    pub threshold_usd: Usd,
    pub amount_usd: Usd,
    pub max_per_day: u32,
    pub max_usd_per_day: Usd,
    /// Recharging to this balance instead of by the amount; `null`: by the amount.
    pub target_usd: Option<Usd>,
    pub payment_method: Option<&'a str>,
    pub card_owner: Option<&'a MemberId>,
    /// Why it is suspended (a declined charge, the card's owner left).
    pub suspended: Option<&'a str>,
}

impl<'a> AutoRecharge<'a> {
    /// The org's settings; the defaults, off, when it never set any.
    pub fn of(config: Option<&'a RechargeConfig>) -> AutoRecharge<'a> {
        let Some(c) = config else {
            return AutoRecharge {
                enabled: false,
                threshold_usd: recharge::DEFAULT_THRESHOLD,
                amount_usd: recharge::DEFAULT_AMOUNT,
                max_per_day: recharge::DEFAULT_MAX_PER_DAY,
                max_usd_per_day: recharge::DEFAULT_MAX_USD_PER_DAY,
                target_usd: None,
                payment_method: None,
                card_owner: None,
                suspended: None,
            };
        };
        let s: &RechargeSettings = &c.settings;
        AutoRecharge {
            enabled: s.enabled,
            threshold_usd: s.threshold,
            amount_usd: s.amount.usd(),
            max_per_day: s.max_per_day,
            max_usd_per_day: s.max_usd_per_day,
            target_usd: s.target,
            payment_method: c.card.as_ref().map(|card| card.payment_method.as_str()),
            card_owner: c.card.as_ref().map(|card| &card.owner),
            suspended: c.suspended.as_deref(),
        }
    }
}
