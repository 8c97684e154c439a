//! Plan subscriptions (reference 003): each paid invoice of a plan's subscription starts a
//! period: unused base credits move to rollover up to the plan's rollover cap (the rest
//! expires) and base becomes the plan's monthly grant. Plans are deployment settings,
//! keyed by the Stripe price the subscription bills (`PLANS`, JSON):
//!
//! ```json
//! {"price_team_monthly": {"base_usd": "50.00", "rollover_cap_usd": "100.00"}}
//! ```
//!
//! The org comes from the subscription's metadata (`org`), which Stripe copies onto each
//! invoice (`parent.subscription_details.metadata`), or from the invoice's own metadata.

use std::collections::HashMap;

use agent_credits_domain::{ChangeRequest, ExternalRefs, OrgId, Usd, WalletStore, keys};
use serde::Deserialize;
use stripe_shared::{Invoice, InvoiceBillingReason};
use stripe_types::Currency;
use stripe_webhook::Event;

use crate::{Reply, Webhooks, acknowledged, applied, unmatched};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Base credits granted each period.
    pub base_usd: Usd,
    /// Most rollover credits kept from period to period.
    pub rollover_cap_usd: Usd,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plans(HashMap<String, Plan>);

impl Plans {
    /// Reads the `PLANS` setting; empty for none.
    pub fn parse(json: &str) -> Result<Plans, String> {
        if json.trim().is_empty() {
            return Ok(Plans::default());
        }
        serde_json::from_str::<HashMap<String, Plan>>(json)
            .map(Plans)
            .map_err(|e| format!("PLANS is not a map of price id to {{base_usd, rollover_cap_usd}}: {e}"))
    }

    pub fn from_map(plans: HashMap<String, Plan>) -> Plans {
        Plans(plans)
    }

    pub fn get(&self, price: &str) -> Option<&Plan> {
        self.0.get(price)
    }
}

/// `invoice.paid` of a plan subscription: the period's grant, once per invoice.
pub async fn grant(svc: &Webhooks, event: &Event, invoice: &Invoice) -> Reply {
    let id = invoice.id.as_ref().map(|i| i.to_string()).unwrap_or_default();
    let from_subscription = matches!(
        invoice.billing_reason,
        Some(InvoiceBillingReason::SubscriptionCreate | InvoiceBillingReason::SubscriptionCycle)
    );
    let org = invoice
        .parent
        .as_ref()
        .and_then(|p| p.subscription_details.as_ref())
        .and_then(|s| s.metadata.as_ref())
        .and_then(|m| m.get("org"))
        .or_else(|| invoice.metadata.as_ref().and_then(|m| m.get("org")));
    // Invoices of anything else this Stripe account bills are none of our business.
    let (true, Some(org)) = (from_subscription, org) else {
        return Ok(acknowledged("ignored"));
    };
    let org = OrgId::parse(org.as_str()).map_err(|_| unmatched(&id, "no valid org"))?;
    if invoice.currency != Currency::USD {
        return Err(unmatched(&id, "a currency other than usd"));
    }
    let price = invoice
        .lines
        .data
        .iter()
        .filter_map(|line| line.pricing.as_ref()?.price_details.as_ref())
        .map(|d| d.price.id().to_string())
        .next()
        .ok_or_else(|| unmatched(&id, "no price"))?;
    let plan = svc
        .plans
        .get(&price)
        .ok_or_else(|| unmatched(&id, "a price that is no configured plan"))?;
    if svc.store.wallet(&org).await?.settings.billing_mode.is_none() {
        return Err(unmatched(&id, "an unknown org"));
    }
    let key = keys::invoice(&id).map_err(|_| unmatched(&id, "an unusable invoice id"))?;
    let req = ChangeRequest::renew_plan(org, plan.base_usd, plan.rollover_cap_usd, key).with_external(
        ExternalRefs {
            stripe_event: Some(event.id.to_string()),
            invoice: Some(id.clone()),
            ..Default::default()
        },
    );
    applied(svc.store.apply(req).await?, "granted", "already_granted")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_from_the_setting_and_refuse_anything_else() {
        let plans =
            Plans::parse(r#"{"price_team": {"base_usd": "50.00", "rollover_cap_usd": "100"}}"#).unwrap();
        assert_eq!(
            plans.get("price_team").unwrap().base_usd,
            Usd::parse("50").unwrap()
        );
        assert_eq!(Plans::parse("").unwrap(), Plans::default());
        for bad in [
            r#"{"p": {"base_usd": 50, "rollover_cap_usd": "1"}}"#,
            r#"{"p": {"base_usd": "-5", "rollover_cap_usd": "1"}}"#,
            r#"{"p": {"base_usd": "5"}}"#,
            r#"["p"]"#,
        ] {
            assert!(Plans::parse(bad).is_err(), "{bad}");
        }
    }
}
