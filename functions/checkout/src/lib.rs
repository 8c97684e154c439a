//! The checkout function: `POST /v1/orgs/{org}/checkout` creates a Stripe Checkout Session
//! for a bulk, a package or a custom amount, and answers its id and URL.
//!
//! Who may buy is the org's policy (owners only, or any member with their own card). Each
//! buyer has their own Stripe customer, created once and reused, and the card is saved for
//! off-session use so auto-recharge can charge the owner's card later. The session's
//! metadata carries what the webhooks function credits: `org`, `member`, `offer`,
//! `credits_usd`, and `price_usd` (checked against what Stripe charged). Nothing is recorded as paid here: only Stripe's signed event credits.

mod autorecharge;
mod plans;
pub mod views;

use std::sync::Arc;

use agent_credits_domain::{
    Action, BillingGateway, BillingMode, Catalog, CheckoutGateway, Choice, GatewayError, NewCheckout,
    OrgDirectory, OrgId, Package, Plans, Usd,
};
use agent_credits_dynamo::{OrgStore, RechargeStore};
use agent_credits_http::{
    ApiError, Edge, ErrorCode, Membership, Reply, Route, Router, Table, answer, json_response,
};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

pub use agent_credits_domain::Plan;

/// The checkout function's settings, read once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The credits table (`TABLE_NAME`).
    pub table: String,
    pub catalog: Catalog,
    /// The subscription plans (`PLANS`, see [`Plans`]).
    pub plans: Plans,
    /// Where Stripe sends the buyer back (`DASHBOARD_URL`, default `http://localhost:3000`).
    pub dashboard_url: String,
    /// Stripe elsewhere than api.stripe.com (`STRIPE_API_BASE`: the project's simulator).
    pub stripe_api_base: Option<String>,
    /// The customer portal's configuration (`STRIPE_PORTAL_CONFIGURATION`, `bpc_...`);
    /// the account's default when unset.
    pub portal_configuration: Option<String>,
}

impl agent_credits_aws::settings::FromEnv for Settings {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        Ok(Settings {
            table: agent_credits_aws::settings::required(&get, "TABLE_NAME")?,
            catalog: catalog_from(&get)?,
            plans: Plans::parse(&get("PLANS").unwrap_or_default())?,
            dashboard_url: get("DASHBOARD_URL").unwrap_or_else(|| "http://localhost:3000".to_owned()),
            stripe_api_base: get("STRIPE_API_BASE"),
            portal_configuration: get("STRIPE_PORTAL_CONFIGURATION").filter(|c| !c.trim().is_empty()),
        })
    }
}

pub struct Checkout {
    pub orgs: OrgStore,
    pub recharges: RechargeStore,
    /// Stripe, behind the domain's port (`agent_credits_stripe::StripeGateway`).
    pub payments: Arc<dyn CheckoutGateway>,
    /// Stripe for plans, invoices and the customer portal.
    pub billing: Arc<dyn BillingGateway>,
    pub catalog: Catalog,
    pub plans: Plans,
    /// The customer portal's configuration (`None`: the account's default).
    pub portal_configuration: Option<String>,
    /// Where Stripe sends the buyer back: `{dashboard}/orgs/{org}/billing?...`.
    pub dashboard_url: String,
}

/// The catalog from the environment: `CHECKOUT_BULK_USD` (default 100),
/// `CHECKOUT_PACKAGES` (JSON list of `{"id", "name", "price", "credits"}`; unset or empty:
/// reference 001's packages, [`agent_credits_domain::default_packages`]; `[]`: none),
/// `CHECKOUT_CUSTOM_MIN_USD` / `CHECKOUT_CUSTOM_MAX_USD` (default 10 and 10000).
pub fn catalog_from(get: impl Fn(&str) -> Option<String>) -> Result<Catalog, String> {
    let usd = |name: &str, default: &str| -> Result<Usd, String> {
        let v = get(name).unwrap_or_else(|| default.to_owned());
        Usd::parse(&v).map_err(|e| format!("{name}: {e}"))
    };
    let packages: Vec<Package> = match get("CHECKOUT_PACKAGES").filter(|v| !v.trim().is_empty()) {
        Some(json) => serde_json::from_str(&json).map_err(|e| format!("CHECKOUT_PACKAGES: {e}"))?,
        None => agent_credits_domain::default_packages(),
    };
    let catalog = Catalog {
        bulk: usd("CHECKOUT_BULK_USD", "100")?,
        packages,
        custom_min: usd("CHECKOUT_CUSTOM_MIN_USD", "10")?,
        custom_max: usd("CHECKOUT_CUSTOM_MAX_USD", "10000")?,
    };
    if catalog.custom_min > catalog.custom_max || catalog.bulk.is_zero() {
        return Err("checkout catalog: the custom range is empty or the bulk is zero".into());
    }
    // Every package listed is one checkout sells: a unique id, a card charge of whole cents
    // (Stripe's smallest is $0.50), and at least as many credits as it costs.
    let mut ids = std::collections::BTreeSet::new();
    for p in &catalog.packages {
        let cents = p.price.to_cents().ok().filter(|c| *c >= 50);
        if !ids.insert(p.id.as_str()) || p.id.is_empty() || cents.is_none() || p.credits < p.price {
            return Err(format!(
                "CHECKOUT_PACKAGES: package {:?} needs a unique id, a price of whole cents from 0.50, \
                 and credits of at least its price",
                p.id
            ));
        }
    }
    Ok(catalog)
}

/// Every route of the function: who may call it and what answers it.
pub fn routes() -> Vec<Route<Checkout>> {
    vec![
        Route::member(
            Method::GET,
            "/v1/orgs/{org}/checkout",
            Action::Purchase,
            |svc, c| Box::pin(async move { offers(svc, &c.who) }),
        ),
        Route::member(
            Method::POST,
            "/v1/orgs/{org}/checkout",
            Action::Purchase,
            |svc, c| Box::pin(async move { create_session(svc, &c.who, c.req, c.body()?).await }),
        ),
        Route::member(Method::GET, "/v1/orgs/{org}/offers", Action::ViewOrg, |svc, c| {
            Box::pin(async move { offers_page(svc, &c.who) })
        }),
        Route::member(
            Method::GET,
            "/v1/orgs/{org}/auto-recharge",
            Action::ViewBilling,
            |svc, c| Box::pin(async move { autorecharge::get(svc, &c.who.org.id).await }),
        ),
        Route::member(
            Method::PUT,
            "/v1/orgs/{org}/auto-recharge",
            Action::ManageAutoRecharge,
            |svc, c| Box::pin(async move { autorecharge::put(svc, &c.who, c.body()?).await }),
        ),
        Route::member(
            Method::GET,
            "/v1/orgs/{org}/plans",
            Action::ViewBilling,
            |svc, c| Box::pin(async move { plans::page(svc, &c.who).await }),
        ),
        Route::member(
            Method::POST,
            "/v1/orgs/{org}/subscription",
            Action::ChangePlan,
            |svc, c| Box::pin(async move { plans::subscribe(svc, &c.who, c.req, c.body()?).await }),
        ),
        Route::member(
            Method::PUT,
            "/v1/orgs/{org}/subscription",
            Action::ChangePlan,
            |svc, c| Box::pin(async move { plans::change(svc, &c.who, c.body()?).await }),
        ),
        Route::member(
            Method::DELETE,
            "/v1/orgs/{org}/subscription",
            Action::ChangePlan,
            |svc, c| Box::pin(async move { plans::cancel(svc, &c.who).await }),
        ),
        Route::member(
            Method::GET,
            "/v1/orgs/{org}/invoices",
            Action::ViewInvoices,
            |svc, c| Box::pin(async move { plans::invoices(svc, &c.who.org.id).await }),
        ),
        Route::member(
            Method::POST,
            "/v1/orgs/{org}/portal",
            Action::OpenPortal,
            |svc, c| Box::pin(async move { plans::portal(svc, &c.who, c.req).await }),
        ),
        // The caller's own personal account: bought for and recharged with their card.
        Route::personal(Method::GET, "/v1/me/checkout", |svc, c| {
            Box::pin(async move { offers(svc, &c.who) })
        }),
        Route::personal(Method::POST, "/v1/me/checkout", |svc, c| {
            Box::pin(async move { create_session(svc, &c.who, c.req, c.body()?).await })
        }),
        Route::personal(Method::GET, "/v1/me/auto-recharge", |svc, c| {
            Box::pin(async move { autorecharge::get(svc, &c.who.org.id).await })
        }),
        Route::personal(Method::PUT, "/v1/me/auto-recharge", |svc, c| {
            Box::pin(async move { autorecharge::put(svc, &c.who, c.body()?).await })
        }),
    ]
}

impl Edge for Checkout {
    fn directory(&self) -> Option<&dyn OrgDirectory> {
        Some(&self.orgs)
    }
}

static ROUTER: Table<Checkout> = Table::new(|| Router::new(routes()));

pub async fn handle(svc: &Checkout, req: Request) -> Response<Body> {
    answer(&ROUTER, svc, req).await
}

/// Buying credits or enabling auto-recharge in an org that does not run on credits: its
/// wallet stays empty (reference 000) until an owner switches it to credits.
pub(crate) fn not_credits(mode: BillingMode) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::NotACreditsOrg,
        format!(
            "this org's billing mode is {}: its wallet is not used. An owner or admin switches it to \
             credits first (PUT /v1/orgs/{{org}}/billing-mode with {{\"billing_mode\": \"credits\"}})",
            mode.as_str()
        ),
    )
}

/// Refuses a purchase or an auto-recharge for an org that does not run on credits.
pub(crate) fn credits_org(who: &Membership) -> Result<(), ApiError> {
    match who.org.billing_mode {
        BillingMode::Credits => Ok(()),
        other => Err(not_credits(other)),
    }
}

/// A personal account is opened when its user first writes to it, once the request is
/// known to be good: the buyer's customer and the recharge settings live in it.
pub(crate) async fn opened(svc: &Checkout, who: &Membership) -> Result<(), ApiError> {
    if who.org.id.is_personal() {
        svc.orgs.personal(&who.member.id).await?;
    }
    Ok(())
}

fn forbidden() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
        "not allowed for your role in this org",
    )
}

/// What the caller can buy here: the bulk, the packages and the custom range of this
/// deployment. Asked by whoever may buy (the org's `purchase_policy`), whether or not
/// they may see the org's billing.
fn offers(svc: &Checkout, who: &Membership) -> Reply {
    let catalog = &svc.catalog;
    Ok(json_response(
        StatusCode::OK,
        &views::Offers {
            bulk_usd: catalog.bulk,
            packages: &catalog.packages,
            custom_min_usd: catalog.custom_min,
            custom_max_usd: catalog.custom_max,
            credits_per_usd: who.org.credits_per_usd,
        },
    ))
}

/// What the billing page shows, for any member: each offer's price, its credits in
/// dollars and as credits at the org's rate, a package's bonus, and whether the caller
/// may buy (the org runs on credits and its `purchase_policy` lets their role).
fn offers_page(svc: &Checkout, who: &Membership) -> Reply {
    let catalog = &svc.catalog;
    let per_usd = who.org.credits_per_usd;
    let packages = catalog
        .packages
        .iter()
        .map(|p| views::PackageOffer {
            id: &p.id,
            name: &p.name,
            price_usd: p.price,
            credits_usd: p.credits,
            bonus_usd: p.credits.checked_sub(p.price).unwrap_or(Usd::ZERO),
            credits: agent_credits_domain::shown_credits(p.credits, per_usd),
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &views::OffersPage {
            credits_per_usd: per_usd,
            can_purchase: who.org.billing_mode == BillingMode::Credits
                && who.org.allows(who.member.role, Action::Purchase),
            bulk: views::BulkOffer {
                price_usd: catalog.bulk,
                credits: agent_credits_domain::shown_credits(catalog.bulk, per_usd),
            },
            packages,
            custom: views::CustomOffer {
                min_usd: catalog.custom_min,
                max_usd: catalog.custom_max,
            },
        },
    ))
}

/// The caller's own Stripe customer in this org, created once (with their email, for
/// Stripe's receipts).
pub(crate) async fn customer_of(svc: &Checkout, who: &Membership, req: &Request) -> Result<String, ApiError> {
    if let Some(c) = who.member.stripe_customer.clone() {
        return Ok(c);
    }
    let (org, me) = (&who.org.id, &who.member.id);
    let email = agent_credits_http::caller_email(req);
    let created = svc
        .payments
        .create_customer(org, me, email)
        .await
        .map_err(stripe_failed)?;
    Ok(svc.orgs.keep_stripe_customer(org, me, &created).await?)
}

/// The billing page Stripe sends the caller back to.
pub(crate) fn billing_page(svc: &Checkout, org: &OrgId) -> String {
    let dashboard = svc.dashboard_url.trim_end_matches('/');
    if org.is_personal() {
        format!("{dashboard}/me/billing")
    } else {
        format!("{dashboard}/orgs/{org}/billing")
    }
}

async fn create_session(svc: &Checkout, who: &Membership, req: &Request, choice: Choice) -> Reply {
    let (org, me) = (&who.org.id, &who.member.id);
    // Credits is the one mode nobody switches away from: an org seen on credits here is
    // still on credits when Stripe's payment is credited.
    credits_org(who)?;
    let offer = svc
        .catalog
        .offer(&choice)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidOffer, e.to_string()))?;
    // Charged in whole cents: a price that is not is refused before Stripe is asked.
    offer
        .price_cents()
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidOffer, e.to_string()))?;
    opened(svc, who).await?;
    let customer = customer_of(svc, who, req).await?;
    let billing = billing_page(svc, org);
    let session = svc
        .payments
        .create_checkout(&NewCheckout {
            org,
            member: me,
            customer: &customer,
            email: agent_credits_http::caller_email(req),
            offer: &offer,
            success_url: format!("{billing}?checkout=success&session={{CHECKOUT_SESSION_ID}}"),
            cancel_url: format!("{billing}?checkout=cancelled"),
        })
        .await
        .map_err(stripe_failed)?;
    Ok(json_response(
        StatusCode::CREATED,
        &views::Session {
            session_id: &session.id,
            url: session.url.as_deref(),
            price: offer.price,
            credits: offer.credits,
            offer: &offer.kind,
        },
    ))
}

/// A Stripe failure is a 502 naming Stripe's code; nothing was recorded as paid.
pub(crate) fn stripe_failed(e: GatewayError) -> ApiError {
    let code = e.to_string();
    tracing::warn!(stripe = %code, "stripe call failed");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        ErrorCode::StripeError,
        format!("Stripe refused the request: {code}"),
    )
}
