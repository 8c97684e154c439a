//! The payment gateway ports: what the functions ask of the card processor, in the
//! domain's words. `shared/stripe` is the adapter (Stripe's API through async-stripe);
//! tests use a fake. What a payment's metadata says, and how Stripe's errors become
//! [`GatewayError`]s, is the adapter's business: handlers never see a Stripe type here.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};

use crate::ids::{MemberId, OrgId};
use crate::money::Usd;
use crate::offers::Offer;
use crate::recharge::Decline;

/// A gateway call in flight.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, GatewayError>> + Send + 'a>>;

/// Why a gateway call did not give its answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The card refused (a decline, a needed authentication): the customer's failure.
    /// The PaymentIntent Stripe made for it, when it made one.
    #[error("{} (402)", .decline.reason)]
    Declined {
        decline: Decline,
        payment_intent: Option<String>,
    },
    /// The processor answered with an error that is not the card's (a bad key, a rate
    /// limit, an idempotency mismatch, a missing object): `code` is its error code. The
    /// PaymentIntent the error names, when it names one (Stripe made it).
    #[error("{code} ({status})")]
    Refused {
        code: String,
        status: u16,
        payment_intent: Option<String>,
    },
    /// No answer: the network, a timeout, an answer that could not be read.
    #[error("{0}")]
    Unreachable(String),
}

impl GatewayError {
    /// The HTTP status the processor answered with; 0 when it did not answer.
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::Declined { .. } => 402,
            GatewayError::Refused { status, .. } => *status,
            GatewayError::Unreachable(_) => 0,
        }
    }
}

/// A Checkout Session to create: the buyer pays `offer.price` with their own customer,
/// and the card is saved for off-session use (auto-recharge).
#[derive(Debug, Clone)]
pub struct NewCheckout<'a> {
    pub org: &'a OrgId,
    pub member: &'a MemberId,
    pub customer: &'a str,
    /// Where Stripe emails the receipt: the buyer's address, when the dashboard knows it.
    pub email: Option<&'a str>,
    pub offer: &'a Offer,
    /// Where the buyer lands after paying (`{CHECKOUT_SESSION_ID}` is filled in by Stripe).
    pub success_url: String,
    pub cancel_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    pub id: String,
    pub url: Option<String>,
}

/// An auto-recharge charge: an off-session PaymentIntent on a saved card, confirmed at
/// once, sent under `attempt` as its idempotency key (a second send answers the first
/// result).
#[derive(Debug, Clone)]
pub struct OffSessionCharge<'a> {
    pub org: &'a OrgId,
    pub attempt: &'a str,
    pub customer: &'a str,
    pub payment_method: &'a str,
    pub amount: Usd,
}

/// A PaymentIntent as the functions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: String,
    pub status: IntentStatus,
    /// The org its metadata names, if it names a valid one.
    pub org: Option<OrgId>,
    /// The auto-recharge attempt its metadata names.
    pub attempt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentStatus {
    Succeeded,
    /// The card's owner must authenticate: off-session, that is a failure of the card.
    RequiresAction,
    /// Nothing was charged: never confirmed, cancelled, or refused. `Some` when the
    /// card's own refusal is why.
    NotCharged(Option<Decline>),
    /// Not final yet (`processing`, ...): Stripe's status.
    InProgress(String),
}

/// A refund of a charge, as its take-back needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundSeen {
    pub id: String,
    pub amount_cents: i64,
    /// Failed or cancelled: the customer did not get the money.
    pub failed: bool,
}

impl RefundSeen {
    /// A refund takes credits back unless it failed or was cancelled (a pending refund
    /// counts: Stripe counts it in `amount_refunded` too).
    pub fn counts(&self) -> bool {
        !self.failed
    }
}

/// A paid invoice, as a plan grant reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidInvoice {
    pub id: Option<String>,
    /// The org its subscription's metadata (or its own) names, unchecked.
    pub org: Option<String>,
    /// It opens a subscription's period (its creation or a renewal).
    pub starts_period: bool,
    pub in_usd: bool,
    pub amount_paid_cents: i64,
    /// The price of its first line that names one.
    pub price: Option<String>,
    /// It bills a change of plan within a period (`subscription_update`).
    pub changes_plan: bool,
    /// Its lines that name a price, with what each charged.
    pub lines: Vec<crate::plans::ProratedLine>,
    /// The event carried all its lines (not only a first page).
    pub all_lines: bool,
    /// Some of its lines are prorations (of a change made without invoicing it at once).
    pub has_prorations: bool,
    /// Where the period of its first priced line starts.
    pub period_start: Option<DateTime<Utc>>,
    /// The subscription it bills.
    pub subscription: Option<String>,
}

// The card processor, as three ports: each function holds the one it calls. A port held
// as `dyn` links every method of its adapter, and Stripe's decoders are large (an
// invoice's alone weighs hundreds of kilobytes), so one port for all three functions
// made each carry the others' calls.

/// What the checkout function asks of the card processor.
pub trait CheckoutGateway: Send + Sync {
    /// The buyer's customer, created once: a retry answers the same customer. With the
    /// buyer's email, Stripe's receipts and invoices go to them.
    fn create_customer<'a>(
        &'a self,
        org: &'a OrgId,
        member: &'a MemberId,
        email: Option<&'a str>,
    ) -> Pending<'a, String>;

    fn create_checkout<'a>(&'a self, session: &'a NewCheckout<'a>) -> Pending<'a, CheckoutSession>;

    /// The customer's newest saved card.
    fn newest_card<'a>(&'a self, customer: &'a str) -> Pending<'a, Option<String>>;
}

/// What the recharge function asks of the card processor.
pub trait ChargeGateway: Send + Sync {
    /// Sends (or sends again) an auto-recharge charge.
    fn charge<'a>(&'a self, charge: &'a OffSessionCharge<'a>) -> Pending<'a, Intent>;

    /// A PaymentIntent by id; `None` when there is no such PaymentIntent.
    fn payment_intent<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Intent>>;

    /// The PaymentIntent a charge `attempt` made, among the customer's PaymentIntents
    /// created since `since`; `None` when it made none.
    fn find_attempt<'a>(
        &'a self,
        customer: &'a str,
        attempt: &'a str,
        since: DateTime<Utc>,
    ) -> Pending<'a, Option<Intent>>;
}

/// What the webhooks function looks up when an event leaves it out.
pub trait PaymentLookup: Send + Sync {
    /// A PaymentIntent by id; `None` when there is no such PaymentIntent.
    fn payment_intent<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Intent>>;

    /// A charge's refunds with their current status.
    fn refunds<'a>(&'a self, charge: &'a str) -> Pending<'a, Vec<RefundSeen>>;

    /// The invoices a PaymentIntent paid.
    fn invoices_paid_by<'a>(&'a self, payment_intent: &'a str) -> Pending<'a, Vec<String>>;

    /// An invoice by id; `None` when there is no such invoice.
    fn invoice<'a>(&'a self, id: &'a str) -> Pending<'a, Option<PaidInvoice>>;

    /// The paper trail of a payment made without an invoice (an auto top-up): a paid
    /// invoice for it, made once per PaymentIntent (a retry answers the same invoice).
    fn invoice_payment_made<'a>(&'a self, paid: &'a PaymentMade<'a>) -> Pending<'a, String>;
}

/// A payment made without an invoice, to record on one (see
/// [`PaymentLookup::invoice_payment_made`]).
#[derive(Debug, Clone)]
pub struct PaymentMade<'a> {
    pub org: &'a OrgId,
    pub customer: &'a str,
    pub payment_intent: &'a str,
    pub amount_cents: i64,
    pub description: &'a str,
}

/// A plan subscription's Checkout Session to create: the owner subscribes the org to the
/// plan billed by `price`.
#[derive(Debug, Clone)]
pub struct NewSubscription<'a> {
    pub org: &'a OrgId,
    pub member: &'a MemberId,
    pub customer: &'a str,
    pub price: &'a str,
    pub success_url: String,
    pub cancel_url: String,
}

/// A subscription as the functions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSeen {
    pub id: String,
    /// Stripe's status: `active`, `past_due`, `canceled`, ...
    pub status: String,
    pub customer: String,
    /// The org its metadata names, unchecked.
    pub org: Option<String>,
    /// Its (first) item and the price it bills.
    pub item: Option<String>,
    pub price: Option<String>,
    pub cancel_at_period_end: bool,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub default_payment_method: Option<String>,
    pub created: DateTime<Utc>,
}

impl SubscriptionSeen {
    /// It bills (or will bill) the org: anything but ended.
    pub fn in_force(&self) -> bool {
        !matches!(
            self.status.as_str(),
            "canceled" | "incomplete_expired" | "incomplete"
        )
    }
}

/// An invoice as the billing page lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InvoiceSeen {
    pub id: String,
    pub number: Option<String>,
    pub status: String,
    pub currency: String,
    pub total_cents: i64,
    pub amount_paid_cents: i64,
    pub created: DateTime<Utc>,
    pub description: Option<String>,
    pub billing_reason: Option<String>,
    /// Stripe's page for it, and its PDF.
    pub hosted_invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
}

/// What the checkout function asks of the card processor for plans, invoices and the
/// customer portal.
pub trait BillingGateway: Send + Sync {
    fn create_subscription_checkout<'a>(&'a self, s: &'a NewSubscription<'a>)
    -> Pending<'a, CheckoutSession>;

    /// A subscription by id; `None` when there is no such subscription.
    fn subscription<'a>(&'a self, id: &'a str) -> Pending<'a, Option<SubscriptionSeen>>;

    /// Moves the subscription's `item` to `price`: with `prorate`, Stripe prorates and
    /// invoices the difference at once; without, the new price bills from the next period.
    fn change_price<'a>(
        &'a self,
        id: &'a str,
        item: &'a str,
        price: &'a str,
        prorate: bool,
    ) -> Pending<'a, SubscriptionSeen>;

    /// Ends the subscription at its period's end (or, with `false`, no longer).
    fn cancel_at_period_end<'a>(&'a self, id: &'a str, cancel: bool) -> Pending<'a, SubscriptionSeen>;

    /// The customer's invoices, newest first, at most `limit` (none for a customer Stripe
    /// no longer has).
    fn invoices<'a>(&'a self, customer: &'a str, limit: u8) -> Pending<'a, Vec<InvoiceSeen>>;

    /// A customer portal session's URL, returning to `return_url`, with the portal
    /// configuration `configuration` (the account's default when `None`).
    fn portal<'a>(
        &'a self,
        customer: &'a str,
        return_url: &'a str,
        configuration: Option<&'a str>,
    ) -> Pending<'a, String>;
}
