//! [`StripeGateway`]: the domain's payment gateway ports ([`CheckoutGateway`],
//! [`ChargeGateway`], [`PaymentLookup`]) over Stripe's API (async-stripe).

use std::time::Duration;

use agent_credits_domain::recharge::{ChargeFailure, Decline};
use agent_credits_domain::{
    BillingGateway, ChargeGateway, CheckoutGateway, CheckoutSession, GatewayError, Intent, IntentStatus,
    InvoiceSeen, MemberId, NewCheckout, NewSubscription, OffSessionCharge, OrgId, PaidInvoice, PaymentLookup,
    PaymentMade, RefundSeen, SubscriptionSeen, payments::Pending,
};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use stripe::{IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionInvoiceCreation,
    CreateCheckoutSessionInvoiceCreationInvoiceData, CreateCheckoutSessionLineItems,
    CreateCheckoutSessionLineItemsPriceData, CreateCheckoutSessionPaymentIntentData,
    CreateCheckoutSessionPaymentIntentDataSetupFutureUsage, CreateCheckoutSessionSubscriptionData,
    ProductData,
};
use stripe_client_core::{RequestBuilder, StripeMethod};
use stripe_core::customer::{CreateCustomer, ListPaymentMethodsCustomer, ListPaymentMethodsCustomerType};
use stripe_core::payment_intent::{
    CreatePaymentIntent, CreatePaymentIntentOffSession, ListPaymentIntent, RetrievePaymentIntent,
};
use stripe_core::refund::ListRefund;
use stripe_shared::{ApiErrors, Invoice, InvoicePayment, PaymentIntent, PaymentIntentStatus, Subscription};
use stripe_types::{Currency, List, RangeBoundsTs, RangeQueryTs};

use crate::events;
use crate::metadata::{self, PaymentMetadata};

/// Stripe, through one client built once per cold start.
#[derive(Clone)]
pub struct StripeGateway {
    client: stripe::Client,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeGateway").finish_non_exhaustive()
    }
}

impl StripeGateway {
    /// Stripe with `secret_key` (`sk_...` or `rk_...`), at `api_base` when given (the
    /// project's simulator), else api.stripe.com. Calls time out after 10 s.
    pub fn connect(secret_key: &SecretString, api_base: Option<&str>) -> Result<StripeGateway, String> {
        let mut builder =
            stripe::ClientBuilder::new(secret_key.expose_secret()).timeout(Duration::from_secs(10));
        if let Some(base) = api_base {
            builder = builder.url(base);
        }
        let client = builder
            .build()
            .map_err(|e| format!("building the Stripe client: {e}"))?;
        Ok(StripeGateway { client })
    }

    /// Over a client built elsewhere (tests).
    pub fn from_client(client: stripe::Client) -> StripeGateway {
        StripeGateway { client }
    }
}

impl CheckoutGateway for StripeGateway {
    fn create_customer<'a>(
        &'a self,
        org: &'a OrgId,
        member: &'a MemberId,
        email: Option<&'a str>,
    ) -> Pending<'a, String> {
        Box::pin(async move {
            // The idempotency key makes a retried creation return the same customer.
            let key = idempotency(&format!("customer:{org}:{member}"))?;
            let mut create = CreateCustomer::new().metadata(metadata::customer(org, member));
            if let Some(email) = email {
                create = create.email(email);
            }
            let created = create
                .customize()
                .request_strategy(RequestStrategy::Idempotent(key))
                .send(&self.client)
                .await
                .map_err(failed)?;
            Ok(created.id.to_string())
        })
    }

    fn create_checkout<'a>(&'a self, s: &'a NewCheckout<'a>) -> Pending<'a, CheckoutSession> {
        Box::pin(async move {
            let cents = s
                .offer
                .price_cents()
                .map_err(|e| GatewayError::Unreachable(e.to_string()))?;
            let metadata = PaymentMetadata::purchase(s.org, s.member, s.offer)
                .map_err(|e| GatewayError::Unreachable(e.to_string()))?
                .to_map();
            let mut price = CreateCheckoutSessionLineItemsPriceData::new(Currency::USD);
            price.unit_amount = Some(cents);
            price.product_data = Some(ProductData::new(s.offer.label.clone()));
            let mut item = CreateCheckoutSessionLineItems::new();
            item.price_data = Some(price);
            item.quantity = Some(1);
            let mut intent = CreateCheckoutSessionPaymentIntentData::new();
            intent.setup_future_usage =
                Some(CreateCheckoutSessionPaymentIntentDataSetupFutureUsage::OffSession);
            intent.metadata = Some(metadata.clone());
            intent.receipt_email = s.email.map(str::to_owned);
            // Every purchase gets an invoice, for accounting (Stripe emails it with the
            // receipt); it names the org, as the payment does.
            let mut invoice_data = CreateCheckoutSessionInvoiceCreationInvoiceData::new();
            invoice_data.metadata = Some(metadata::org_only(s.org));
            invoice_data.description = Some(format!("agent-credits: {}", s.offer.label));
            let mut invoice = CreateCheckoutSessionInvoiceCreation::new(true);
            invoice.invoice_data = Some(invoice_data);
            let session = CreateCheckoutSession::new()
                .invoice_creation(invoice)
                .mode(CheckoutSessionMode::Payment)
                .currency(Currency::USD)
                .line_items(vec![item])
                .metadata(metadata)
                .client_reference_id(s.org.as_str())
                .customer(s.customer)
                .success_url(s.success_url.as_str())
                .cancel_url(s.cancel_url.as_str())
                .payment_intent_data(intent)
                .send(&self.client)
                .await
                .map_err(failed)?;
            Ok(CheckoutSession {
                id: session.id.to_string(),
                url: session.url,
            })
        })
    }

    fn newest_card<'a>(&'a self, customer: &'a str) -> Pending<'a, Option<String>> {
        Box::pin(async move {
            let cards = ListPaymentMethodsCustomer::new(customer)
                .type_(ListPaymentMethodsCustomerType::Card)
                .limit(1)
                .send(&self.client)
                .await
                .map_err(failed)?;
            Ok(cards.data.first().map(|pm| pm.id.to_string()))
        })
    }
}

impl ChargeGateway for StripeGateway {
    fn charge<'a>(&'a self, c: &'a OffSessionCharge<'a>) -> Pending<'a, Intent> {
        Box::pin(async move {
            let cents = c
                .amount
                .to_cents()
                .map_err(|e| GatewayError::Unreachable(e.to_string()))?;
            let metadata = PaymentMetadata::auto_recharge(c.org, c.attempt, c.amount)
                .map_err(|e| GatewayError::Unreachable(e.to_string()))?;
            let pi = CreatePaymentIntent::new(cents, Currency::USD)
                .customer(c.customer)
                .payment_method(c.payment_method)
                .confirm(true)
                .off_session(CreatePaymentIntentOffSession::Bool(true))
                .description("agent-credits auto-recharge")
                .metadata(metadata.to_map())
                .customize()
                .request_strategy(RequestStrategy::Idempotent(idempotency(c.attempt)?))
                .send(&self.client)
                .await
                .map_err(failed)?;
            Ok(intent(&pi))
        })
    }

    fn payment_intent<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Intent>> {
        Box::pin(async move {
            match RetrievePaymentIntent::new(id).send(&self.client).await {
                Ok(pi) => Ok(Some(intent(&pi))),
                Err(StripeError::Stripe(_, 404)) => Ok(None),
                Err(e) => Err(failed(e)),
            }
        })
    }

    fn find_attempt<'a>(
        &'a self,
        customer: &'a str,
        attempt: &'a str,
        since: DateTime<Utc>,
    ) -> Pending<'a, Option<Intent>> {
        Box::pin(async move {
            let mut found = None;
            self.intents_since(Some(customer), since, |pi| {
                if metadata::attempt_of(&pi.metadata) == Some(attempt) {
                    found = Some(intent(pi));
                }
                found.is_some()
            })
            .await?;
            Ok(found)
        })
    }
}

impl PaymentLookup for StripeGateway {
    fn payment_intent<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Intent>> {
        ChargeGateway::payment_intent(self, id)
    }

    fn refunds<'a>(&'a self, charge: &'a str) -> Pending<'a, Vec<RefundSeen>> {
        Box::pin(async move {
            let mut refunds = vec![];
            let mut after: Option<String> = None;
            loop {
                let mut page = ListRefund::new().charge(charge).limit(100);
                if let Some(after) = after {
                    page = page.starting_after(after);
                }
                let list = page.send(&self.client).await.map_err(failed)?;
                refunds.extend(list.data.iter().map(events::refund));
                match (list.has_more, list.data.last()) {
                    (true, Some(last)) => after = Some(last.id.to_string()),
                    _ => return Ok(refunds),
                }
            }
        })
    }

    fn invoices_paid_by<'a>(&'a self, payment_intent: &'a str) -> Pending<'a, Vec<String>> {
        Box::pin(async move {
            #[derive(serde::Serialize)]
            struct Payment<'a> {
                r#type: &'a str,
                payment_intent: &'a str,
            }
            #[derive(serde::Serialize)]
            struct Query<'a> {
                payment: Payment<'a>,
                limit: u8,
            }
            let query = Query {
                payment: Payment {
                    r#type: "payment_intent",
                    payment_intent,
                },
                limit: 100,
            };
            // Not in async-stripe's typed requests (API version 2025-03-31 and later).
            let payments: List<InvoicePayment> = RequestBuilder::new(StripeMethod::Get, "/invoice_payments")
                .query(&query)
                .customize()
                .send(&self.client)
                .await
                .map_err(failed)?;
            Ok(payments
                .data
                .iter()
                .filter_map(|paid| paid.invoice.id().as_ref().map(|i| i.to_string()))
                .collect())
        })
    }

    fn invoice<'a>(&'a self, id: &'a str) -> Pending<'a, Option<PaidInvoice>> {
        Box::pin(async move {
            let found: Result<Invoice, _> = RequestBuilder::new(StripeMethod::Get, format!("/invoices/{id}"))
                .customize()
                .send(&self.client)
                .await;
            match found {
                Ok(invoice) => Ok(Some(events::paid_invoice(&invoice))),
                Err(StripeError::Stripe(_, 404)) => Ok(None),
                Err(e) => Err(failed(e)),
            }
        })
    }

    fn invoice_payment_made<'a>(&'a self, paid: &'a PaymentMade<'a>) -> Pending<'a, String> {
        Box::pin(async move {
            #[derive(serde::Serialize)]
            struct NewInvoice<'a> {
                customer: &'a str,
                auto_advance: bool,
                collection_method: &'a str,
                pending_invoice_items_behavior: &'a str,
                description: &'a str,
                metadata: std::collections::HashMap<String, String>,
            }
            #[derive(serde::Serialize)]
            struct Item<'a> {
                customer: &'a str,
                invoice: &'a str,
                amount: i64,
                currency: &'a str,
                description: &'a str,
            }
            #[derive(serde::Serialize)]
            struct Pay {
                paid_out_of_band: bool,
            }
            #[derive(miniserde::Deserialize)]
            struct Made {
                id: String,
            }
            // Each step keyed on the PaymentIntent: a retry within Stripe's idempotency
            // window answers the same invoice, item and payment.
            let pi = paid.payment_intent;
            let mut metadata = metadata::org_only(paid.org);
            metadata.insert("payment_intent".to_owned(), pi.to_owned());
            let invoice: Made = self
                .post(
                    "/invoices".to_owned(),
                    &NewInvoice {
                        customer: paid.customer,
                        auto_advance: false,
                        collection_method: "charge_automatically",
                        pending_invoice_items_behavior: "exclude",
                        description: paid.description,
                        metadata,
                    },
                    Some(&format!("invoice:{pi}")),
                )
                .await?;
            let _: Made = self
                .post(
                    "/invoiceitems".to_owned(),
                    &Item {
                        customer: paid.customer,
                        invoice: &invoice.id,
                        amount: paid.amount_cents,
                        currency: "usd",
                        description: paid.description,
                    },
                    Some(&format!("invoice-item:{pi}")),
                )
                .await?;
            // Paid already, by the PaymentIntent: recorded as paid, nothing charged again.
            let _: Made = self
                .post(
                    format!("/invoices/{}/pay", invoice.id),
                    &Pay {
                        paid_out_of_band: true,
                    },
                    Some(&format!("invoice-paid:{pi}")),
                )
                .await?;
            Ok(invoice.id)
        })
    }
}

impl StripeGateway {
    /// A POST of `form` to `path` (Stripe's form encoding), sent once under `key` when
    /// given: a retry answers the first result.
    async fn post<F: serde::Serialize, T: miniserde::Deserialize>(
        &self,
        path: String,
        form: &F,
        key: Option<&str>,
    ) -> Result<T, GatewayError> {
        let mut req = RequestBuilder::new(StripeMethod::Post, path)
            .form(form)
            .customize();
        if let Some(key) = key {
            req = req.request_strategy(RequestStrategy::Idempotent(idempotency(key)?));
        }
        req.send(&self.client).await.map_err(failed)
    }

    async fn get<T: miniserde::Deserialize>(&self, path: String) -> Result<Option<T>, GatewayError> {
        match RequestBuilder::new(StripeMethod::Get, path)
            .customize()
            .send(&self.client)
            .await
        {
            Ok(found) => Ok(Some(found)),
            Err(StripeError::Stripe(_, 404)) => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }
}

/// A subscription's change: its item's price, or its end at the period's.
#[derive(serde::Serialize, Default)]
struct SubscriptionUpdate<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    items: Vec<ItemPrice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proration_behavior: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_at_period_end: Option<bool>,
}

#[derive(serde::Serialize)]
struct ItemPrice<'a> {
    id: &'a str,
    price: &'a str,
}

#[derive(miniserde::Deserialize)]
struct PortalSession {
    url: String,
}

impl BillingGateway for StripeGateway {
    fn create_subscription_checkout<'a>(
        &'a self,
        s: &'a NewSubscription<'a>,
    ) -> Pending<'a, CheckoutSession> {
        Box::pin(async move {
            let metadata = metadata::customer(s.org, s.member);
            let mut item = CreateCheckoutSessionLineItems::new();
            item.price = Some(s.price.to_owned());
            item.quantity = Some(1);
            // Stripe copies the subscription's metadata onto each of its invoices: the
            // org their grants go to.
            let mut data = CreateCheckoutSessionSubscriptionData::new();
            data.metadata = Some(metadata.clone());
            let session = CreateCheckoutSession::new()
                .mode(CheckoutSessionMode::Subscription)
                .line_items(vec![item])
                .metadata(metadata)
                .client_reference_id(s.org.as_str())
                .customer(s.customer)
                .success_url(s.success_url.as_str())
                .cancel_url(s.cancel_url.as_str())
                .subscription_data(data)
                .send(&self.client)
                .await
                .map_err(failed)?;
            Ok(CheckoutSession {
                id: session.id.to_string(),
                url: session.url,
            })
        })
    }

    fn subscription<'a>(&'a self, id: &'a str) -> Pending<'a, Option<SubscriptionSeen>> {
        Box::pin(async move {
            let found: Option<Subscription> = self.get(format!("/subscriptions/{id}")).await?;
            Ok(found.as_ref().map(events::subscription))
        })
    }

    fn change_price<'a>(
        &'a self,
        id: &'a str,
        item: &'a str,
        price: &'a str,
        prorate: bool,
    ) -> Pending<'a, SubscriptionSeen> {
        Box::pin(async move {
            let form = SubscriptionUpdate {
                items: vec![ItemPrice { id: item, price }],
                proration_behavior: Some(if prorate { "always_invoice" } else { "none" }),
                ..Default::default()
            };
            // Unkeyed: setting a price is idempotent, and a key on what it asks would
            // replay an old answer for a change made again within Stripe's window.
            let sub: Subscription = self.post(format!("/subscriptions/{id}"), &form, None).await?;
            Ok(events::subscription(&sub))
        })
    }

    fn cancel_at_period_end<'a>(&'a self, id: &'a str, cancel: bool) -> Pending<'a, SubscriptionSeen> {
        Box::pin(async move {
            let form = SubscriptionUpdate {
                cancel_at_period_end: Some(cancel),
                ..Default::default()
            };
            let sub: Subscription = self.post(format!("/subscriptions/{id}"), &form, None).await?;
            Ok(events::subscription(&sub))
        })
    }

    fn invoices<'a>(&'a self, customer: &'a str, limit: u8) -> Pending<'a, Vec<InvoiceSeen>> {
        Box::pin(async move {
            #[derive(serde::Serialize)]
            struct Query<'a> {
                customer: &'a str,
                limit: u8,
            }
            let list: Result<List<Invoice>, _> = RequestBuilder::new(StripeMethod::Get, "/invoices")
                .query(&Query { customer, limit })
                .customize()
                .send(&self.client)
                .await;
            match list {
                Ok(list) => Ok(list.data.iter().filter_map(events::invoice_seen).collect()),
                // A customer deleted in Stripe has no invoices to list.
                Err(StripeError::Stripe(_, 404)) => Ok(vec![]),
                Err(e) => Err(failed(e)),
            }
        })
    }

    fn portal<'a>(
        &'a self,
        customer: &'a str,
        return_url: &'a str,
        configuration: Option<&'a str>,
    ) -> Pending<'a, String> {
        Box::pin(async move {
            #[derive(serde::Serialize)]
            struct Form<'a> {
                customer: &'a str,
                return_url: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                configuration: Option<&'a str>,
            }
            let form = Form {
                customer,
                return_url,
                configuration,
            };
            let session: PortalSession = self
                .post("/billing_portal/sessions".to_owned(), &form, None)
                .await?;
            Ok(session.url)
        })
    }
}

fn idempotency(key: &str) -> Result<IdempotencyKey, GatewayError> {
    IdempotencyKey::new(key).map_err(|_| GatewayError::Unreachable(format!("unusable idempotency key {key}")))
}

/// The card's own refusal in a Stripe error, if it is one: only a `card_error` is.
pub fn card_decline(e: &ApiErrors) -> Option<Decline> {
    (ChargeFailure::of(e.type_.as_str()) == ChargeFailure::Card)
        .then(|| Decline::of(e.decline_code.as_deref(), e.code.as_ref().map(|c| c.as_str())))
}

/// A Stripe failure in the domain's words: the card's refusal, another error Stripe
/// answered, or no answer.
fn failed(e: StripeError) -> GatewayError {
    match e {
        StripeError::Stripe(err, status) => match card_decline(&err) {
            Some(decline) => GatewayError::Declined {
                decline,
                payment_intent: err.payment_intent.as_ref().map(|p| p.id.to_string()),
            },
            None => GatewayError::Refused {
                code: err
                    .code
                    .as_ref()
                    .map_or_else(|| err.type_.as_str().to_owned(), |c| c.as_str().to_owned()),
                status,
                payment_intent: err.payment_intent.as_ref().map(|p| p.id.to_string()),
            },
        },
        other => GatewayError::Unreachable(other.to_string()),
    }
}

/// A PaymentIntent as the functions need it.
pub fn intent(pi: &PaymentIntent) -> Intent {
    let status = match pi.status {
        PaymentIntentStatus::Succeeded => IntentStatus::Succeeded,
        PaymentIntentStatus::RequiresAction => IntentStatus::RequiresAction,
        PaymentIntentStatus::RequiresPaymentMethod
        | PaymentIntentStatus::RequiresConfirmation
        | PaymentIntentStatus::Canceled => {
            IntentStatus::NotCharged(pi.last_payment_error.as_deref().and_then(card_decline))
        }
        ref other => IntentStatus::InProgress(other.to_string()),
    };
    Intent {
        id: pi.id.to_string(),
        status,
        org: metadata::org_of(&pi.metadata),
        attempt: metadata::attempt_of(&pi.metadata).map(str::to_owned),
    }
}

/// A PaymentIntent as reconciliation compares it with the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSeen {
    pub id: String,
    pub succeeded: bool,
    pub status: String,
    pub amount_received: i64,
    /// The org its metadata names (ours); `None` for another's, or a plan invoice's.
    pub org: Option<String>,
    /// Its latest charge, whose refunds are listed.
    pub charge: Option<String>,
    /// Seconds since the epoch, as Stripe gives it.
    pub created: i64,
}

fn seen(pi: &PaymentIntent) -> PaymentSeen {
    PaymentSeen {
        id: pi.id.to_string(),
        succeeded: pi.status == PaymentIntentStatus::Succeeded,
        status: pi.status.to_string(),
        amount_received: pi.amount_received,
        org: metadata::org_of(&pi.metadata).map(|o| o.to_string()),
        charge: pi.latest_charge.as_ref().map(|c| c.id().to_string()),
        created: pi.created,
    }
}

impl StripeGateway {
    /// The PaymentIntents created since `since` (of `customer` alone, when named), newest
    /// first, page after page, each given to `stop` until it answers `true`.
    async fn intents_since(
        &self,
        customer: Option<&str>,
        since: DateTime<Utc>,
        mut stop: impl FnMut(&PaymentIntent) -> bool,
    ) -> Result<(), GatewayError> {
        let mut after: Option<String> = None;
        loop {
            let mut list = ListPaymentIntent::new()
                .created(RangeQueryTs::Bounds(RangeBoundsTs {
                    gte: Some(since.timestamp()),
                    ..Default::default()
                }))
                .limit(100);
            if let Some(customer) = customer {
                list = list.customer(customer);
            }
            if let Some(after) = after {
                list = list.starting_after(after);
            }
            let page = list.send(&self.client).await.map_err(failed)?;
            if page.data.iter().any(&mut stop) {
                return Ok(());
            }
            match (page.has_more, page.data.last()) {
                (true, Some(last)) => after = Some(last.id.to_string()),
                _ => return Ok(()),
            }
        }
    }

    /// Every PaymentIntent of the account created since `since`, newest first.
    pub async fn payments_since(&self, since: DateTime<Utc>) -> Result<Vec<PaymentSeen>, GatewayError> {
        let mut all = vec![];
        self.intents_since(None, since, |pi| {
            all.push(seen(pi));
            false
        })
        .await?;
        Ok(all)
    }

    /// One PaymentIntent, or `None` when Stripe has no such one.
    pub async fn payment_seen(&self, id: &str) -> Result<Option<PaymentSeen>, GatewayError> {
        match RetrievePaymentIntent::new(id).send(&self.client).await {
            Ok(pi) => Ok(Some(seen(&pi))),
            Err(StripeError::Stripe(_, 404)) => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }
}
