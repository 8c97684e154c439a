//! BYOK keys end to end: the account function stores an org's provider key in Secrets
//! Manager (moto over HTTP, tagged with the org), the dashboard sees only its provider,
//! last four and dates, the runtime fetches it through the usage function's IAM route, and
//! the key appears nowhere else: not in the table, not in any log line (captured at
//! DEBUG), not in any dashboard answer, not even as any 8-character piece of it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{App, BYOK_PREFIX as PREFIX};
use serde_json::{Value, json};

const KEY: &str = "sk-proj-Zq8vN3kLp5Rt7Wx2Yb4Hd6Jf9Gs1Mc0Ae3Ui5Oy7Te9";

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary, at DEBUG, from a global subscriber set once: a
/// scoped one misses events whose callsites another test thread registered first.
fn captured_logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing::subscriber::set_global_default(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(move || writer.clone())
                .finish(),
        )
        .unwrap();
        logs
    })
    .clone()
}

#[tokio::test]
async fn a_stored_key_is_only_in_secrets_manager_and_only_its_last_four_are_shown() {
    let logs = captured_logs();
    let moto = support::moto::Moto::start();
    let app = App::start(Some(moto.endpoint())).await;
    let secrets = app.secrets.clone().unwrap();
    let seen = std::cell::RefCell::new(String::new());
    let dash = async |method: &str, path: &str, body: Option<Value>| {
        let event = common::dashboard_event(method, path, "u_owner", body.as_ref());
        let (status, json, text) = app.send("account", &event).await;
        seen.borrow_mut().push_str(&text);
        (status, json)
    };

    // A byok org on Codex needs its OpenAI key, and says so.
    let org = json!({ "id": "org_byok", "name": "BYOK Co", "runtime": "codex", "billing_mode": "byok" });
    let (status, body) = dash("POST", "/v1/orgs", Some(org.clone())).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("provider_key_required")),
        "{body}"
    );
    assert_eq!(body["error"]["provider"], "open_ai", "{body}");
    // A key of the wrong shape is refused before anything is written.
    let mut bad = org.clone();
    bad["keys"] = json!({ "open_ai": "sk-ant-api03-not-an-openai-key-at-all-000000" });
    let (status, body) = dash("POST", "/v1/orgs", Some(bad)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_key")),
        "{body}"
    );

    let mut good = org.clone();
    good["keys"] = json!({ "open_ai": KEY });
    let (status, body) = dash("POST", "/v1/orgs", Some(good)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["keys"][0]["last4"], &KEY[KEY.len() - 4..]);

    let (status, body) = dash("GET", "/v1/orgs/org_byok/keys", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["keys"].as_array().unwrap().len(), 1);
    assert_eq!(body["keys"][0]["provider"], "open_ai");
    assert_eq!(body["keys"][0]["last4"], &KEY[KEY.len() - 4..]);
    assert!(body["keys"][0]["rotated_at"].is_null());

    // Rotating keeps the created date and sets the rotated one.
    let (status, body) = dash(
        "PUT",
        "/v1/orgs/org_byok/keys/open_ai",
        Some(json!({ "key": KEY })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["key"]["rotated_at"].is_string(), "{body}");

    // The secret: in Secrets Manager, under the prefix, tagged with the org.
    let name = format!("{PREFIX}org_byok/open_ai");
    let described = secrets.describe_secret().secret_id(&name).send().await.unwrap();
    let tags: Vec<(String, String)> = described
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        tags.contains(&("agent-credits:org".to_owned(), "org_byok".to_owned())),
        "{tags:?}"
    );

    // The runtime's fetch (IAM) is the one answer that carries the key.
    let (status, body) = app
        .runtime("GET", "/v1/orgs/org_byok/provider-keys/open_ai", None)
        .await;
    assert_eq!((status, body["key"].as_str()), (200, Some(KEY)), "{body}");

    // Nowhere else: the table, the logs, the dashboard's answers.
    let dump = format!(
        "{:?}",
        app.client
            .scan()
            .table_name(common::TABLE)
            .send()
            .await
            .unwrap()
            .items()
    );
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("org_byok"), "the logs were captured");
    let seen = seen.borrow().clone();
    for (place, text) in [("table", &dump), ("logs", &logged), ("dashboard answers", &seen)] {
        for piece in KEY.as_bytes().windows(8) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(!text.contains(piece), "{piece:?} of the key is in the {place}");
        }
    }

    // A byok org on Codex keeps its OpenAI key: its agents would stop.
    let (status, body) = dash("DELETE", "/v1/orgs/org_byok/keys/open_ai", None).await;
    assert_eq!(
        (
            status,
            body["error"]["code"].as_str(),
            body["error"]["runtime"].as_str()
        ),
        (409, Some("key_in_use"), Some("codex")),
        "{body}"
    );
    assert!(secrets.describe_secret().secret_id(&name).send().await.is_ok());
    let (status, _) = dash(
        "PUT",
        "/v1/orgs/org_byok/billing-mode",
        Some(json!({ "billing_mode": "credits" })),
    )
    .await;
    assert_eq!(status, 200);

    // Deleted: gone from Secrets Manager and from the runtime's reach.
    let (status, _) = dash("DELETE", "/v1/orgs/org_byok/keys/open_ai", None).await;
    assert_eq!(status, 200);
    assert!(secrets.describe_secret().secret_id(&name).send().await.is_err());
    let (status, body) = app
        .runtime("GET", "/v1/orgs/org_byok/provider-keys/open_ai", None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("key_not_found"))
    );
}

#[tokio::test]
async fn a_deferred_org_runs_once_it_has_a_key_and_switches_only_as_reference_000_allows() {
    captured_logs();
    let moto = support::moto::Moto::start();
    let app = App::start(Some(moto.endpoint())).await;
    let dash = async |method: &str, path: &str, body: Option<Value>| {
        app.dashboard(method, path, "u_owner", body).await
    };
    let may_i_run = async || app.runtime("GET", "/v1/orgs/org_later/may-i-run", None).await.1;
    let org =
        json!({ "id": "org_later", "name": "Later Co", "runtime": "codex", "billing_mode": "deferred" });
    assert_eq!(dash("POST", "/v1/orgs", Some(org)).await.0, 201);
    let verdict = may_i_run().await;
    assert_eq!(
        (verdict["allowed"].as_bool(), verdict["reason"].as_str()),
        (Some(false), Some("no_key_configured"))
    );

    // deferred → byok needs the runtime's key first.
    let to_byok = json!({ "billing_mode": "byok" });
    let (status, body) = dash("PUT", "/v1/orgs/org_later/billing-mode", Some(to_byok.clone())).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("provider_key_required")),
        "{body}"
    );
    let (status, _) = dash(
        "PUT",
        "/v1/orgs/org_later/keys/open_ai",
        Some(json!({ "key": KEY })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        may_i_run().await["allowed"],
        true,
        "a deferred org with a key runs on it"
    );
    let (status, body) = dash("PUT", "/v1/orgs/org_later/billing-mode", Some(to_byok)).await;
    assert_eq!(
        (status, body["billing_mode"].as_str()),
        (200, Some("byok")),
        "{body}"
    );
    // Nothing goes back to deferred; byok → credits is allowed.
    let (status, body) = dash(
        "PUT",
        "/v1/orgs/org_later/billing-mode",
        Some(json!({ "billing_mode": "deferred" })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("switch_refused")),
        "{body}"
    );
    let (status, _) = dash(
        "PUT",
        "/v1/orgs/org_later/billing-mode",
        Some(json!({ "billing_mode": "credits" })),
    )
    .await;
    assert_eq!(status, 200);
    let (_, org) = dash("GET", "/v1/orgs/org_later", None).await;
    assert_eq!(org["org"]["billing_mode"], "credits");
}

/// An org whose key cannot be stored is not created half: nothing of it is visible, and
/// the same request, once Secrets Manager answers, creates it with its key.
#[tokio::test]
async fn a_byok_org_whose_key_was_not_stored_does_not_exist_until_a_retry_stores_it() {
    let moto = support::moto::Moto::start();
    // Secrets Manager out of reach first.
    let mut app = App::start(None).await;
    let body = json!({ "id": "org_half", "name": "Half", "runtime": "codex", "billing_mode": "byok",
        "keys": { "open_ai": KEY } });
    let (status, answer) = app
        .dashboard("POST", "/v1/orgs", "u_owner", Some(body.clone()))
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("key_store_unavailable")),
        "{answer}"
    );
    let (status, _) = app.dashboard("GET", "/v1/orgs/org_half", "u_owner", None).await;
    assert_eq!(status, 403, "a reserved org is nobody's yet");
    let (status, verdict) = app.runtime("GET", "/v1/orgs/org_half/may-i-run", None).await;
    assert_eq!(
        (status, verdict["error"]["code"].as_str()),
        (404, Some("unknown_org"))
    );
    // Someone else cannot take the id meanwhile.
    let (status, _) = app
        .dashboard("POST", "/v1/orgs", "u_other", Some(body.clone()))
        .await;
    assert_eq!(status, 409);
    // The creator's retry, with Secrets Manager back.
    app.account.keys = std::sync::Arc::new(agent_credits_aws::KeyVault::new(
        support::secrets_client(moto.endpoint()),
        PREFIX,
    ));
    let (status, answer) = app
        .dashboard("POST", "/v1/orgs", "u_owner", Some(body.clone()))
        .await;
    assert_eq!(status, 201, "{answer}");
    let (_, keys) = app
        .dashboard("GET", "/v1/orgs/org_half/keys", "u_owner", None)
        .await;
    assert_eq!(keys["keys"][0]["provider"], "open_ai", "{keys}");
    // And a retry of that, whose first answer was lost, is the same org.
    let (status, answer) = app.dashboard("POST", "/v1/orgs", "u_owner", Some(body)).await;
    assert_eq!(status, 201, "{answer}");
}
