//! Per-agent runtimes (reference 000: "you can change it later per agent"): admins set
//! and clear an agent's runtime, the runtime learns it from may-i-run, and a byok org
//! keeps the provider keys its agents' runtimes need, both when an agent changes runtime
//! and when a key or the billing mode would change under it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::App;
use serde_json::{Value, json};

const OPENAI_KEY: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3";

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

#[tokio::test]
async fn an_agent_runs_its_own_runtime_until_it_is_cleared() {
    let app = App::start(None).await;
    app.org_with_members("u_owner", "org_a", &[("u_member", "member")])
        .await;
    let runtime_of = async |agent: &str| {
        let (status, verdict) = app
            .runtime("GET", &format!("/v1/orgs/org_a/may-i-run?agent={agent}"), None)
            .await;
        assert_eq!(status, 200, "{verdict}");
        verdict["runtime"].as_str().map(str::to_owned)
    };

    let (status, list) = app
        .dashboard("GET", "/v1/orgs/org_a/agents", "u_member", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list, json!({ "runtime": "claude_code", "agents": [] }));
    assert_eq!(runtime_of("agent_7").await.as_deref(), Some("claude_code"));

    // A member may not; an unknown runtime changes nothing.
    let codex = Some(json!({ "runtime": "codex" }));
    let (status, body) = app
        .dashboard("PUT", "/v1/orgs/org_a/agents/agent_7", "u_member", codex.clone())
        .await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")));
    let (status, body) = app
        .dashboard(
            "PUT",
            "/v1/orgs/org_a/agents/agent_7",
            "u_owner",
            Some(json!({ "runtime": "vim" })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(runtime_of("agent_7").await.as_deref(), Some("claude_code"));

    let (status, body) = app
        .dashboard("PUT", "/v1/orgs/org_a/agents/agent_7", "u_owner", codex)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agent"]["runtime"], "codex");
    assert_eq!(body["agent"]["updated_by"], "u_owner");
    assert_eq!(runtime_of("agent_7").await.as_deref(), Some("codex"));
    assert_eq!(runtime_of("agent_8").await.as_deref(), Some("claude_code"));
    let (_, list) = app
        .dashboard("GET", "/v1/orgs/org_a/agents", "u_member", None)
        .await;
    assert_eq!(list["agents"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["agents"][0]["agent"], "agent_7");
    // Without an agent, may-i-run answers as before.
    let (_, verdict) = app.runtime("GET", "/v1/orgs/org_a/may-i-run", None).await;
    assert!(verdict.get("runtime").is_none(), "{verdict}");

    let (status, body) = app
        .dashboard("DELETE", "/v1/orgs/org_a/agents/agent_7", "u_owner", None)
        .await;
    assert_eq!(
        (status, body["runtime"].as_str()),
        (200, Some("claude_code")),
        "{body}"
    );
    assert_eq!(runtime_of("agent_7").await.as_deref(), Some("claude_code"));
    let (status, body) = app
        .dashboard("DELETE", "/v1/orgs/org_a/agents/agent_7", "u_owner", None)
        .await;
    assert_eq!((status, code(&body)), (404, Some("agent_not_found")));
}

#[tokio::test]
async fn a_byok_org_keeps_the_keys_its_agents_runtimes_need() {
    let moto = support::moto::Moto::start();
    let app = App::start(Some(moto.endpoint())).await;
    let dash = async |method: &str, path: &str, body: Option<Value>| {
        app.dashboard(method, path, "u_owner", body).await
    };
    // Claude Code may use the platform key: a byok org on it needs no key of its own.
    let byok = json!({ "runtime": "claude_code", "billing_mode": "byok" });
    assert_eq!(app.create_org("u_owner", "org_b", byok).await.0, 201);
    let codex = Some(json!({ "runtime": "codex" }));
    let (status, body) = dash("PUT", "/v1/orgs/org_b/agents/agent_7", codex.clone()).await;
    assert_eq!(
        (status, code(&body)),
        (400, Some("provider_key_required")),
        "{body}"
    );
    assert_eq!(body["error"]["provider"], "open_ai");
    let (_, list) = dash("GET", "/v1/orgs/org_b/agents", None).await;
    assert_eq!(list["agents"], json!([]), "a refused change writes nothing");

    let key = Some(json!({ "key": OPENAI_KEY }));
    assert_eq!(dash("PUT", "/v1/orgs/org_b/keys/open_ai", key).await.0, 200);
    // A delete of the key, checked while no agent ran Codex, lands after agent_7 moved onto
    // Codex: refused, and the key stays.
    let org_b = agent_credits_domain::OrgId::parse("org_b").unwrap();
    let seen = app.account.orgs.get(&org_b).await.unwrap().unwrap();
    assert_eq!(dash("PUT", "/v1/orgs/org_b/agents/agent_7", codex).await.0, 200);
    let forgotten = app
        .account
        .orgs
        .forget_key(&seen, agent_credits_domain::Provider::OpenAi)
        .await
        .unwrap();
    assert!(!forgotten, "forgotten against a stale read");
    // The key agent_7 runs on stays while it does.
    let (status, body) = dash("DELETE", "/v1/orgs/org_b/keys/open_ai", None).await;
    assert_eq!((status, code(&body)), (409, Some("key_in_use")), "{body}");
    assert_eq!(body["error"]["runtime"], "codex");
    assert_eq!(dash("DELETE", "/v1/orgs/org_b/agents/agent_7", None).await.0, 200);
    assert_eq!(dash("DELETE", "/v1/orgs/org_b/keys/open_ai", None).await.0, 200);

    // A deferred org whose agent runs Gemini CLI switches to byok only with a Google key.
    let deferred = json!({ "runtime": "claude_code", "billing_mode": "deferred" });
    assert_eq!(app.create_org("u_owner", "org_c", deferred).await.0, 201);
    let gemini = Some(json!({ "runtime": "gemini_cli" }));
    assert_eq!(dash("PUT", "/v1/orgs/org_c/agents/agent_9", gemini).await.0, 200);
    let (status, body) = dash(
        "PUT",
        "/v1/orgs/org_c/billing-mode",
        Some(json!({ "billing_mode": "byok" })),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (400, Some("provider_key_required")),
        "{body}"
    );
    assert_eq!(body["error"]["provider"], "google");
    let (_, org) = dash("GET", "/v1/orgs/org_c", None).await;
    assert_eq!(org["org"]["billing_mode"], "deferred");
}

/// Each rule-checked change is written on the condition that the org is still as it was
/// read: a switch to byok and an agent's move to a keyed runtime, each checked while the
/// other had not happened, cannot both land.
#[tokio::test]
async fn a_change_checked_against_a_stale_read_of_the_org_writes_nothing() {
    use agent_credits_domain::{AgentId, BillingMode, MemberId, OrgId, Runtime};
    let app = App::start(None).await;
    let owner = MemberId::parse("u_owner").unwrap();
    let agent = AgentId::parse("agent_7").unwrap();
    let dash = async |method: &str, path: &str, body: Option<Value>| {
        app.dashboard(method, path, "u_owner", body).await
    };
    let to_byok = Some(json!({ "billing_mode": "byok" }));
    let to_codex = Some(json!({ "runtime": "codex" }));
    // Claude Code needs no key of the org's own, so these deferred orgs may go byok.
    for org in ["org_d", "org_e"] {
        let deferred = json!({ "runtime": "claude_code", "billing_mode": "deferred" });
        assert_eq!(app.create_org("u_owner", org, deferred).await.0, 201);
    }

    // An agent's move to Codex, checked while org_d was deferred (no key needed)...
    let org_d = OrgId::parse("org_d").unwrap();
    let seen = app.account.orgs.get(&org_d).await.unwrap().unwrap();
    // ...lands after org_d went byok: it would run Codex without an OpenAI key.
    let (status, body) = dash("PUT", "/v1/orgs/org_d/billing-mode", to_byok.clone()).await;
    assert_eq!(status, 200, "{body}");
    let written = app
        .account
        .orgs
        .set_agent_runtime(&seen, &agent, Runtime::Codex, &owner, chrono::Utc::now())
        .await
        .unwrap();
    assert!(written.is_none(), "written against a stale read: {written:?}");
    let (_, list) = dash("GET", "/v1/orgs/org_d/agents", None).await;
    assert_eq!(list["agents"], json!([]));
    let (status, body) = dash("PUT", "/v1/orgs/org_d/agents/agent_7", to_codex.clone()).await;
    assert_eq!(
        (status, code(&body)),
        (400, Some("provider_key_required")),
        "{body}"
    );

    // The other order: org_e's switch, checked before an agent moved to Codex, lands after.
    let org_e = OrgId::parse("org_e").unwrap();
    let seen = app.account.orgs.get(&org_e).await.unwrap().unwrap();
    assert_eq!(
        dash("PUT", "/v1/orgs/org_e/agents/agent_7", to_codex).await.0,
        200
    );
    let switched = app
        .account
        .orgs
        .set_billing_mode(&seen, BillingMode::Byok)
        .await
        .unwrap();
    assert!(!switched, "switched against a stale read");
    let (status, body) = dash("PUT", "/v1/orgs/org_e/billing-mode", to_byok).await;
    assert_eq!(
        (status, code(&body)),
        (400, Some("provider_key_required")),
        "{body}"
    );
    let (_, org) = dash("GET", "/v1/orgs/org_e", None).await;
    assert_eq!(org["org"]["billing_mode"], "deferred", "{org}");
    assert!(org["org"].get("revision").is_none(), "the revision is not shown");
}
