//! The local HTTP API: what API Gateway does in front of the functions, on loopback.
//!
//! - Routes are the `HttpApi` events of `infra/template.yaml` ([`routes`]).
//! - Dashboard routes need a JWT from the local issuer, checked as the template's
//!   `DashboardJwt` authorizer checks it ([`jwt`]): 401 otherwise.
//! - Runtime and operator routes need a SigV4 signature made with a local credential pair
//!   ([`sigv4`]): 403 otherwise.
//! - The Stripe webhook route is open.
//!
//! Each request becomes the API Gateway v2 event ([`event`]) and is sent to its function
//! on `cargo lambda watch`'s invoke endpoint; the function's answer goes back as the
//! HTTP response, as API Gateway maps a Lambda proxy answer.

pub mod event;
pub mod jwt;
pub mod routes;
pub mod sigv4;
pub mod streams;
mod upstream;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// Lambda's limit on a synchronous request payload; API Gateway's own is larger.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// What the gateway needs: the routes, the functions' invoke endpoint, the authorizers'
/// keys.
pub struct Config {
    pub routes: routes::Table,
    /// `cargo lambda watch`'s address, e.g. `http://127.0.0.1:9000`.
    pub upstream: String,
    pub issuer: jwt::Issuer,
    pub credentials: Vec<sigv4::Credential>,
    pub region: String,
    /// Origins allowed to call the API from a browser (the template's `DashboardOrigins`,
    /// its HttpApi `CorsConfiguration`); empty: no CORS headers, as deployed by default.
    pub cors_origins: Vec<String>,
}

/// The allowed origin of a request, if it names one that is configured.
fn allowed_origin(config: &Config, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    config
        .cors_origins
        .iter()
        .any(|o| o == text)
        .then(|| origin.clone())
}

/// CORS as API Gateway answers it for a `CorsConfiguration`: preflights are answered by
/// the gateway itself; other answers carry the allowed origin.
fn with_cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

fn preflight(origin: HeaderValue) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET,PUT,POST,PATCH,DELETE"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization,content-type"),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    headers.insert(header::VARY, HeaderValue::from_static("origin"));
    response
}

/// The gateway as an axum app (the server's and the tests' one entry).
pub fn app(config: Config) -> Router {
    let config = Arc::new(config);
    Router::new()
        .route("/.well-known/openid-configuration", get(openid_configuration))
        .route("/.well-known/jwks.json", get(jwks))
        .fallback(handle)
        .with_state(config)
}

/// Serves the gateway on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, config: Config) -> std::io::Result<()> {
    axum::serve(listener, app(config)).await
}

async fn openid_configuration(State(config): State<Arc<Config>>) -> Response {
    axum::Json(config.issuer.openid_configuration()).into_response()
}

async fn jwks(State(config): State<Arc<Config>>) -> Response {
    axum::Json(config.issuer.jwks()).into_response()
}

/// API Gateway's own answers carry `{"message": ...}`.
fn gateway_answer(status: StatusCode, message: &str) -> Response {
    let mut response = (status, axum::Json(json!({ "message": message }))).into_response();
    response
        .headers_mut()
        .insert("apigw-requestid", HeaderValue::from_static("local"));
    response
}

async fn handle(State(config): State<Arc<Config>>, request: Request<Body>) -> Response {
    let origin = allowed_origin(&config, request.headers());
    if request.method() == axum::http::Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && let Some(origin) = origin.clone()
    {
        return preflight(origin);
    }
    with_cors(route(&config, request).await, origin)
}

async fn route(config: &Config, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_owned();
    let raw_path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let matched = match config.routes.find(&method, &raw_path) {
        Ok(m) => m,
        Err(routes::Miss::NotFound) => return gateway_answer(StatusCode::NOT_FOUND, "Not Found"),
    };
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return gateway_answer(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
        }
    };
    let authorizer = match &matched.route.auth {
        routes::Auth::Open => None,
        routes::Auth::Jwt(_) => {
            let claims = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| config.issuer.verify(v));
            match claims {
                Some(claims) => Some(event::Authorizer::Jwt(claims)),
                None => return gateway_answer(StatusCode::UNAUTHORIZED, "Unauthorized"),
            }
        }
        routes::Auth::Iam => {
            let headers = sigv4::header_pairs(&parts.headers);
            let signed = sigv4::Signed {
                method: &method,
                raw_path: &raw_path,
                raw_query: &raw_query,
                headers: &headers,
                body: &body,
            };
            match sigv4::verify(&signed, &config.credentials, &config.region, chrono::Utc::now()) {
                Ok(identity) => Some(event::Authorizer::Iam(identity)),
                Err(refused) => return gateway_answer(StatusCode::FORBIDDEN, refused.0),
            }
        }
    };
    // The gateway listens on loopback only.
    let source_ip = "127.0.0.1";
    let request_event = event::build(&event::Incoming {
        route: matched.route,
        params: &matched.params,
        method: &method,
        raw_path: &raw_path,
        raw_query: &raw_query,
        headers: &parts.headers,
        body: &body,
        authorizer: authorizer.as_ref(),
        source_ip,
    });
    let function = &matched.route.function;
    match upstream::invoke(&config.upstream, function, &request_event).await {
        Ok(answer) => proxy_response(answer),
        Err(e) => {
            eprintln!("local-gateway: {} {raw_path} -> {function}: {e}", method);
            gateway_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// A Lambda proxy answer (payload 2.0) as the HTTP response API Gateway sends.
fn proxy_response(answer: Value) -> Response {
    let Some(status) = answer.get("statusCode").and_then(Value::as_u64) else {
        // Payload 2.0 takes any other JSON as a 200 with that JSON as the body.
        if answer.get("errorType").is_some() || answer.get("errorMessage").is_some() {
            return gateway_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
        return (StatusCode::OK, axum::Json(answer)).into_response();
    };
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    if let Some(map) = answer.get("headers").and_then(Value::as_object) {
        for (name, value) in map {
            let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
            if let (Ok(n), Ok(v)) = (
                header::HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(text),
            ) {
                headers.insert(n, v);
            }
        }
    }
    if let Some(map) = answer.get("multiValueHeaders").and_then(Value::as_object) {
        for (name, values) in map {
            for value in values.as_array().into_iter().flatten() {
                if let (Ok(n), Some(Ok(v))) = (
                    header::HeaderName::try_from(name.as_str()),
                    value.as_str().map(HeaderValue::try_from),
                ) {
                    headers.append(n, v);
                }
            }
        }
    }
    for cookie in answer
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(Ok(v)) = cookie.as_str().map(HeaderValue::try_from) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    let text = answer.get("body").and_then(Value::as_str).unwrap_or("");
    let body = if answer.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        use base64::Engine;
        match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(bytes) => bytes,
            Err(_) => {
                return gateway_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
        }
    } else {
        text.as_bytes().to_vec()
    };
    headers.insert("apigw-requestid", HeaderValue::from_static("local"));
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
