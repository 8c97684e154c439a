//! The account handler, driven by API Gateway v2 events (JWT claims) from
//! `infra/events/account/`, against dynoxide over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use account::{Account, handle};
use agent_credits_domain::{
    Attribution, ChangeRequest, IdempotencyKey, MemberId, OrgId, PositiveUsd, SystemClock, WalletStore,
};
use agent_credits_dynamo::{DynamoWalletStore, OrgStore};
use serde_json::{Value, json};
use support::dynoxide::Dynoxide;

struct App {
    _db: Dynoxide,
    svc: Account,
}

async fn app() -> App {
    let (db, client) = support::fresh_table("credits").await;
    let store = DynamoWalletStore::new(client.clone(), "credits", Arc::new(SystemClock));
    let svc = Account {
        directory: Arc::new(OrgStore::new(client.clone(), "credits")),
        orgs: OrgStore::new(client, "credits"),
        clock: Arc::new(SystemClock),
        // Nothing here touches keys: a vault that answers nothing (tests/byok.rs has moto).
        keys: Arc::new(agent_credits_aws::KeyVault::new(
            support::secrets_client("http://127.0.0.1:9"),
            "test/byok/",
        )),
        feed: Arc::new(store.clone()),
        limits: Arc::new(store.clone()),
        withdrawal_minimum: account::DEFAULT_WITHDRAWAL_MINIMUM,
        store,
    };
    App { _db: db, svc }
}

/// The fixture `name`, sent by `sub`, to `path` (when given), with `body` (when given).
fn event(name: &str, sub: &str, path: Option<&str>, body: Option<Value>) -> Value {
    let mut e = support::event(&format!("account/{name}"));
    e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = json!(sub);
    if let Some(p) = path {
        e["rawPath"] = json!(p);
    }
    if let Some(b) = body {
        e["body"] = json!(b.to_string());
    }
    e
}

use support::with_query;

async fn call(svc: &Account, event: &Value) -> (u16, Value) {
    support::contract::call(event, |req| handle(svc, req)).await
}

async fn create(svc: &Account, owner: &str, org: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({ "id": org, "name": "Acme", "runtime": "claude_code", "billing_mode": "credits" });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    call(svc, &event("create-org.json", owner, None, Some(body))).await
}

async fn add(svc: &Account, org: &str, owner: &str, member: &str, role: &str) {
    let path = format!("/v1/orgs/{org}/members/{member}");
    let (status, body) = call(
        svc,
        &event(
            "put-member.json",
            owner,
            Some(&path),
            Some(json!({ "role": role })),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn creating_an_org_needs_a_billing_mode_defaults_to_claude_code_and_byok_needs_its_key() {
    let app = app().await;
    let (status, body) = create(&app.svc, "u_owner", "org_a", json!({ "billing_mode": null })).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("billing_mode_required"))
    );
    let (status, body) = create(
        &app.svc,
        "u_owner",
        "org_a",
        json!({ "runtime": "codex", "billing_mode": "byok" }),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("provider_key_required"))
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("open_ai"),
        "{body}"
    );
    let (status, _) = create(&app.svc, "u_owner", "org_a", json!({ "billing_mode": "cash" })).await;
    assert_eq!(status, 400);
    let scan = app
        .svc
        .store
        .client()
        .scan()
        .table_name("credits")
        .send()
        .await
        .unwrap();
    assert_eq!(scan.items().len(), 0, "no refused creation wrote anything");

    // No runtime: Claude Code, reference 000's default.
    let (status, body) = create(&app.svc, "u_owner", "org_default", json!({ "runtime": null })).await;
    assert_eq!(
        (status, body["org"]["runtime"].as_str()),
        (201, Some("claude_code")),
        "{body}"
    );

    let (status, body) = create(&app.svc, "u_owner", "org_a", json!({})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["role"], "owner");
    let (status, body) = create(&app.svc, "u_other", "org_a", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("org_exists"))
    );
    let org = OrgId::parse("org_a").unwrap();
    let wallet = app.svc.store.wallet(&org).await.unwrap();
    assert_eq!(
        wallet.settings.billing_mode,
        Some(agent_credits_domain::BillingMode::Credits)
    );
}

#[tokio::test]
async fn an_org_always_keeps_an_owner() {
    let app = app().await;
    create(&app.svc, "u_owner", "org_a", json!({})).await;
    let (status, body) = call(
        &app.svc,
        &event(
            "delete-member.json",
            "u_owner",
            Some("/v1/orgs/org_a/members/u_owner"),
            None,
        ),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("last_owner"))
    );
    let (status, _) = call(
        &app.svc,
        &event(
            "put-member.json",
            "u_owner",
            Some("/v1/orgs/org_a/members/u_owner"),
            Some(json!({ "role": "admin" })),
        ),
    )
    .await;
    assert_eq!(status, 409);
    add(&app.svc, "org_a", "u_owner", "u_two", "owner").await;
    let (status, _) = call(
        &app.svc,
        &event(
            "delete-member.json",
            "u_owner",
            Some("/v1/orgs/org_a/members/u_owner"),
            None,
        ),
    )
    .await;
    assert_eq!(status, 200, "with a second owner the first may leave");
    let (_, body) = call(
        &app.svc,
        &event("members.json", "u_two", Some("/v1/orgs/org_a/members"), None),
    )
    .await;
    assert_eq!(body["members"].as_array().unwrap().len(), 1);
}

/// Every dashboard route × owner, admin, member, non-member and another org's owner.
#[tokio::test]
async fn the_permission_matrix_holds_and_no_org_sees_another() {
    let app = app().await;
    create(&app.svc, "u_owner", "org_a", json!({})).await;
    create(&app.svc, "u_other_owner", "org_b", json!({})).await;
    add(&app.svc, "org_a", "u_owner", "u_admin", "admin").await;
    add(&app.svc, "org_a", "u_owner", "u_member", "member").await;
    let callers = ["u_owner", "u_admin", "u_member", "u_stranger", "u_other_owner"];

    // (fixture, path, expected status for each caller above)
    let reads = [
        ("get-org.json", "/v1/orgs/org_a"),
        ("members.json", "/v1/orgs/org_a/members"),
        ("balance.json", "/v1/orgs/org_a/balance"),
        ("history.json", "/v1/orgs/org_a/history"),
        ("notifications.json", "/v1/orgs/org_a/notifications"),
    ];
    for (fixture, path) in reads {
        for (caller, want) in callers.iter().zip([200, 200, 200, 403, 403]) {
            let (status, body) = call(&app.svc, &event(fixture, caller, Some(path), None)).await;
            assert_eq!(status, want, "{caller} GET {path}: {body}");
            if status == 403 {
                assert_eq!(body["error"]["code"], "forbidden");
                assert!(
                    body.get("org").is_none() && body.get("balance").is_none(),
                    "a refusal leaks nothing"
                );
            }
        }
    }
    for (i, (caller, want)) in callers.iter().zip([200, 403, 403, 403, 403]).enumerate() {
        let target = format!("u_new{i}");
        let path = format!("/v1/orgs/org_a/members/{target}");
        let (status, body) = call(
            &app.svc,
            &event(
                "put-member.json",
                caller,
                Some(&path),
                Some(json!({ "role": "member" })),
            ),
        )
        .await;
        assert_eq!(status, want, "{caller} PUT {path}: {body}");
        add(&app.svc, "org_a", "u_owner", &target, "member").await;
        let (status, body) = call(&app.svc, &event("delete-member.json", caller, Some(&path), None)).await;
        assert_eq!(status, want, "{caller} DELETE {path}: {body}");
    }

    // An org that keeps billing to its admins (reference 003).
    create(
        &app.svc,
        "u_owner",
        "org_c",
        json!({ "members_see_billing": false }),
    )
    .await;
    add(&app.svc, "org_c", "u_owner", "u_member", "member").await;
    add(&app.svc, "org_c", "u_owner", "u_admin", "admin").await;
    for (caller, want) in [("u_owner", 200), ("u_admin", 200), ("u_member", 403)] {
        let (status, _) = call(
            &app.svc,
            &event("balance.json", caller, Some("/v1/orgs/org_c/balance"), None),
        )
        .await;
        assert_eq!(status, want, "{caller} balance of org_c");
    }

    let mut no_token = event("get-org.json", "u_owner", Some("/v1/orgs/org_a"), None);
    no_token["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let (status, body) = call(&app.svc, &no_token).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
}

#[tokio::test]
async fn the_balance_card_equals_the_ledger() {
    let app = app().await;
    create(&app.svc, "u_owner", "org_a", json!({})).await;
    let org = OrgId::parse("org_a").unwrap();
    let key = |k: &str| IdempotencyKey::parse(k).unwrap();
    app.svc
        .store
        .apply(support::purchase(&org, "100", "p1"))
        .await
        .unwrap()
        .unwrap();
    for i in 0..6 {
        let who = Attribution {
            member: Some(MemberId::parse("u_owner").unwrap()),
            ..Default::default()
        };
        let use_ = ChangeRequest::usage(
            org.clone(),
            PositiveUsd::parse("1.25").unwrap(),
            key(&format!("u{i}")),
        )
        .attributed_to(who);
        app.svc.store.apply(use_).await.unwrap().unwrap();
    }
    app.svc
        .store
        .apply(support::purchase(&org, "20", "p2"))
        .await
        .unwrap()
        .unwrap();

    let (status, card) = call(
        &app.svc,
        &event("balance.json", "u_owner", Some("/v1/orgs/org_a/balance"), None),
    )
    .await;
    assert_eq!(status, 200, "{card}");
    assert_eq!(card["balance"], "112.50");
    assert_eq!(card["credits"], "22500", "200 credits = $1");
    assert_eq!(card["lifetime_added"], "120.00");
    assert_eq!(card["lifetime_spent"], "7.50");
    assert_eq!(card["low_balance"], false);
    let recent = card["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 5);
    assert_eq!(recent[0]["kind"], "purchase");
    assert_eq!(recent[0]["balance_after"], "112.50");
    assert_eq!(recent[1]["amount"], "-1.25");
    assert_eq!(recent[1]["balance_after"], "92.50");

    // History pages, and a kind filter.
    let e = event("history.json", "u_owner", Some("/v1/orgs/org_a/history"), None);
    let (_, page) = call(&app.svc, &with_query(e.clone(), "limit=3")).await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, rest) = call(
        &app.svc,
        &with_query(e.clone(), &format!("limit=10&cursor={next}&kind=purchase")),
    )
    .await;
    let kinds: Vec<&str> = rest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["purchase"]);
    assert_eq!(rest["entries"][0]["balance_after"], "100.00");
    let (status, body) = call(&app.svc, &with_query(e, "cursor=abc")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_cursor"))
    );
}

async fn raw(svc: &Account, event: &Value) -> (u16, String, String) {
    let response = handle(svc, support::request(event)).await;
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = String::from_utf8(response.body().as_ref().to_vec()).unwrap();
    (response.status().as_u16(), kind, body)
}

#[tokio::test]
async fn limits_month_usage_read_marks_and_the_csv_export_follow_the_ledger() {
    let app = app().await;
    assert_eq!(create(&app.svc, "u_owner", "org_a", json!({})).await.0, 201);
    add(&app.svc, "org_a", "u_owner", "u_ana", "member").await;
    let org = OrgId::parse("org_a").unwrap();
    let limit = |sub: &str, member: &str, body: Value| {
        event(
            "put-member-limit.json",
            sub,
            Some(&format!("/v1/orgs/org_a/members/{member}/limit")),
            Some(body),
        )
    };
    // Owners set limits; members cannot; unknown members and bad amounts are refused.
    for (sub, member, body, status) in [
        ("u_ana", "u_ana", json!({ "monthly_limit_usd": "25.00" }), 403),
        (
            "u_owner",
            "u_nobody",
            json!({ "monthly_limit_usd": "25.00" }),
            404,
        ),
        ("u_owner", "u_ana", json!({ "monthly_limit_usd": 25 }), 400),
        ("u_owner", "u_ana", json!({ "monthly_limit_usd": "-1" }), 400),
    ] {
        assert_eq!(
            call(&app.svc, &limit(sub, member, body.clone())).await.0,
            status,
            "{sub} {member} {body}"
        );
    }
    assert_eq!(
        app.svc
            .store
            .member_month(&org, &MemberId::parse("u_ana").unwrap(), chrono::Utc::now())
            .await
            .unwrap()
            .limit,
        None
    );
    let (status, body) = call(
        &app.svc,
        &limit("u_owner", "u_ana", json!({ "monthly_limit_usd": "25.00" })),
    )
    .await;
    assert_eq!(
        (status, body["monthly_limit"].as_str()),
        (200, Some("25.00")),
        "{body}"
    );

    // Ana spends $3.50 of $30: the balance falls below $20 (a notification).
    app.svc
        .store
        .apply(support::purchase(&org, "30", "p1"))
        .await
        .unwrap()
        .unwrap();
    for (i, amount) in ["1.50", "2.00", "10.00"].iter().enumerate() {
        let who = if i < 2 { "u_ana" } else { "u_owner" };
        let use_ = ChangeRequest::usage(
            org.clone(),
            PositiveUsd::parse(amount).unwrap(),
            IdempotencyKey::parse(format!("u{i}")).unwrap(),
        )
        .attributed_to(Attribution {
            member: Some(MemberId::parse(who).unwrap()),
            ..Default::default()
        });
        app.svc.store.apply(use_).await.unwrap().unwrap();
    }
    let (status, usage) = call(
        &app.svc,
        &event("month-usage.json", "u_owner", Some("/v1/orgs/org_a/usage"), None),
    )
    .await;
    assert_eq!(status, 200, "{usage}");
    let row = |m: &str| {
        usage["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["member"] == m)
            .unwrap()
            .clone()
    };
    assert_eq!(
        row("u_ana")["spent"]
            .as_str()
            .map(|s| s.parse::<rust_decimal::Decimal>().unwrap()),
        Some(rust_decimal::Decimal::new(35, 1))
    );
    assert_eq!(row("u_ana")["monthly_limit"], "25.00");
    assert_eq!(
        row("u_owner")["spent"]
            .as_str()
            .map(|s| s.parse::<rust_decimal::Decimal>().unwrap()),
        Some(rust_decimal::Decimal::new(10, 0))
    );
    let bad_month = with_query(
        event("month-usage.json", "u_owner", Some("/v1/orgs/org_a/usage"), None),
        "month=2026-13",
    );
    assert_eq!(call(&app.svc, &bad_month).await.0, 400);

    // Read marks: one by id, then all; bad bodies change nothing.
    let (_, feed) = call(
        &app.svc,
        &event(
            "notifications.json",
            "u_owner",
            Some("/v1/orgs/org_a/notifications"),
            None,
        ),
    )
    .await;
    let ids: Vec<String> = feed["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!ids.is_empty(), "{feed}");
    let read = |body: Value| {
        event(
            "mark-read.json",
            "u_owner",
            Some("/v1/orgs/org_a/notifications/read"),
            Some(body),
        )
    };
    for bad in [
        json!({}),
        json!({ "ids": [] }),
        json!({ "ids": ["x"], "all": true }),
        json!({ "all": "yes" }),
    ] {
        assert_eq!(call(&app.svc, &read(bad.clone())).await.0, 400, "{bad}");
    }
    let (_, marked) = call(&app.svc, &read(json!({ "ids": [ids[0]] }))).await;
    assert_eq!(marked["marked"], 1);
    let (_, again) = call(&app.svc, &read(json!({ "ids": [ids[0], "NOTIF-unknown"] }))).await;
    assert_eq!(again["marked"], 0, "already read; unknown ids change nothing");
    let (_, all) = call(&app.svc, &read(json!({ "all": true }))).await;
    assert_eq!(all["marked"].as_u64().unwrap() as usize, ids.len() - 1);
    let (_, feed) = call(
        &app.svc,
        &event(
            "notifications.json",
            "u_owner",
            Some("/v1/orgs/org_a/notifications"),
            None,
        ),
    )
    .await;
    assert!(
        feed["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["read"] == true)
    );

    // The CSV: the header and one row per entry; filters and a date range.
    let csv = |query: &str| {
        with_query(
            event(
                "history-csv.json",
                "u_owner",
                Some("/v1/orgs/org_a/history.csv"),
                None,
            ),
            query,
        )
    };
    let (status, kind, text) = raw(&app.svc, &csv("")).await;
    assert_eq!(status, 200, "{text}");
    assert!(kind.starts_with("text/csv"), "{kind}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("id,created_at,kind,amount,balance_after"));
    assert_eq!(lines.len(), 1 + 4, "a purchase and three usages");
    assert!(
        lines[1].contains(",usage,-10") && lines[1].contains(",u_owner,"),
        "{}",
        lines[1]
    );
    // Each use says what it consumed; a purchase says nothing.
    let consumable = lines[0].split(',').position(|c| c == "consumable").unwrap();
    assert_eq!(lines[1].split(',').nth(consumable), Some("llm"), "{}", lines[1]);
    assert_eq!(lines[4].split(',').nth(consumable), Some(""), "{}", lines[4]);
    let (_, _, sms) = raw(&app.svc, &csv("consumable=sms")).await;
    assert_eq!(sms.lines().count(), 1, "no SMS was sent");
    let (_, _, usage_only) = raw(&app.svc, &csv("kind=usage&member=u_ana")).await;
    assert_eq!(usage_only.lines().count(), 1 + 2);
    let (_, _, future) = raw(&app.svc, &csv("from=2999-01-01")).await;
    assert_eq!(future.lines().count(), 1, "only the header");
    for bad in ["from=yesterday", "kind=nothing", "consumable=fax", "feature=chat"] {
        assert_eq!(raw(&app.svc, &csv(bad)).await.0, 400);
    }
    let (_, page) = call(
        &app.svc,
        &with_query(
            event("history.json", "u_owner", Some("/v1/orgs/org_a/history"), None),
            "to=2000-01-01",
        ),
    )
    .await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 0, "{page}");
    // Members may read the export too (members_see_billing), not set limits.
    assert_eq!(
        raw(&app.svc, &{
            let mut e = csv("");
            e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = json!("u_ana");
            e
        })
        .await
        .0,
        200
    );
}

/// The org directory as the edge reads it, with another change to the org landing right
/// after each read: what a handler then writes on the org as read is written against an
/// org that has changed since.
struct ChangedRightAfter {
    orgs: OrgStore,
}

impl agent_credits_domain::OrgDirectory for ChangedRightAfter {
    fn membership<'a>(
        &'a self,
        org: &'a OrgId,
        member: &'a agent_credits_domain::MemberId,
    ) -> agent_credits_domain::ports::Pending<
        'a,
        Option<(agent_credits_domain::Org, agent_credits_domain::Member)>,
    > {
        Box::pin(async move {
            let read = self.orgs.membership(org, member).await?;
            if let Some((org, _)) = &read {
                let other = agent_credits_domain::AgentId::parse("agent_other").unwrap();
                let moved = self
                    .orgs
                    .set_agent_runtime(
                        org,
                        &other,
                        agent_credits_domain::Runtime::GeminiCli,
                        member,
                        chrono::Utc::now(),
                    )
                    .await?;
                assert!(moved.is_some(), "the other change lands");
            }
            Ok(read)
        })
    }
}

#[tokio::test]
async fn an_agent_runtime_written_on_an_org_that_changed_since_it_was_read_is_409_and_not_written() {
    let mut app = app().await;
    assert_eq!(create(&app.svc, "u_owner", "org_a", json!({})).await.0, 201);
    app.svc.directory = Arc::new(ChangedRightAfter {
        orgs: app.svc.orgs.clone(),
    });
    let put = event(
        "put-agent-runtime.json",
        "u_owner",
        Some("/v1/orgs/org_a/agents/agent_7"),
        Some(json!({ "runtime": "codex" })),
    );
    let (status, body) = call(&app.svc, &put).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("org_changed")),
        "{body}"
    );
    let org = OrgId::parse("org_a").unwrap();
    let agents = app.svc.orgs.agent_runtimes(&org).await.unwrap();
    let names: Vec<&str> = agents.iter().map(|a| a.agent.as_str()).collect();
    assert_eq!(names, ["agent_other"], "only the change that landed first");
}

#[tokio::test]
async fn a_settings_change_on_an_org_that_changed_since_it_was_read_is_409_and_not_written() {
    let mut app = app().await;
    assert_eq!(create(&app.svc, "u_owner", "org_a", json!({})).await.0, 201);
    app.svc.directory = Arc::new(ChangedRightAfter {
        orgs: app.svc.orgs.clone(),
    });
    let patch = event(
        "change-settings.json",
        "u_owner",
        Some("/v1/orgs/org_a/settings"),
        Some(json!({ "purchase_policy": "any_member" })),
    );
    let (status, body) = call(&app.svc, &patch).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("org_changed")),
        "{body}"
    );
    let org = app
        .svc
        .orgs
        .get(&OrgId::parse("org_a").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        org.purchase_policy,
        agent_credits_domain::PurchasePolicy::OwnersOnly
    );
    assert!(app.svc.orgs.settings_history(&org, 10).await.unwrap().is_empty());
}

/// An owner demoted after their request was authorised: their change is not written
/// (demoting does not move the org's revision; the change checks the role itself).
#[tokio::test]
async fn a_settings_change_by_someone_no_longer_an_owner_is_not_written() {
    let app = app().await;
    assert_eq!(create(&app.svc, "u_owner", "org_a", json!({})).await.0, 201);
    let org = app
        .svc
        .orgs
        .get(&OrgId::parse("org_a").unwrap())
        .await
        .unwrap()
        .unwrap();
    let wallet = agent_credits_domain::WalletSettings {
        billing_mode: Some(agent_credits_domain::BillingMode::Credits),
        ..Default::default()
    };
    let change = agent_credits_domain::SettingsChange {
        members_see_billing: Some(false),
        ..Default::default()
    };
    let gone = agent_credits_domain::MemberId::parse("u_gone").unwrap();
    let written = app
        .svc
        .orgs
        .change_settings(&org, &wallet, &change, &gone, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(written, None);
    let after = app.svc.orgs.get(&org.id).await.unwrap().unwrap();
    assert!(after.members_see_billing);
    let owner = agent_credits_domain::MemberId::parse("u_owner").unwrap();
    let written = app
        .svc
        .orgs
        .change_settings(&org, &wallet, &change, &owner, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(written.map(|c| c.len()), Some(1));
}
