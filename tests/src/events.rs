//! The API Gateway v2 events tests send, built from the sample events of `infra/events/`:
//! one builder per kind of caller, and the query string set as API Gateway sets it.

use serde_json::{Value, json};

use crate::event;

/// A dashboard request by `sub` (JWT claims), its query split off the path; from
/// `infra/events/account/get-org.json`.
pub fn dashboard_event(method: &str, path_and_query: &str, sub: &str, body: Option<&Value>) -> Value {
    let mut e = request_of("account/get-org.json", method, path_and_query, body);
    e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = json!(sub);
    e
}

/// The runtime's request (IAM caller of `infra/events/usage/may-i-run.json`).
pub fn runtime_event(method: &str, path_and_query: &str, body: Option<&Value>) -> Value {
    iam_event("runtime", method, path_and_query, body)
}

/// An operator's request (IAM caller of `infra/events/usage/put-rate.json`).
pub fn operator_event(method: &str, path_and_query: &str, body: Option<&Value>) -> Value {
    iam_event("operator", method, path_and_query, body)
}

/// An IAM-signed request as the caller of `role` (an operation's `x-iam-role`) sends it.
pub fn iam_event(role: &str, method: &str, path_and_query: &str, body: Option<&Value>) -> Value {
    let sample = match role {
        "runtime" => "usage/may-i-run.json",
        "operator" => "usage/put-rate.json",
        other => panic!("no IAM role {other}"),
    };
    request_of(sample, method, path_and_query, body)
}

/// The sample event `sample` as a request of `method path?query` with `body`.
fn request_of(sample: &str, method: &str, path_and_query: &str, body: Option<&Value>) -> Value {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let mut e = event(sample);
    e["rawPath"] = json!(path);
    e["requestContext"]["http"]["method"] = json!(method);
    e["requestContext"]["http"]["path"] = json!(path);
    e["body"] = body.map_or(Value::Null, |b| json!(b.to_string()));
    with_query(e, query)
}

/// Sets the query string the way API Gateway sends it: raw (`a=1&b=2`) and parsed.
pub fn with_query(mut e: Value, query: &str) -> Value {
    e["rawQueryString"] = json!(query);
    if query.is_empty() {
        e["queryStringParameters"] = Value::Null;
        return e;
    }
    let mut map = serde_json::Map::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(k.to_owned(), json!(v));
    }
    e["queryStringParameters"] = Value::Object(map);
    e
}
