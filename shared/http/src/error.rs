//! Every error code the functions answer, one enum: the wire code is written here and
//! nowhere else. `ApiError` carries one with its status and message.

use agent_credits_domain::{PauseReason, Provider, Runtime, Usd};
use lambda_http::http::StatusCode;
use serde::{Serialize, Serializer};

macro_rules! error_codes {
    ($($variant:ident = $wire:literal,)*) => {
        /// A machine-readable error code, serialized as its snake_case wire name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, for the document checks.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $wire,)*
                }
            }
        }
    };
}

error_codes! {
    AgentNotFound = "agent_not_found",
    AlreadySubscribed = "already_subscribed",
    AmbiguousCost = "ambiguous_cost",
    AmountOutOfRange = "amount_out_of_range",
    BillingModeRequired = "billing_mode_required",
    EarnedCreditsDoNotExpire = "earned_credits_do_not_expire",
    ExpiryInThePast = "expiry_in_the_past",
    BelowMinimum = "below_minimum",
    Forbidden = "forbidden",
    FractionOfACent = "fraction_of_a_cent",
    HoldClosed = "hold_closed",
    HoldNotFound = "hold_not_found",
    IdempotencyKeyReused = "idempotency_key_reused",
    InsufficientCredits = "insufficient_credits",
    Internal = "internal",
    InvalidAgent = "invalid_agent",
    InvalidAmount = "invalid_amount",
    InvalidBody = "invalid_body",
    InvalidCreator = "invalid_creator",
    InvalidCursor = "invalid_cursor",
    InvalidDailyCap = "invalid_daily_cap",
    InvalidDate = "invalid_date",
    InvalidEvent = "invalid_event",
    InvalidHold = "invalid_hold",
    InvalidJson = "invalid_json",
    InvalidKey = "invalid_key",
    InvalidKind = "invalid_kind",
    InvalidLimit = "invalid_limit",
    InvalidMarkup = "invalid_markup",
    InvalidMember = "invalid_member",
    InvalidModel = "invalid_model",
    InvalidMonth = "invalid_month",
    InvalidName = "invalid_name",
    IntervalChange = "interval_change",
    InvalidObject = "invalid_object",
    InvalidOffer = "invalid_offer",
    InvalidOrg = "invalid_org",
    InvalidQuantity = "invalid_quantity",
    InvalidReferrer = "invalid_referrer",
    InvalidProvider = "invalid_provider",
    InvalidRequest = "invalid_request",
    InvalidSignature = "invalid_signature",
    InvalidTarget = "invalid_target",
    InvalidTokens = "invalid_tokens",
    InvalidTtl = "invalid_ttl",
    InvalidWithdrawal = "invalid_withdrawal",
    KeyInUse = "key_in_use",
    KeyNotFound = "key_not_found",
    KeyStoreUnavailable = "key_store_unavailable",
    KeysUnavailable = "keys_unavailable",
    LastOwner = "last_owner",
    MemberLimitReached = "member_limit_reached",
    MemberNotFound = "member_not_found",
    MethodNotAllowed = "method_not_allowed",
    MissingBody = "missing_body",
    MissingCost = "missing_cost",
    MissingMember = "missing_member",
    MissingModel = "missing_model",
    MissingRequestId = "missing_request_id",
    MissingSignature = "missing_signature",
    NegativeAmount = "negative_amount",
    NoSavedCard = "no_saved_card",
    NoSubscription = "no_subscription",
    NoUnitRate = "no_unit_rate",
    NotACreditsOrg = "not_a_credits_org",
    NotThePayer = "not_the_payer",
    NotWithdrawable = "not_withdrawable",
    OrgChanged = "org_changed",
    OrgExists = "org_exists",
    OrgPaused = "org_paused",
    PaymentNotYetCredited = "payment_not_yet_credited",
    PlanChangeInProgress = "plan_change_in_progress",
    ProviderKeyRequired = "provider_key_required",
    RateInThePast = "rate_in_the_past",
    RouteNotFound = "route_not_found",
    StripeError = "stripe_error",
    StripeUnavailable = "stripe_unavailable",
    SwitchRefused = "switch_refused",
    ThresholdAboveAmount = "threshold_above_amount",
    TooManyDatedGrants = "too_many_dated_grants",
    TooManyDecimals = "too_many_decimals",
    Unauthenticated = "unauthenticated",
    Unavailable = "unavailable",
    UnknownFeature = "unknown_feature",
    UnknownKind = "unknown_kind",
    UnknownModel = "unknown_model",
    UnknownOrg = "unknown_org",
    UnknownPlan = "unknown_plan",
    UnknownReferrer = "unknown_referrer",
    UnlistedPrice = "unlisted_price",
    UnmatchedPayment = "unmatched_payment",
    WithdrawalNotFound = "withdrawal_not_found",
    WithdrawalSettled = "withdrawal_settled",
    WrongContext = "wrong_context",
    ZeroAmount = "zero_amount",
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<agent_credits_domain::MoneyError> for ErrorCode {
    fn from(e: agent_credits_domain::MoneyError) -> ErrorCode {
        use agent_credits_domain::MoneyError;
        match e {
            MoneyError::Negative => ErrorCode::NegativeAmount,
            MoneyError::Zero => ErrorCode::ZeroAmount,
            MoneyError::TooManyDecimals => ErrorCode::TooManyDecimals,
            MoneyError::TooLarge | MoneyError::Overflow => ErrorCode::AmountOutOfRange,
            MoneyError::FractionOfACent => ErrorCode::FractionOfACent,
            _ => ErrorCode::InvalidAmount,
        }
    }
}

impl From<agent_credits_domain::RechargeSettingsError> for ErrorCode {
    fn from(e: agent_credits_domain::RechargeSettingsError) -> ErrorCode {
        use agent_credits_domain::RechargeSettingsError;
        match e {
            RechargeSettingsError::ThresholdAboveAmount => ErrorCode::ThresholdAboveAmount,
            RechargeSettingsError::Amount => ErrorCode::InvalidAmount,
            RechargeSettingsError::Cap => ErrorCode::InvalidDailyCap,
            RechargeSettingsError::Target => ErrorCode::InvalidTarget,
        }
    }
}

/// An expected failure, answered with its status and a machine-readable code. Nothing was
/// written when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Extra fields for the error object (e.g. the available balance).
    pub details: Option<Details>,
}

/// The extra fields some errors carry beside `code` and `message` (the document's
/// `Error` schema lists them): `insufficient_credits` → `available`,
/// `member_limit_reached` → `limit`, `org_paused` → `reason`, `provider_key_required`
/// and `key_in_use` → `provider` and `runtime`, `invalid_key` → `provider`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Details {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<Usd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<Usd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<PauseReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// Extra fields for the error object, beside `code` and `message`.
    pub fn with_details(mut self, details: Details) -> ApiError {
        self.details = Some(details);
        self
    }

    /// Something broke that the caller cannot fix. The cause is logged, not returned.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; retry with the same request id",
        )
    }

    /// The store or a dependency is unavailable or contended: safe to retry.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::warn!(error = %cause, "unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "temporarily unavailable; retry with the same request id",
        )
    }

    /// A change of a wallet that was refused: nothing was written.
    pub fn refused(refusal: agent_credits_domain::Refusal) -> ApiError {
        use agent_credits_domain::Refusal;
        match refusal {
            Refusal::InsufficientFunds { available } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                ErrorCode::InsufficientCredits,
                format!("{available} available"),
            )
            .with_details(Details {
                available: Some(available),
                ..Default::default()
            }),
            Refusal::MemberLimitReached { limit } => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::MemberLimitReached,
                format!("the member's monthly limit of {limit} is reached"),
            )
            .with_details(Details {
                limit: Some(limit),
                ..Default::default()
            }),
            Refusal::IdempotencyKeyReused => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::IdempotencyKeyReused,
                "this request id was used for a different request",
            ),
            Refusal::HoldNotFound => ApiError::not_found(ErrorCode::HoldNotFound, "no such hold"),
            Refusal::HoldClosed => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::HoldClosed,
                "the hold is already closed",
            ),
            Refusal::Paused(reason) => ApiError::paused(reason),
            Refusal::NotWithdrawable { withdrawable } => ApiError::conflict(
                ErrorCode::NotWithdrawable,
                format!("{withdrawable} of earned credits can be withdrawn now"),
            )
            .with_details(Details {
                available: Some(withdrawable),
                ..Default::default()
            }),
            Refusal::PayoutNotPending => ApiError::conflict(
                ErrorCode::WithdrawalSettled,
                "the withdrawal is not pending: settled before (or its id is taken)",
            ),
            Refusal::TooManyLots => ApiError::conflict(ErrorCode::TooManyDatedGrants, refusal.to_string()),
            Refusal::Superseded | Refusal::Money(_) | Refusal::NothingToExpire => {
                ApiError::internal(&refusal)
            }
        }
    }

    /// The org is paused for `reason`.
    pub fn paused(reason: PauseReason) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::OrgPaused,
            format!("the org is paused: {}", reason.as_str()),
        )
        .with_details(Details {
            reason: Some(reason),
            ..Default::default()
        })
    }

    /// A refused amount: a 400 with the amount's own code.
    pub fn money(e: agent_credits_domain::MoneyError) -> ApiError {
        ApiError::bad_request(ErrorCode::from(e.clone()), e.to_string())
    }

    pub fn into_response(self) -> lambda_http::Response<lambda_http::Body> {
        #[derive(Serialize)]
        struct Wire<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: ErrorCode,
            message: &'a str,
            #[serde(flatten, skip_serializing_if = "Option::is_none")]
            details: Option<&'a Details>,
        }
        crate::json_response(
            self.status,
            &Wire {
                error: Inner {
                    code: self.code,
                    message: &self.message,
                    details: self.details.as_ref(),
                },
            },
        )
    }
}

impl From<agent_credits_domain::StoreError> for ApiError {
    fn from(e: agent_credits_domain::StoreError) -> ApiError {
        match e {
            agent_credits_domain::StoreError::Contention { .. }
            | agent_credits_domain::StoreError::Unavailable(_) => ApiError::unavailable(&e),
            agent_credits_domain::StoreError::Rejected(_) => {
                tracing::error!(error = %e, "the store refused a request: check the deployment (table, role, region)");
                ApiError::internal(&e)
            }
            other => ApiError::internal(&other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ApiError, ErrorCode};

    #[test]
    fn each_code_has_its_own_snake_case_wire_name() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let wire = code.as_str();
            assert!(seen.insert(wire), "{wire} twice");
            assert!(
                wire.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{wire}"
            );
            assert_eq!(serde_json::to_value(code).ok(), Some(serde_json::json!(wire)));
        }
        use agent_credits_domain::MoneyError;
        assert_eq!(ErrorCode::from(MoneyError::Negative), ErrorCode::NegativeAmount);
        assert_eq!(
            ErrorCode::from(MoneyError::TooManyDecimals),
            ErrorCode::TooManyDecimals
        );
    }

    #[test]
    fn details_sit_beside_the_code_and_message() {
        let response = ApiError::conflict(ErrorCode::InsufficientCredits, "no")
            .with_details(super::Details {
                available: Some(agent_credits_domain::Usd::parse("1.50").unwrap()),
                ..Default::default()
            })
            .into_response();
        assert_eq!(response.status(), 409);
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap_or_default();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "insufficient_credits", "message": "no", "available": "1.50"}})
        );
    }
}
