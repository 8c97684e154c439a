//! The Stripe objects the simulator keeps, and their JSON as Stripe renders it. Every object
//! carries Stripe's full set of top-level field names (see `tests/fixture_shapes.rs`); the
//! fields the simulator does not model are `null`, which async-stripe reads as `None`.

use serde_json::{Value, json};

use crate::cards::TestCard;
use crate::form::Metadata;

pub(crate) fn with_unmodelled(mut fields: Value, unmodelled: &[&str]) -> Value {
    if let Value::Object(map) = &mut fields {
        for name in unmodelled {
            map.entry(*name).or_insert(Value::Null);
        }
    }
    fields
}

pub(crate) struct Customer {
    pub id: String,
    pub created: i64,
    pub seq: u64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub metadata: Metadata,
    pub invoice_prefix: String,
}

impl Customer {
    pub fn to_json(&self) -> Value {
        with_unmodelled(
            json!({
                "id": self.id, "object": "customer", "balance": 0, "created": self.created,
                "delinquent": false, "description": self.description, "email": self.email,
                "invoice_prefix": self.invoice_prefix,
                "invoice_settings": {
                    "custom_fields": null, "default_payment_method": null, "footer": null,
                    "rendering_options": null
                },
                "livemode": false, "metadata": self.metadata, "name": self.name,
                "next_invoice_sequence": 1, "phone": self.phone, "preferred_locales": [],
                "tax_exempt": "none",
            }),
            &[
                "address",
                "currency",
                "default_source",
                "discount",
                "shipping",
                "test_clock",
            ],
        )
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Instrument {
    Card(&'static TestCard),
    /// A delayed-notification method: the payment stays `processing` until settled through
    /// the control API.
    UsBankAccount,
}

pub(crate) struct PaymentMethod {
    pub id: String,
    pub created: i64,
    pub seq: u64,
    pub instrument: Instrument,
    pub customer: Option<String>,
    pub email: Option<String>,
}

impl PaymentMethod {
    pub fn kind(&self) -> &'static str {
        match self.instrument {
            Instrument::Card(_) => "card",
            Instrument::UsBankAccount => "us_bank_account",
        }
    }

    pub fn to_json(&self) -> Value {
        let mut object = with_unmodelled(
            json!({
                "id": self.id, "object": "payment_method", "allow_redisplay": "unspecified",
                "billing_details": {
                    "address": null, "email": self.email, "name": null, "phone": null, "tax_id": null
                },
                "created": self.created, "customer": self.customer, "livemode": false,
                "metadata": {}, "type": self.kind(), "card": null,
            }),
            &["customer_account"],
        );
        match self.instrument {
            Instrument::Card(card) => {
                object["card"] = json!({
                    "brand": card.brand,
                    "checks": {
                        "address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass"
                    },
                    "country": "US", "display_brand": card.brand, "exp_month": 12, "exp_year": 2034,
                    "fingerprint": card.fingerprint, "funding": "credit", "generated_from": null,
                    "last4": card.last4,
                    "networks": {"available": [card.brand], "preferred": null},
                    "regulated_status": "unregulated",
                    "three_d_secure_usage": {"supported": true}, "wallet": null,
                });
            }
            Instrument::UsBankAccount => {
                object["us_bank_account"] = json!({
                    "account_holder_type": "individual", "account_type": "checking",
                    "bank_name": "STRIPE TEST BANK", "financial_connections_account": null,
                    "fingerprint": "simBank6789xxxxx", "last4": "6789", "networks": null,
                    "routing_number": "110000000", "status_details": null,
                });
            }
        }
        object
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SessionStatus {
    Open,
    Complete,
}

pub(crate) struct LineItem {
    pub name: String,
    pub unit_amount: i64,
    pub quantity: i64,
    /// The simulated Price it was made from (`line_items[i][price]`), if any.
    pub price: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SessionMode {
    Payment,
    Subscription,
}

impl SessionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::Payment => "payment",
            SessionMode::Subscription => "subscription",
        }
    }
}

/// A payment-mode session's `invoice_creation[invoice_data]`: the paid invoice Checkout
/// makes for the payment.
#[derive(Clone, Default)]
pub(crate) struct InvoiceData {
    pub description: Option<String>,
    pub metadata: Metadata,
}

pub(crate) struct Session {
    pub id: String,
    pub created: i64,
    pub mode: SessionMode,
    pub expires_at: i64,
    pub status: SessionStatus,
    pub paid: bool,
    pub amount_total: i64,
    pub currency: String,
    pub customer: Option<String>,
    pub customer_email: Option<String>,
    pub customer_creation: Option<String>,
    /// The payer's email once they have completed the session.
    pub payer_email: Option<String>,
    pub client_reference_id: Option<String>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub metadata: Metadata,
    pub payment_intent: Option<String>,
    pub payment_method_types: Vec<String>,
    pub line_items: Vec<LineItem>,
    /// `payment_intent_data`: given to the PaymentIntent the payment creates.
    pub intent_data: IntentDetails,
    /// `subscription_data[metadata]`: the subscription a subscription-mode session creates.
    pub subscription_metadata: Metadata,
    /// `invoice_creation` when enabled (payment mode).
    pub invoice_creation: Option<InvoiceData>,
    pub subscription: Option<String>,
    pub invoice: Option<String>,
    pub url: String,
}

/// What a PaymentIntent is created with, directly or through a session's
/// `payment_intent_data`.
#[derive(Clone, Default)]
pub(crate) struct IntentDetails {
    pub metadata: Metadata,
    pub description: Option<String>,
    /// `off_session` or `on_session`: save the payment method on the customer on success.
    pub setup_future_usage: Option<String>,
    pub receipt_email: Option<String>,
}

impl Session {
    pub fn to_json(&self) -> Value {
        let open = self.status == SessionStatus::Open;
        let invoice_creation = match (self.mode, &self.invoice_creation) {
            (SessionMode::Subscription, _) => Value::Null,
            (SessionMode::Payment, creation) => {
                let data = creation.clone().unwrap_or_default();
                json!({
                    "enabled": creation.is_some(),
                    "invoice_data": {
                        "account_tax_ids": null, "custom_fields": null, "description": data.description,
                        "footer": null, "issuer": null, "metadata": data.metadata, "rendering_options": null
                    }
                })
            }
        };
        let customer_details = self.payer_email.as_ref().map(|email| {
            json!({
                "address": null, "business_name": null, "email": email, "individual_name": null,
                "name": null, "phone": null, "tax_exempt": "none", "tax_ids": []
            })
        });
        with_unmodelled(
            json!({
                "id": self.id, "object": "checkout.session",
                "amount_subtotal": self.amount_total, "amount_total": self.amount_total,
                "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
                "cancel_url": self.cancel_url, "client_reference_id": self.client_reference_id,
                "created": self.created, "currency": self.currency,
                "custom_fields": [],
                "custom_text": {
                    "after_submit": null, "shipping_address": null, "submit": null,
                    "terms_of_service_acceptance": null
                },
                "customer": self.customer, "customer_creation": self.customer_creation,
                "customer_details": customer_details, "customer_email": self.customer_email,
                "discounts": [], "expires_at": self.expires_at, "invoice": self.invoice,
                "invoice_creation": invoice_creation, "livemode": false,
                "metadata": self.metadata, "mode": self.mode.as_str(),
                "payment_intent": self.payment_intent,
                "payment_method_types": self.payment_method_types,
                "payment_status": if self.paid { "paid" } else { "unpaid" },
                "phone_number_collection": {"enabled": false},
                "shipping_options": [],
                "status": if open { "open" } else { "complete" },
                "subscription": self.subscription, "success_url": self.success_url,
                "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
                "ui_mode": "hosted",
                // Stripe withdraws the payment page once the session is complete.
                "url": if open { Some(&self.url) } else { None },
            }),
            &[
                "adaptive_pricing",
                "after_expiration",
                "allow_promotion_codes",
                "billing_address_collection",
                "client_secret",
                "collected_information",
                "consent",
                "consent_collection",
                "currency_conversion",
                "customer_account",
                "integration_identifier",
                "locale",
                "managed_payments",
                "origin_context",
                "payment_link",
                "payment_method_collection",
                "payment_method_configuration_details",
                "payment_method_options",
                "permissions",
                "recovered_from",
                "saved_payment_method_options",
                "setup_intent",
                "shipping_address_collection",
                "shipping_cost",
                "submit_type",
                "wallet_options",
            ],
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum IntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    Succeeded,
}

impl IntentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentStatus::RequiresPaymentMethod => "requires_payment_method",
            IntentStatus::RequiresConfirmation => "requires_confirmation",
            IntentStatus::RequiresAction => "requires_action",
            IntentStatus::Processing => "processing",
            IntentStatus::Succeeded => "succeeded",
        }
    }
}

pub(crate) struct Intent {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub amount_received: i64,
    pub currency: String,
    pub customer: Option<String>,
    pub payment_method: Option<String>,
    pub payment_method_types: Vec<String>,
    pub status: IntentStatus,
    pub metadata: Metadata,
    pub description: Option<String>,
    pub setup_future_usage: Option<String>,
    pub receipt_email: Option<String>,
    pub latest_charge: Option<String>,
    /// `last_payment_error`: Stripe's error object from the last failed attempt.
    pub last_error: Option<Value>,
    pub client_secret: String,
}

impl Intent {
    pub fn to_json(&self) -> Value {
        let next_action = (self.status == IntentStatus::RequiresAction).then(
            || json!({"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}),
        );
        with_unmodelled(
            json!({
                "id": self.id, "object": "payment_intent", "amount": self.amount,
                "amount_capturable": 0, "amount_received": self.amount_received,
                "capture_method": "automatic_async", "client_secret": self.client_secret,
                "confirmation_method": "automatic", "created": self.created, "currency": self.currency,
                "customer": self.customer, "description": self.description,
                "last_payment_error": self.last_error, "latest_charge": self.latest_charge,
                "livemode": false, "metadata": self.metadata, "next_action": next_action,
                "payment_method": self.payment_method,
                "payment_method_types": self.payment_method_types,
                "receipt_email": self.receipt_email,
                "setup_future_usage": self.setup_future_usage, "status": self.status.as_str(),
            }),
            &[
                "amount_details",
                "application",
                "application_fee_amount",
                "automatic_payment_methods",
                "canceled_at",
                "cancellation_reason",
                "customer_account",
                "excluded_payment_method_types",
                "managed_payments",
                "on_behalf_of",
                "payment_method_configuration_details",
                "payment_method_options",
                "processing",
                "review",
                "shipping",
                "source",
                "statement_descriptor",
                "statement_descriptor_suffix",
                "transfer_data",
                "transfer_group",
            ],
        )
    }
}

pub(crate) struct Failure {
    pub code: &'static str,
    pub decline_code: Option<&'static str>,
    pub message: String,
}

pub(crate) struct Refund {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub reason: Option<String>,
    pub metadata: Metadata,
    pub balance_transaction: String,
    /// `None` while it stands (Stripe's `succeeded`); the bank's reason once it failed.
    pub failure_reason: Option<String>,
}

impl Refund {
    /// Whether it still moves money back to the customer (a failed refund does not).
    pub fn stands(&self) -> bool {
        self.failure_reason.is_none()
    }
}

pub(crate) struct Charge {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub currency: String,
    pub customer: Option<String>,
    pub payment_intent: String,
    pub payment_method: String,
    pub email: Option<String>,
    pub metadata: Metadata,
    /// None for a charge that succeeded.
    pub failure: Option<Failure>,
    pub balance_transaction: Option<String>,
    pub refunds: Vec<Refund>,
    pub disputed: bool,
}

impl Charge {
    pub fn amount_refunded(&self) -> i64 {
        self.refunds.iter().filter(|r| r.stands()).map(|r| r.amount).sum()
    }

    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }

    pub fn refund_json(&self, refund: &Refund) -> Value {
        let mut json = with_unmodelled(
            json!({
                "id": refund.id, "object": "refund", "amount": refund.amount,
                "balance_transaction": refund.balance_transaction, "charge": self.id,
                "created": refund.created, "currency": self.currency, "metadata": refund.metadata,
                "payment_intent": self.payment_intent, "reason": refund.reason,
                "status": if refund.stands() { "succeeded" } else { "failed" },
            }),
            &[
                "customer",
                "customer_account",
                "destination_details",
                "payment_method",
                "receipt_number",
                "source_transfer_reversal",
                "transfer_reversal",
            ],
        );
        // Stripe sends `failure_reason` only on a refund that failed.
        if let (Some(reason), Some(fields)) = (&refund.failure_reason, json.as_object_mut()) {
            fields.insert("failure_reason".to_owned(), Value::String(reason.clone()));
        }
        json
    }

    pub fn to_json(&self) -> Value {
        let outcome = match &self.failure {
            None => json!({
                "advice_code": null, "network_advice_code": null, "network_decline_code": null,
                "network_status": "approved_by_network", "reason": null,
                "seller_message": "Payment complete.", "type": "authorized"
            }),
            Some(failure) => json!({
                "advice_code": null, "network_advice_code": null, "network_decline_code": null,
                "network_status": "declined_by_network",
                "reason": failure.decline_code.unwrap_or(failure.code),
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined"
            }),
        };
        let refunded = self.amount_refunded();
        let refunds: Vec<Value> = self.refunds.iter().rev().map(|r| self.refund_json(r)).collect();
        with_unmodelled(
            json!({
                "id": self.id, "object": "charge", "amount": self.amount,
                "amount_captured": if self.succeeded() { self.amount } else { 0 },
                "amount_refunded": refunded, "balance_transaction": self.balance_transaction,
                "billing_details": {
                    "address": null, "email": self.email, "name": null, "phone": null, "tax_id": null
                },
                "captured": self.succeeded(), "created": self.created, "currency": self.currency,
                "customer": self.customer, "disputed": self.disputed,
                "failure_code": self.failure.as_ref().map(|f| f.code),
                "failure_message": self.failure.as_ref().map(|f| &f.message),
                "fraud_details": {}, "livemode": false, "metadata": self.metadata,
                "outcome": outcome, "paid": self.succeeded(), "payment_intent": self.payment_intent,
                "payment_method": self.payment_method,
                "refunded": self.succeeded() && refunded == self.amount,
                "refunds": {
                    "object": "list", "data": refunds, "has_more": false,
                    "url": format!("/v1/charges/{}/refunds", self.id)
                },
                "status": if self.succeeded() { "succeeded" } else { "failed" },
            }),
            &[
                "application",
                "application_fee",
                "application_fee_amount",
                "calculated_statement_descriptor",
                "description",
                "failure_balance_transaction",
                "on_behalf_of",
                "payment_method_details",
                "receipt_email",
                "receipt_number",
                "receipt_url",
                "review",
                "shipping",
                "source",
                "source_transfer",
                "statement_descriptor",
                "statement_descriptor_suffix",
                "transfer_data",
                "transfer_group",
            ],
        )
    }
}

pub(crate) struct Dispute<'a> {
    pub id: &'a str,
    pub created: i64,
    pub charge: &'a Charge,
    pub reason: &'a str,
}

impl Dispute<'_> {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "object": "dispute", "amount": self.charge.amount,
            "balance_transactions": [], "charge": self.charge.id, "created": self.created,
            "currency": self.charge.currency, "enhanced_eligibility_types": [],
            "evidence": {"enhanced_evidence": {}},
            "evidence_details": {
                "due_by": self.created + 7 * 86_400, "enhanced_eligibility": {},
                "has_evidence": false, "past_due": false, "submission_count": 0
            },
            "is_charge_refundable": false, "livemode": false, "metadata": {},
            "payment_intent": self.charge.payment_intent, "payment_method_details": null,
            "reason": self.reason, "status": "needs_response",
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Interval {
    Month,
    Year,
}

impl Interval {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "month" => Some(Interval::Month),
            "year" => Some(Interval::Year),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Month => "month",
            Interval::Year => "year",
        }
    }

    /// `from` plus `n` whole intervals, in calendar months as Stripe bills (Jan 31 + 1 month
    /// is Feb 28; + 2 is Mar 31).
    pub fn add(self, from: i64, n: u32) -> i64 {
        let months = match self {
            Interval::Month => n,
            Interval::Year => n.saturating_mul(12),
        };
        chrono::DateTime::from_timestamp(from, 0)
            .and_then(|start| start.checked_add_months(chrono::Months::new(months)))
            .map_or(from + i64::from(months) * 30 * 86_400, |end| end.timestamp())
    }
}

/// A price the account sells (the simulator's control API defines them), with its product.
pub(crate) struct Price {
    pub id: String,
    pub created: i64,
    pub product: String,
    /// The product's name.
    pub name: Option<String>,
    pub unit_amount: i64,
    pub currency: String,
    /// `None` for a one-time price.
    pub interval: Option<Interval>,
}

impl Price {
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    pub fn to_json(&self) -> Value {
        let recurring = self.interval.map(|interval| {
            json!({
                "interval": interval.as_str(), "interval_count": 1, "meter": null,
                "trial_period_days": null, "usage_type": "licensed"
            })
        });
        json!({
            "id": self.id, "object": "price", "active": true, "billing_scheme": "per_unit",
            "created": self.created, "currency": self.currency, "custom_unit_amount": null,
            "livemode": false, "lookup_key": null, "metadata": {}, "nickname": self.name,
            "product": self.product, "recurring": recurring, "tax_behavior": "unspecified",
            "tiers_mode": null, "transform_quantity": null,
            "type": if self.interval.is_some() { "recurring" } else { "one_time" },
            "unit_amount": self.unit_amount, "unit_amount_decimal": self.unit_amount.to_string(),
        })
    }

    /// The legacy `plan` view of a recurring price, which subscription items still carry.
    pub fn plan_json(&self) -> Value {
        json!({
            "id": self.id, "object": "plan", "active": true, "amount": self.unit_amount,
            "amount_decimal": self.unit_amount.to_string(), "billing_scheme": "per_unit",
            "created": self.created, "currency": self.currency,
            "interval": self.interval.unwrap_or(Interval::Month).as_str(), "interval_count": 1,
            "livemode": false, "metadata": {}, "meter": null, "nickname": self.name,
            "product": self.product, "tiers_mode": null, "transform_usage": null,
            "trial_period_days": null, "usage_type": "licensed",
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SubscriptionStatus {
    Active,
    /// Its latest invoice could not be paid.
    PastDue,
    Canceled,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Canceled => "canceled",
        }
    }
}

/// A subscription with one item of quantity 1.
pub(crate) struct Subscription {
    pub id: String,
    pub created: i64,
    pub seq: u64,
    pub customer: String,
    pub currency: String,
    pub status: SubscriptionStatus,
    pub metadata: Metadata,
    pub default_payment_method: Option<String>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub item_id: String,
    pub item_created: i64,
    pub price: String,
    /// Periods are whole intervals from here.
    pub billing_cycle_anchor: i64,
    pub current_period_start: i64,
    pub current_period_end: i64,
    pub latest_invoice: Option<String>,
}

impl Subscription {
    pub fn item_json(&self, price: &Price) -> Value {
        json!({
            "id": self.item_id, "object": "subscription_item", "billing_thresholds": null,
            "created": self.item_created, "current_period_end": self.current_period_end,
            "current_period_start": self.current_period_start, "discounts": [], "metadata": {},
            "plan": price.plan_json(), "price": price.to_json(), "quantity": 1,
            "subscription": self.id, "tax_rates": [],
        })
    }

    pub fn to_json(&self, price: &Price) -> Value {
        let requested = self.cancel_at_period_end || self.status == SubscriptionStatus::Canceled;
        let mut subscription = json!({
            "id": self.id, "object": "subscription", "application": null,
            "application_fee_percent": null,
            "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
            "billing_cycle_anchor": self.billing_cycle_anchor, "billing_cycle_anchor_config": null,
            "billing_mode": {"flexible": null, "type": "classic"}, "billing_schedules": [],
            "billing_thresholds": null,
            "cancel_at": self.cancel_at_period_end.then_some(self.current_period_end),
            "cancel_at_period_end": self.cancel_at_period_end, "canceled_at": self.canceled_at,
            "cancellation_details": {
                "comment": null, "feedback": null,
                "reason": requested.then_some("cancellation_requested")
            },
            "collection_method": "charge_automatically", "created": self.created,
            "currency": self.currency, "customer": self.customer, "customer_account": null,
            "days_until_due": null, "default_payment_method": self.default_payment_method,
            "default_source": null, "default_tax_rates": [], "description": null, "discounts": [],
            "ended_at": self.ended_at,
        });
        let rest = json!({
            "invoice_settings": {
                "account_tax_ids": null, "custom_fields": null, "description": null, "footer": null,
                "issuer": {"type": "self"}
            },
            "items": {
                "object": "list", "data": [self.item_json(price)], "has_more": false,
                "url": format!("/v1/subscription_items?subscription={}", self.id)
            },
            "latest_invoice": self.latest_invoice, "livemode": false, "managed_payments": null,
            "metadata": self.metadata, "next_pending_invoice_item_invoice": null,
            "on_behalf_of": null, "pause_collection": null,
            "payment_settings": {
                "payment_method_options": null, "payment_method_types": null,
                "save_default_payment_method": "off"
            },
            "pending_invoice_item_interval": null, "pending_setup_intent": null,
            "pending_update": null, "schedule": null, "start_date": self.created,
            "status": self.status.as_str(), "test_clock": null, "transfer_data": null,
            "trial_end": null,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": null,
        });
        if let (Value::Object(subscription), Value::Object(rest)) = (&mut subscription, rest) {
            subscription.extend(rest);
        }
        subscription
    }
}

/// What a line of an invoice bills for.
#[derive(Clone)]
pub(crate) enum LineParent {
    SubscriptionItem {
        subscription: String,
        item: String,
        proration: bool,
    },
    InvoiceItem {
        invoice_item: String,
    },
}

#[derive(Clone)]
pub(crate) struct InvoiceLine {
    pub id: String,
    pub amount: i64,
    pub description: String,
    pub period_start: i64,
    pub period_end: i64,
    /// The price and its product, if the line is for one.
    pub price: Option<(String, String)>,
    pub parent: LineParent,
    pub metadata: Metadata,
}

impl InvoiceLine {
    pub fn to_json(&self, invoice: &str, currency: &str) -> Value {
        let parent = match &self.parent {
            LineParent::SubscriptionItem {
                subscription,
                item,
                proration,
            } => json!({
                "type": "subscription_item_details", "invoice_item_details": null,
                "subscription_item_details": {
                    "invoice_item": null, "proration": proration,
                    "proration_details": {"credited_items": null},
                    "subscription": subscription, "subscription_item": item
                }
            }),
            LineParent::InvoiceItem { invoice_item } => json!({
                "type": "invoice_item_details", "subscription_item_details": null,
                "invoice_item_details": {
                    "invoice_item": invoice_item, "proration": false,
                    "proration_details": {"credited_items": null}, "subscription": null
                }
            }),
        };
        let pricing = self.price.as_ref().map(|(price, product)| {
            json!({
                "type": "price_details",
                "price_details": {"price": price, "product": product},
                "unit_amount_decimal": self.amount.to_string()
            })
        });
        json!({
            "id": self.id, "object": "line_item", "amount": self.amount, "currency": currency,
            "description": self.description, "discount_amounts": [], "discountable": true,
            "discounts": [], "invoice": invoice, "livemode": false, "metadata": self.metadata,
            "parent": parent,
            "period": {"start": self.period_start, "end": self.period_end},
            "pretax_credit_amounts": [], "pricing": pricing, "quantity": 1, "quantity_decimal": "1",
            "subscription": null, "subtotal": self.amount, "taxes": [],
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum InvoiceStatus {
    Draft,
    Open,
    Paid,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Open => "open",
            InvoiceStatus::Paid => "paid",
        }
    }
}

pub(crate) struct Invoice {
    pub id: String,
    pub created: i64,
    pub seq: u64,
    pub customer: String,
    pub currency: String,
    pub status: InvoiceStatus,
    /// Assigned when it is finalized.
    pub number: Option<String>,
    pub billing_reason: String,
    pub collection_method: String,
    pub auto_advance: bool,
    pub due_date: Option<i64>,
    pub description: Option<String>,
    pub metadata: Metadata,
    /// The subscription it bills (`parent.subscription_details`) and its metadata then.
    pub subscription: Option<(String, Metadata)>,
    pub lines: Vec<InvoiceLine>,
    pub period_start: i64,
    pub period_end: i64,
    pub finalized_at: Option<i64>,
    pub paid_at: Option<i64>,
    pub amount_paid: i64,
    pub attempt_count: u64,
    pub paid_out_of_band: bool,
    /// The hosted page and its PDF, once finalized.
    pub hosted_invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
}

impl Invoice {
    pub fn total(&self) -> i64 {
        self.lines.iter().map(|line| line.amount).sum()
    }

    /// What the customer owes: a negative total (a credit) owes nothing.
    pub fn amount_due(&self) -> i64 {
        self.total().max(0)
    }

    pub fn amount_remaining(&self) -> i64 {
        match self.status {
            InvoiceStatus::Paid => 0,
            _ => self.amount_due() - self.amount_paid,
        }
    }

    pub fn subscription_id(&self) -> Option<&str> {
        self.subscription.as_ref().map(|(id, _)| id.as_str())
    }

    pub fn to_json(&self, customer: Option<&Customer>) -> Value {
        let total = self.total();
        let lines: Vec<Value> = self
            .lines
            .iter()
            .map(|line| line.to_json(&self.id, &self.currency))
            .collect();
        // Since API 2025-03-31 the subscription is named here, not in `subscription`.
        let parent = self.subscription.as_ref().map(|(subscription, metadata)| {
            json!({
                "type": "subscription_details", "quote_details": null,
                "subscription_details": {"metadata": metadata, "subscription": subscription}
            })
        });
        // Two literals: one would pass serde_json's macro recursion limit.
        let mut invoice = json!({
                "id": self.id, "object": "invoice", "account_country": "US",
                "amount_due": self.amount_due(), "amount_overpaid": 0, "amount_paid": self.amount_paid,
                "amount_remaining": self.amount_remaining(), "amount_shipping": 0,
                "attempt_count": self.attempt_count,
                "attempted": self.attempt_count > 0 || self.status == InvoiceStatus::Paid,
                "auto_advance": self.auto_advance,
                "automatic_tax": {
                    "disabled_reason": null, "enabled": false, "liability": null, "provider": null, "status": null
                },
                "billing_reason": self.billing_reason, "collection_method": self.collection_method,
                "created": self.created, "currency": self.currency, "customer": self.customer,
                "customer_email": customer.and_then(|c| c.email.clone()),
                "customer_name": customer.and_then(|c| c.name.clone()),
                "customer_tax_exempt": "none", "customer_tax_ids": [], "default_tax_rates": [],
                "description": self.description, "discounts": [], "due_date": self.due_date,
                "effective_at": self.finalized_at, "ending_balance": self.finalized_at.map(|_| 0),
                "hosted_invoice_url": self.hosted_invoice_url, "invoice_pdf": self.invoice_pdf,
                "issuer": {"type": "self"},
        });
        let rest = json!({
                "lines": {
                    "object": "list", "data": lines, "has_more": false,
                    "url": format!("/v1/invoices/{}/lines", self.id)
                },
                "livemode": false, "metadata": self.metadata, "number": self.number,
                "parent": parent,
                "payment_settings": {
                    "default_mandate": null, "payment_method_options": null, "payment_method_types": null
                },
                // As Stripe does for a subscription's invoice, the invoice's own period is a
                // point; the period the plan covers is the line's.
                "period_end": self.period_end, "period_start": self.period_start,
                "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0,
                "starting_balance": 0, "status": self.status.as_str(),
                "status_transitions": {
                    "finalized_at": self.finalized_at, "marked_uncollectible_at": null,
                    "paid_at": self.paid_at, "voided_at": null
                },
                "subtotal": total, "subtotal_excluding_tax": total,
                "total": total, "total_discount_amounts": [], "total_excluding_tax": total,
                "total_pretax_credit_amounts": [], "total_taxes": [],
        });
        if let (Value::Object(invoice), Value::Object(rest)) = (&mut invoice, rest) {
            invoice.extend(rest);
        }
        let mut invoice = with_unmodelled(
            invoice,
            &[
                "account_name",
                "account_tax_ids",
                "application",
                "automatically_finalizes_at",
                "custom_fields",
                "customer_account",
                "customer_address",
                "customer_phone",
                "customer_shipping",
                "default_payment_method",
                "default_source",
                "footer",
                "from_invoice",
                "last_finalization_error",
                "latest_revision",
                "next_payment_attempt",
                "on_behalf_of",
                "receipt_number",
                "rendering",
                "shipping_cost",
                "shipping_details",
                "statement_descriptor",
                "subscription",
                "test_clock",
                "webhooks_delivered_at",
            ],
        );
        // Not a field of the invoice in this API version; sent, as the payment's record, only
        // on an invoice paid out of band (as `failure_reason` only on a failed refund).
        if let (true, Some(fields)) = (self.paid_out_of_band, invoice.as_object_mut()) {
            fields.insert("paid_out_of_band".to_owned(), Value::Bool(true));
        }
        invoice
    }
}

/// An amount added to a draft invoice (or pending for the customer's next one).
pub(crate) struct InvoiceItem {
    pub id: String,
    pub created: i64,
    pub customer: String,
    pub invoice: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub description: Option<String>,
    pub metadata: Metadata,
}

impl InvoiceItem {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "object": "invoiceitem", "amount": self.amount, "currency": self.currency,
            "customer": self.customer, "customer_account": null, "date": self.created,
            "description": self.description, "discountable": true, "discounts": [],
            "invoice": self.invoice, "livemode": false, "metadata": self.metadata,
            "net_amount": self.amount, "parent": null,
            "period": {"end": self.created, "start": self.created}, "pricing": null,
            "proration": false, "proration_details": {"credited_items": null}, "quantity": 1,
            "tax_rates": [], "test_clock": null,
        })
    }

    pub fn line(&self) -> InvoiceLine {
        InvoiceLine {
            id: format!("il_{}", self.id.trim_start_matches("ii_")),
            amount: self.amount,
            description: self
                .description
                .clone()
                .unwrap_or_else(|| "Invoice item".to_owned()),
            period_start: self.created,
            period_end: self.created,
            price: None,
            parent: LineParent::InvoiceItem {
                invoice_item: self.id.clone(),
            },
            metadata: self.metadata.clone(),
        }
    }
}

/// A customer's visit to the billing portal.
pub(crate) struct PortalSession {
    pub id: String,
    pub created: i64,
    pub customer: String,
    pub return_url: Option<String>,
    pub url: String,
}

impl PortalSession {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "object": "billing_portal.session", "configuration": "bpc_sim",
            "created": self.created, "customer": self.customer, "flow": null, "livemode": false,
            "locale": null, "on_behalf_of": null, "return_url": self.return_url, "url": self.url,
        })
    }
}
