//! `cargo lambda watch`'s invoke endpoint: `POST /2015-03-31/functions/<name>/invocations`.

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
    let authority = upstream
        .strip_prefix("http://")
        .ok_or_else(|| format!("upstream {upstream} is not http://host:port"))?
        .trim_end_matches('/')
        .to_owned();
    let payload = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    let attempt = async {
        let stream = TcpStream::connect(authority.as_str())
            .await
            .map_err(|e| format!("cannot reach cargo lambda watch at {upstream}: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = Request::post(format!("/2015-03-31/functions/{function}/invocations"))
            .header(header::HOST, authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
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
            return Err(format!(
                "{function} answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        serde_json::from_slice::<Value>(&body).map_err(|e| format!("{function}: {e}"))
    };
    tokio::time::timeout(INVOKE_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("{function}: no answer in {} s", INVOKE_TIMEOUT.as_secs())))
}
