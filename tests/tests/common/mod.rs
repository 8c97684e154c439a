//! Every HTTP function over one dynoxide table, the Stripe simulator and (when asked)
//! moto, as the cross-function tests use them: a request goes to the function whose
//! routes hold it, and comes back as (status, JSON, text).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent_credits_aws::KeyVault;
use agent_credits_domain::SystemClock;
use agent_credits_dynamo::{DynamoWalletStore, OrgStore, RateStore, RechargeStore};
use serde_json::{Value, json};

pub const TABLE: &str = "credits";
pub const BYOK_PREFIX: &str = "agent-credits/test/byok/";
pub const WEBHOOK_SECRET: &str = "whsec_tests";

pub struct App {
    pub client: aws_sdk_dynamodb::Client,
    pub secrets: Option<aws_sdk_secretsmanager::Client>,
    pub sim: stripe_sim::StripeSim,
    pub usage: usage::Usage,
    pub account: account::Account,
    pub checkout: checkout::Checkout,
    pub webhooks: webhooks::Webhooks,
    pub recharge: recharge::Recharge,
    /// A client of the simulator, as the functions hold one.
    pub stripe: stripe::Client,
    _db: Option<support::dynoxide::Dynoxide>,
}

impl App {
    /// The functions over a fresh table. Key changes go to moto at `secrets`; without it
    /// Secrets Manager is unreachable (a key change answers 503).
    pub async fn start(secrets: Option<&str>) -> App {
        let (db, client) = support::fresh_table(TABLE).await;
        App::on(client, Some(db), secrets).await
    }

    /// The functions over `client`, whatever it reaches: a table, nothing, or a mock.
    pub async fn on(
        client: aws_sdk_dynamodb::Client,
        db: Option<support::dynoxide::Dynoxide>,
        secrets: Option<&str>,
    ) -> App {
        let sim = stripe_sim::StripeSim::start().await.unwrap();
        let stripe_client = || {
            stripe::ClientBuilder::new("sk_test_app")
                .url(sim.base_url())
                .build()
                .unwrap()
        };
        let secrets = secrets.map(support::secrets_client);
        let vault = || {
            KeyVault::new(
                secrets
                    .clone()
                    .unwrap_or_else(|| support::secrets_client("http://127.0.0.1:9")),
                BYOK_PREFIX,
            )
        };
        let store = || DynamoWalletStore::new(client.clone(), TABLE, Arc::new(SystemClock));
        App {
            usage: usage::Usage {
                store: store(),
                orgs: OrgStore::new(client.clone(), TABLE),
                months: Arc::new(store()),
                rates: RateStore::new(client.clone(), TABLE),
                clock: Arc::new(SystemClock),
                settings: <usage::Settings as agent_credits_aws::settings::FromEnv>::from_lookup(|n| {
                    support::usage_setting(TABLE, n)
                })
                .unwrap(),
                keys: Some(Arc::new(vault())),
            },
            account: account::Account {
                store: store(),
                feed: Arc::new(store()),
                limits: Arc::new(store()),
                withdrawal_minimum: account::DEFAULT_WITHDRAWAL_MINIMUM,
                directory: Arc::new(OrgStore::new(client.clone(), TABLE)),
                orgs: OrgStore::new(client.clone(), TABLE),
                clock: Arc::new(SystemClock),
                keys: Arc::new(vault()),
            },
            checkout: checkout::Checkout {
                orgs: OrgStore::new(client.clone(), TABLE),
                recharges: RechargeStore::new(client.clone(), TABLE),
                payments: support::payments(sim.base_url(), "sk_test_app"),
                billing: support::payments(sim.base_url(), "sk_test_app"),
                catalog: checkout::catalog_from(|_| None).unwrap(),
                plans: agent_credits_domain::Plans::default(),
                portal_configuration: None,
                dashboard_url: "http://127.0.0.1:3000".into(),
            },
            webhooks: webhooks::Webhooks {
                store: store(),
                recharges: RechargeStore::new(client.clone(), TABLE),
                signing_secret: WEBHOOK_SECRET.into(),
                payments: Some(support::payments(sim.base_url(), "sk_test_app")),
                plans: webhooks::Plans::default(),
            },
            recharge: recharge::Recharge {
                store: store(),
                recharges: RechargeStore::new(client.clone(), TABLE),
                payments: support::payments(sim.base_url(), "sk_test_app"),
                clock: Arc::new(SystemClock),
                resume_after: chrono::Duration::seconds(120),
            },
            stripe: stripe_client(),
            client,
            secrets,
            sim,
            _db: db,
        }
    }

    /// Sends an API Gateway v2 event to the function `tag` names (the OpenAPI tags).
    pub async fn send(&self, tag: &str, event: &Value) -> (u16, Value, String) {
        let req = support::request(event);
        let response = match tag {
            "usage" => usage::handle(&self.usage, req).await,
            "account" => account::handle(&self.account, req).await,
            "checkout" => checkout::handle(&self.checkout, req).await,
            "webhooks" => webhooks::handle(&self.webhooks, req).await,
            other => panic!("no function {other}"),
        };
        support::contract::answered(event, response)
    }

    /// A dashboard request by `sub`, to checkout or account by its path.
    pub async fn dashboard(&self, method: &str, path: &str, sub: &str, body: Option<Value>) -> (u16, Value) {
        let (status, body, _) = self
            .send(
                dashboard_function(path),
                &dashboard_event(method, path, sub, body.as_ref()),
            )
            .await;
        (status, body)
    }

    /// An IAM-signed request of the agent runtime to the usage function.
    pub async fn runtime(&self, method: &str, path_and_query: &str, body: Option<Value>) -> (u16, Value) {
        let (status, body, _) = self
            .send("usage", &runtime_event(method, path_and_query, body.as_ref()))
            .await;
        (status, body)
    }

    /// Creates `org` owned by `owner` from the fields given (id and name added).
    pub async fn create_org(&self, owner: &str, org: &str, fields: Value) -> (u16, Value) {
        let mut body = json!({ "id": org, "name": org });
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.dashboard("POST", "/v1/orgs", owner, Some(body)).await
    }

    /// Creates a credits org on Claude Code owned by `owner`, with `members` (sub, role)
    /// added by the owner; panics unless each step succeeds.
    pub async fn org_with_members(&self, owner: &str, org: &str, members: &[(&str, &str)]) {
        let fields = json!({ "runtime": "claude_code", "billing_mode": "credits" });
        let (status, body) = self.create_org(owner, org, fields).await;
        assert_eq!(status, 201, "{body}");
        for (sub, role) in members {
            let path = format!("/v1/orgs/{org}/members/{sub}");
            let (status, body) = self
                .dashboard("PUT", &path, owner, Some(json!({ "role": role })))
                .await;
            assert_eq!(status, 200, "{body}");
        }
    }

    /// Every item of the table, sorted: what a test compares before and after.
    pub async fn dump(&self) -> String {
        let mut items = vec![];
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(TABLE)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            items.extend(out.items().iter().map(|i| {
                let mut pairs: Vec<String> = i.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                pairs.sort();
                pairs.join(",")
            }));
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        items.sort();
        items.join("\n")
    }
}

/// The function that serves a dashboard path: checkout (offers, sessions, auto-recharge) or
/// account.
pub fn dashboard_function(path_and_query: &str) -> &'static str {
    let route = path_and_query.split('?').next().unwrap_or(path_and_query);
    let checkout = [
        "/checkout",
        "/auto-recharge",
        "/offers",
        "/plans",
        "/subscription",
        "/invoices",
        "/portal",
    ];
    if checkout.iter().any(|end| route.ends_with(end)) {
        "checkout"
    } else {
        "account"
    }
}

#[allow(unused_imports)] // each test file uses some of them
pub use support::{dashboard_event, iam_event, operator_event, runtime_event};

/// `infra/openapi.yaml`.
pub fn openapi() -> serde_yaml::Value {
    let text = std::fs::read_to_string(support::repo_root().join("infra/openapi.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// One operation of the OpenAPI document: its method, path template, the function its
/// tag names, and the operation itself.
pub struct Operation {
    pub method: String,
    pub path: String,
    pub tag: String,
    pub op: serde_yaml::Value,
}

/// Every operation of `infra/openapi.yaml`.
pub fn operations() -> Vec<Operation> {
    let doc = openapi();
    let mut ops = vec![];
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        for (method, op) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if !["get", "put", "post", "delete", "patch"].contains(&method) {
                continue;
            }
            let path = path.as_str().unwrap().to_owned();
            let tag = op["tags"][0]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no tag"))
                .to_owned();
            ops.push(Operation {
                method: method.to_uppercase(),
                path,
                tag,
                op: op.clone(),
            });
        }
    }
    ops
}

/// An id no path parameter accepts.
pub const BAD_ID: &str = "bad!id";

/// Valid values for each path parameter.
pub fn sample(param: &str) -> &'static str {
    match param {
        "org" => "org_demo",
        "member" => "u_member",
        "hold" => "h_1",
        "model" => "claude-sonnet",
        "provider" => "open_ai",
        "agent" => "agent_7",
        "kind" => "sms",
        "withdrawal" => "wd_1",
        other => panic!("no sample for path parameter {other}"),
    }
}

pub fn params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

pub fn fill(path: &str, bad: Option<&str>) -> String {
    let mut out = path.to_owned();
    for p in params(path) {
        let value = if Some(p) == bad { BAD_ID } else { sample(p) };
        out = out.replace(&format!("{{{p}}}"), value);
    }
    out
}

/// A valid example body of `op`, for the variants that spoil something else.
pub fn good_body(op: &serde_yaml::Value) -> Option<String> {
    let content = &op["requestBody"]["content"]["application/json"];
    if content.is_null() {
        return None;
    }
    let example = if content["example"].is_null() {
        content["examples"]
            .as_mapping()
            .and_then(|m| m.values().next())
            .map(|e| to_json(&e["value"]))?
    } else {
        to_json(&content["example"])
    };
    Some(example.to_string())
}

pub fn to_json(y: &serde_yaml::Value) -> Value {
    serde_json::to_value(y).unwrap()
}

/// Every route of every function's table: its function (the document's tag), method,
/// path and auth.
pub fn route_table() -> Vec<(&'static str, String, &'static str, agent_credits_http::Auth)> {
    fn of<S>(
        tag: &'static str,
        routes: Vec<agent_credits_http::Route<S>>,
    ) -> Vec<(&'static str, String, &'static str, agent_credits_http::Auth)> {
        routes
            .iter()
            .map(|r| (tag, r.method.to_string(), r.path, r.auth()))
            .collect()
    }
    [
        of("usage", usage::routes()),
        of("account", account::routes()),
        of("checkout", checkout::routes()),
        of("webhooks", webhooks::routes()),
    ]
    .concat()
}
