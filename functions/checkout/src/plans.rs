//! The org's plan (reference 003), its invoices and the Stripe customer portal:
//!
//! - `GET /v1/orgs/{org}/plans` (billing view): the catalog (`PLANS`) and the org's
//!   subscription as Stripe has it now;
//! - `POST /v1/orgs/{org}/subscription` (owner): a Checkout Session in `subscription`
//!   mode for a plan, when the org has none in force;
//! - `PUT /v1/orgs/{org}/subscription` (owner): another plan, by the rule of
//!   [`agent_credits_domain::plans`] (a monthly upgrade now, prorated by Stripe; anything
//!   else from the next period; monthly ↔ annual refused);
//! - `DELETE /v1/orgs/{org}/subscription` (owner): cancelled at the period's end;
//! - `GET /v1/orgs/{org}/invoices` (owner): every invoice of every customer that paid the
//!   org, newest first, with Stripe's links;
//! - `POST /v1/orgs/{org}/portal` (owner): a customer portal session for the caller's own
//!   customer (their payment methods and invoices: payment methods are never shared).
//!
//! Nothing here grants credits: only Stripe's signed `invoice.paid` does.

use agent_credits_domain::plans::{ChangeRule, Plan, change_rule};
use agent_credits_domain::{
    BillingMode, InvoiceSeen, NewSubscription, OrgId, Plans, SubscriptionSeen, Usd, shown_credits,
};
use agent_credits_http::{ApiError, ErrorCode, Membership, json_response};
use chrono::{DateTime, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use crate::{Checkout, Reply, stripe_failed};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choose {
    /// The plan: its Stripe price id, as the catalog lists it.
    plan: String,
}

#[derive(Debug, Serialize)]
struct PlanView<'a> {
    plan: &'a str,
    name: &'a str,
    amount_usd: Usd,
    interval: &'static str,
    base_usd: Usd,
    base_credits: u64,
    rollover_cap_usd: Usd,
}

fn plan_view<'a>(price: &'a str, plan: &'a Plan, per_usd: u32) -> PlanView<'a> {
    PlanView {
        plan: price,
        name: plan.name.as_deref().unwrap_or(price),
        amount_usd: plan.amount_usd,
        interval: plan.interval.as_str(),
        base_usd: plan.base_usd,
        base_credits: shown_credits(plan.base_usd, per_usd),
        rollover_cap_usd: plan.rollover_cap_usd,
    }
}

#[derive(Debug, Serialize)]
struct SubscriptionView {
    id: String,
    /// The price it bills (a catalog plan, or one the catalog no longer lists).
    plan: Option<String>,
    status: String,
    cancel_at_period_end: bool,
    current_period_end: Option<DateTime<Utc>>,
}

impl SubscriptionView {
    fn of(s: &SubscriptionSeen) -> SubscriptionView {
        SubscriptionView {
            id: s.id.clone(),
            plan: s.price.clone(),
            status: s.status.clone(),
            cancel_at_period_end: s.cancel_at_period_end,
            current_period_end: s.current_period_end,
        }
    }
}

#[derive(Debug, Serialize)]
struct PlansPage<'a> {
    plans: Vec<PlanView<'a>>,
    subscription: Option<SubscriptionView>,
    /// Whether the caller may subscribe, change or cancel (owners of a credits org).
    can_change: bool,
    /// Whether the caller pays the subscription (only they change its plan).
    payer: bool,
}

#[derive(Debug, Serialize)]
struct Changed {
    subscription: SubscriptionView,
    /// When the new plan applies: `now` (prorated) or `next_period`; `unchanged`.
    applies: &'static str,
}

#[derive(Debug, Serialize)]
struct SubscriptionSession<'a> {
    session_id: &'a str,
    url: Option<&'a str>,
    plan: &'a str,
}

/// The org's subscription in force, as Stripe has it now.
async fn current(svc: &Checkout, org: &OrgId) -> Result<Option<SubscriptionSeen>, ApiError> {
    let Some(record) = svc.orgs.subscription(org).await? else {
        return Ok(None);
    };
    let seen = svc
        .billing
        .subscription(&record.subscription)
        .await
        .map_err(stripe_failed)?;
    Ok(seen.filter(SubscriptionSeen::in_force))
}

fn find<'a>(plans: &'a Plans, id: &str) -> Result<&'a Plan, ApiError> {
    plans.get(id).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::UnknownPlan,
            format!("no plan {id:?}: GET /v1/orgs/{{org}}/plans lists them"),
        )
    })
}

fn no_subscription() -> ApiError {
    ApiError::conflict(
        ErrorCode::NoSubscription,
        "the org has no plan subscription in force: POST /v1/orgs/{org}/subscription subscribes",
    )
}

pub async fn page(svc: &Checkout, who: &Membership) -> Reply {
    let per_usd = who.org.credits_per_usd;
    let subscription = current(svc, &who.org.id).await?;
    Ok(json_response(
        StatusCode::OK,
        &PlansPage {
            plans: svc
                .plans
                .iter()
                .map(|(id, p)| plan_view(id, p, per_usd))
                .collect(),
            payer: subscription
                .as_ref()
                .is_some_and(|sub| who.member.stripe_customer.as_deref() == Some(sub.customer.as_str())),
            subscription: subscription.as_ref().map(SubscriptionView::of),
            can_change: who.org.billing_mode == BillingMode::Credits
                && who
                    .org
                    .allows(who.member.role, agent_credits_domain::Action::ChangePlan),
        },
    ))
}

/// Runs `change` holding the org's plan lock: one subscription or plan change at a time,
/// so what each reads of the subscription is still so when it asks Stripe. `change` gets
/// the period the org's last change was made in, and answers the period it changed in.
async fn locked<F, Fut>(svc: &Checkout, org: &OrgId, change: F) -> Reply
where
    F: FnOnce(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Response<Body>, Option<String>), ApiError>>,
{
    let now = chrono::Utc::now();
    // Longer than Stripe's two calls with their 10 s timeouts; a crash's lock lapses.
    let Some(lock) = svc
        .orgs
        .lock_plan(org, now, now + chrono::Duration::seconds(60))
        .await?
    else {
        return Err(ApiError::conflict(
            ErrorCode::PlanChangeInProgress,
            "another change of this org's plan is being made: try again in a minute",
        ));
    };
    let result = change(lock.changed_in.clone()).await;
    let changed_in = result.as_ref().ok().and_then(|(_, period)| period.as_deref());
    if let Err(e) = svc.orgs.unlock_plan(org, &lock, changed_in).await {
        tracing::warn!(%org, error = %e, "the plan lock was not given back; it lapses by itself");
    }
    result.map(|(reply, _)| reply)
}

pub async fn subscribe(svc: &Checkout, who: &Membership, req: &Request, body: Choose) -> Reply {
    find(&svc.plans, &body.plan)?;
    crate::credits_org(who)?;
    locked(svc, &who.org.id, |_| async {
        subscribe_locked(svc, who, req, body).await.map(|r| (r, None))
    })
    .await
}

async fn subscribe_locked(svc: &Checkout, who: &Membership, req: &Request, body: Choose) -> Reply {
    let (org, me) = (&who.org.id, &who.member.id);
    if current(svc, org).await?.is_some() {
        return Err(ApiError::conflict(
            ErrorCode::AlreadySubscribed,
            "the org has a plan subscription in force: PUT /v1/orgs/{org}/subscription changes its plan",
        ));
    }
    let customer = crate::customer_of(svc, who, req).await?;
    let billing = crate::billing_page(svc, org);
    let session = svc
        .billing
        .create_subscription_checkout(&NewSubscription {
            org,
            member: me,
            customer: &customer,
            price: &body.plan,
            success_url: format!("{billing}?subscription=success&session={{CHECKOUT_SESSION_ID}}"),
            cancel_url: format!("{billing}?subscription=cancelled"),
        })
        .await
        .map_err(stripe_failed)?;
    Ok(json_response(
        StatusCode::CREATED,
        &SubscriptionSession {
            session_id: &session.id,
            url: session.url.as_deref(),
            plan: &body.plan,
        },
    ))
}

pub async fn change(svc: &Checkout, who: &Membership, body: Choose) -> Reply {
    find(&svc.plans, &body.plan)?;
    locked(svc, &who.org.id, |changed_in| {
        change_locked(svc, who, body, changed_in)
    })
    .await
}

/// The period a change is made in: the subscription and its period's end.
fn period_of(sub: &SubscriptionSeen) -> String {
    format!(
        "{}#{}",
        sub.id,
        sub.current_period_end.map_or(0, |t| t.timestamp())
    )
}

async fn change_locked(
    svc: &Checkout,
    who: &Membership,
    body: Choose,
    changed_in: Option<String>,
) -> Result<(Response<Body>, Option<String>), ApiError> {
    let to = find(&svc.plans, &body.plan)?;
    let sub = current(svc, &who.org.id).await?.ok_or_else(no_subscription)?;
    let (Some(item), Some(price)) = (sub.item.as_deref(), sub.price.as_deref()) else {
        return Err(no_subscription());
    };
    // A change bills the card of whoever pays the subscription: only they make it.
    if who.member.stripe_customer.as_deref() != Some(sub.customer.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::NotThePayer,
            "the plan is paid with another owner's card: only they change it (or cancel it, and \
             subscribe again with yours)",
        ));
    }
    // A price the catalog does not list: its terms (and its interval) are unknown here.
    let Some(from) = svc.plans.get(price) else {
        return Err(ApiError::conflict(
            ErrorCode::UnlistedPrice,
            format!("the subscription bills {price}, which no plan lists: cancel it and subscribe again"),
        ));
    };
    let period = period_of(&sub);
    let rule = match change_rule(from, to) {
        // One prorated change a period: after a change this period (a downgrade applies
        // at once in Stripe though its credits stand), an upgrade back would be prorated
        // against the lower price while this period's higher base was granted already.
        ChangeRule::Now if changed_in.as_deref() == Some(period.as_str()) => ChangeRule::NextPeriod,
        rule => rule,
    };
    let (prorate, applies) = match rule {
        ChangeRule::Same => {
            let reply = json_response(
                StatusCode::OK,
                &Changed {
                    subscription: SubscriptionView::of(&sub),
                    applies: "unchanged",
                },
            );
            return Ok((reply, None));
        }
        ChangeRule::IntervalChange => {
            return Err(ApiError::conflict(
                ErrorCode::IntervalChange,
                "a plan billed monthly and one billed annually are not swapped within a period: \
                 cancel at the period's end (DELETE /v1/orgs/{org}/subscription), then subscribe again",
            ));
        }
        ChangeRule::Now => (true, "now"),
        ChangeRule::NextPeriod => (false, "next_period"),
    };
    let changed = svc
        .billing
        .change_price(&sub.id, item, &body.plan, prorate)
        .await
        .map_err(stripe_failed)?;
    let reply = json_response(
        StatusCode::OK,
        &Changed {
            subscription: SubscriptionView::of(&changed),
            applies,
        },
    );
    Ok((reply, Some(period)))
}

pub async fn cancel(svc: &Checkout, who: &Membership) -> Reply {
    let sub = current(svc, &who.org.id).await?.ok_or_else(no_subscription)?;
    let cancelled = if sub.cancel_at_period_end {
        sub
    } else {
        svc.billing
            .cancel_at_period_end(&sub.id, true)
            .await
            .map_err(stripe_failed)?
    };
    Ok(json_response(StatusCode::OK, &SubscriptionView::of(&cancelled)))
}

#[derive(Debug, Serialize)]
struct InvoiceView {
    id: String,
    number: Option<String>,
    status: String,
    currency: String,
    total_usd: Option<Usd>,
    amount_paid_usd: Option<Usd>,
    created: DateTime<Utc>,
    description: Option<String>,
    billing_reason: Option<String>,
    hosted_invoice_url: Option<String>,
    invoice_pdf: Option<String>,
}

impl InvoiceView {
    fn of(i: InvoiceSeen) -> InvoiceView {
        let usd = |cents: i64| {
            (i.currency == "usd")
                .then(|| Usd::from_cents(cents).ok())
                .flatten()
        };
        InvoiceView {
            total_usd: usd(i.total_cents),
            amount_paid_usd: usd(i.amount_paid_cents),
            id: i.id,
            number: i.number,
            status: i.status,
            currency: i.currency,
            created: i.created,
            description: i.description,
            billing_reason: i.billing_reason,
            hosted_invoice_url: i.hosted_invoice_url,
            invoice_pdf: i.invoice_pdf,
        }
    }
}

#[derive(Debug, Serialize)]
struct Invoices {
    invoices: Vec<InvoiceView>,
}

/// The most invoices listed (the newest), over all the org's customers.
const MOST_INVOICES: usize = 100;

pub async fn invoices(svc: &Checkout, org: &OrgId) -> Reply {
    let mut all = vec![];
    for customer in svc.orgs.customers(org).await? {
        let theirs = svc
            .billing
            .invoices(&customer, 100)
            .await
            .map_err(stripe_failed)?;
        all.extend(theirs);
    }
    // A customer is the org's own (created for it), so every invoice of it is the org's.
    all.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    all.truncate(MOST_INVOICES);
    Ok(json_response(
        StatusCode::OK,
        &Invoices {
            invoices: all.into_iter().map(InvoiceView::of).collect(),
        },
    ))
}

#[derive(Debug, Serialize)]
struct Portal {
    url: String,
}

pub async fn portal(svc: &Checkout, who: &Membership, req: &Request) -> Reply {
    crate::opened(svc, who).await?;
    let customer = crate::customer_of(svc, who, req).await?;
    let billing = crate::billing_page(svc, &who.org.id);
    let url = svc
        .billing
        .portal(&customer, &billing, svc.portal_configuration.as_deref())
        .await
        .map_err(stripe_failed)?;
    Ok(json_response(StatusCode::OK, &Portal { url }))
}
