//! Stripe's signed events, as the webhooks function reads them: the signature checked on
//! the raw body, and the objects it needs re-exported, with their conversions into the
//! domain's words.

use agent_credits_domain::{InvoiceSeen, PaidInvoice, ProratedLine, RefundSeen, SubscriptionSeen};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use stripe_shared::InvoiceBillingReason;
use stripe_webhook::{Webhook, WebhookError};

pub use stripe_shared::{
    Charge, CheckoutSession, CheckoutSessionMode, CheckoutSessionPaymentStatus, Dispute, DisputeStatus,
    Invoice, InvoicePayment, PaymentIntent, Refund, Subscription,
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
    let priced = || {
        invoice.lines.data.iter().filter_map(|line| {
            let details = line.pricing.as_ref()?.price_details.as_ref()?;
            Some((line, details.price.id().to_string()))
        })
    };
    let proration = |line: &stripe_shared::InvoiceLineItem| {
        line.parent
            .as_ref()
            .and_then(|p| p.subscription_item_details.as_ref())
            .is_some_and(|d| d.proration)
    };
    // The plan a period bills is its line that is no proration.
    let price = priced()
        .find(|(line, _)| !proration(line))
        .or_else(|| priced().next())
        .map(|(_, price)| price);
    let has_prorations = invoice.lines.data.iter().any(proration);
    let lines = priced()
        .map(|(line, price)| ProratedLine {
            price,
            amount_cents: line.amount,
        })
        .collect();
    let period_start = priced()
        .find(|(line, _)| !proration(line))
        .or_else(|| priced().next())
        .and_then(|(line, _)| DateTime::<Utc>::from_timestamp(line.period.start, 0));
    let subscription = invoice
        .parent
        .as_ref()
        .and_then(|p| p.subscription_details.as_ref())
        .map(|s| s.subscription.id().to_string());
    PaidInvoice {
        id: invoice.id.as_ref().map(|i| i.to_string()),
        org,
        starts_period,
        in_usd: invoice.currency == Currency::USD,
        amount_paid_cents: invoice.amount_paid,
        price,
        changes_plan: invoice.billing_reason == Some(InvoiceBillingReason::SubscriptionUpdate),
        all_lines: !invoice.lines.has_more,
        has_prorations,
        lines,
        period_start,
        subscription,
    }
}

fn time(ts: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(ts, 0)
}

/// A subscription as the functions need it: its first item's price and period.
pub fn subscription(sub: &Subscription) -> SubscriptionSeen {
    let item = sub.items.data.first();
    SubscriptionSeen {
        id: sub.id.to_string(),
        status: sub.status.to_string(),
        customer: sub.customer.id().to_string(),
        org: sub.metadata.get("org").cloned(),
        item: item.map(|i| i.id.to_string()),
        price: item.map(|i| i.price.id.to_string()),
        cancel_at_period_end: sub.cancel_at_period_end,
        current_period_start: item.and_then(|i| time(i.current_period_start)),
        current_period_end: item.and_then(|i| time(i.current_period_end)),
        default_payment_method: sub.default_payment_method.as_ref().map(|p| p.id().to_string()),
        created: time(sub.created).unwrap_or_default(),
    }
}

/// An invoice as the billing page lists it.
pub fn invoice_seen(invoice: &Invoice) -> Option<InvoiceSeen> {
    Some(InvoiceSeen {
        id: invoice.id.as_ref()?.to_string(),
        number: invoice.number.clone(),
        status: invoice
            .status
            .as_ref()
            .map_or_else(|| "draft".to_owned(), |s| s.to_string()),
        currency: invoice.currency.to_string(),
        total_cents: invoice.total,
        amount_paid_cents: invoice.amount_paid,
        created: time(invoice.created).unwrap_or_default(),
        description: invoice.description.clone(),
        billing_reason: invoice.billing_reason.as_ref().map(|r| r.to_string()),
        hosted_invoice_url: invoice.hosted_invoice_url.clone(),
        invoice_pdf: invoice.invoice_pdf.clone(),
    })
}

/// The card's own refusal that failed a PaymentIntent, if that is why it failed.
pub fn decline_of(pi: &PaymentIntent) -> Option<agent_credits_domain::recharge::Decline> {
    pi.last_payment_error
        .as_deref()
        .and_then(crate::gateway::card_decline)
}
