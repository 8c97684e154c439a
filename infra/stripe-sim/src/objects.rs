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
}

pub(crate) struct Session {
    pub id: String,
    pub created: i64,
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
}

impl Session {
    pub fn to_json(&self) -> Value {
        let open = self.status == SessionStatus::Open;
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
                "discounts": [], "expires_at": self.expires_at, "livemode": false,
                "metadata": self.metadata, "mode": "payment",
                "payment_intent": self.payment_intent,
                "payment_method_types": self.payment_method_types,
                "payment_status": if self.paid { "paid" } else { "unpaid" },
                "phone_number_collection": {"enabled": false},
                "shipping_options": [],
                "status": if open { "open" } else { "complete" },
                "success_url": self.success_url,
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
                "invoice",
                "invoice_creation",
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
                "subscription",
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
                "receipt_email",
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

/// A paid subscription invoice with one line: what a plan grant reads.
pub(crate) struct Invoice<'a> {
    pub id: &'a str,
    pub line_id: &'a str,
    pub created: i64,
    pub customer: &'a Customer,
    pub subscription: &'a str,
    pub subscription_item: &'a str,
    pub price: &'a str,
    pub product: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub period_start: i64,
    pub period_end: i64,
    pub billing_reason: &'a str,
    pub metadata: &'a Metadata,
}

impl Invoice<'_> {
    pub fn to_json(&self) -> Value {
        let line = json!({
            "id": self.line_id, "object": "line_item", "amount": self.amount, "currency": self.currency,
            "description": "1 × subscription", "discount_amounts": [], "discountable": true,
            "discounts": [], "invoice": self.id, "livemode": false, "metadata": self.metadata,
            "parent": {
                "type": "subscription_item_details", "invoice_item_details": null,
                "subscription_item_details": {
                    "invoice_item": null, "proration": false, "proration_details": null,
                    "subscription": self.subscription, "subscription_item": self.subscription_item
                }
            },
            "period": {"start": self.period_start, "end": self.period_end},
            "pretax_credit_amounts": [],
            "pricing": {
                "type": "price_details",
                "price_details": {"price": self.price, "product": self.product},
                "unit_amount_decimal": self.amount.to_string()
            },
            "quantity": 1, "quantity_decimal": "1", "subscription": null, "subtotal": self.amount,
            "taxes": [],
        });
        // Two literals: one would pass serde_json's macro recursion limit.
        let mut invoice = json!({
                "id": self.id, "object": "invoice", "account_country": "US",
                "amount_due": self.amount, "amount_overpaid": 0, "amount_paid": self.amount,
                "amount_remaining": 0, "amount_shipping": 0, "attempt_count": 1, "attempted": true,
                "auto_advance": false,
                "automatic_tax": {
                    "disabled_reason": null, "enabled": false, "liability": null, "provider": null, "status": null
                },
                "billing_reason": self.billing_reason, "collection_method": "charge_automatically",
                "created": self.created, "currency": self.currency, "customer": self.customer.id,
                "customer_email": self.customer.email, "customer_name": self.customer.name,
                "customer_tax_exempt": "none", "customer_tax_ids": [], "default_tax_rates": [],
                "discounts": [], "effective_at": self.created, "ending_balance": 0,
                "issuer": {"type": "self"},
        });
        let rest = json!({
                "lines": {
                    "object": "list", "data": [line], "has_more": false,
                    "url": format!("/v1/invoices/{}/lines", self.id)
                },
                "livemode": false, "metadata": {},
                // Since API 2025-03-31 the subscription is named here, not in `subscription`.
                "parent": {
                    "type": "subscription_details", "quote_details": null,
                    "subscription_details": {"metadata": self.metadata, "subscription": self.subscription}
                },
                "payment_settings": {
                    "default_mandate": null, "payment_method_options": null, "payment_method_types": null
                },
                // As Stripe does for a subscription's invoice, the invoice's own period is a
                // point; the period the plan covers is the line's.
                "period_end": self.period_start, "period_start": self.period_start,
                "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0,
                "starting_balance": 0, "status": "paid",
                "status_transitions": {
                    "finalized_at": self.created, "marked_uncollectible_at": null,
                    "paid_at": self.created, "voided_at": null
                },
                "subtotal": self.amount, "subtotal_excluding_tax": self.amount,
                "total": self.amount, "total_discount_amounts": [], "total_excluding_tax": self.amount,
                "total_pretax_credit_amounts": [], "total_taxes": [],
        });
        if let (Value::Object(invoice), Value::Object(rest)) = (&mut invoice, rest) {
            invoice.extend(rest);
        }
        with_unmodelled(
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
                "description",
                "due_date",
                "footer",
                "from_invoice",
                "hosted_invoice_url",
                "invoice_pdf",
                "last_finalization_error",
                "latest_revision",
                "next_payment_attempt",
                "number",
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
        )
    }
}
