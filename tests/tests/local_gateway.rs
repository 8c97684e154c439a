//! End to end: the local HTTP API (`infra/local-gateway`) in front of the real functions
//! under `cargo lambda watch`, called with curl as a person would: dashboard routes with a
//! token of the local issuer, runtime and operator routes signed with curl's own SigV4
//! signer (`--aws-sigv4`), the Stripe webhook route open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use local_gateway::routes::{self, Auth};
use local_gateway::{Config, jwt, sigv4};
use serde_json::{Value, json};
use stripe_sim::StripeSim;
use support::watch::Watch;

const RUNTIME_KEY: (&str, &str) = ("AKIALOCALRUNTIME", "local-runtime-secret");
const OPERATOR_KEY: (&str, &str) = ("AKIALOCALOPERATOR", "local-operator-secret");

/// `curl` with `args`; answers the status and the body (JSON when it parses).
fn curl(args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-s", "-S", "-w", "\n%{http_code}", "--max-time", "900"])
        .args(args)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    (status.parse().unwrap(), body)
}

/// The whole answer, status line and headers first, lower-cased (`curl -i`).
fn raw_answer(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-i"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).to_lowercase()
}

/// What API Gateway itself answers (not a function): `{"message": ...}` and nothing else.
fn from_gateway(body: &Value) -> bool {
    body.as_object()
        .is_some_and(|o| o.len() == 1 && o.contains_key("message"))
}

fn signed(key: (&str, &str), method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let user = format!("{}:{}", key.0, key.1);
    let mut args = vec![
        "--aws-sigv4",
        "aws:amz:us-east-1:execute-api",
        "--user",
        &user,
        "-X",
        method,
        url,
    ];
    if let Some(body) = body {
        args.extend(["-H", "content-type: application/json", "--data-binary", body]);
    }
    curl(&args)
}

#[test]
fn local_gateway_in_front_of_cargo_lambda_checks_tokens_signatures_and_reaches_every_route() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (db, _client) = rt.block_on(support::fresh_table("gateway"));
    let sim = rt.block_on(StripeSim::start()).unwrap();
    let mut env = support::watch::local_env("gateway", db.endpoint());
    env.extend([
        ("STRIPE_WEBHOOK_SECRET", "whsec_gw".to_owned()),
        ("STRIPE_SECRET_KEY", "sk_test_gw".to_owned()),
        ("STRIPE_API_BASE", sim.base_url().to_owned()),
    ]);
    let watch = Watch::start(&env);

    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer_url = format!("{base}/");
    let template = support::repo_root().join("infra/template.yaml");
    let all_routes = routes::from_template(&template).unwrap();
    let config = Config {
        routes: routes::Table::new(all_routes.clone()).unwrap(),
        upstream: format!("http://127.0.0.1:{}", watch.port()),
        issuer: jwt::Issuer::ephemeral(&issuer_url, "agent-credits-dashboard").unwrap(),
        credentials: vec![
            sigv4::Credential {
                access_key_id: RUNTIME_KEY.0.into(),
                secret_access_key: RUNTIME_KEY.1.into(),
                role_arn: support::RUNTIME_ROLE.into(),
            },
            sigv4::Credential {
                access_key_id: OPERATOR_KEY.0.into(),
                secret_access_key: OPERATOR_KEY.1.into(),
                role_arn: support::OPERATOR_ROLE.into(),
            },
        ],
        region: "us-east-1".into(),
        cors_origins: vec!["http://dash.example".into()],
    };
    let now = chrono::Utc::now().timestamp();
    let owner = config.issuer.token("u_owner", now, 600).unwrap();
    let expired = config.issuer.token("u_owner", now - 600, 60).unwrap();
    let foreign = jwt::Issuer::ephemeral(&issuer_url, "agent-credits-dashboard")
        .unwrap()
        .token("u_owner", now, 600)
        .unwrap();
    rt.spawn(local_gateway::serve(listener, config));
    let bearer = |t: &str| format!("authorization: Bearer {t}");

    // The dashboard: a token of the local issuer reaches the function, as its caller.
    let (status, org) = curl(&[
        "-X",
        "POST",
        &format!("{base}/v1/orgs"),
        "-H",
        &bearer(&owner),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"id":"org_demo","name":"Demo","runtime":"claude_code","billing_mode":"credits"}"#,
    ]);
    assert_eq!(status, 201, "{org}");
    let (status, balance) = curl(&["-H", &bearer(&owner), &format!("{base}/v1/orgs/org_demo/balance")]);
    assert_eq!(
        (status, balance["balance"].as_str()),
        (200, Some("0.00")),
        "{balance}"
    );

    // Expired, signed by another key, missing: API Gateway's 401, and nothing reaches a function.
    for (what, header) in [
        ("expired", bearer(&expired)),
        ("another key", bearer(&foreign)),
        ("garbage", bearer("abc.def.ghi")),
        ("none", "x-none: 1".to_owned()),
    ] {
        let (status, body) = curl(&["-H", &header, &format!("{base}/v1/orgs/org_demo/balance")]);
        assert_eq!(
            (status, &body),
            (401, &json!({"message": "Unauthorized"})),
            "{what}"
        );
    }

    // Every dashboard route of the template answers from its function with the token,
    // and 401 from the gateway without it.
    let ops = common::operations();
    let mut reached = 0;
    for route in all_routes.iter().filter(|r| matches!(r.auth, Auth::Jwt(_))) {
        let path = common::fill(&route.path, None);
        let url = format!("{base}{path}");
        let body = ops
            .iter()
            .find(|o| o.method == route.method && o.path == route.path)
            .and_then(|o| common::good_body(&o.op))
            .unwrap_or_else(|| "{}".to_owned());
        let mut args = vec!["-X", route.method.as_str(), url.as_str()];
        let auth = bearer(&owner);
        if route.method != "GET" && route.method != "DELETE" {
            args.extend(["-H", "content-type: application/json", "--data-binary", &body]);
        }
        let (status, anonymous) = curl(&args);
        assert_eq!(
            (status, &anonymous),
            (401, &json!({"message": "Unauthorized"})),
            "{}",
            route.key()
        );
        args.extend(["-H", auth.as_str()]);
        let (status, answer) = curl(&args);
        assert!(
            !from_gateway(&answer) && status != 401,
            "{} answered {status} {answer} from the gateway",
            route.key()
        );
        reached += 1;
    }
    assert!(reached >= 20, "{reached} dashboard routes");

    // The runtime's routes: a SigV4 signature of a known pair, or 403.
    let may = format!("{base}/v1/orgs/org_demo/may-i-run?member=u_owner");
    let (status, body) = curl(&[&may]);
    assert_eq!(
        (status, &body),
        (403, &json!({"message": "Missing Authentication Token"}))
    );
    let (status, body) = curl(&["-H", &bearer(&owner), &may]);
    assert_eq!(status, 403, "a dashboard token on a runtime route: {body}");
    assert!(from_gateway(&body), "{body}");
    let (status, verdict) = signed(RUNTIME_KEY, "GET", &may, None);
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(verdict["allowed"], false, "no credits yet: {verdict}");
    let (status, body) = signed((RUNTIME_KEY.0, "wrong-secret"), "GET", &may, None);
    assert_eq!(status, 403, "{body}");
    assert!(from_gateway(&body), "{body}");
    let (status, body) = signed(("AKIASTRANGER", "x"), "GET", &may, None);
    assert_eq!(
        (status, &body["message"]),
        (
            403,
            &json!("The security token included in the request is invalid.")
        )
    );
    // A call that happened, signed with its body: recorded and billed, the shortfall kept.
    let usage = format!("{base}/v1/orgs/org_demo/usage");
    let (status, answer) = signed(
        RUNTIME_KEY,
        "POST",
        &usage,
        Some(r#"{"request_id":"gw-1","agent":"agent_7","cost":"1.00"}"#),
    );
    assert_eq!(
        (status, answer["billed"].as_str(), answer["shortfall"].as_str()),
        (200, Some("1.50"), Some("1.50")),
        "{answer}"
    );
    // The operator's pair is signed correctly but is not the runtime: the function refuses it.
    let (status, answer) = signed(OPERATOR_KEY, "GET", &may, None);
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{answer}"
    );
    // And the operator's route takes it.
    let tomorrow = chrono::Utc::now().date_naive() + chrono::Days::new(1);
    let rate_body = format!(r#"{{"effective_from":"{tomorrow}","input":"3","output":"15"}}"#);
    let (status, rate) = signed(
        OPERATOR_KEY,
        "PUT",
        &format!("{base}/v1/rates/claude-sonnet"),
        Some(&rate_body),
    );
    assert!(status == 200 || status == 201, "{status} {rate}");

    // The Stripe webhook route is open: the function checks Stripe's signature itself.
    let (status, answer) = curl(&[
        "-X",
        "POST",
        &format!("{base}/v1/stripe/webhooks"),
        "-H",
        "content-type: application/json",
        "-d",
        "{}",
    ]);
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["code"].is_string(), "{answer}");

    // CORS for a configured dashboard origin: the preflight is the gateway's, the answer
    // carries the origin; another origin gets neither.
    let balance_url = format!("{base}/v1/orgs/org_demo/balance");
    let head = raw_answer(&[
        "-X",
        "OPTIONS",
        "-H",
        "origin: http://dash.example",
        "-H",
        "access-control-request-method: GET",
        &balance_url,
    ]);
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(
        head.contains("access-control-allow-origin: http://dash.example"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-headers: authorization,content-type"),
        "{head}"
    );
    for (origin, allowed) in [("http://dash.example", true), ("http://evil.example", false)] {
        let origin_header = format!("origin: {origin}");
        let head = raw_answer(&["-H", &origin_header, "-H", &bearer(&owner), &balance_url]);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(
            head.contains(&format!("access-control-allow-origin: {origin}")),
            allowed,
            "{origin}: {head}"
        );
    }

    // No such route.
    let (status, body) = curl(&[&format!("{base}/v1/nothing")]);
    assert_eq!((status, body), (404, json!({"message": "Not Found"})));

    // The issuer's keys are published where API Gateway would look for them.
    let (status, config) = curl(&[&format!("{base}/.well-known/openid-configuration")]);
    assert_eq!(
        (status, config["issuer"].as_str()),
        (200, Some(issuer_url.as_str()))
    );
    let (_, jwks) = curl(&[&format!("{base}/.well-known/jwks.json")]);
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    drop(sim);
}
