//! Stripe's error body, `{"error": {"type", "code", "decline_code", "message", "param", ...}}`,
//! with the HTTP status Stripe pairs with each kind of error.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// An error exactly as Stripe reports it. The library's control methods return it too, so a
/// test sees the same codes whether it drives the simulator over HTTP or in process.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    /// Stripe's `type`: `invalid_request_error`, `card_error`, `idempotency_error`, `api_error`.
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub decline_code: Option<&'static str>,
    pub message: String,
    pub param: Option<String>,
    pub charge: Option<String>,
    /// The PaymentIntent as it stands after a failed confirmation, as Stripe includes it.
    pub payment_intent: Option<Value>,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, code: Option<&'static str>, message: String) -> Self {
        ApiError {
            status,
            kind,
            code,
            decline_code: None,
            message,
            param: None,
            charge: None,
            payment_intent: None,
        }
    }

    pub(crate) fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError::new(400, "invalid_request_error", None, message.into()).param(param)
    }

    pub(crate) fn invalid_code(code: &'static str, param: &str, message: impl Into<String>) -> Self {
        ApiError::new(400, "invalid_request_error", Some(code), message.into()).param(param)
    }

    pub(crate) fn missing(param: &str) -> Self {
        ApiError::invalid_code(
            "parameter_missing",
            param,
            format!("Missing required param: {param}."),
        )
    }

    /// A referenced object that does not exist: 404 when it is the object the URL names, 400
    /// when a parameter names it (`param`), as Stripe answers.
    pub(crate) fn no_such(what: &str, id: &str, param: Option<&str>) -> Self {
        let message = format!("No such {what}: '{id}'");
        match param {
            Some(param) => ApiError::invalid_code("resource_missing", param, message),
            None => {
                ApiError::new(404, "invalid_request_error", Some("resource_missing"), message).param("id")
            }
        }
    }

    pub(crate) fn unauthorized(message: String) -> Self {
        ApiError::new(401, "invalid_request_error", None, message)
    }

    pub(crate) fn idempotency(message: String) -> Self {
        ApiError::new(400, "idempotency_error", None, message)
    }

    pub(crate) fn card(code: &'static str, decline_code: Option<&'static str>, message: &str) -> Self {
        ApiError {
            decline_code,
            ..ApiError::new(402, "card_error", Some(code), message.to_string())
        }
    }

    pub(crate) fn unknown_url(method: &str, path: &str) -> Self {
        ApiError::new(
            404,
            "invalid_request_error",
            None,
            format!(
                "Unrecognized request URL ({method}: {path}). The Stripe simulator serves only the calls the functions make."
            ),
        )
    }

    fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    /// The `error` object itself, as it also appears in a PaymentIntent's `last_payment_error`.
    pub fn to_json(&self) -> Value {
        let mut error = Map::new();
        error.insert("type".into(), json!(self.kind));
        error.insert("message".into(), json!(self.message));
        let optional = [
            ("code", self.code.map(Value::from)),
            ("decline_code", self.decline_code.map(Value::from)),
            ("param", self.param.clone().map(Value::from)),
            ("charge", self.charge.clone().map(Value::from)),
            ("payment_intent", self.payment_intent.clone()),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                error.insert(name.into(), value);
            }
        }
        Value::Object(error)
    }

    pub fn body(&self) -> Value {
        json!({ "error": self.to_json() })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.kind)?;
        if let Some(code) = self.code {
            write!(f, " ({code})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}
