//! What the webhooks function answers Stripe (the document's `WebhookResult`).

use serde::Serialize;

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Handled {
    Credited,
    AlreadyCredited,
    AwaitingPayment,
    PaymentFailed,
    RechargeFailed,
    NotACardFailure,
    Refunded,
    RefundReversed,
    RefundAlreadyReversed,
    RefundFailedBeforeTaken,
    NothingTaken,
    Paused,
    AlreadyPaused,
    DisputeClosed,
    DisputeAlreadyClosed,
    Granted,
    AlreadyGranted,
    InvoicePaymentRecorded,
    NothingGranted,
    SubscriptionRecorded,
    DuplicateEvent,
    Ignored,
}

/// The answer to every event Stripe delivered that was handled (2xx).
#[derive(Debug, Serialize)]
pub struct Received {
    /// Always `true`.
    pub received: bool,
    pub result: Handled,
    /// The entry the event made (or made before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
    /// On `refunded`, one item per refund of the charge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunds: Option<Vec<RefundTaken>>,
}

impl Received {
    pub fn new(result: Handled) -> Received {
        Received {
            received: true,
            result,
            entry_id: None,
            refunds: None,
        }
    }
}

/// One refund of a refunded charge.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RefundTaken {
    /// What the refund took (or took before).
    Taken {
        refund: String,
        entry_id: String,
        taken: String,
        shortfall: String,
    },
    /// It failed before it was taken: nothing is.
    FailedFirst { refund: String, result: FailedFirst },
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedFirst {
    RefundFailedFirst,
}
