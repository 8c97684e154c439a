//! The permission matrix over every route of `infra/openapi.yaml`: each dashboard route
//! asked by the org's owner, an admin, a member, a non-member and the owner of another org
//! is allowed or refused (403) as the README's matrix says, and each IAM route answers
//! only the role its `x-iam-role` names. No route lets anyone outside the org read or
//! change it, and the agent runtime cannot reprice models.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::App;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Members,
    Admins,
    Owner,
}

/// Every dashboard route on an org, who may use it, and a body it accepts.
fn routes() -> Vec<(&'static str, &'static str, Who, Option<Value>)> {
    use Who::*;
    vec![
        ("GET", "/v1/orgs/{org}", Members, None),
        ("GET", "/v1/orgs/{org}/members", Members, None),
        (
            "PUT",
            "/v1/orgs/{org}/members/{member}",
            Owner,
            Some(json!({ "role": "member" })),
        ),
        ("DELETE", "/v1/orgs/{org}/members/{member}", Owner, None),
        (
            "PUT",
            "/v1/orgs/{org}/members/{member}/limit",
            Owner,
            Some(json!({ "monthly_limit_usd": null })),
        ),
        ("GET", "/v1/orgs/{org}/balance", Members, None),
        ("GET", "/v1/orgs/{org}/history", Members, None),
        ("GET", "/v1/orgs/{org}/history.csv", Members, None),
        ("GET", "/v1/orgs/{org}/usage", Members, None),
        ("GET", "/v1/orgs/{org}/notifications", Members, None),
        (
            "POST",
            "/v1/orgs/{org}/notifications/read",
            Members,
            Some(json!({ "all": true })),
        ),
        (
            "PUT",
            "/v1/orgs/{org}/billing-mode",
            Admins,
            Some(json!({ "billing_mode": "credits" })),
        ),
        ("GET", "/v1/orgs/{org}/keys", Members, None),
        (
            "PUT",
            "/v1/orgs/{org}/keys/{provider}",
            Admins,
            Some(json!({ "key": "sk-proj-abcdefghijklmnopqrstuvwxyz012345" })),
        ),
        ("DELETE", "/v1/orgs/{org}/keys/{provider}", Admins, None),
        ("GET", "/v1/orgs/{org}/agents", Members, None),
        (
            "PUT",
            "/v1/orgs/{org}/agents/{agent}",
            Admins,
            Some(json!({ "runtime": "codex" })),
        ),
        ("DELETE", "/v1/orgs/{org}/agents/{agent}", Admins, None),
        (
            "POST",
            "/v1/orgs/{org}/checkout",
            Owner,
            Some(json!({ "bulk": { "quantity": 1 } })),
        ),
        ("GET", "/v1/orgs/{org}/auto-recharge", Members, None),
        (
            "PUT",
            "/v1/orgs/{org}/auto-recharge",
            Admins,
            Some(json!({ "enabled": false })),
        ),
    ]
}

fn path(route: &str) -> String {
    route
        .replace("{org}", "org_a")
        .replace("{member}", "u_target")
        .replace("{provider}", "open_ai")
        .replace("{agent}", "agent_7")
}

#[tokio::test]
async fn every_dashboard_route_allows_exactly_the_roles_the_matrix_names() {
    // Secrets Manager unreachable: an allowed key change answers 503, a refused one 403 first.
    let app = App::start(None).await;
    let send = async |method: &str, route: &str, sub: &str, body: Option<&Value>| {
        app.dashboard(method, &path(route), sub, body.cloned()).await
    };
    app.org_with_members(
        "u_owner",
        "org_a",
        &[("u_admin", "admin"), ("u_member", "member")],
    )
    .await;
    app.org_with_members("u_other", "org_b", &[]).await;

    // Every dashboard operation on an org in the document is in the table above.
    let doc = common::openapi();
    let table: Vec<(String, String)> = routes()
        .iter()
        .map(|(m, r, ..)| (m.to_string(), r.to_string()))
        .collect();
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        let path = path.as_str().unwrap();
        for (method, op) in item.as_mapping().unwrap() {
            let jwt = op["security"][0]
                .as_mapping()
                .is_some_and(|m| m.keys().any(|k| k.as_str() == Some("dashboardJwt")));
            if jwt && path != "/v1/orgs" {
                let method = method.as_str().unwrap().to_uppercase();
                assert!(
                    table.contains(&(method.clone(), path.to_owned())),
                    "{method} {path} is not in the matrix test"
                );
            }
        }
    }

    let callers = [
        ("u_other", None),
        ("u_stranger", None),
        ("u_member", Some(Who::Members)),
        ("u_admin", Some(Who::Admins)),
        ("u_owner", Some(Who::Owner)),
    ];
    for (method, route, who, body) in routes() {
        for (sub, rank) in callers {
            // A target member to change or remove, each time.
            let (status, _) = send(
                "PUT",
                "/v1/orgs/{org}/members/{member}",
                "u_owner",
                Some(&json!({ "role": "member" })),
            )
            .await;
            assert_eq!(status, 200);
            let allowed = rank.is_some_and(|r| match who {
                Who::Members => true,
                Who::Admins => r != Who::Members,
                Who::Owner => r == Who::Owner,
            });
            let (status, answer) = send(method, route, sub, body.as_ref()).await;
            if allowed {
                assert_ne!(status, 403, "{sub} may {method} {route}: {answer}");
                assert!(
                    status < 500 || status == 503,
                    "{sub} {method} {route}: {status} {answer}"
                );
            } else {
                assert_eq!(status, 403, "{sub} may not {method} {route}: {answer}");
            }
        }
    }
}

/// Every IAM route, asked by the runtime's role, an operator's, another role of the same
/// account, the runtime's role name in another account, an IAM user of that name and a
/// caller with no IAM identity: only the route's own role gets past 403.
#[tokio::test]
async fn every_iam_route_answers_only_its_role() {
    let app = App::start(None).await;
    app.org_with_members("u_owner", "org_demo", &[]).await;
    let callers = [
        (
            "runtime",
            Some("arn:aws:sts::123456789012:assumed-role/agent-runtime/i-1"),
        ),
        (
            "operator",
            Some("arn:aws:sts::123456789012:assumed-role/agent-credits-operator/ana"),
        ),
        (
            "stranger",
            Some("arn:aws:sts::123456789012:assumed-role/someone-else/x"),
        ),
        (
            "other account",
            Some("arn:aws:sts::999999999999:assumed-role/agent-runtime/x"),
        ),
        ("a user", Some("arn:aws:iam::123456789012:user/agent-runtime")),
        ("nobody", None),
    ];
    let mut seen = 0;
    for op in common::operations() {
        let Some(role) = op.op["x-iam-role"].as_str() else {
            continue;
        };
        seen += 1;
        let path = op
            .path
            .replace("{org}", "org_demo")
            .replace("{hold}", "h_1")
            .replace("{model}", "claude-sonnet")
            .replace("{provider}", "anthropic");
        for (who, arn) in callers {
            let mut e = common::iam_event(role, &op.method, &path, Some(&json!({})));
            match arn {
                Some(arn) => e["requestContext"]["authorizer"]["iam"]["userArn"] = json!(arn),
                None => {
                    e["requestContext"].as_object_mut().unwrap().remove("authorizer");
                }
            }
            let (status, body, _) = app.send(&op.tag, &e).await;
            if who == role {
                assert_ne!(status, 403, "{who} may {} {}: {body}", op.method, op.path);
            } else {
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (403, Some("forbidden")),
                    "{who} may not {} {}: {body}",
                    op.method,
                    op.path
                );
            }
        }
    }
    assert!(seen >= 7, "{seen} IAM operations");
}
