//! The HTTP edge shared by the functions: JSON bodies in, JSON errors out
//! (`{"error": {"code", "message"}}`), and who is calling, read from the API Gateway v2
//! request context. Handlers parse with this, call the domain, and map results here.

pub mod error;
pub mod route;
pub mod strict;

pub use error::{ApiError, Details, ErrorCode};
pub use route::{
    Auth, BoxFuture, Call, Edge, Membership, PathParam, Reply, Route, Router, Table, answer, named,
};

use lambda_http::aws_lambda_events::apigw::ApiGatewayRequestAuthorizer;
use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// The request body as JSON of type `T`. Malformed JSON, wrong types, unknown fields,
/// arrays where an object is expected ([`strict`]) and invalid values (amounts, ids) are
/// all a 400 naming what is wrong.
pub fn parse_json<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::MissingBody,
            "a JSON body is required",
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidJson, e.to_string()))?;
    strict::from_value(value)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidRequest, redacted(&e.to_string())))
}

/// An error message with every long key-like run of characters (16 or more letters,
/// digits, `-` or `_`) cut to its first four: serde names the value it refused (an
/// unknown variant, say), and a provider key sent in the wrong field must not come back
/// in the answer.
pub fn redacted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= 16 {
            out.extend(run.chars().take(4));
            out.push('…');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in message.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Runs an HTTP function as `lambda_http::run` does, except that an event whose body is
/// marked base64 but is not is answered `400 invalid_body` instead of panicking inside
/// lambda_http's conversion (every function would otherwise fail on it with a 500).
pub async fn run<H, F>(handler: H) -> Result<(), lambda_http::Error>
where
    H: FnMut(Request) -> F,
    F: std::future::Future<Output = Result<Response<Body>, lambda_http::Error>> + Send,
{
    use lambda_http::request::LambdaRequest;
    use lambda_http::{Adapter, LambdaEvent, Service, service_fn};
    let mut app = Adapter::from(service_fn(handler));
    let mut refuse = Adapter::from(service_fn(|_req: Request| async {
        Ok::<_, lambda_http::Error>(
            ApiError::bad_request(ErrorCode::InvalidBody, "the body is marked base64 but is not")
                .into_response(),
        )
    }));
    lambda_runtime::run(service_fn(move |mut event: LambdaEvent<LambdaRequest>| {
        let refused = unreadable_body_dropped(&mut event.payload);
        let answer: lambda_http::BoxFuture<'_, Result<_, lambda_http::Error>> = if refused {
            Box::pin(refuse.call(event))
        } else {
            Box::pin(app.call(event))
        };
        answer
    }))
    .await
}

/// Drops a body marked base64 that does not decode (with the engine lambda_http decodes
/// with), so that the event converts; `true` when it did, and the event must be refused.
pub fn unreadable_body_dropped(event: &mut lambda_http::request::LambdaRequest) -> bool {
    use base64::Engine;
    match event {
        lambda_http::request::LambdaRequest::ApiGatewayV2(e)
            if e.is_base64_encoded
                && e.body
                    .as_deref()
                    .is_some_and(|b| base64::engine::general_purpose::STANDARD.decode(b).is_err()) =>
        {
            e.body = None;
            e.is_base64_encoded = false;
            true
        }
        _ => false,
    }
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
        None => Err(ApiError::forbidden("this route needs an IAM-signed caller")),
    }
}

/// What an IAM caller may do. The template exports one managed policy for each (API
/// Gateway lets a role invoke only that policy's routes), and the functions check the
/// caller's role again against the roles the deployment names for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// The agent runtime: usage, holds, may-i-run, its org's provider keys.
    Runtime,
    /// An operator: model rates (and the grants to come).
    Operator,
}

impl Principal {
    pub fn as_str(self) -> &'static str {
        match self {
            Principal::Runtime => "runtime",
            Principal::Operator => "operator",
        }
    }
}

/// An IAM role as the deployment names it: its partition, account and name. Role names
/// are unique within an account whatever their path, and a caller that assumed the role
/// is reported as `arn:<partition>:sts::<account>:assumed-role/<name>/<session>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Role {
    partition: String,
    account: String,
    name: String,
}

/// `arn:<partition>:<service>::<account>:<resource>`, split.
fn arn_parts(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(partition), Some(service), Some(""), Some(account), Some(resource)) => {
            Some((partition, service, account, resource))
        }
        _ => None,
    }
}

impl Role {
    fn new(partition: &str, account: &str, name: &str) -> Option<Role> {
        (!name.is_empty()).then(|| Role {
            partition: partition.to_owned(),
            account: account.to_owned(),
            name: name.to_owned(),
        })
    }

    /// `arn:<partition>:iam::<account>:role/<path/><name>`.
    fn parse_configured(arn: &str) -> Option<Role> {
        let (partition, service, account, resource) = arn_parts(arn)?;
        let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
        let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        (service == "iam" && account_ok)
            .then(|| Role::new(partition, account, name))
            .flatten()
    }

    /// The role a caller acts as: an assumed role's session, or the role itself.
    fn of_caller(arn: &str) -> Option<Role> {
        let (partition, service, account, resource) = arn_parts(arn)?;
        let name = match service {
            "sts" => resource.strip_prefix("assumed-role/")?.split('/').next()?,
            "iam" => resource.strip_prefix("role/")?.rsplit('/').next()?,
            _ => return None,
        };
        Role::new(partition, account, name)
    }
}

/// The roles that act as the agent runtime and as operators (`RUNTIME_ROLE_ARNS`,
/// `OPERATOR_ROLE_ARNS`: comma-separated role ARNs). None configured: nobody may call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IamRoles {
    runtime: Vec<Role>,
    operator: Vec<Role>,
}

impl IamRoles {
    /// Reads both lists; an entry that is not a role ARN is an error naming it.
    pub fn parse(runtime: Option<&str>, operator: Option<&str>) -> Result<IamRoles, String> {
        let list = |name: &str, v: Option<&str>| -> Result<Vec<Role>, String> {
            v.unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|arn| {
                    Role::parse_configured(arn).ok_or_else(|| {
                        format!("{name}: {arn} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
                    })
                })
                .collect()
        };
        Ok(IamRoles {
            runtime: list("RUNTIME_ROLE_ARNS", runtime)?,
            operator: list("OPERATOR_ROLE_ARNS", operator)?,
        })
    }

    /// Whether `caller` acts as one of the roles of `principal`.
    pub fn allows(&self, caller: &IamCaller, principal: Principal) -> bool {
        let roles = match principal {
            Principal::Runtime => &self.runtime,
            Principal::Operator => &self.operator,
        };
        Role::of_caller(&caller.arn).is_some_and(|role| roles.contains(&role))
    }

    /// `caller` if it acts as `principal`, else a 403 that names what is missing.
    pub fn require(&self, caller: &IamCaller, principal: Principal) -> Result<(), ApiError> {
        if self.allows(caller, principal) {
            return Ok(());
        }
        tracing::warn!(caller = %caller.arn, needs = principal.as_str(), "IAM caller refused");
        Err(ApiError::forbidden(format!(
            "this route is for the {} role",
            principal.as_str()
        )))
    }
}

/// The claims of the dashboard's JWT, as API Gateway's JWT authorizer reports them.
pub fn jwt_claims(req: &Request) -> Option<&std::collections::HashMap<String, String>> {
    authorizer(req).and_then(|a| a.jwt.as_ref()).map(|j| &j.claims)
}

/// The dashboard caller's email, when the JWT carries a usable one (`email`: an ID token's
/// claim), for Stripe's receipts.
pub fn caller_email(req: &Request) -> Option<&str> {
    let email = jwt_claims(req)?.get("email")?.as_str();
    let usable = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    usable.then_some(email)
}

/// The dashboard caller: the JWT's `sub`. No token (or no usable subject) is a 401.
pub fn dashboard_caller(req: &Request) -> Result<agent_credits_domain::MemberId, ApiError> {
    let unauthenticated = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "a dashboard token is required",
        )
    };
    let sub = jwt_claims(req)
        .and_then(|c| c.get("sub"))
        .ok_or_else(unauthenticated)?;
    agent_credits_domain::MemberId::parse(sub.as_str()).map_err(|_| unauthenticated())
}

#[cfg(test)]
mod tests {
    use super::{IamCaller, IamRoles, Principal, redacted, unreadable_body_dropped};

    #[test]
    fn a_refused_body_never_echoes_a_key() {
        #[derive(Debug, PartialEq, Eq, Hash, serde::Deserialize)]
        #[allow(dead_code)]
        enum Provider {
            Anthropic,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            keys: std::collections::HashMap<Provider, String>,
            n: Option<u32>,
        }
        let key = "sk-ant-api03-Zq8vN3kLp5Rt7Wx2Yb4Hd6Jf9Gs1Mc0Ae3Ui5Oy7Te9";
        for body in [
            serde_json::json!({ "keys": { key: "x" } }),
            serde_json::json!({ "keys": key }),
            serde_json::json!({ "keys": {}, "n": key }),
        ] {
            let e = crate::strict::from_value::<Body>(body).unwrap_err();
            let message = redacted(&e.to_string());
            assert!(!message.contains(&key[..12]), "{message}");
        }
        assert_eq!(redacted("unknown field `surprise`"), "unknown field `surprise`");
    }

    #[test]
    fn a_body_marked_base64_that_is_not_is_dropped_before_lambda_http_reads_it() {
        let event = |body: &str, encoded: bool| {
            serde_json::json!({
                "version": "2.0", "routeKey": "POST /v1/x", "rawPath": "/v1/x", "rawQueryString": "",
                "headers": {}, "isBase64Encoded": encoded, "body": body,
                "requestContext": {"accountId": "1", "apiId": "a", "domainName": "d", "domainPrefix": "d",
                    "http": {"method": "POST", "path": "/v1/x", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                        "userAgent": "t"},
                    "requestId": "r", "routeKey": "POST /v1/x", "stage": "$default", "time": "t", "timeEpoch": 0}
            })
        };
        let mut bad: lambda_http::request::LambdaRequest =
            serde_json::from_value(event("not base64 at all!", true)).unwrap();
        assert!(unreadable_body_dropped(&mut bad));
        // It now converts without panicking.
        let _: lambda_http::Request = bad.into();
        for (body, encoded) in [("e30=", true), ("{}", false), ("not base64!", false)] {
            let mut good: lambda_http::request::LambdaRequest =
                serde_json::from_value(event(body, encoded)).unwrap();
            assert!(!unreadable_body_dropped(&mut good), "{body}");
        }
    }

    #[test]
    fn iam_callers_act_as_the_roles_configured_for_each_principal() {
        let roles = IamRoles::parse(
            Some("arn:aws:iam::123456789012:role/agent-runtime"),
            Some("arn:aws:iam::123456789012:role/ops/agent-credits-operator"),
        )
        .unwrap();
        let caller = |arn: &str| IamCaller { arn: arn.to_owned() };
        let runtime = caller("arn:aws:sts::123456789012:assumed-role/agent-runtime/i-0abc");
        let operator = caller("arn:aws:sts::123456789012:assumed-role/agent-credits-operator/alice");
        assert!(roles.allows(&runtime, Principal::Runtime));
        assert!(!roles.allows(&runtime, Principal::Operator));
        assert!(roles.allows(&operator, Principal::Operator));
        assert!(!roles.allows(&operator, Principal::Runtime));
        for other in [
            "arn:aws:sts::999999999999:assumed-role/agent-runtime/x",
            "arn:aws:sts::123456789012:assumed-role/agent-runtime-2/x",
            "arn:aws:iam::123456789012:user/agent-runtime",
            "arn:aws-cn:sts::123456789012:assumed-role/agent-runtime/x",
            "agent-runtime",
            "",
        ] {
            assert!(!roles.allows(&caller(other), Principal::Runtime), "{other}");
        }
        assert!(IamRoles::default().require(&runtime, Principal::Runtime).is_err());
        assert!(IamRoles::parse(Some("arn:aws:iam::123:role/x"), None).is_err());
        assert!(IamRoles::parse(Some("agent-runtime"), None).is_err());
    }
}
