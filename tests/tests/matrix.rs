//! The permission matrix over every route of the functions' route tables (and so of
//! `infra/openapi.yaml`, which the template checks hold to them): each dashboard route
//! asked by the org's owner, an admin, a member, a non-member and the owner of another org
//! is allowed or refused (403) as the README's matrix says, and each IAM route answers
//! only the role its `x-iam-role` names. No route lets anyone outside the org read or
//! change it, and the agent runtime cannot reprice models.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agent_credits_domain::Action;
use agent_credits_http::Auth;
use common::App;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Members,
    Admins,
    Owner,
}

/// The README's permission matrix, for an org with the defaults (members see billing,
/// owners alone buy).
fn who_may(action: Action) -> Who {
    match action {
        Action::ViewOrg | Action::ViewBilling => Who::Members,
        Action::ManageAutoRecharge | Action::ManageKeys | Action::ManageOrg => Who::Admins,
        Action::Purchase
        | Action::ChangePlan
        | Action::SetMemberLimits
        | Action::ManageMembers
        | Action::ChangeSettings
        | Action::Withdraw
        | Action::ViewInvoices
        | Action::OpenPortal => Who::Owner,
    }
}

/// The dashboard functions' routes (account and checkout): method, path and auth.
fn dashboard_routes() -> Vec<(String, &'static str, Auth)> {
    common::route_table()
        .into_iter()
        .filter(|(tag, ..)| matches!(*tag, "account" | "checkout"))
        .map(|(_, method, path, auth)| (method, path, auth))
        .collect()
}

/// Every dashboard route on an org, from the functions' own route tables: who may use
/// it, and the body the document's example gives it.
fn routes() -> Vec<(String, String, Who, Option<Value>)> {
    let doc = common::openapi();
    let member_routes = dashboard_routes()
        .into_iter()
        .filter_map(|(method, path, auth)| match auth {
            Auth::Member(action) => Some((method, path, who_may(action))),
            _ => None,
        })
        .collect::<Vec<_>>();
    member_routes
        .into_iter()
        .map(|(method, path, who)| {
            let example = &doc["paths"][path][method.to_lowercase().as_str()]["requestBody"]["content"]
                ["application/json"]["example"];
            let body = (!example.is_null()).then(|| serde_json::to_value(example).unwrap());
            (method, path.to_owned(), who, body)
        })
        .collect()
}

/// The README's account API table: `METHOD /path` → its "who" column.
fn readme_who() -> std::collections::HashMap<String, String> {
    let readme = std::fs::read_to_string(support::repo_root().join("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|line| {
            let line = line.replace("\\|", "/");
            let mut cells = line.split('|').map(str::trim).skip(1);
            let route = cells.next()?.strip_prefix('`')?.split('`').next()?;
            let (method, path) = route.split_once(' ')?;
            let path = path.split('?').next()?;
            ["GET", "PUT", "PATCH", "POST", "DELETE"]
                .contains(&method)
                .then(|| {
                    (
                        format!("{method} {path}"),
                        cells.next().unwrap_or_default().to_owned(),
                    )
                })
        })
        .collect()
}

/// Each dashboard route's action is the one the README's tables say for it.
#[test]
fn each_dashboard_routes_action_is_the_one_the_readme_names() {
    let who = readme_who();
    let mut checked = 0;
    let routes = dashboard_routes();
    for (method, path, auth) in routes {
        let key = format!("{method} {path}");
        let readme = who
            .get(&key)
            .unwrap_or_else(|| panic!("{key} is not in the README's table"));
        let want = match auth {
            Auth::User => "any signed-in user",
            Auth::Personal => "the user, on their own account",
            Auth::Member(Action::ViewOrg) => "members",
            Auth::Member(Action::ViewBilling) => "who may view billing",
            Auth::Member(Action::Purchase) => "who may purchase",
            Auth::Member(
                Action::ManageMembers
                | Action::SetMemberLimits
                | Action::ChangePlan
                | Action::ChangeSettings
                | Action::Withdraw
                | Action::ViewInvoices
                | Action::OpenPortal,
            ) => "owner",
            Auth::Member(Action::ManageKeys | Action::ManageOrg | Action::ManageAutoRecharge) => {
                "owner, admin"
            }
            other => panic!("{key}: {other:?} is no dashboard route's auth"),
        };
        assert_eq!(readme, want, "{key}");
        checked += 1;
    }
    assert!(checked >= 22, "{checked}");
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

    // Every dashboard operation on an org in the document is a member route of a table.
    let doc = common::openapi();
    let table: Vec<(String, String)> = routes().iter().map(|(m, r, ..)| (m.clone(), r.clone())).collect();
    assert!(table.len() >= 21, "{} member routes", table.len());
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        let path = path.as_str().unwrap();
        for (method, op) in item.as_mapping().unwrap() {
            let jwt = op["security"][0]
                .as_mapping()
                .is_some_and(|m| m.keys().any(|k| k.as_str() == Some("dashboardJwt")));
            if jwt && path != "/v1/orgs" && !path.starts_with("/v1/me") {
                let method = method.as_str().unwrap().to_uppercase();
                assert!(
                    table.contains(&(method.clone(), path.to_owned())),
                    "{method} {path} is no member route of a function's table"
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
            let (status, answer) = send(&method, &route, sub, body.as_ref()).await;
            if allowed {
                assert_ne!(status, 403, "{sub} may {method} {route}: {answer}");
                assert!(
                    status < 500 || status == 503,
                    "{sub} {method} {route}: {status} {answer}"
                );
            } else {
                assert_eq!(status, 403, "{sub} may not {method} {route}: {answer}");
                // Refused before the body is read: a bad body changes nothing of that.
                if body.is_some() {
                    let (status, answer) =
                        send(&method, &route, sub, Some(&json!(["not", "an object"]))).await;
                    assert_eq!(status, 403, "{sub} with a bad body, {method} {route}: {answer}");
                }
            }
        }
    }
}

/// Every personal route (`/v1/me/...`) answers any signed-in user, on their own account
/// only: one person's purchase and settings never show in another's.
#[tokio::test]
async fn every_personal_route_is_its_callers_own() {
    let app = App::start(None).await;
    let doc = common::openapi();
    let personal: Vec<(String, &str)> = dashboard_routes()
        .into_iter()
        .filter(|(_, _, auth)| matches!(auth, Auth::Personal))
        .map(|(method, path, _)| (method, path))
        .collect();
    assert!(personal.len() >= 8, "{personal:?}");
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        let path = path.as_str().unwrap();
        if path.starts_with("/v1/me") {
            for method in item.as_mapping().unwrap().keys() {
                let method = method.as_str().unwrap().to_uppercase();
                assert!(
                    personal.contains(&(method.clone(), path)),
                    "{method} {path} is no personal route"
                );
            }
        }
    }
    for sub in ["u_ana", "u_bo"] {
        for (method, path) in &personal {
            let example = &doc["paths"][*path][method.to_lowercase().as_str()]["requestBody"]["content"]["application/json"]
                ["example"];
            let body = (!example.is_null()).then(|| serde_json::to_value(example).unwrap());
            let (status, answer) = app.dashboard(method, path, sub, body).await;
            assert!(
                status != 403 && status < 500,
                "{sub} {method} {path}: {status} {answer}"
            );
        }
    }
    // u_ana's own top-up settings are hers: u_bo's stay off.
    let on = json!({ "enabled": false, "threshold_usd": "7.00", "amount_usd": "30.00" });
    let (status, _) = app
        .dashboard("PUT", "/v1/me/auto-recharge", "u_ana", Some(on))
        .await;
    assert_eq!(status, 200);
    let (_, hers) = app.dashboard("GET", "/v1/me/auto-recharge", "u_ana", None).await;
    let (_, his) = app.dashboard("GET", "/v1/me/auto-recharge", "u_bo", None).await;
    assert_eq!(
        (hers["threshold_usd"].as_str(), his["threshold_usd"].as_str()),
        (Some("7.00"), Some("20.00")),
        "{hers} {his}"
    );
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
            .replace("{provider}", "anthropic")
            .replace("{withdrawal}", "wd_1");
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
