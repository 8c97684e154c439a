//! The billing page, served by the stack at the API's origin: `GET /orgs/{org}/billing`
//! (and `GET /billing/new`, the org-creation form) answer the page, `GET /billing/{asset}`
//! its script and styles. Everything is compiled in; the page calls the API from the
//! browser with the user's token, and the API enforces every permission.

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Response};

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/billing.js");
const STYLES: &str = include_str!("../assets/billing.css");

/// What the page may be framed by (`FRAME_ANCESTORS`, the CSP source list; default
/// `'self'`): a dashboard that embeds the page in an iframe names its origin here.
#[derive(Debug, Clone)]
pub struct Settings {
    pub frame_ancestors: String,
}

impl Settings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let frame_ancestors = get("FRAME_ANCESTORS")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "'self'".to_owned());
        // A source list: no quotes but around keywords, no semicolons or newlines.
        if frame_ancestors.contains([';', '\n', '\r', ',']) {
            return Err(format!(
                "FRAME_ANCESTORS={frame_ancestors:?}: a space-separated CSP source list"
            ));
        }
        Ok(Settings { frame_ancestors })
    }
}

/// The answer to `method path`.
pub fn answer(settings: &Settings, method: &Method, path: &str) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the page is read with GET",
        );
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (body, kind, cache) = match segments.as_slice() {
        ["orgs", org, "billing"] if valid_org(org) => (INDEX, "text/html; charset=utf-8", "no-store"),
        ["billing", "new"] => (INDEX, "text/html; charset=utf-8", "no-store"),
        ["billing", "billing.js"] => (SCRIPT, "text/javascript; charset=utf-8", "no-cache"),
        ["billing", "billing.css"] => (STYLES, "text/css; charset=utf-8", "no-cache"),
        ["orgs", _, "billing"] => {
            return error(StatusCode::BAD_REQUEST, "invalid_org", "not an org id");
        }
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such page"),
    };
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors {}",
        settings.frame_ancestors
    );
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(csp) = HeaderValue::try_from(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// Org ids as the API takes them: 1 to 64 of `[A-Za-z0-9_-]`.
fn valid_org(org: &str) -> bool {
    !org.is_empty()
        && org.len() <= 64
        && org
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn get(path: &str) -> Response<Body> {
        let settings = Settings::from_lookup(|_| None).unwrap();
        answer(&settings, &Method::GET, path)
    }

    fn text(r: &Response<Body>) -> String {
        match r.body() {
            Body::Text(t) => t.clone(),
            Body::Binary(b) => String::from_utf8(b.clone()).unwrap(),
            Body::Empty => String::new(),
            _ => String::new(),
        }
    }

    #[test]
    fn the_page_and_its_assets_are_served_with_their_types_and_policy() {
        let page = get("/orgs/org_demo/billing");
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert!(text(&page).contains("<agent-credits-billing"));
        let csp = page.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.ends_with("frame-ancestors 'self'"));
        assert_eq!(get("/billing/new").status(), 200);
        let js = get("/billing/billing.js");
        assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
        assert!(text(&js).contains("customElements.define"));
        assert_eq!(
            get("/billing/billing.css").headers()["content-type"],
            "text/css; charset=utf-8"
        );
    }

    #[test]
    fn anything_else_is_a_json_error() {
        for (path, status, code) in [
            ("/billing/secrets.txt", 404, "not_found"),
            ("/orgs/bad!id/billing", 400, "invalid_org"),
            ("/orgs/org_demo/billing/x", 404, "not_found"),
        ] {
            let r = get(path);
            assert_eq!(r.status(), status, "{path}");
            let body: serde_json::Value = serde_json::from_str(&text(&r)).unwrap();
            assert_eq!(body["error"]["code"], code, "{path}");
        }
        let settings = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(answer(&settings, &Method::POST, "/billing/new").status(), 405);
    }

    #[test]
    fn a_dashboard_that_frames_the_page_is_named_in_its_policy() {
        let settings = Settings::from_lookup(|n| {
            (n == "FRAME_ANCESTORS").then(|| "'self' https://dash.example.com".to_owned())
        })
        .unwrap();
        let page = answer(&settings, &Method::GET, "/orgs/o/billing");
        let csp = page.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.ends_with("frame-ancestors 'self' https://dash.example.com"),
            "{csp}"
        );
        assert!(Settings::from_lookup(|_| Some("x; script-src *".into())).is_err());
    }
}
