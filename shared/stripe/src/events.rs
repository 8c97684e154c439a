//! Stripe's signed events, as the webhooks function reads them: the signature checked on
//! the raw body, and the objects it needs re-exported, with their conversions into the
//! domain's words.

use agent_credits_domain::{PaidInvoice, RefundSeen};
use secrecy::{ExposeSecret, SecretString};
use stripe_shared::InvoiceBillingReason;
use stripe_webhook::{Webhook, WebhookError};

pub use stripe_shared::{
    Charge, CheckoutSession, CheckoutSessionPaymentStatus, Dispute, DisputeStatus, Invoice, InvoicePayment,
    PaymentIntent, Refund,
};
pub use stripe_types::Currency;
pub use stripe_webhook::{Event, EventObject};

/// Why a body is not an event of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsigned {
    /// The signature does not verify (or is too old, or names no v1 signature).
    #[error("the Stripe signature does not verify: {0}")]
    Signature(String),
    /// Signed with our secret, but not a Stripe event.
    #[error("a signed body that is not a Stripe event: {0}")]
    NotAnEvent(String),
}

/// The event, if and only if Stripe signed this very body with `secret` within Stripe's
/// 300 s tolerance.
pub fn verify(body: &str, signature: &str, secret: &SecretString) -> Result<Event, Unsigned> {
    Webhook::construct_event(body, signature, secret.expose_secret()).map_err(|e| match e {
        // Checked after the signature: a body we signed ourselves is not an event.
        WebhookError::BadParse(_) => Unsigned::NotAnEvent(e.to_string()),
        _ => Unsigned::Signature(e.to_string()),
    })
}

/// A refund as its take-back needs it.
pub fn refund(r: &Refund) -> RefundSeen {
    RefundSeen {
        id: r.id.to_string(),
        amount_cents: r.amount,
        failed: matches!(r.status.as_deref(), Some("failed" | "canceled")),
    }
}

/// A paid invoice as a plan grant reads it. The org comes from the subscription's
/// metadata, which Stripe copies onto each invoice (`parent.subscription_details`), or
/// from the invoice's own metadata.
pub fn paid_invoice(invoice: &Invoice) -> PaidInvoice {
    let starts_period = matches!(
        invoice.billing_reason,
        Some(InvoiceBillingReason::SubscriptionCreate | InvoiceBillingReason::SubscriptionCycle)
    );
    let org = invoice
        .parent
        .as_ref()
        .and_then(|p| p.subscription_details.as_ref())
        .and_then(|s| s.metadata.as_ref())
        .and_then(|m| m.get("org"))
        .or_else(|| invoice.metadata.as_ref().and_then(|m| m.get("org")))
        .cloned();
    let price = invoice
        .lines
        .data
        .iter()
        .filter_map(|line| line.pricing.as_ref()?.price_details.as_ref())
        .map(|d| d.price.id().to_string())
        .next();
    PaidInvoice {
        id: invoice.id.as_ref().map(|i| i.to_string()),
        org,
        starts_period,
        in_usd: invoice.currency == Currency::USD,
        amount_paid_cents: invoice.amount_paid,
        price,
    }
}

/// The card's own refusal that failed a PaymentIntent, if that is why it failed.
pub fn decline_of(pi: &PaymentIntent) -> Option<agent_credits_domain::recharge::Decline> {
    pi.last_payment_error
        .as_deref()
        .and_then(crate::gateway::card_decline)
}
