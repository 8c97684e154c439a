//! Auto-recharge settings (references 000, 002, 003): `GET` and `PUT
//! /v1/orgs/{org}/auto-recharge`. Reading needs the billing view; changing needs
//! `manage_auto_recharge` (owners and admins, reference 004). Enabling needs a card saved by the
//! caller at checkout: the default payment method of the org's plan subscription when the
//! caller pays it (reference 002), else the newest card of their Stripe customer, is the
//! one charged.
//! Saving lifts a suspension left by a failed charge.

use agent_credits_domain::{OrgId, RechargeSettings, Usd, recharge};
use agent_credits_dynamo::{Card, Configured, RechargeStore};
use agent_credits_http::{ApiError, ErrorCode, Membership, json_response};
use lambda_http::http::StatusCode;
use serde::Deserialize;

use crate::views::AutoRecharge;
use crate::{Checkout, Reply, forbidden, stripe_failed};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Put {
    enabled: bool,
    threshold_usd: Option<Usd>,
    amount_usd: Option<Usd>,
    max_per_day: Option<u32>,
    max_usd_per_day: Option<Usd>,
    /// Recharge to this balance instead of by `amount_usd` (`null` or absent: by the
    /// amount).
    target_usd: Option<Usd>,
}

pub async fn get(svc: &Checkout, org: &OrgId) -> Reply {
    view(&svc.recharges, org).await
}

/// The org's settings as the dashboard shows them.
async fn view(recharges: &RechargeStore, org: &OrgId) -> Reply {
    let config = recharges.config(org).await?;
    Ok(json_response(StatusCode::OK, &AutoRecharge::of(config.as_ref())))
}

pub async fn put(svc: &Checkout, who: &Membership, body: Put) -> Reply {
    let (org, me, member, recharges) = (&who.org.id, &who.member.id, &who.member, &svc.recharges);
    let settings = RechargeSettings::new(
        body.enabled,
        body.threshold_usd.unwrap_or(recharge::DEFAULT_THRESHOLD),
        body.amount_usd.unwrap_or(recharge::DEFAULT_AMOUNT),
        body.max_per_day.unwrap_or(recharge::DEFAULT_MAX_PER_DAY),
        body.max_usd_per_day.unwrap_or(recharge::DEFAULT_MAX_USD_PER_DAY),
    )
    .and_then(|s| s.with_target(body.target_usd))
    .map_err(|e| ApiError::bad_request(ErrorCode::from(e.clone()), e.to_string()))?;
    // Enabling charges the caller's own card; disabling leaves the card on file with its
    // owner. A card never passes from one member to another.
    let card = if body.enabled {
        crate::credits_org(who)?;
        let customer = member.stripe_customer.clone().ok_or_else(no_card)?;
        let payment_method = match subscription_card(svc, org, &customer).await? {
            Some(card) => card,
            None => newest_card(svc, &customer).await?.ok_or_else(no_card)?,
        };
        Some(Card {
            customer,
            payment_method,
            owner: me.clone(),
        })
    } else {
        None
    };
    crate::opened(svc, who).await?;
    match recharges
        .configure(org, &settings, card.as_ref(), me, chrono::Utc::now())
        .await?
    {
        Configured::Saved => view(recharges, org).await,
        Configured::CardOwnerGone => Err(forbidden()),
        Configured::NotCredits => Err(crate::not_credits(who.org.billing_mode)),
    }
}

/// The default payment method of the org's plan subscription, when the caller is the one
/// who pays it (reference 002: credit purchases use the subscription's payment method).
async fn subscription_card(svc: &Checkout, org: &OrgId, customer: &str) -> Result<Option<String>, ApiError> {
    let Some(record) = svc.orgs.subscription(org).await? else {
        return Ok(None);
    };
    if record.customer != customer {
        return Ok(None);
    }
    let sub = svc
        .billing
        .subscription(&record.subscription)
        .await
        .map_err(stripe_failed)?;
    Ok(sub
        .filter(agent_credits_domain::SubscriptionSeen::in_force)
        .and_then(|s| s.default_payment_method))
}

fn no_card() -> ApiError {
    ApiError::bad_request(
        ErrorCode::NoSavedCard,
        "auto-recharge charges the card you saved at checkout: buy credits once to save one",
    )
}

async fn newest_card(svc: &Checkout, customer: &str) -> Result<Option<String>, ApiError> {
    svc.payments.newest_card(customer).await.map_err(stripe_failed)
}
