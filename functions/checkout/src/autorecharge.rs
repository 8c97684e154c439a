//! Auto-recharge settings (references 000, 002, 003): `GET` and `PUT
//! /v1/orgs/{org}/auto-recharge`. Reading needs the billing view; changing needs
//! `manage_auto_recharge` (owners and admins, reference 004). Enabling needs a card saved by the
//! caller at checkout: the newest card of their Stripe customer is the one charged.
//! Saving lifts a suspension left by a failed charge.

use agent_credits_domain::{OrgId, RechargeSettings, Usd, recharge};
use agent_credits_dynamo::{Card, RechargeStore};
use agent_credits_http::{ApiError, ErrorCode, Membership, json_response};
use lambda_http::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use stripe_core::customer::{ListPaymentMethodsCustomer, ListPaymentMethodsCustomerType};

use crate::{Checkout, Reply, forbidden, stripe_failed};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Put {
    enabled: bool,
    threshold_usd: Option<Usd>,
    amount_usd: Option<Usd>,
    max_per_day: Option<u32>,
    max_usd_per_day: Option<Usd>,
}

pub async fn get(svc: &Checkout, org: &OrgId) -> Reply {
    Ok(json_response(StatusCode::OK, &view(&svc.recharges, org).await?))
}

async fn view(recharges: &RechargeStore, org: &OrgId) -> Result<serde_json::Value, ApiError> {
    Ok(match recharges.config(org).await? {
        None => json!({
            "enabled": false,
            "threshold_usd": recharge::DEFAULT_THRESHOLD,
            "amount_usd": recharge::DEFAULT_AMOUNT,
            "max_per_day": recharge::DEFAULT_MAX_PER_DAY,
            "max_usd_per_day": recharge::DEFAULT_MAX_USD_PER_DAY,
            "payment_method": null,
            "card_owner": null,
            "suspended": null,
        }),
        Some(c) => json!({
            "enabled": c.settings.enabled,
            "threshold_usd": c.settings.threshold,
            "amount_usd": c.settings.amount,
            "max_per_day": c.settings.max_per_day,
            "max_usd_per_day": c.settings.max_usd_per_day,
            "payment_method": c.card.as_ref().map(|card| card.payment_method.clone()),
            "card_owner": c.card.as_ref().map(|card| card.owner.clone()),
            "suspended": c.suspended,
        }),
    })
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
    .map_err(|e| ApiError::bad_request(ErrorCode::from(e.clone()), e.to_string()))?;
    // Enabling charges the caller's own card; disabling leaves the card on file with its
    // owner. A card never passes from one member to another.
    let card = if body.enabled {
        let customer = member.stripe_customer.clone().ok_or_else(no_card)?;
        let payment_method = newest_card(svc, &customer).await?.ok_or_else(no_card)?;
        Some(Card {
            customer,
            payment_method,
            owner: me.clone(),
        })
    } else {
        None
    };
    if !recharges
        .configure(org, &settings, card.as_ref(), me, chrono::Utc::now())
        .await?
    {
        return Err(forbidden());
    }
    Ok(json_response(StatusCode::OK, &view(recharges, org).await?))
}

fn no_card() -> ApiError {
    ApiError::bad_request(
        ErrorCode::NoSavedCard,
        "auto-recharge charges the card you saved at checkout: buy credits once to save one",
    )
}

async fn newest_card(svc: &Checkout, customer: &str) -> Result<Option<String>, ApiError> {
    let cards = ListPaymentMethodsCustomer::new(customer)
        .type_(ListPaymentMethodsCustomerType::Card)
        .limit(1)
        .send(&svc.stripe)
        .await
        .map_err(stripe_failed)?;
    Ok(cards.data.first().map(|pm| pm.id.to_string()))
}
