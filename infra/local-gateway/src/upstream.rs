//! `cargo lambda watch`'s invoke endpoint (`POST /2015-03-31/functions/<name>/invocations`),
//! and dynoxide's JSON API for the stream mappings.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// The first call to a function waits for `cargo lambda watch` to build it.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(900);

/// Invokes `function` with `event`; answers the function's JSON answer.
pub async fn invoke(upstream: &str, function: &str, event: &Value) -> Result<Value, String> {
    post_json(
        upstream,
        &format!("/2015-03-31/functions/{function}/invocations"),
        &[("content-type", "application/json")],
        event,
    )
    .await
    .map_err(|e| format!("{function}: {e}"))
}

/// POSTs `body` as JSON to `path` of `base` (`http://host:port`) with `headers`; answers
/// the JSON answer of a 2xx, an error otherwise.
pub async fn post_json(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Result<Value, String> {
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base} is not http://host:port"))?
        .trim_end_matches('/')
        .to_owned();
    let payload = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let attempt = async {
        let stream = TcpStream::connect(authority.as_str())
            .await
            .map_err(|e| format!("cannot reach {base}: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut request = Request::post(path).header(header::HOST, authority.as_str());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("answered {status}: {}", String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())
    };
    tokio::time::timeout(INVOKE_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {} s", INVOKE_TIMEOUT.as_secs())))
}
