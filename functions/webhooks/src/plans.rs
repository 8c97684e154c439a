//! Plan subscriptions (reference 003): each paid invoice of a plan's subscription starts a
//! period: unused base credits move to rollover up to the plan's rollover cap (the rest
//! expires) and base becomes the plan's monthly grant. Plans are deployment settings,
//! keyed by the Stripe price the subscription bills (`PLANS`, JSON):
//!
//! ```json
//! {"price_team_monthly": {"amount_usd": "50.00", "base_usd": "50.00", "rollover_cap_usd": "100.00"}}
//! ```
//!
//! The org comes from the subscription's metadata (`org`), which Stripe copies onto each
//! invoice (`parent.subscription_details.metadata`), or from the invoice's own metadata.
//!
//! A $0 invoice (a trial, a 100% coupon) grants the plan's base credits like any other:
//! the plan is in force for its period, and only the Stripe account's operators can make
//! one. It charged nothing, so there is nothing to refund.
//!
//! Refunds and disputes name a charge's PaymentIntent, and an invoice's PaymentIntent
//! carries no metadata. So the invoice (`invoice.paid`: ours or not, and what it granted)
//! and its payment (`invoice_payment.paid`: which PaymentIntent paid it) are each
//! remembered, and whichever of the two comes second joins them into the payment record
//! that refunds and disputes find: a take-back of a plan invoice draws base credits first.
//! Each writes its own record before it reads the other's, so of two at the same instant
//! at least one sees both. A refund or dispute that finds neither asks Stripe which
//! invoice the PaymentIntent paid and records that link itself
//! ([`paid_an_invoice_of_ours`]).

use agent_credits_domain::plans::{Interval, Plan, monthly_grant_due, proration_grant};
use agent_credits_domain::{
    BillingMode, Bucket, ChangeRequest, EntryKind, ExternalRefs, OrgId, PaidInvoice, PaymentLookup,
    PositiveUsd, Usd, WalletStore, keys,
};
use agent_credits_dynamo::{InvoiceGrant, InvoiceRecord, MonthlyGrant, PaymentRecord, SubscriptionRecord};
use agent_credits_stripe::events::{self, CheckoutSession, Event, Invoice, InvoicePayment, Subscription};

use crate::views::Handled;
use crate::{Reply, Webhooks, acknowledged, applied, unmatched};

/// `invoice.paid` of a plan subscription, once per invoice: a period's base grant (an
/// annual plan's first month, its other eleven scheduled), or a plan change's prorated
/// base (see [`agent_credits_domain::plans`]).
pub async fn grant(svc: &Webhooks, event: &Event, invoice: &Invoice) -> Reply {
    let invoice = events::paid_invoice(invoice);
    let Some(id) = invoice.id.clone() else {
        // A paid invoice always has an id; one without is nothing to key a grant on.
        return Err(unmatched("invoice", "no id"));
    };
    let (org, plan, charged_cents) = match claim(svc, &id, &invoice).await? {
        Claim::Plan(org, plan, charged_cents) => (org, plan, charged_cents),
        // Refused until someone fixes the settings; its refunds and disputes wait with it
        // (nothing is recorded: the invoice may yet grant).
        Claim::Refused(refused) => return Err(refused),
        Claim::NoneOfOurs(why) => {
            record_none_of_ours(svc, id).await?;
            return why.map_or_else(|| Ok(acknowledged(Handled::Ignored)), Err);
        }
    };
    let key = keys::invoice(&id).map_err(|_| unmatched(&id, "an unusable invoice id"))?;
    let external = ExternalRefs {
        stripe_event: Some(event.id.to_string()),
        invoice: Some(id.clone()),
        ..Default::default()
    };
    let (req, credits) = if invoice.changes_plan {
        let credits =
            proration_grant(&svc.plans, &invoice.lines).map_err(|e| unmatched(&id, &e.to_string()))?;
        let Ok(amount) = PositiveUsd::new(credits) else {
            // A change that grants nothing now (its money is Stripe's credit to the
            // customer): ours, and its refunds take nothing.
            record(svc, &id, &org, Usd::ZERO, charged_cents, false).await?;
            return Ok(acknowledged(Handled::NothingGranted));
        };
        let req = ChangeRequest::credit(org.clone(), EntryKind::PlanGrant, Bucket::Base, amount, key)
            .map_err(|e| agent_credits_http::ApiError::internal(&e))?;
        (req, credits)
    } else {
        let req = ChangeRequest::renew_plan(org.clone(), plan.base_usd, plan.rollover_cap_usd, key);
        (req, plan.base_usd)
    };
    let outcome = svc.store.apply(req.with_external(external)).await?;
    if outcome.is_ok() {
        // An annual invoice's months are scheduled before the invoice is recorded: only
        // its record lets a refund find the payment, and the refund must find every month
        // to end it.
        if plan.interval == Interval::Year && !invoice.changes_plan {
            schedule_months(svc, &id, &org, plan, &invoice).await?;
        }
        let annual = plan.interval == Interval::Year && !invoice.changes_plan;
        let record = record(svc, &id, &org, credits, charged_cents, annual).await?;
        // A plan pays for credits: a byok or deferred org that has one runs on them.
        if svc.store.wallet(&org).await?.settings.billing_mode != Some(BillingMode::Credits) {
            svc.store.becomes_credits(&org).await?;
        }
        if let Some(intent) = svc.store.paid_by(&id).await? {
            join(svc, &record, &intent).await?;
        }
    }
    applied(outcome, Handled::Granted, Handled::AlreadyGranted)
}

/// Records what a plan invoice of ours granted (set once).
async fn record(
    svc: &Webhooks,
    id: &str,
    org: &OrgId,
    credits: Usd,
    charged_cents: u64,
    annual: bool,
) -> Result<InvoiceRecord, agent_credits_http::ApiError> {
    let record = InvoiceRecord {
        invoice: id.to_owned(),
        grant: Some(InvoiceGrant {
            org: org.clone(),
            credits,
            charged_cents,
            annual,
        }),
    };
    svc.store.record_invoice(&record).await?;
    Ok(record)
}

/// An annual invoice grants its first month at once and the other eleven on the same day
/// of each following month (the recharge function's tick makes them).
async fn schedule_months(
    svc: &Webhooks,
    id: &str,
    org: &OrgId,
    plan: &Plan,
    invoice: &PaidInvoice,
) -> Result<(), agent_credits_http::ApiError> {
    let Some(start) = invoice.period_start else {
        return Err(unmatched(id, "no period on its lines"));
    };
    let months = (1..Interval::Year.months())
        .filter_map(|month| {
            Some(MonthlyGrant {
                org: org.clone(),
                invoice: id.to_owned(),
                month,
                due: monthly_grant_due(start, month)?,
                base: plan.base_usd,
                rollover_cap: plan.rollover_cap_usd,
            })
        })
        .collect::<Vec<_>>();
    svc.store.schedule_monthly_grants(&months).await?;
    Ok(())
}

/// `customer.subscription.*` and a subscription's completed Checkout: the org's
/// subscription is recorded (the newest stands), so the dashboard can change or cancel
/// it. What it bills and grants comes from its invoices.
pub async fn subscription(svc: &Webhooks, sub: &Subscription) -> Reply {
    let seen = events::subscription(sub);
    let Some(org) = seen.org.as_deref() else {
        return Ok(acknowledged(Handled::Ignored));
    };
    let Ok(org) = OrgId::parse(org) else {
        return Err(unmatched(&seen.id, "no valid org"));
    };
    if svc.store.wallet(&org).await?.settings.billing_mode.is_none() {
        return Err(unmatched(&seen.id, "an unknown org"));
    }
    let record = SubscriptionRecord {
        subscription: seen.id,
        customer: seen.customer,
        created: seen.created,
    };
    svc.store.record_subscription(&org, &record).await?;
    Ok(acknowledged(Handled::SubscriptionRecorded))
}

/// A subscription's Checkout completed: nothing to credit (its invoice grants); the
/// subscription is recorded by its own event.
pub fn checkout_completed(session: &CheckoutSession) -> Reply {
    tracing::info!(session = %session.id, "a plan subscription's checkout completed");
    Ok(acknowledged(Handled::SubscriptionRecorded))
}

/// Whether a PaymentIntent without metadata paid a subscription invoice naming an org of
/// ours, asked of Stripe: an invoice's PaymentIntent carries no metadata, and since API
/// version 2025-03-31 the only link from it to its invoice is the invoice payment. The
/// link is recorded as `invoice_payment.paid` would record it (joined with the invoice's
/// grant when that is known), so a refund or dispute does not depend on that event ever
/// coming; one that comes before the invoice's own `invoice.paid` is known to be ours
/// and waits for it. So does one of an invoice whose grant was refused until the
/// settings are fixed ([`Claim::Refused`]): the invoice may yet grant.
pub async fn paid_an_invoice_of_ours(
    svc: &Webhooks,
    payments: &dyn PaymentLookup,
    intent: &str,
) -> Result<bool, agent_credits_http::ApiError> {
    let invoices = payments
        .invoices_paid_by(intent)
        .await
        .map_err(crate::reversals::stripe_unavailable)?;
    for id in invoices {
        if let Some(record) = svc.store.invoice(&id).await? {
            if record.grant.is_none() {
                continue;
            }
            link(svc, &id, intent).await?;
            return Ok(true);
        }
        let Some(invoice) = payments
            .invoice(&id)
            .await
            .map_err(crate::reversals::stripe_unavailable)?
        else {
            tracing::info!(invoice = id, "no such invoice");
            continue;
        };
        match claim(svc, &id, &invoice).await? {
            Claim::Plan(..) | Claim::Refused(_) => {
                link(svc, &id, intent).await?;
                return Ok(true);
            }
            Claim::NoneOfOurs(_) => record_none_of_ours(svc, id).await?,
        }
    }
    Ok(false)
}

/// What a paid invoice is to this service.
enum Claim<'p> {
    /// A plan invoice of ours: its org, plan and the cents it charged.
    Plan(OrgId, &'p Plan, u64),
    /// It names an org but cannot grant until the deployment's settings change (a price
    /// no plan is configured for, an org not created yet): refused (400) so that it stays
    /// visible, and its refunds and disputes wait (409) with it.
    Refused(agent_credits_http::ApiError),
    /// None of ours, now or ever: not a subscription's period or no org (acknowledged), or
    /// an invoice no settings could grant for (an org id that is none, another currency,
    /// a negative amount: refused, to be seen). Its refunds are acknowledged.
    NoneOfOurs(Option<agent_credits_http::ApiError>),
}

/// The one classification of a paid invoice, for its grant and for its reversals.
async fn claim<'p>(
    svc: &'p Webhooks,
    id: &str,
    invoice: &PaidInvoice,
) -> Result<Claim<'p>, agent_credits_http::ApiError> {
    let never = |why: &str| Ok(Claim::NoneOfOurs(Some(unmatched(id, why))));
    // Invoices of anything else this Stripe account bills are none of our business: only
    // a subscription's invoice for a period or a plan change that names an org is ours.
    let Some(org) = invoice
        .org
        .as_deref()
        .filter(|_| invoice.starts_period || invoice.changes_plan)
    else {
        return Ok(Claim::NoneOfOurs(None));
    };
    let Ok(org) = OrgId::parse(org) else {
        return never("no valid org");
    };
    if !invoice.in_usd {
        return never("a currency other than usd");
    }
    let Ok(charged_cents) = u64::try_from(invoice.amount_paid_cents) else {
        return never("a negative amount paid");
    };
    // A subscription invoice of one of our orgs whose lines show no price (a payload
    // shape we do not read, or lines on another page): refused and not recorded, so it
    // stays visible and its reversals wait rather than being dropped as none of ours.
    let Some(price) = invoice.price.clone() else {
        return Ok(Claim::Refused(unmatched(id, "no price on its lines")));
    };
    // Lines on another page: what it grants cannot be read. Refused, visible.
    if !invoice.all_lines {
        return Ok(Claim::Refused(unmatched(id, "more lines than the event carries")));
    }
    // A period's invoice that also bills prorations (a change made outside this service,
    // with `create_prorations`): what it grants is not one plan's base. Refused, visible.
    if invoice.starts_period && invoice.has_prorations {
        return Ok(Claim::Refused(unmatched(id, "prorations on a period's invoice")));
    }
    let Some(plan) = svc.plans.get(&price) else {
        return Ok(Claim::Refused(unmatched(
            id,
            "a price that is no configured plan",
        )));
    };
    if svc.store.wallet(&org).await?.settings.billing_mode.is_none() {
        return Ok(Claim::Refused(unmatched(id, "an unknown org")));
    }
    Ok(Claim::Plan(org, plan, charged_cents))
}

/// `invoice_payment.paid`: which PaymentIntent paid an invoice; joined with the invoice's
/// grant when that is known.
pub async fn payment(svc: &Webhooks, paid: &InvoicePayment) -> Reply {
    let Some(intent) = paid.payment.payment_intent.as_ref().map(|p| p.id().to_string()) else {
        return Ok(acknowledged(Handled::Ignored));
    };
    let Some(invoice) = paid.invoice.id().as_ref().map(|i| i.to_string()) else {
        return Ok(acknowledged(Handled::Ignored));
    };
    link(svc, &invoice, &intent).await?;
    Ok(acknowledged(Handled::InvoicePaymentRecorded))
}

/// Records which PaymentIntent paid an invoice, and joins it with the invoice's grant when
/// that is known. Writes its own record before it reads the grant's (see the module).
async fn link(svc: &Webhooks, invoice: &str, intent: &str) -> Result<(), agent_credits_http::ApiError> {
    svc.store.record_invoice_payment(invoice, intent).await?;
    if let Some(record) = svc.store.invoice(invoice).await? {
        join(svc, &record, intent).await?;
    }
    Ok(())
}

/// The payment record of a plan invoice's PaymentIntent, for its refunds and disputes
/// (nothing for an invoice that granted nothing). Idempotent.
pub(crate) async fn join(
    svc: &Webhooks,
    record: &InvoiceRecord,
    intent: &str,
) -> Result<(), agent_credits_http::ApiError> {
    let Some(grant) = &record.grant else {
        return Ok(());
    };
    let key =
        keys::invoice(&record.invoice).map_err(|_| unmatched(&record.invoice, "an unusable invoice id"))?;
    let payment = PaymentRecord {
        payment_intent: intent.to_owned(),
        org: grant.org.clone(),
        kind: EntryKind::PlanGrant,
        credits: grant.credits,
        charged_cents: grant.charged_cents,
        credit_key: key.to_string(),
    };
    svc.store.record_payment(&payment).await?;
    Ok(())
}

/// Records that an invoice will never grant (it never overwrites a grant).
async fn record_none_of_ours(svc: &Webhooks, invoice: String) -> Result<(), agent_credits_http::ApiError> {
    svc.store
        .record_invoice(&InvoiceRecord { invoice, grant: None })
        .await?;
    Ok(())
}
