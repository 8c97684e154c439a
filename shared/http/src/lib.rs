//! The HTTP edge shared by the functions: JSON bodies in, JSON errors out
//! (`{"error": {"code", "message"}}`), and who is calling, read from the API Gateway v2
//! request context. Handlers parse with this, call the domain, and map results here.

use lambda_http::aws_lambda_events::apigw::ApiGatewayRequestAuthorizer;
use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An expected failure, answered with its status and a machine-readable code. Nothing was
/// written when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields for the error object (e.g. the available balance).
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn with_details(mut self, details: serde_json::Value) -> ApiError {
        self.details = Some(details);
        self
    }

    /// Something broke that the caller cannot fix. The cause is logged, not returned.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; retry with the same request id",
        )
    }

    /// The store or a dependency is unavailable or contended: safe to retry.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::warn!(error = %cause, "unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "temporarily unavailable; retry with the same request id",
        )
    }

    pub fn into_response(self) -> Response<Body> {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let (Some(serde_json::Value::Object(extra)), Some(obj)) = (self.details, error.as_object_mut()) {
            obj.extend(extra);
        }
        json_response(self.status, &serde_json::json!({ "error": error }))
    }
}

impl From<agent_credits_domain::StoreError> for ApiError {
    fn from(e: agent_credits_domain::StoreError) -> ApiError {
        match e {
            agent_credits_domain::StoreError::Contention { .. }
            | agent_credits_domain::StoreError::Unavailable(_) => ApiError::unavailable(&e),
            other => ApiError::internal(&other),
        }
    }
}

/// A route's result as the HTTP answer: an error becomes its JSON error response.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(ApiError::into_response)
}

pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    let (status, text) = match serde_json::to_string(body) {
        Ok(text) => (status, text),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":{"code":"internal","message":"response did not serialize"}}"#.to_owned(),
        ),
    };
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        lambda_http::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The request body as JSON of type `T`. Malformed JSON, wrong types, unknown fields and
/// invalid values (amounts, ids) are all a 400 naming what is wrong.
pub fn parse_json<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.is_empty() {
        return Err(ApiError::bad_request("missing_body", "a JSON body is required"));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() {
            "invalid_json"
        } else {
            "invalid_request"
        };
        ApiError::bad_request(code, e.to_string())
    })
}

/// The path, split into segments, without the leading slash.
pub fn path_segments(req: &Request) -> Vec<String> {
    let path = match req.raw_http_path() {
        "" => req.uri().path().to_owned(),
        p => p.to_owned(),
    };
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decoded(s).unwrap_or_else(|| s.to_owned()))
        .collect()
}

/// A path segment with its `%XX` escapes decoded, so that an id holding a `/` (a model
/// such as `openrouter/anthropic/claude-sonnet-4`) travels as one segment, `%2F`-escaped.
/// `None` for a malformed escape or bytes that are not UTF-8: the caller keeps the raw
/// segment, which no id parser accepts.
fn percent_decoded(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_owned());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_owned)
}

fn authorizer(req: &Request) -> Option<&ApiGatewayRequestAuthorizer> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.authorizer.as_ref(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// An IAM-signed caller (the agent runtime), as API Gateway's IAM authorizer reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamCaller {
    pub arn: String,
}

/// The runtime routes are IAM-authorized in the template: API Gateway rejects unsigned
/// requests before the function runs, and the function refuses any event without the
/// IAM identity in its request context, so a misrouted request cannot slip through.
pub fn iam_caller(req: &Request) -> Result<IamCaller, ApiError> {
    let iam = authorizer(req).and_then(|a| a.iam.as_ref());
    match iam.and_then(|i| i.user_arn.clone().or_else(|| i.caller_id.clone())) {
        Some(arn) => Ok(IamCaller { arn }),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this route needs an IAM-signed caller",
        )),
    }
}

/// The claims of the dashboard's JWT, as API Gateway's JWT authorizer reports them.
pub fn jwt_claims(req: &Request) -> Option<&std::collections::HashMap<String, String>> {
    authorizer(req).and_then(|a| a.jwt.as_ref()).map(|j| &j.claims)
}

/// The dashboard caller: the JWT's `sub`. No token (or no usable subject) is a 401.
pub fn dashboard_caller(req: &Request) -> Result<agent_credits_domain::MemberId, ApiError> {
    let unauthenticated = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a dashboard token is required",
        )
    };
    let sub = jwt_claims(req)
        .and_then(|c| c.get("sub"))
        .ok_or_else(unauthenticated)?;
    agent_credits_domain::MemberId::parse(sub.as_str()).map_err(|_| unauthenticated())
}

/// Maps a refused amount to a 400 with its code.
pub fn money_error(e: agent_credits_domain::MoneyError) -> ApiError {
    ApiError::bad_request(e.code(), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::percent_decoded;

    #[test]
    fn path_segments_decode_their_escapes_and_keep_malformed_ones_raw() {
        assert_eq!(
            percent_decoded("claude-sonnet-4").as_deref(),
            Some("claude-sonnet-4")
        );
        assert_eq!(
            percent_decoded("openrouter%2Fanthropic%2fclaude").as_deref(),
            Some("openrouter/anthropic/claude")
        );
        assert_eq!(percent_decoded("a%20b").as_deref(), Some("a b"));
        for malformed in ["50%", "%2", "%zz", "%+F", "%-1", "%C3", "%FF"] {
            assert_eq!(percent_decoded(malformed), None, "{malformed}");
        }
        assert_eq!(percent_decoded("caf%C3%A9").as_deref(), Some("café"));
    }
}
