//! The API Gateway HTTP API event (payload format 2.0) of a request, as the functions
//! receive it in AWS.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::routes::Route;
use crate::sigv4::{Identity, query_pairs};

/// What an authorizer let through.
pub enum Authorizer {
    Jwt(BTreeMap<String, String>),
    Iam(Identity),
}

pub struct Incoming<'a> {
    pub route: &'a Route,
    pub params: &'a BTreeMap<String, String>,
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub authorizer: Option<&'a Authorizer>,
    pub source_ip: &'a str,
}

/// The event. Headers have lower-case names and repeated values joined by commas; cookies
/// move to `cookies`; a body that is not UTF-8 is base64 with `isBase64Encoded`.
pub fn build(req: &Incoming<'_>) -> Value {
    let now = chrono::Utc::now();
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in req.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == axum::http::header::COOKIE {
            cookies.extend(value.split(';').map(|c| Value::from(c.trim())));
            continue;
        }
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::from(value));
            }
        }
    }
    let host = req
        .headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let user_agent = req
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let route_key = req.route.key();
    let request_id = format!("{:016x}", fastrand::u64(..));
    let mut context = json!({
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": host,
        "domainPrefix": host.split('.').next().unwrap_or("local"),
        "http": {
            "method": req.method,
            "path": req.raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": req.source_ip,
            "userAgent": user_agent,
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": "$default",
        "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
        "timeEpoch": now.timestamp_millis(),
    });
    match req.authorizer {
        Some(Authorizer::Jwt(claims)) => {
            context["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
        }
        Some(Authorizer::Iam(who)) => {
            context["authorizer"] = json!({"iam": {
                "accessKey": who.access_key,
                "accountId": who.account_id,
                "callerId": who.user_id,
                "cognitoIdentity": null,
                "principalOrgId": null,
                "userArn": who.user_arn,
                "userId": who.user_id,
            }});
        }
        None => {}
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": req.raw_path,
        "rawQueryString": req.raw_query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = Value::from(cookies);
    }
    let query = query_pairs(req.raw_query);
    if !query.is_empty() {
        let joined: Map<String, Value> = query
            .into_iter()
            .map(|(k, v)| (k, Value::from(v.join(","))))
            .collect();
        event["queryStringParameters"] = Value::Object(joined);
    }
    if !req.params.is_empty() {
        event["pathParameters"] = json!(req.params);
    }
    if !req.body.is_empty() {
        match std::str::from_utf8(req.body) {
            Ok(text) => event["body"] = Value::from(text),
            Err(_) => {
                event["body"] = Value::from(base64::engine::general_purpose::STANDARD.encode(req.body));
                event["isBase64Encoded"] = Value::Bool(true);
            }
        }
    }
    event
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::routes::Auth;

    #[test]
    fn the_event_carries_the_route_the_claims_and_the_request() {
        let route = Route {
            method: "GET".into(),
            path: "/v1/orgs/{org}/history".into(),
            function: "account".into(),
            auth: Auth::Jwt("DashboardJwt".into()),
        };
        let params = BTreeMap::from([("org".to_owned(), "org_demo".to_owned())]);
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:3000".parse().unwrap());
        headers.append("x-many", "a".parse().unwrap());
        headers.append("x-many", "b".parse().unwrap());
        headers.insert("cookie", "a=1; b=2".parse().unwrap());
        let claims = BTreeMap::from([("sub".to_owned(), "u_me".to_owned())]);
        let auth = Authorizer::Jwt(claims);
        let e = build(&Incoming {
            route: &route,
            params: &params,
            method: "GET",
            raw_path: "/v1/orgs/org_demo/history",
            raw_query: "kind=usage&kind=purchase&limit=5",
            headers: &headers,
            body: b"",
            authorizer: Some(&auth),
            source_ip: "127.0.0.1",
        });
        assert_eq!(e["routeKey"], "GET /v1/orgs/{org}/history");
        assert_eq!(e["requestContext"]["routeKey"], "GET /v1/orgs/{org}/history");
        assert_eq!(e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"], "u_me");
        assert_eq!(e["pathParameters"]["org"], "org_demo");
        assert_eq!(e["queryStringParameters"]["kind"], "usage,purchase");
        assert_eq!(e["headers"]["x-many"], "a,b");
        assert_eq!(e["cookies"], json!(["a=1", "b=2"]));
        assert!(e["headers"].get("cookie").is_none());
        assert!(e.get("body").is_none());
        // A body that is not UTF-8 travels as base64.
        let e = build(&Incoming {
            route: &route,
            params: &params,
            method: "POST",
            raw_path: "/x",
            raw_query: "",
            headers: &headers,
            body: &[0xff, 0x00],
            authorizer: None,
            source_ip: "127.0.0.1",
        });
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["body"], "/wA=");
        assert!(e["requestContext"].get("authorizer").is_none());
    }
}
