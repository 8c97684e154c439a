//! Stripe Billing as the functions use it: prices, subscriptions bought at Checkout, plan
//! changes with prorations, renewals, invoices (a subscription's, Checkout's, and one-off
//! invoices for payments made elsewhere) and the billing portal. Each change runs under the
//! store's lock, as every other.

use serde_json::{Map, Value};

use crate::cards::{self, Outcome};
use crate::control::NewPrice;
use crate::error::ApiError;
use crate::form::{Metadata, MetadataUpdate};
use crate::objects::{
    Instrument, IntentDetails, IntentStatus, Interval, Invoice, InvoiceItem, InvoiceLine, InvoiceStatus,
    LineParent, PortalSession, Price, SessionStatus, Subscription, SubscriptionStatus,
};
use crate::store::{NewCustomer, Store, cents};
use crate::webhooks::Origin;
use crate::{new_id, now};

/// An invoice about to be made.
#[derive(Default)]
pub(crate) struct NewBill {
    pub customer: String,
    pub currency: String,
    pub billing_reason: String,
    /// `charge_automatically` when absent.
    pub collection_method: Option<String>,
    pub auto_advance: bool,
    pub due_date: Option<i64>,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub subscription: Option<(String, Metadata)>,
    pub lines: Vec<InvoiceLine>,
    /// The invoice's own period; a point at its creation when absent.
    pub period: Option<(i64, i64)>,
}

/// `POST /v1/invoices`.
pub(crate) struct NewDraft {
    pub customer: String,
    pub currency: String,
    pub auto_advance: bool,
    pub collection_method: String,
    pub due_date: Option<i64>,
    pub description: Option<String>,
    pub metadata: Metadata,
    /// `pending_invoice_items_behavior=include`: the customer's pending invoice items join it.
    pub include_pending: bool,
}

/// `POST /v1/invoiceitems`.
pub(crate) struct NewInvoiceItem {
    pub customer: String,
    pub invoice: Option<String>,
    pub amount: i64,
    pub currency: Option<String>,
    pub description: Option<String>,
    pub metadata: Metadata,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Proration {
    /// Invoice the prorations now and charge them.
    AlwaysInvoice,
    /// Stripe would bill the prorations with the next invoice; the simulator only changes
    /// the price.
    CreateProrations,
    None,
}

/// `POST /v1/subscriptions/{id}`.
pub(crate) struct SubscriptionUpdate {
    /// `items[0][id]` and its new `items[0][price]`.
    pub item: Option<(String, String)>,
    pub proration: Proration,
    pub cancel_at_period_end: Option<bool>,
    pub metadata: Option<MetadataUpdate>,
}

/// How an invoice was paid.
#[derive(Clone, Copy)]
pub(crate) enum Payment<'a> {
    /// By this PaymentIntent, which has succeeded.
    Intent(&'a str),
    /// Outside Stripe (`paid_out_of_band`).
    OutOfBand,
    /// Nothing was due.
    Nothing,
}

/// `amount × part / whole`, rounded half up to a whole cent, as Stripe prorates.
pub(crate) fn prorate(amount: i64, part: i64, whole: i64) -> i64 {
    let whole = i128::from(whole.max(1));
    let product = i128::from(amount) * i128::from(part.clamp(0, i64::MAX));
    let rounded = (2 * product + whole).div_euclid(2 * whole);
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

fn day(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0)
        .map_or_else(|| timestamp.to_string(), |t| t.format("%d %b %Y").to_string())
}

/// The top-level fields of `after` that differ from `before`, with their values before:
/// an `*.updated` event's `previous_attributes`.
fn changed(before: &Value, after: &Value) -> Map<String, Value> {
    let (Value::Object(before), Value::Object(after)) = (before, after) else {
        return Map::new();
    };
    before
        .iter()
        .filter(|(key, value)| after.get(*key) != Some(value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

impl Store {
    pub fn price(&self, id: &str, param: Option<&str>) -> Result<&Price, ApiError> {
        self.prices
            .get(id)
            .ok_or_else(|| ApiError::no_such("price", id, param))
    }

    pub fn subscription(&self, id: &str) -> Result<&Subscription, ApiError> {
        self.subscriptions
            .get(id)
            .ok_or_else(|| ApiError::no_such("subscription", id, None))
    }

    pub fn invoice(&self, id: &str, param: Option<&str>) -> Result<&Invoice, ApiError> {
        self.invoices
            .get(id)
            .ok_or_else(|| ApiError::no_such("invoice", id, param))
    }

    fn invoice_mut(&mut self, id: &str) -> Result<&mut Invoice, ApiError> {
        self.invoices
            .get_mut(id)
            .ok_or_else(|| ApiError::no_such("invoice", id, None))
    }

    pub fn invoice_json(&self, invoice: &Invoice) -> Value {
        invoice.to_json(self.customers.get(&invoice.customer))
    }

    /// A subscription with its item's full price, as Stripe renders it.
    pub fn subscription_json(&self, subscription: &Subscription) -> Value {
        match self.prices.get(&subscription.price) {
            Some(price) => subscription.to_json(price),
            // Prices are replaced, never removed; this only keeps rendering total.
            None => subscription.to_json(&Price {
                id: subscription.price.clone(),
                created: subscription.created,
                product: String::new(),
                name: None,
                unit_amount: 0,
                currency: subscription.currency.clone(),
                interval: Some(Interval::Month),
            }),
        }
    }

    fn subscription_snapshot(&self, id: &str) -> Result<Value, ApiError> {
        Ok(self.subscription_json(self.subscription(id)?))
    }

    /// Defines a price (or replaces the one with that id, keeping its product).
    pub fn put_price(&mut self, new: &NewPrice) -> Result<Value, ApiError> {
        if new.id.is_empty() || new.id.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(ApiError::invalid(
                "id",
                "A price id must be non-empty, without spaces or slashes.",
            ));
        }
        if !(0..=99_999_999).contains(&new.unit_amount) {
            return Err(ApiError::invalid(
                "unit_amount",
                "unit_amount must be a whole number of cents from 0 to 99999999.",
            ));
        }
        let currency = new.currency.as_deref().unwrap_or("usd").to_ascii_lowercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(ApiError::invalid(
                "currency",
                format!("Invalid currency: {currency}"),
            ));
        }
        let interval = match new.interval.as_deref() {
            None => None,
            Some(text) => Some(Interval::parse(text).ok_or_else(|| {
                ApiError::invalid(
                    "interval",
                    format!("Invalid interval {text}: month or year (or none for a one-time price)."),
                )
            })?),
        };
        let (created, product) = match self.prices.get(&new.id) {
            Some(old) => (old.created, old.product.clone()),
            None => (now(), new_id("prod_", 14)),
        };
        let price = Price {
            id: new.id.clone(),
            created,
            product,
            name: new.name.clone(),
            unit_amount: new.unit_amount,
            currency,
            interval,
        };
        let json = price.to_json();
        self.prices.insert(new.id.clone(), price);
        Ok(json)
    }

    /// The card an invoice of this customer is charged to when none is named: the
    /// subscription's default payment method, else the customer's newest card.
    fn billing_card(&self, customer: &str, subscription: Option<&str>) -> Option<String> {
        let default = subscription
            .and_then(|id| self.subscriptions.get(id))
            .and_then(|s| s.default_payment_method.clone())
            .filter(|pm| self.payment_methods.contains_key(pm));
        default.or_else(|| {
            self.payment_methods
                .values()
                .filter(|pm| pm.customer.as_deref() == Some(customer) && pm.kind() == "card")
                .max_by_key(|pm| pm.seq)
                .map(|pm| pm.id.clone())
        })
    }

    pub(crate) fn insert_invoice(&mut self, new: NewBill) -> String {
        let seq = self.next_seq();
        let id = new_id("in_", 24);
        let created = now();
        let (period_start, period_end) = new.period.unwrap_or((created, created));
        let invoice = Invoice {
            id: id.clone(),
            created,
            seq,
            customer: new.customer,
            currency: new.currency,
            status: InvoiceStatus::Draft,
            number: None,
            billing_reason: new.billing_reason,
            collection_method: new
                .collection_method
                .unwrap_or_else(|| "charge_automatically".to_owned()),
            auto_advance: new.auto_advance,
            due_date: new.due_date,
            description: new.description,
            metadata: new.metadata,
            subscription: new.subscription,
            lines: new.lines,
            period_start,
            period_end,
            finalized_at: None,
            paid_at: None,
            amount_paid: 0,
            attempt_count: 0,
            paid_out_of_band: false,
            hosted_invoice_url: None,
            invoice_pdf: None,
        };
        self.invoices.insert(id.clone(), invoice);
        id
    }

    /// A draft becomes open: numbered, with its hosted page. Anything else is left as it is.
    pub(crate) fn finalize(&mut self, id: &str) {
        if !self
            .invoices
            .get(id)
            .is_some_and(|i| i.status == InvoiceStatus::Draft)
        {
            return;
        }
        self.invoice_numbers += 1;
        let number = format!("SIM-{:04}", self.invoice_numbers);
        let hosted = format!("{}invoices/{id}", self.base_url);
        if let Some(invoice) = self.invoices.get_mut(id) {
            invoice.status = InvoiceStatus::Open;
            invoice.number = Some(number);
            invoice.finalized_at = Some(now());
            invoice.invoice_pdf = Some(format!("{hosted}/pdf"));
            invoice.hosted_invoice_url = Some(hosted);
        }
    }

    /// Marks an invoice paid and tells: `invoice.paid`, and `invoice_payment.paid` naming
    /// the PaymentIntent that paid it. A past-due subscription whose latest invoice this is
    /// becomes active again.
    pub(crate) fn mark_invoice_paid(
        &mut self,
        id: &str,
        payment: Payment<'_>,
        origin: &Origin,
    ) -> Result<(), ApiError> {
        self.finalize(id);
        let paid_amount = match payment {
            Payment::Intent(pi) => Some(self.intent(pi)?.amount),
            Payment::OutOfBand | Payment::Nothing => None,
        };
        let paid_at = now();
        let invoice = self.invoice_mut(id)?;
        invoice.status = InvoiceStatus::Paid;
        invoice.paid_at = Some(paid_at);
        match payment {
            Payment::Intent(_) => {
                invoice.amount_paid += paid_amount.unwrap_or_default();
                invoice.attempt_count += 1;
            }
            Payment::OutOfBand => {
                invoice.amount_paid = invoice.amount_due();
                invoice.paid_out_of_band = true;
            }
            Payment::Nothing => {}
        }
        let currency = invoice.currency.clone();
        let subscription = invoice.subscription_id().map(str::to_owned);
        let snapshot = self.invoice_json(self.invoice(id, None)?);
        self.hooks.emit("invoice.paid", snapshot, origin);
        if let (Payment::Intent(pi), Some(amount)) = (payment, paid_amount) {
            let paid = serde_json::json!({
                "id": new_id("inpay_", 24), "object": "invoice_payment", "amount_paid": amount,
                "amount_requested": amount, "created": paid_at, "currency": currency,
                "invoice": id, "is_default": true, "livemode": false,
                "payment": {"type": "payment_intent", "payment_intent": pi},
                "status": "paid", "status_transitions": {"canceled_at": null, "paid_at": paid_at},
            });
            self.invoice_payments.push(paid.clone());
            self.hooks.emit("invoice_payment.paid", paid, origin);
        }
        if let Some(subscription) = subscription
            && self.subscriptions.get(&subscription).is_some_and(|s| {
                s.status == SubscriptionStatus::PastDue && s.latest_invoice.as_deref() == Some(id)
            })
        {
            self.change_subscription(&subscription, origin, |s| {
                s.status = SubscriptionStatus::Active;
            })?;
        }
        Ok(())
    }

    /// Charges what an invoice still owes to `pm_id`: off session (a renewal, a plan change)
    /// or with the payer present (Checkout, who passes 3-D Secure). Nothing owed: paid at
    /// once. A refused card leaves the invoice open, emits `invoice.payment_failed` and
    /// answers the card error.
    pub(crate) fn collect_invoice(
        &mut self,
        id: &str,
        pm_id: &str,
        off_session: bool,
        origin: &Origin,
    ) -> Result<(), ApiError> {
        self.finalize(id);
        let invoice = self.invoice(id, None)?;
        if invoice.status == InvoiceStatus::Paid {
            return Err(ApiError::invalid(
                "invoice",
                format!("Invoice {id} is already paid."),
            ));
        }
        let due = invoice.amount_remaining();
        if due <= 0 {
            return self.mark_invoice_paid(id, Payment::Nothing, origin);
        }
        let (currency, customer) = (invoice.currency.clone(), invoice.customer.clone());
        let pi = self.insert_intent(
            due,
            currency,
            Some(customer),
            Some(pm_id.to_owned()),
            vec!["card".to_owned()],
            IntentDetails::default(),
        );
        let confirmed = if off_session {
            self.confirm(&pi, true, origin)
        } else {
            self.confirm_authenticated(&pi, origin)
        };
        match confirmed {
            Ok(()) if self.intent(&pi)?.status == IntentStatus::Succeeded => {
                self.mark_invoice_paid(id, Payment::Intent(&pi), origin)
            }
            // A bank debit in progress: the invoice stays open until it settles.
            Ok(()) => Ok(()),
            Err(error) => {
                let invoice = self.invoice_mut(id)?;
                invoice.attempt_count += 1;
                let snapshot = self.invoice_json(self.invoice(id, None)?);
                self.hooks.emit("invoice.payment_failed", snapshot, origin);
                Err(error)
            }
        }
    }

    /// Applies `change` to a subscription and, if that changed it, emits
    /// `customer.subscription.updated` with the fields it changed as `previous_attributes`.
    fn change_subscription<F>(&mut self, id: &str, origin: &Origin, change: F) -> Result<(), ApiError>
    where
        F: FnOnce(&mut Subscription),
    {
        let before = self.subscription_snapshot(id)?;
        let subscription = self
            .subscriptions
            .get_mut(id)
            .ok_or_else(|| ApiError::no_such("subscription", id, None))?;
        change(subscription);
        let after = self.subscription_snapshot(id)?;
        let previous = changed(&before, &after);
        if !previous.is_empty() {
            self.hooks.emit_change(
                "customer.subscription.updated",
                after,
                Some(Value::Object(previous)),
                origin,
            );
        }
        Ok(())
    }

    /// Charges a subscription's new invoice off session to its card. A refusal leaves the
    /// invoice open and the subscription past due (as Stripe's default
    /// `payment_behavior=allow_incomplete`); the subscription itself is still answered.
    fn charge_subscription_invoice(
        &mut self,
        subscription: &str,
        invoice: &str,
        origin: &Origin,
    ) -> Result<(), ApiError> {
        let customer = self.invoice(invoice, None)?.customer.clone();
        let Some(card) = self.billing_card(&customer, Some(subscription)) else {
            // No card to charge: the invoice waits, open, as Stripe's would.
            self.finalize(invoice);
            return Ok(());
        };
        match self.collect_invoice(invoice, &card, true, origin) {
            Ok(()) => Ok(()),
            Err(error) if error.status == 402 => self.change_subscription(subscription, origin, |s| {
                s.status = SubscriptionStatus::PastDue;
            }),
            Err(error) => Err(error),
        }
    }

    /// The line a subscription's invoice bills its price for a period with.
    fn plan_line(subscription: &Subscription, price: &Price, start: i64, end: i64) -> InvoiceLine {
        let per = price.interval.unwrap_or(Interval::Month).as_str();
        InvoiceLine {
            id: new_id("il_", 24),
            amount: price.unit_amount,
            description: format!("1 × {} (at {} / {per})", price.label(), cents(price.unit_amount)),
            period_start: start,
            period_end: end,
            price: Some((price.id.clone(), price.product.clone())),
            parent: LineParent::SubscriptionItem {
                subscription: subscription.id.clone(),
                item: subscription.item_id.clone(),
                proration: false,
            },
            metadata: subscription.metadata.clone(),
        }
    }

    /// The payer pays a subscription-mode Checkout Session: the card is saved on the
    /// customer, the subscription starts, and its first invoice is paid with that card.
    pub fn complete_subscription_session(
        &mut self,
        id: &str,
        card: &str,
        email: Option<String>,
        async_payment: bool,
    ) -> Result<(), ApiError> {
        if async_payment {
            return Err(ApiError::invalid(
                "async",
                "The Stripe simulator pays subscription Checkout Sessions by card only.",
            ));
        }
        let card = cards::test_card(card).ok_or_else(|| {
            ApiError::invalid(
                "card",
                format!("Unknown test card {card}: use one of Stripe's pm_card_* tokens."),
            )
        })?;
        let session = self.session(id)?;
        let email = self.payer_email(session, email);
        let price_id = session
            .line_items
            .first()
            .and_then(|item| item.price.clone())
            .ok_or_else(|| ApiError::missing("line_items[0][price]"))?;
        let price = self.price(&price_id, Some("line_items[0][price]"))?;
        let (amount, currency) = (price.unit_amount, price.currency.clone());
        let (given_customer, metadata) = (session.customer.clone(), session.subscription_metadata.clone());
        let origin = Origin::default();
        // A card that declines fails as at any Checkout, before anything is created: the
        // PaymentIntent fails (`payment_intent.payment_failed`), the session stays open.
        if amount > 0 && matches!(card.outcome, Outcome::Declines { .. }) {
            let pm = self.new_payment_method(Instrument::Card(card), Some(email));
            let pi = self.insert_intent(
                amount,
                currency,
                given_customer,
                Some(pm),
                vec!["card".to_owned()],
                IntentDetails::default(),
            );
            // Always the decline (the card's outcome says so).
            self.confirm_authenticated(&pi, &origin)?;
            return Err(ApiError::invalid("card", "The card was expected to decline."));
        }
        let customer = match given_customer {
            Some(customer) => customer,
            None => self
                .create_customer(NewCustomer {
                    email: Some(email.clone()),
                    name: None,
                    description: None,
                    phone: None,
                    metadata: Metadata::new(),
                })
                .id
                .clone(),
        };
        let pm = self.new_payment_method(Instrument::Card(card), Some(email.clone()));
        if let Some(saved) = self.payment_methods.get_mut(&pm) {
            saved.customer = Some(customer.clone());
        }
        let (subscription, invoice) =
            self.start_subscription(&customer, &price_id, &pm, metadata, &origin)?;
        self.collect_invoice(&invoice, &pm, false, &origin)?;
        let session = self
            .sessions
            .get_mut(id)
            .ok_or_else(|| ApiError::no_such("checkout.session", id, None))?;
        session.status = SessionStatus::Complete;
        session.paid = true;
        session.customer = Some(customer);
        session.payer_email = Some(email);
        session.subscription = Some(subscription);
        session.invoice = Some(invoice);
        let snapshot = session.to_json();
        self.hooks.emit("checkout.session.completed", snapshot, &origin);
        Ok(())
    }

    /// A new active subscription to a recurring price, its period starting now, with its
    /// first invoice (open, to be paid) and `customer.subscription.created`.
    fn start_subscription(
        &mut self,
        customer: &str,
        price_id: &str,
        pm: &str,
        metadata: Metadata,
        origin: &Origin,
    ) -> Result<(String, String), ApiError> {
        let seq = self.next_seq();
        let price = self.price(price_id, None)?;
        let interval = price
            .interval
            .ok_or_else(|| ApiError::invalid("price", format!("Price {price_id} is not recurring.")))?;
        let created = now();
        let mut subscription = Subscription {
            id: new_id("sub_", 24),
            created,
            seq,
            customer: customer.to_owned(),
            currency: price.currency.clone(),
            status: SubscriptionStatus::Active,
            metadata,
            default_payment_method: Some(pm.to_owned()),
            cancel_at_period_end: false,
            canceled_at: None,
            ended_at: None,
            item_id: new_id("si_", 14),
            item_created: created,
            price: price_id.to_owned(),
            billing_cycle_anchor: created,
            current_period_start: created,
            current_period_end: interval.add(created, 1),
            latest_invoice: None,
        };
        let line = Store::plan_line(&subscription, price, created, subscription.current_period_end);
        let invoice = self.insert_invoice(NewBill {
            customer: customer.to_owned(),
            currency: subscription.currency.clone(),
            billing_reason: "subscription_create".to_owned(),
            subscription: Some((subscription.id.clone(), subscription.metadata.clone())),
            lines: vec![line],
            ..Default::default()
        });
        self.finalize(&invoice);
        subscription.latest_invoice = Some(invoice.clone());
        let id = subscription.id.clone();
        let snapshot = self.subscription_json(&subscription);
        self.subscriptions.insert(id.clone(), subscription);
        self.hooks.emit("customer.subscription.created", snapshot, origin);
        Ok((id, invoice))
    }

    /// `POST /v1/subscriptions/{id}`: a price change (prorated and invoiced now with
    /// `always_invoice`), cancellation at period end, metadata.
    pub fn update_subscription(
        &mut self,
        id: &str,
        update: SubscriptionUpdate,
        origin: &Origin,
    ) -> Result<Value, ApiError> {
        let subscription = self.subscription(id)?;
        if subscription.status == SubscriptionStatus::Canceled {
            let param = match (&update.item, update.cancel_at_period_end) {
                (Some(_), _) => Some("items"),
                (None, Some(_)) => Some("cancel_at_period_end"),
                (None, None) => None,
            };
            if let Some(param) = param {
                return Err(ApiError::invalid(
                    param,
                    format!(
                        "Subscription {id} is canceled: a canceled subscription can only update its metadata."
                    ),
                ));
            }
        }
        let mut new_price = None;
        if let Some((item, price_id)) = &update.item {
            if *item != subscription.item_id {
                return Err(ApiError::no_such("subscription item", item, Some("items[0][id]")));
            }
            let price = self.price(price_id, Some("items[0][price]"))?;
            if price.interval.is_none() {
                return Err(ApiError::invalid(
                    "items[0][price]",
                    "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.",
                ));
            }
            if price.currency != subscription.currency {
                return Err(ApiError::invalid(
                    "items[0][price]",
                    format!(
                        "The price's currency ({}) is not the subscription's ({}).",
                        price.currency, subscription.currency
                    ),
                ));
            }
            if price.id != subscription.price {
                new_price = Some(price.id.clone());
            }
        }
        let now = now();
        let invoice = match (&new_price, update.proration) {
            (Some(new_price), Proration::AlwaysInvoice) => Some(self.proration_invoice(id, new_price, now)?),
            _ => None,
        };
        self.change_subscription(id, origin, |s| {
            if let Some(price) = new_price {
                s.price = price;
            }
            if let Some(cancel) = update.cancel_at_period_end
                && cancel != s.cancel_at_period_end
            {
                s.cancel_at_period_end = cancel;
                s.canceled_at = cancel.then_some(now);
            }
            if let Some(metadata) = update.metadata {
                metadata.apply(&mut s.metadata);
            }
            if let Some(invoice) = &invoice {
                s.latest_invoice = Some(invoice.clone());
            }
        })?;
        if let Some(invoice) = invoice {
            self.charge_subscription_invoice(id, &invoice, origin)?;
        }
        self.subscription_snapshot(id)
    }

    /// The invoice for changing a subscription's price at `now`: a credit for the old price's
    /// unused time and a charge for the new price's remaining time, each
    /// `round(unit_amount × remaining / whole period)`.
    fn proration_invoice(&mut self, id: &str, new_price: &str, now: i64) -> Result<String, ApiError> {
        let subscription = self.subscription(id)?;
        let old = self.price(&subscription.price, None)?;
        let new = self.price(new_price, None)?;
        let (start, end) = (subscription.current_period_start, subscription.current_period_end);
        let whole = end - start;
        let remaining = (end - now).clamp(0, whole.max(0));
        let line = |price: &Price, amount: i64, what: &str| InvoiceLine {
            id: new_id("il_", 24),
            amount,
            description: format!("{what} time on {} after {}", price.label(), day(now)),
            period_start: now,
            period_end: end,
            price: Some((price.id.clone(), price.product.clone())),
            parent: LineParent::SubscriptionItem {
                subscription: subscription.id.clone(),
                item: subscription.item_id.clone(),
                proration: true,
            },
            metadata: subscription.metadata.clone(),
        };
        let lines = vec![
            line(old, -prorate(old.unit_amount, remaining, whole), "Unused"),
            line(new, prorate(new.unit_amount, remaining, whole), "Remaining"),
        ];
        let bill = NewBill {
            customer: subscription.customer.clone(),
            currency: subscription.currency.clone(),
            billing_reason: "subscription_update".to_owned(),
            subscription: Some((subscription.id.clone(), subscription.metadata.clone())),
            lines,
            period: Some((now, now)),
            ..Default::default()
        };
        let invoice = self.insert_invoice(bill);
        self.finalize(&invoice);
        Ok(invoice)
    }

    /// The subscription's current period ends: it is canceled if so requested
    /// (`customer.subscription.deleted`), else the next period starts and its invoice is
    /// charged to the subscription's card.
    pub fn renew_subscription(&mut self, id: &str) -> Result<Value, ApiError> {
        let origin = Origin::default();
        let subscription = self.subscription(id)?;
        if subscription.status == SubscriptionStatus::Canceled {
            return Err(ApiError::invalid(
                "subscription",
                format!("Subscription {id} is canceled."),
            ));
        }
        if subscription.cancel_at_period_end {
            let subscription = self
                .subscriptions
                .get_mut(id)
                .ok_or_else(|| ApiError::no_such("subscription", id, None))?;
            subscription.status = SubscriptionStatus::Canceled;
            subscription.ended_at = Some(subscription.current_period_end);
            let snapshot = self.subscription_snapshot(id)?;
            self.hooks
                .emit("customer.subscription.deleted", snapshot.clone(), &origin);
            return Ok(snapshot);
        }
        let price = self.price(&subscription.price, None)?;
        let interval = price.interval.unwrap_or(Interval::Month);
        let start = subscription.current_period_end;
        // Whole intervals from the anchor, so a period that began on the 31st keeps
        // ending on the month's last day at most.
        let end = (1..=100_000)
            .map(|n| interval.add(subscription.billing_cycle_anchor, n))
            .find(|end| *end > start)
            .unwrap_or_else(|| interval.add(start, 1));
        let line = Store::plan_line(subscription, price, start, end);
        let bill = NewBill {
            customer: subscription.customer.clone(),
            currency: subscription.currency.clone(),
            billing_reason: "subscription_cycle".to_owned(),
            subscription: Some((subscription.id.clone(), subscription.metadata.clone())),
            lines: vec![line],
            period: Some((start, start)),
            ..Default::default()
        };
        let invoice = self.insert_invoice(bill);
        self.finalize(&invoice);
        self.change_subscription(id, &origin, |s| {
            s.current_period_start = start;
            s.current_period_end = end;
            s.latest_invoice = Some(invoice.clone());
        })?;
        self.charge_subscription_invoice(id, &invoice, &origin)?;
        self.subscription_snapshot(id)
    }

    /// Moves a subscription's current period (a test's clock): renewals then count whole
    /// intervals from `start`. No event: nothing happened in Stripe's world.
    pub fn set_subscription_period(&mut self, id: &str, start: i64, end: i64) -> Result<Value, ApiError> {
        if end <= start {
            return Err(ApiError::invalid("end", "The period must end after it starts."));
        }
        let subscription = self
            .subscriptions
            .get_mut(id)
            .ok_or_else(|| ApiError::no_such("subscription", id, None))?;
        subscription.billing_cycle_anchor = start;
        subscription.current_period_start = start;
        subscription.current_period_end = end;
        self.subscription_snapshot(id)
    }

    /// `POST /v1/invoices`: a draft for the customer.
    pub fn create_invoice(&mut self, new: NewDraft) -> Result<Value, ApiError> {
        self.customer(&new.customer, Some("customer"))?;
        let mut lines = Vec::new();
        if new.include_pending {
            let mut pending: Vec<&InvoiceItem> = self
                .invoice_items
                .values()
                .filter(|item| {
                    item.customer == new.customer && item.invoice.is_none() && item.currency == new.currency
                })
                .collect();
            pending.sort_by_key(|item| (item.created, item.id.clone()));
            lines = pending.iter().map(|item| item.line()).collect();
        }
        let id = self.insert_invoice(NewBill {
            customer: new.customer,
            currency: new.currency,
            billing_reason: "manual".to_owned(),
            collection_method: Some(new.collection_method),
            auto_advance: new.auto_advance,
            due_date: new.due_date,
            description: new.description,
            metadata: new.metadata,
            lines,
            ..Default::default()
        });
        let joined: Vec<String> = self
            .invoices
            .get(&id)
            .map(|invoice| {
                invoice
                    .lines
                    .iter()
                    .filter_map(|line| match &line.parent {
                        LineParent::InvoiceItem { invoice_item } => Some(invoice_item.clone()),
                        LineParent::SubscriptionItem { .. } => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        for item in joined {
            if let Some(item) = self.invoice_items.get_mut(&item) {
                item.invoice = Some(id.clone());
            }
        }
        Ok(self.invoice_json(self.invoice(&id, None)?))
    }

    /// `POST /v1/invoiceitems`: an amount on a draft invoice of the same customer, or
    /// pending for the customer's next invoice.
    pub fn create_invoice_item(&mut self, new: NewInvoiceItem) -> Result<Value, ApiError> {
        self.customer(&new.customer, Some("customer"))?;
        let currency = match &new.invoice {
            Some(invoice_id) => {
                let invoice = self.invoice(invoice_id, Some("invoice"))?;
                if invoice.customer != new.customer {
                    return Err(ApiError::invalid(
                        "invoice",
                        format!(
                            "Invoice {invoice_id} belongs to customer {}, not {}.",
                            invoice.customer, new.customer
                        ),
                    ));
                }
                if invoice.status != InvoiceStatus::Draft {
                    return Err(ApiError::invalid(
                        "invoice",
                        format!(
                            "Invoice {invoice_id} is no longer a draft: items can only be added to drafts."
                        ),
                    ));
                }
                match new.currency {
                    Some(currency) if currency != invoice.currency => {
                        return Err(ApiError::invalid(
                            "currency",
                            format!(
                                "The item's currency ({currency}) is not the invoice's ({}).",
                                invoice.currency
                            ),
                        ));
                    }
                    _ => invoice.currency.clone(),
                }
            }
            None => new.currency.unwrap_or_else(|| "usd".to_owned()),
        };
        let item = InvoiceItem {
            id: new_id("ii_", 24),
            created: now(),
            customer: new.customer,
            invoice: new.invoice,
            amount: new.amount,
            currency,
            description: new.description,
            metadata: new.metadata,
        };
        if let Some(invoice) = &item.invoice {
            let line = item.line();
            self.invoice_mut(invoice)?.lines.push(line);
        }
        let json = item.to_json();
        self.invoice_items.insert(item.id.clone(), item);
        Ok(json)
    }

    /// `POST /v1/invoices/{id}/finalize`: a draft becomes open; one that owes nothing is paid
    /// at once, as Stripe does.
    pub fn finalize_invoice(&mut self, id: &str, origin: &Origin) -> Result<Value, ApiError> {
        if self.invoice(id, None)?.status != InvoiceStatus::Draft {
            return Err(ApiError::invalid(
                "invoice",
                format!("Invoice {id} is already finalized: only a draft can be finalized."),
            ));
        }
        self.finalize(id);
        if self.invoice(id, None)?.amount_due() == 0 {
            self.mark_invoice_paid(id, Payment::Nothing, origin)?;
        }
        Ok(self.invoice_json(self.invoice(id, None)?))
    }

    /// `POST /v1/invoices/{id}/pay`: paid out of band, or charged to a card (the one named,
    /// else the subscription's or the customer's newest).
    pub fn pay_invoice_now(
        &mut self,
        id: &str,
        out_of_band: bool,
        payment_method: Option<&str>,
        origin: &Origin,
    ) -> Result<Value, ApiError> {
        let invoice = self.invoice(id, None)?;
        if invoice.status == InvoiceStatus::Paid {
            return Err(ApiError::invalid(
                "invoice",
                format!("Invoice {id} is already paid."),
            ));
        }
        if out_of_band {
            self.mark_invoice_paid(id, Payment::OutOfBand, origin)?;
        } else {
            let (customer, subscription) = (
                invoice.customer.clone(),
                invoice.subscription_id().map(str::to_owned),
            );
            let card = match payment_method {
                Some(given) => self.resolve_payment_method(given, "payment_method")?,
                None => self
                    .billing_card(&customer, subscription.as_deref())
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "payment_method",
                            format!(
                                "Customer {customer} has no attached payment source or default payment method."
                            ),
                        )
                    })?,
            };
            // Paid, it makes a past-due subscription whose invoice it is active again.
            self.collect_invoice(id, &card, true, origin)?;
        }
        Ok(self.invoice_json(self.invoice(id, None)?))
    }

    /// A paid payment-mode session with `invoice_creation` gets its invoice: open here,
    /// paid by the session's PaymentIntent once the session's event is out.
    pub(crate) fn invoice_session(&mut self, id: &str) -> Result<Option<String>, ApiError> {
        let session = self.session(id)?;
        let (Some(data), Some(customer)) = (session.invoice_creation.clone(), session.customer.clone())
        else {
            return Ok(None);
        };
        let currency = session.currency.clone();
        let created = now();
        let mut items = Vec::new();
        for line in &session.line_items {
            let price = line
                .price
                .as_ref()
                .and_then(|p| self.prices.get(p))
                .map(|p| (p.id.clone(), p.product.clone()));
            let item = InvoiceItem {
                id: new_id("ii_", 24),
                created,
                customer: customer.clone(),
                invoice: None,
                amount: line.unit_amount * line.quantity,
                currency: currency.clone(),
                description: Some(format!("{} × {}", line.quantity, line.name)),
                metadata: Metadata::new(),
            };
            items.push((item, price));
        }
        let lines = items
            .iter()
            .map(|(item, price)| InvoiceLine {
                price: price.clone(),
                ..item.line()
            })
            .collect();
        let invoice = self.insert_invoice(NewBill {
            customer,
            currency,
            billing_reason: "manual".to_owned(),
            description: data.description,
            metadata: data.metadata,
            lines,
            ..Default::default()
        });
        self.finalize(&invoice);
        for (mut item, _) in items {
            item.invoice = Some(invoice.clone());
            self.invoice_items.insert(item.id.clone(), item);
        }
        if let Some(session) = self.sessions.get_mut(id) {
            session.invoice = Some(invoice.clone());
        }
        Ok(Some(invoice))
    }

    /// `POST /v1/billing_portal/sessions`.
    pub fn create_portal_session(
        &mut self,
        customer: &str,
        return_url: Option<String>,
    ) -> Result<Value, ApiError> {
        self.customer(customer, Some("customer"))?;
        let id = new_id("bps_", 24);
        let session = PortalSession {
            url: format!("{}portal/{id}", self.base_url),
            id: id.clone(),
            created: now(),
            customer: customer.to_owned(),
            return_url,
        };
        let json = session.to_json();
        self.portal_sessions.insert(id, session);
        Ok(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prorations_round_half_up_to_whole_cents() {
        assert_eq!(prorate(5000, 50, 100), 2500);
        assert_eq!(prorate(5000, 0, 100), 0);
        assert_eq!(prorate(5000, 100, 100), 5000);
        // 1000 × 1/3 = 333.33 → 333; 1000 × 2/3 = 666.67 → 667; 1 × 1/2 = 0.5 → 1
        assert_eq!(prorate(1000, 1, 3), 333);
        assert_eq!(prorate(1000, 2, 3), 667);
        assert_eq!(prorate(1, 1, 2), 1);
        assert_eq!(prorate(3, 1, 2), 2);
        // a whole period of zero seconds cannot divide by zero
        assert_eq!(prorate(1000, 0, 0), 0);
    }

    #[test]
    fn changed_fields_keep_their_old_values() {
        let before = serde_json::json!({"a": 1, "b": {"c": 2}, "d": 3});
        let after = serde_json::json!({"a": 1, "b": {"c": 5}, "d": 4});
        let previous = changed(&before, &after);
        assert_eq!(
            Value::Object(previous),
            serde_json::json!({"b": {"c": 2}, "d": 3})
        );
    }
}
