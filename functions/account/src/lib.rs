//! The account function: what the dashboard calls (JWT-authorized; the caller is the
//! token's `sub`). Its routes are the table in [`routes`]: each route on an org is for its
//! members whose role the org allows the route's action (the matrix of
//! `agent_credits_domain::Org::allows`), checked before the body is read: no cross-org
//! read anywhere.
//!
//! One module per resource: [`orgs`], [`members`], [`keys`], [`agents`], [`billing`]
//! (the credits card and month usage), [`history`], [`notifications`]; answers are the
//! types of [`views`].

mod agents;
mod billing;
mod history;
mod keys;
mod members;
mod notifications;
mod orgs;
mod settings;
pub mod views;
mod withdrawals;

use std::sync::Arc;

use agent_credits_domain::{Action, Clock, KeyStore, MemberLimits, NotificationFeed, OrgDirectory};
use agent_credits_dynamo::{DynamoWalletStore, OrgStore};
use agent_credits_http::{Edge, Route, Router, Table, answer, json_response};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

/// The account function's settings, read once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The credits table (`TABLE_NAME`).
    pub table: String,
    /// Where the orgs' BYOK keys are (`BYOK_SECRET_PREFIX`).
    pub byok_prefix: String,
    /// The least an owner may withdraw (`WITHDRAWAL_MINIMUM_USD`, $25 by default).
    pub withdrawal_minimum: agent_credits_domain::Usd,
}

impl agent_credits_aws::settings::FromEnv for Settings {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        Ok(Settings {
            table: agent_credits_aws::settings::required(&get, "TABLE_NAME")?,
            byok_prefix: agent_credits_aws::settings::byok_prefix(get("BYOK_SECRET_PREFIX")),
            withdrawal_minimum: match get("WITHDRAWAL_MINIMUM_USD").filter(|v| !v.trim().is_empty()) {
                None => DEFAULT_WITHDRAWAL_MINIMUM,
                Some(v) => agent_credits_domain::PositiveUsd::parse(v.trim())
                    .map(|m| m.usd())
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        withdrawals::whole_cents(m)
                            .then_some(m)
                            .ok_or_else(|| "not whole cents".to_owned())
                    })
                    .map_err(|e| format!("WITHDRAWAL_MINIMUM_USD {v:?}: {e}"))?,
            },
        })
    }
}

/// What the account function's handlers use, wired once in `main.rs`.
/// The least an owner may withdraw unless the deployment says otherwise.
pub const DEFAULT_WITHDRAWAL_MINIMUM: agent_credits_domain::Usd =
    agent_credits_domain::Usd::from_whole_dollars(25);

pub struct Account {
    pub store: DynamoWalletStore,
    /// Orgs, members, roles, keys' metadata, agents.
    pub orgs: OrgStore,
    /// Where the edge looks callers up before every route (the same table as `orgs`).
    pub directory: Arc<dyn OrgDirectory>,
    pub clock: Arc<dyn Clock>,
    /// BYOK keys (Secrets Manager: `agent_credits_aws::KeyVault`).
    pub keys: Arc<dyn KeyStore>,
    /// The org's notification feed.
    pub feed: Arc<dyn NotificationFeed>,
    /// Members' monthly limits.
    pub limits: Arc<dyn MemberLimits>,
    /// The least an owner may withdraw (`WITHDRAWAL_MINIMUM_USD`).
    pub withdrawal_minimum: agent_credits_domain::Usd,
}

/// Every route of the function: who may call it and what answers it. Each one on an org
/// is for its members whose role the org allows the action (the matrix of
/// `agent_credits_domain::Org::allows`): no cross-org read anywhere.
pub fn routes() -> Vec<Route<Account>> {
    use Action::*;
    use Method as M;
    vec![
        Route::user(M::POST, "/v1/orgs", |svc, c| {
            Box::pin(async move { orgs::create_org(svc, &c.who, c.body()?).await })
        }),
        // The caller's own personal account (references 002-004), theirs alone: the same
        // views as an org's wallet, apart from every org's.
        Route::personal(M::GET, "/v1/me", |_, c| {
            Box::pin(async move {
                let view = views::OrgView {
                    org: &c.who.org,
                    role: c.who.member.role,
                };
                Ok(json_response(StatusCode::OK, &view))
            })
        }),
        Route::personal(M::GET, "/v1/me/balance", |svc, c| {
            Box::pin(async move { billing::balance(svc, &c.who.org).await })
        }),
        Route::personal(M::GET, "/v1/me/history", |svc, c| {
            Box::pin(async move { history::history(svc, &c.who.org, c.req).await })
        }),
        Route::personal(M::GET, "/v1/me/usage/daily", |svc, c| {
            Box::pin(async move { billing::daily_usage(svc, &c.who.org, c.req).await })
        }),
        Route::personal(M::GET, "/v1/me/history.csv", |svc, c| {
            Box::pin(async move { history::history_csv(svc, &c.who.org, c.req).await })
        }),
        Route::personal(M::GET, "/v1/me/notifications", |svc, c| {
            Box::pin(async move { notifications::notifications(svc, &c.who.org).await })
        }),
        Route::personal(M::POST, "/v1/me/notifications/read", |svc, c| {
            Box::pin(async move { notifications::mark_read(svc, &c.who.org, c.body()?).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}", ViewOrg, |_, c| {
            Box::pin(async move {
                let view = views::OrgView {
                    org: &c.who.org,
                    role: c.who.member.role,
                };
                Ok(json_response(StatusCode::OK, &view))
            })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/members", ViewBilling, |svc, c| {
            Box::pin(async move { members::members(svc, &c.who.org).await })
        }),
        Route::member(
            M::PUT,
            "/v1/orgs/{org}/members/{member}",
            ManageMembers,
            |svc, c| {
                Box::pin(
                    async move { members::set_member(svc, &c.who.org, c.param("member")?, c.body()?).await },
                )
            },
        ),
        Route::member(
            M::DELETE,
            "/v1/orgs/{org}/members/{member}",
            ManageMembers,
            |svc, c| {
                Box::pin(async move { members::remove_member(svc, &c.who.org, c.param("member")?).await })
            },
        ),
        Route::member(
            M::PUT,
            "/v1/orgs/{org}/members/{member}/limit",
            SetMemberLimits,
            |svc, c| {
                Box::pin(
                    async move { members::set_limit(svc, &c.who.org, c.param("member")?, c.body()?).await },
                )
            },
        ),
        Route::member(M::GET, "/v1/orgs/{org}/withdrawals", ViewBilling, |svc, c| {
            Box::pin(async move { withdrawals::list(svc, &c.who.org).await })
        }),
        Route::member(M::POST, "/v1/orgs/{org}/withdrawals", Withdraw, |svc, c| {
            Box::pin(async move { withdrawals::request(svc, &c.who, c.body()?).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/balance", ViewBilling, |svc, c| {
            Box::pin(async move { billing::balance(svc, &c.who.org).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/history", ViewBilling, |svc, c| {
            Box::pin(async move { history::history(svc, &c.who.org, c.req).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/history.csv", ViewBilling, |svc, c| {
            Box::pin(async move { history::history_csv(svc, &c.who.org, c.req).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/usage/daily", ViewBilling, |svc, c| {
            Box::pin(async move { billing::daily_usage(svc, &c.who.org, c.req).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/usage", ViewBilling, |svc, c| {
            Box::pin(async move { billing::month_usage(svc, &c.who.org, c.req).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/notifications", ViewBilling, |svc, c| {
            Box::pin(async move { notifications::notifications(svc, &c.who.org).await })
        }),
        Route::member(
            M::POST,
            "/v1/orgs/{org}/notifications/read",
            ViewBilling,
            |svc, c| Box::pin(async move { notifications::mark_read(svc, &c.who.org, c.body()?).await }),
        ),
        Route::member(M::GET, "/v1/orgs/{org}/settings", ViewBilling, |svc, c| {
            Box::pin(async move { settings::get(svc, &c.who.org).await })
        }),
        Route::member(M::PATCH, "/v1/orgs/{org}/settings", ChangeSettings, |svc, c| {
            Box::pin(async move { settings::patch(svc, &c.who, c.body()?).await })
        }),
        Route::member(M::PUT, "/v1/orgs/{org}/billing-mode", ManageOrg, |svc, c| {
            Box::pin(async move { orgs::set_billing_mode(svc, &c.who.org, c.body()?).await })
        }),
        Route::member(M::GET, "/v1/orgs/{org}/keys", ViewBilling, |svc, c| {
            Box::pin(async move { keys::keys(svc, &c.who.org).await })
        }),
        Route::member(M::PUT, "/v1/orgs/{org}/keys/{provider}", ManageKeys, |svc, c| {
            Box::pin(async move { keys::put_key(svc, &c.who.org, c.param("provider")?, c.body()?).await })
        }),
        Route::member(
            M::DELETE,
            "/v1/orgs/{org}/keys/{provider}",
            ManageKeys,
            |svc, c| Box::pin(async move { keys::delete_key(svc, &c.who.org, c.param("provider")?).await }),
        ),
        Route::member(M::GET, "/v1/orgs/{org}/agents", ViewOrg, |svc, c| {
            Box::pin(async move { agents::agents(svc, &c.who.org).await })
        }),
        Route::member(M::PUT, "/v1/orgs/{org}/agents/{agent}", ManageOrg, |svc, c| {
            Box::pin(async move {
                agents::set_agent_runtime(svc, &c.who.org, &c.who.member.id, c.param("agent")?, c.body()?)
                    .await
            })
        }),
        Route::member(M::DELETE, "/v1/orgs/{org}/agents/{agent}", ManageOrg, |svc, c| {
            Box::pin(async move { agents::clear_agent_runtime(svc, &c.who.org, c.param("agent")?).await })
        }),
    ]
}

impl Edge for Account {
    fn directory(&self) -> Option<&dyn OrgDirectory> {
        Some(self.directory.as_ref())
    }
}

static ROUTER: Table<Account> = Table::new(|| Router::new(routes()));

pub async fn handle(svc: &Account, req: Request) -> Response<Body> {
    answer(&ROUTER, svc, req).await
}
