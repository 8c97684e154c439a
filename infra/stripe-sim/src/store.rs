//! The simulated Stripe account: its objects and the state changes Stripe makes, shared by
//! the `/v1` API, the control API and the payment page. Each change runs under one lock.

use std::collections::HashMap;

use serde_json::Value;

use crate::billing::{NewBill, Payment};
use crate::cards::{self, AUTHENTICATION_REQUIRED_MESSAGE, Outcome};
use crate::error::ApiError;
use crate::form::Metadata;
use crate::objects::{
    Charge, Customer, Dispute, Failure, Instrument, Intent, IntentDetails, IntentStatus, Interval, Invoice,
    InvoiceData, InvoiceItem, InvoiceLine, LineItem, LineParent, PaymentMethod, PortalSession, Price, Refund,
    Session, SessionMode, SessionStatus, Subscription,
};
use crate::webhooks::{Hooks, Origin};
use crate::{new_id, now};

/// A stored answer to an Idempotency-Key: the request's fingerprint, status and body.
pub(crate) struct Replay {
    pub fingerprint: Vec<(String, String)>,
    pub status: u16,
    pub body: Value,
    pub request_id: String,
}

pub(crate) struct Store {
    pub base_url: String,
    seq: u64,
    pub customers: HashMap<String, Customer>,
    pub payment_methods: HashMap<String, PaymentMethod>,
    pub sessions: HashMap<String, Session>,
    pub intents: HashMap<String, Intent>,
    pub charges: HashMap<String, Charge>,
    pub prices: HashMap<String, Price>,
    pub subscriptions: HashMap<String, Subscription>,
    pub invoices: HashMap<String, Invoice>,
    pub invoice_items: HashMap<String, InvoiceItem>,
    /// How many invoices have been numbered (`SIM-0001`, ...).
    pub invoice_numbers: u64,
    /// Which payments paid which invoices, as Stripe answers them (kept as JSON: they never
    /// change).
    pub invoice_payments: Vec<Value>,
    pub portal_sessions: HashMap<String, PortalSession>,
    pub idempotency: HashMap<String, Replay>,
    pub hooks: Hooks,
}

pub(crate) struct NewCustomer {
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub metadata: Metadata,
}

pub(crate) struct NewSession {
    pub mode: SessionMode,
    pub customer: Option<String>,
    pub customer_email: Option<String>,
    pub customer_creation: Option<String>,
    pub client_reference_id: Option<String>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub currency: String,
    pub line_items: Vec<LineItem>,
    pub metadata: Metadata,
    pub payment_method_types: Vec<String>,
    pub intent_data: IntentDetails,
    pub subscription_metadata: Metadata,
    pub invoice_creation: Option<InvoiceData>,
    pub expires_at: Option<i64>,
}

pub(crate) struct NewIntent {
    pub amount: i64,
    pub currency: String,
    pub customer: Option<String>,
    pub payment_method: Option<String>,
    pub payment_method_types: Vec<String>,
    pub confirm: bool,
    pub off_session: bool,
    pub details: IntentDetails,
}

pub(crate) struct NewInvoice {
    pub customer: String,
    pub amount: i64,
    pub currency: String,
    pub subscription: Option<String>,
    pub price: Option<String>,
    pub product: Option<String>,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    pub billing_reason: Option<String>,
    pub metadata: Metadata,
}

/// Stripe's smallest USD charge, in cents.
const MINIMUM_USD_AMOUNT: i64 = 50;
const MAXIMUM_AMOUNT: i64 = 99_999_999;

impl Store {
    pub fn new(base_url: String, hooks: Hooks) -> Self {
        Store {
            base_url,
            seq: 0,
            customers: HashMap::new(),
            payment_methods: HashMap::new(),
            sessions: HashMap::new(),
            intents: HashMap::new(),
            charges: HashMap::new(),
            prices: HashMap::new(),
            subscriptions: HashMap::new(),
            invoices: HashMap::new(),
            invoice_items: HashMap::new(),
            invoice_numbers: 0,
            invoice_payments: Vec::new(),
            portal_sessions: HashMap::new(),
            idempotency: HashMap::new(),
            hooks,
        }
    }

    /// The next number in the account's sequence, which orders objects created in the same
    /// second.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn customer(&self, id: &str, param: Option<&str>) -> Result<&Customer, ApiError> {
        self.customers
            .get(id)
            .ok_or_else(|| ApiError::no_such("customer", id, param))
    }

    pub fn session(&self, id: &str) -> Result<&Session, ApiError> {
        self.sessions
            .get(id)
            .ok_or_else(|| ApiError::no_such("checkout.session", id, None))
    }

    pub fn intent(&self, id: &str) -> Result<&Intent, ApiError> {
        self.intents
            .get(id)
            .ok_or_else(|| ApiError::no_such("payment_intent", id, None))
    }

    fn intent_mut(&mut self, id: &str) -> Result<&mut Intent, ApiError> {
        self.intents
            .get_mut(id)
            .ok_or_else(|| ApiError::no_such("payment_intent", id, None))
    }

    pub fn charge(&self, id: &str, param: Option<&str>) -> Result<&Charge, ApiError> {
        self.charges
            .get(id)
            .ok_or_else(|| ApiError::no_such("charge", id, param))
    }

    pub fn payment_method(&self, id: &str) -> Result<&PaymentMethod, ApiError> {
        self.payment_methods
            .get(id)
            .ok_or_else(|| ApiError::no_such("PaymentMethod", id, None))
    }

    /// Any stored object by id, for `expand[]`.
    pub fn render(&self, id: &str) -> Option<Value> {
        let prefix = id.split('_').next().unwrap_or_default();
        match prefix {
            "cus" => self.customers.get(id).map(Customer::to_json),
            "pm" => self.payment_methods.get(id).map(PaymentMethod::to_json),
            "cs" => self.sessions.get(id).map(Session::to_json),
            "pi" => self.intents.get(id).map(Intent::to_json),
            "ch" => self.charges.get(id).map(Charge::to_json),
            "in" => self.invoices.get(id).map(|i| self.invoice_json(i)),
            "sub" => self.subscriptions.get(id).map(|s| self.subscription_json(s)),
            "price" => self.prices.get(id).map(Price::to_json),
            _ => None,
        }
    }

    pub fn create_customer(&mut self, new: NewCustomer) -> &Customer {
        self.seq += 1;
        let id = new_id("cus_", 14);
        let customer = Customer {
            id: id.clone(),
            created: now(),
            seq: self.seq,
            email: new.email,
            name: new.name,
            description: new.description,
            phone: new.phone,
            metadata: new.metadata,
            invoice_prefix: new_id("", 8).to_uppercase(),
        };
        self.customers.entry(id).or_insert(customer)
    }

    pub fn create_session(&mut self, new: NewSession) -> Result<&Session, ApiError> {
        if let Some(customer) = &new.customer {
            self.customer(customer, Some("customer"))?;
        }
        let mut amount_total: i64 = 0;
        for item in &new.line_items {
            amount_total = item
                .unit_amount
                .checked_mul(item.quantity)
                .and_then(|line| amount_total.checked_add(line))
                .filter(|total| *total <= MAXIMUM_AMOUNT)
                .ok_or_else(|| amount_too_large("line_items"))?;
        }
        // A subscription may be free; a payment may not.
        if new.mode == SessionMode::Payment || amount_total > 0 {
            check_amount(amount_total, &new.currency, "line_items")?;
        }
        let id = new_id("cs_test_a1", 48);
        let created = now();
        let session = Session {
            url: format!("{}pay/{id}", self.base_url),
            id: id.clone(),
            created,
            mode: new.mode,
            expires_at: new.expires_at.unwrap_or(created + 86_400),
            status: SessionStatus::Open,
            paid: false,
            amount_total,
            currency: new.currency,
            customer: new.customer,
            customer_email: new.customer_email,
            customer_creation: new.customer_creation,
            payer_email: None,
            client_reference_id: new.client_reference_id,
            success_url: new.success_url,
            cancel_url: new.cancel_url,
            metadata: new.metadata,
            payment_intent: None,
            payment_method_types: new.payment_method_types,
            line_items: new.line_items,
            intent_data: new.intent_data,
            subscription_metadata: new.subscription_metadata,
            invoice_creation: new.invoice_creation,
            subscription: None,
            invoice: None,
        };
        Ok(self.sessions.entry(id).or_insert(session))
    }

    /// A payment method for a `payment_method` parameter: a stored `pm_...`, or a Stripe test
    /// token, which (as in Stripe) becomes a new, unattached PaymentMethod on each use.
    pub fn resolve_payment_method(&mut self, given: &str, param: &str) -> Result<String, ApiError> {
        if self.payment_methods.contains_key(given) {
            return Ok(given.to_string());
        }
        let card =
            cards::test_card(given).ok_or_else(|| ApiError::no_such("PaymentMethod", given, Some(param)))?;
        Ok(self.new_payment_method(Instrument::Card(card), None))
    }

    pub(crate) fn new_payment_method(&mut self, instrument: Instrument, email: Option<String>) -> String {
        self.seq += 1;
        let id = new_id("pm_", 24);
        let pm = PaymentMethod {
            id: id.clone(),
            created: now(),
            seq: self.seq,
            instrument,
            customer: None,
            email,
        };
        self.payment_methods.insert(id.clone(), pm);
        id
    }

    pub fn create_intent(&mut self, new: NewIntent, origin: &Origin) -> Result<String, ApiError> {
        check_amount(new.amount, &new.currency, "amount")?;
        if let Some(customer) = &new.customer {
            self.customer(customer, Some("customer"))?;
        }
        if new.off_session && !new.confirm {
            return Err(ApiError::invalid(
                "off_session",
                "off_session can only be used when confirm=true.",
            ));
        }
        let payment_method = match &new.payment_method {
            Some(given) => Some(self.resolve_payment_method(given, "payment_method")?),
            None if new.confirm => return Err(ApiError::missing("payment_method")),
            None => None,
        };
        if let Some(pm) = payment_method
            .as_deref()
            .and_then(|id| self.payment_methods.get(id))
            && pm.customer.is_some()
            && pm.customer != new.customer
        {
            return Err(ApiError::invalid(
                "payment_method",
                format!(
                    "The PaymentMethod {} is attached to another Customer than the one given.",
                    pm.id
                ),
            ));
        }
        let types = if new.payment_method_types.is_empty() {
            vec![
                payment_method
                    .as_deref()
                    .and_then(|id| self.payment_methods.get(id))
                    .map_or("card", PaymentMethod::kind)
                    .to_string(),
            ]
        } else {
            new.payment_method_types
        };
        let id = self.insert_intent(
            new.amount,
            new.currency,
            new.customer,
            payment_method,
            types,
            new.details,
        );
        if new.confirm {
            self.confirm(&id, new.off_session, origin)?;
        }
        Ok(id)
    }

    pub(crate) fn insert_intent(
        &mut self,
        amount: i64,
        currency: String,
        customer: Option<String>,
        payment_method: Option<String>,
        payment_method_types: Vec<String>,
        details: IntentDetails,
    ) -> String {
        let id = new_id("pi_", 24);
        let intent = Intent {
            client_secret: format!("{id}_secret_{}", new_id("", 25)),
            id: id.clone(),
            created: now(),
            amount,
            amount_received: 0,
            currency,
            customer,
            status: if payment_method.is_some() {
                IntentStatus::RequiresConfirmation
            } else {
                IntentStatus::RequiresPaymentMethod
            },
            payment_method,
            payment_method_types,
            metadata: details.metadata,
            description: details.description,
            setup_future_usage: details.setup_future_usage,
            receipt_email: details.receipt_email,
            latest_charge: None,
            last_error: None,
        };
        self.intents.insert(id.clone(), intent);
        id
    }

    /// Confirms with the intent's payment method; the test card decides. `off_session`
    /// false means the payer is present and passes 3-D Secure when asked.
    pub(crate) fn confirm(
        &mut self,
        pi_id: &str,
        off_session: bool,
        origin: &Origin,
    ) -> Result<(), ApiError> {
        let pm_id = self
            .intent(pi_id)?
            .payment_method
            .clone()
            .ok_or_else(|| ApiError::missing("payment_method"))?;
        let instrument = self.payment_method(&pm_id)?.instrument;
        match instrument {
            Instrument::UsBankAccount => {
                self.intent_mut(pi_id)?.status = IntentStatus::Processing;
                Ok(())
            }
            Instrument::Card(card) => match card.outcome {
                Outcome::Succeeds => self.succeed(pi_id, origin),
                Outcome::RequiresAuthentication if off_session => Err(self.fail(
                    pi_id,
                    "authentication_required",
                    Some("authentication_required"),
                    AUTHENTICATION_REQUIRED_MESSAGE,
                    origin,
                )),
                Outcome::RequiresAuthentication => {
                    self.intent_mut(pi_id)?.status = IntentStatus::RequiresAction;
                    Ok(())
                }
                Outcome::Declines {
                    decline_code,
                    message,
                } => Err(self.fail(pi_id, "card_declined", Some(decline_code), message, origin)),
            },
        }
    }

    /// The payer passed 3-D Secure in the payment page.
    pub(crate) fn confirm_authenticated(&mut self, pi_id: &str, origin: &Origin) -> Result<(), ApiError> {
        self.confirm(pi_id, false, origin)?;
        if self.intent(pi_id)?.status == IntentStatus::RequiresAction {
            self.succeed(pi_id, origin)?;
        }
        Ok(())
    }

    fn new_charge(&self, intent: &Intent, pm_id: &str, failure: Option<Failure>) -> Charge {
        let succeeded = failure.is_none();
        Charge {
            id: new_id("ch_", 24),
            created: now(),
            amount: intent.amount,
            currency: intent.currency.clone(),
            customer: intent.customer.clone(),
            payment_intent: intent.id.clone(),
            payment_method: pm_id.to_string(),
            email: self.payment_methods.get(pm_id).and_then(|pm| pm.email.clone()),
            metadata: intent.metadata.clone(),
            failure,
            balance_transaction: succeeded.then(|| new_id("txn_", 24)),
            refunds: Vec::new(),
            disputed: false,
        }
    }

    fn succeed(&mut self, pi_id: &str, origin: &Origin) -> Result<(), ApiError> {
        let intent = self.intent(pi_id)?;
        let pm_id = intent
            .payment_method
            .clone()
            .ok_or_else(|| ApiError::missing("payment_method"))?;
        let charge = self.new_charge(intent, &pm_id, None);
        // Saving the card for later is what setup_future_usage asks; it happens on success.
        if let (Some(_), Some(customer)) = (&intent.setup_future_usage, &intent.customer) {
            let customer = customer.clone();
            if let Some(pm) = self.payment_methods.get_mut(&pm_id) {
                pm.customer = Some(customer);
            }
        }
        let intent = self.intent_mut(pi_id)?;
        intent.status = IntentStatus::Succeeded;
        intent.amount_received = intent.amount;
        intent.latest_charge = Some(charge.id.clone());
        intent.last_error = None;
        let snapshot = intent.to_json();
        self.charges.insert(charge.id.clone(), charge);
        self.hooks.emit("payment_intent.succeeded", snapshot, origin);
        Ok(())
    }

    /// Records a failed attempt as Stripe does (a failed charge, the intent back in
    /// requires_payment_method with its payment method cleared) and returns the 402.
    fn fail(
        &mut self,
        pi_id: &str,
        code: &'static str,
        decline_code: Option<&'static str>,
        message: &str,
        origin: &Origin,
    ) -> ApiError {
        let mut error = ApiError::card(code, decline_code, message);
        let Ok(intent) = self.intent(pi_id) else {
            return error;
        };
        let Some(pm_id) = intent.payment_method.clone() else {
            return error;
        };
        let failure = Failure {
            code,
            decline_code,
            message: message.to_string(),
        };
        let charge = self.new_charge(intent, &pm_id, Some(failure));
        error.charge = Some(charge.id.clone());
        let last_error = error.to_json();
        if let Ok(intent) = self.intent_mut(pi_id) {
            intent.status = IntentStatus::RequiresPaymentMethod;
            intent.payment_method = None;
            intent.latest_charge = Some(charge.id.clone());
            intent.last_error = Some(last_error);
            let snapshot = intent.to_json();
            error.payment_intent = Some(snapshot.clone());
            self.hooks.emit("payment_intent.payment_failed", snapshot, origin);
        }
        self.charges.insert(charge.id.clone(), charge);
        error
    }

    /// The payer's email: as given, else the session's customer_email or customer's email.
    pub(crate) fn payer_email(&self, session: &Session, given: Option<String>) -> String {
        given
            .or_else(|| session.customer_email.clone())
            .or_else(|| {
                session
                    .customer
                    .as_ref()
                    .and_then(|c| self.customers.get(c)?.email.clone())
            })
            .unwrap_or_else(|| "payer@example.com".to_string())
    }

    /// The payer completes the session in the payment page with `card` (a test token), or
    /// with a bank account (`async_payment`) whose result comes later.
    pub fn complete_session(
        &mut self,
        id: &str,
        card: &str,
        email: Option<String>,
        async_payment: bool,
    ) -> Result<(), ApiError> {
        let session = self.session(id)?;
        if session.status != SessionStatus::Open {
            return Err(ApiError::invalid(
                "session",
                format!("Checkout Session {id} is not open."),
            ));
        }
        if session.mode == SessionMode::Subscription {
            return self.complete_subscription_session(id, card, email, async_payment);
        }
        let email = self.payer_email(session, email);
        let instrument = if async_payment {
            Instrument::UsBankAccount
        } else {
            Instrument::Card(cards::test_card(card).ok_or_else(|| {
                ApiError::invalid(
                    "card",
                    format!("Unknown test card {card}: use one of Stripe's pm_card_* tokens."),
                )
            })?)
        };
        // Checkout's invoice needs a customer, as a saved card does.
        let wants_customer = session.intent_data.setup_future_usage.is_some()
            || session.customer_creation.as_deref() == Some("always")
            || session.invoice_creation.is_some();
        let (amount, currency, types, details) = (
            session.amount_total,
            session.currency.clone(),
            session.payment_method_types.clone(),
            session.intent_data.clone(),
        );
        let customer = match session.customer.clone() {
            Some(customer) => Some(customer),
            None if wants_customer => Some(
                self.create_customer(NewCustomer {
                    email: Some(email.clone()),
                    name: None,
                    description: None,
                    phone: None,
                    metadata: Metadata::new(),
                })
                .id
                .clone(),
            ),
            None => None,
        };
        let pm_id = self.new_payment_method(instrument, Some(email.clone()));
        let pi_id = self.insert_intent(amount, currency, customer.clone(), Some(pm_id), types, details);
        if let Some(session) = self.sessions.get_mut(id) {
            session.payment_intent = Some(pi_id.clone());
        }
        // A declined card leaves the session open, as the payment page lets the payer retry.
        self.confirm_authenticated(&pi_id, &Origin::default())?;
        let paid = self.intent(&pi_id)?.status == IntentStatus::Succeeded;
        let session = self
            .sessions
            .get_mut(id)
            .ok_or_else(|| ApiError::no_such("checkout.session", id, None))?;
        session.status = SessionStatus::Complete;
        session.paid = paid;
        session.customer = customer;
        session.payer_email = Some(email);
        let invoice = if paid { self.invoice_session(id)? } else { None };
        let snapshot = self.session(id)?.to_json();
        self.hooks
            .emit("checkout.session.completed", snapshot, &Origin::default());
        if let Some(invoice) = invoice {
            self.mark_invoice_paid(&invoice, Payment::Intent(&pi_id), &Origin::default())?;
        }
        Ok(())
    }

    /// The bank's verdict on a session paid with a delayed method.
    pub fn settle_async_payment(&mut self, id: &str, succeeded: bool) -> Result<(), ApiError> {
        let session = self.session(id)?;
        let pi_id = session.payment_intent.clone().unwrap_or_default();
        let processing = self
            .intents
            .get(&pi_id)
            .is_some_and(|pi| pi.status == IntentStatus::Processing);
        if session.status != SessionStatus::Complete || session.paid || !processing {
            return Err(ApiError::invalid(
                "session",
                format!(
                    "Checkout Session {id} has no payment waiting for the bank (complete it with async=true first)."
                ),
            ));
        }
        let origin = Origin::default();
        let mut invoice = None;
        let kind = if succeeded {
            self.succeed(&pi_id, &origin)?;
            invoice = self.invoice_session(id)?;
            "checkout.session.async_payment_succeeded"
        } else {
            self.fail(
                &pi_id,
                "insufficient_funds",
                None,
                "The customer's account has insufficient funds to cover this payment.",
                &origin,
            );
            "checkout.session.async_payment_failed"
        };
        let session = self
            .sessions
            .get_mut(id)
            .ok_or_else(|| ApiError::no_such("checkout.session", id, None))?;
        session.paid = succeeded;
        let snapshot = session.to_json();
        self.hooks.emit(kind, snapshot, &origin);
        if let Some(invoice) = invoice {
            self.mark_invoice_paid(&invoice, Payment::Intent(&pi_id), &origin)?;
        }
        Ok(())
    }

    /// A refund of a succeeded charge, named directly or through its PaymentIntent.
    pub fn refund(
        &mut self,
        charge: Option<&str>,
        payment_intent: Option<&str>,
        amount: Option<i64>,
        reason: Option<String>,
        metadata: Metadata,
        origin: &Origin,
    ) -> Result<Value, ApiError> {
        let charge_id = match (charge, payment_intent) {
            (Some(charge), _) => self.charge(charge, Some("charge"))?.id.clone(),
            (None, Some(pi)) => {
                let intent = self
                    .intents
                    .get(pi)
                    .ok_or_else(|| ApiError::no_such("payment_intent", pi, Some("payment_intent")))?;
                match (intent.status, &intent.latest_charge) {
                    (IntentStatus::Succeeded, Some(charge)) => charge.clone(),
                    _ => {
                        return Err(ApiError::invalid(
                            "payment_intent",
                            format!("PaymentIntent {pi} does not have a successful charge to refund."),
                        ));
                    }
                }
            }
            (None, None) => {
                return Err(ApiError::invalid_code(
                    "parameter_missing",
                    "charge",
                    "One of the following params should be provided for this request: charge or payment_intent.",
                ));
            }
        };
        let charge = self.charge(&charge_id, Some("charge"))?;
        if !charge.succeeded() {
            return Err(ApiError::invalid(
                "charge",
                format!("Charge {charge_id} did not succeed and cannot be refunded."),
            ));
        }
        let remaining = charge.amount - charge.amount_refunded();
        if remaining == 0 {
            return Err(ApiError::invalid_code(
                "charge_already_refunded",
                "charge",
                format!("Charge {charge_id} has already been refunded."),
            ));
        }
        let amount = amount.unwrap_or(remaining);
        if amount <= 0 {
            return Err(ApiError::invalid(
                "amount",
                "Refund amount must be a positive integer.",
            ));
        }
        if amount > remaining {
            return Err(ApiError::invalid_code(
                "amount_too_large",
                "amount",
                format!(
                    "Refund amount ({}) is greater than unrefunded amount on charge ({}).",
                    cents(amount),
                    cents(remaining)
                ),
            ));
        }
        let refund = Refund {
            id: new_id("re_", 24),
            created: now(),
            amount,
            reason,
            metadata,
            balance_transaction: new_id("txn_", 24),
            failure_reason: None,
        };
        let charge = self
            .charges
            .get_mut(&charge_id)
            .ok_or_else(|| ApiError::no_such("charge", &charge_id, None))?;
        let refund_json = charge.refund_json(&refund);
        charge.refunds.push(refund);
        let snapshot = charge.to_json();
        self.hooks.emit("charge.refunded", snapshot, origin);
        Ok(refund_json)
    }

    /// The customer's bank returns a refund (a closed card account, say): the refund fails,
    /// its amount counts as not refunded again, and Stripe tells with
    /// `charge.refund.updated` and `refund.failed`.
    pub fn fail_refund(&mut self, refund_id: &str, reason: &str) -> Result<Value, ApiError> {
        let charge = self
            .charges
            .values_mut()
            .find(|c| c.refunds.iter().any(|r| r.id == refund_id))
            .ok_or_else(|| ApiError::no_such("refund", refund_id, None))?;
        let index = charge
            .refunds
            .iter()
            .position(|r| r.id == refund_id)
            .ok_or_else(|| ApiError::no_such("refund", refund_id, None))?;
        if !charge.refunds[index].stands() {
            return Err(ApiError::invalid(
                "refund",
                format!("Refund {refund_id} has already failed."),
            ));
        }
        charge.refunds[index].failure_reason = Some(reason.to_owned());
        let refund = charge.refund_json(&charge.refunds[index]);
        let origin = Origin::default();
        self.hooks.emit("charge.refund.updated", refund.clone(), &origin);
        self.hooks.emit("refund.failed", refund.clone(), &origin);
        Ok(refund)
    }

    pub fn dispute(&mut self, charge_id: &str, reason: &str) -> Result<Value, ApiError> {
        let charge = self.charge(charge_id, Some("charge"))?;
        if !charge.succeeded() || charge.disputed {
            return Err(ApiError::invalid(
                "charge",
                format!("Charge {charge_id} cannot be disputed (failed or already disputed)."),
            ));
        }
        let id = new_id("dp_", 24);
        let charge = self
            .charges
            .get_mut(charge_id)
            .ok_or_else(|| ApiError::no_such("charge", charge_id, None))?;
        charge.disputed = true;
        let dispute = Dispute {
            id: &id,
            created: now(),
            charge,
            reason,
        }
        .to_json();
        self.hooks
            .emit("charge.dispute.created", dispute.clone(), &Origin::default());
        Ok(dispute)
    }

    /// Pays a subscription's invoice. A positive amount is charged to a card (a
    /// PaymentIntent with no metadata, as Stripe makes for invoices: its charge can be
    /// refunded or disputed) and named by an `invoice_payment.paid` event; a $0 invoice (a
    /// trial, a 100% coupon) is paid without any payment. The subscription, price and
    /// product are only names here: they need not exist in the simulator.
    pub fn pay_invoice(&mut self, new: NewInvoice) -> Result<Value, ApiError> {
        if new.amount < 0 {
            return Err(ApiError::invalid(
                "amount",
                "The invoice amount must be a non-negative integer (cents).",
            ));
        }
        self.customer(&new.customer, Some("customer"))?;
        let created = now();
        let period_start = new.period_start.unwrap_or(created);
        let period_end = match new.period_end {
            Some(end) => end,
            None => Interval::Month.add(period_start, 1),
        };
        let subscription = new.subscription.unwrap_or_else(|| new_id("sub_", 24));
        let price = new.price.unwrap_or_else(|| new_id("price_", 24));
        let product = new.product.unwrap_or_else(|| new_id("prod_", 14));
        let line = InvoiceLine {
            id: new_id("il_", 24),
            amount: new.amount,
            description: "1 × subscription".to_owned(),
            period_start,
            period_end,
            price: Some((price, product)),
            parent: LineParent::SubscriptionItem {
                subscription: subscription.clone(),
                item: new_id("si_", 14),
                proration: false,
            },
            metadata: new.metadata.clone(),
        };
        let invoice_id = self.insert_invoice(NewBill {
            customer: new.customer.clone(),
            currency: new.currency.clone(),
            billing_reason: new
                .billing_reason
                .unwrap_or_else(|| "subscription_cycle".to_owned()),
            subscription: Some((subscription, new.metadata)),
            lines: vec![line],
            period: Some((period_start, period_start)),
            ..Default::default()
        });
        self.finalize(&invoice_id);
        let payment = if new.amount > 0 {
            let pm = self.resolve_payment_method("pm_card_visa", "payment_method")?;
            let pi = self.insert_intent(
                new.amount,
                new.currency.clone(),
                Some(new.customer.clone()),
                Some(pm),
                vec!["card".to_owned()],
                IntentDetails::default(),
            );
            self.succeed(&pi, &Origin::default())?;
            Some(pi)
        } else {
            None
        };
        let payment = match &payment {
            Some(pi) => Payment::Intent(pi),
            None => Payment::Nothing,
        };
        self.mark_invoice_paid(&invoice_id, payment, &Origin::default())?;
        let invoice = self
            .invoices
            .get(&invoice_id)
            .ok_or_else(|| ApiError::no_such("invoice", &invoice_id, None))?;
        Ok(self.invoice_json(invoice))
    }

    /// Makes a stored payment method behave as another test card from now on, e.g. a
    /// saved card that starts to decline.
    pub fn set_card(&mut self, pm_id: &str, token: &str) -> Result<Value, ApiError> {
        let card = cards::test_card(token).ok_or_else(|| {
            ApiError::invalid(
                "card",
                format!("Unknown test card {token}: use one of Stripe's pm_card_* tokens."),
            )
        })?;
        let pm = self
            .payment_methods
            .get_mut(pm_id)
            .ok_or_else(|| ApiError::no_such("PaymentMethod", pm_id, None))?;
        pm.instrument = Instrument::Card(card);
        Ok(pm.to_json())
    }
}

fn check_amount(amount: i64, currency: &str, param: &str) -> Result<(), ApiError> {
    if currency == "usd" && amount < MINIMUM_USD_AMOUNT {
        return Err(ApiError::invalid_code(
            "amount_too_small",
            param,
            "Amount must be at least $0.50 usd",
        ));
    }
    if amount <= 0 {
        return Err(ApiError::invalid_code(
            "amount_too_small",
            param,
            "Amount must be a positive integer.",
        ));
    }
    if amount > MAXIMUM_AMOUNT {
        return Err(amount_too_large(param));
    }
    Ok(())
}

fn amount_too_large(param: &str) -> ApiError {
    ApiError::invalid_code(
        "amount_too_large",
        param,
        "Amount must be no more than $999,999.99",
    )
}

pub(crate) fn cents(amount: i64) -> String {
    format!("${}.{:02}", amount / 100, amount % 100)
}
