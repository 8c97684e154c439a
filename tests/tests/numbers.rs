//! The numbers people ask for (issue 17): usage by day and by member, API key, model and
//! kind, counted once per call; calls without attribution counted as `(unattributed)`;
//! history that shows money movements and holds only when asked. Through the functions'
//! HTTP answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agent_credits_domain::{OrgId, WalletStore};
use common::*;
use serde_json::{Value, json};

/// `org` in `mode` (a byok org with its OpenAI key in moto's Secrets Manager), with $100
/// bought when it runs on credits; moto lives as long as the app.
async fn app(org: &str, mode: &str) -> (App, Option<support::moto::Moto>) {
    let moto = (mode == "byok").then(support::moto::Moto::start);
    let app = App::start(moto.as_ref().map(|m| m.endpoint())).await;
    let mut fields = json!({ "runtime": "codex", "billing_mode": mode });
    if mode == "byok" {
        fields["keys"] = json!({ "open_ai": "sk-proj-abcdefghijklmnopqrstuvwxyz0123" });
    }
    let (status, body) = app.create_org("u_owner", org, fields).await;
    assert_eq!(status, 201, "{body}");
    if mode == "credits" {
        app.usage
            .store
            .apply(support::purchase(
                &OrgId::parse(org).unwrap(),
                "100",
                "purchase:seed",
            ))
            .await
            .unwrap()
            .unwrap();
    }
    (app, moto)
}

async fn report(app: &App, org: &str, body: Value) -> Value {
    let (status, answer) = app
        .runtime("POST", &format!("/v1/orgs/{org}/usage"), Some(body))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn daily(app: &App, org: &str, query: &str) -> (u16, Value) {
    app.dashboard(
        "GET",
        &format!("/v1/orgs/{org}/usage/daily{query}"),
        "u_owner",
        None,
    )
    .await
}

fn row<'a>(rows: &'a Value, id: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {rows}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_by_day_counts_each_call_once_with_its_attribution_or_as_unattributed() {
    let org = "org_numbers";
    let (app, _moto) = app(org, "credits").await;
    let full = json!({ "request_id": "r_1", "member": "u_owner", "api_key": "k_ci", "agent": "a_1",
        "model": "gpt-5", "cost": "1.00" });
    report(&app, org, full.clone()).await;
    report(&app, org, full).await; // a retry: the same call
    report(&app, org, json!({ "request_id": "r_2", "cost": "2.00" })).await;
    // A hold captured: one call, at what it cost.
    let (status, held) = app
        .runtime(
            "POST",
            &format!("/v1/orgs/{org}/holds"),
            Some(json!({ "hold_id": "h_1", "amount": "5.00", "member": "u_owner" })),
        )
        .await;
    assert_eq!(status, 201, "{held}");
    let (status, captured) = app
        .runtime(
            "POST",
            &format!("/v1/orgs/{org}/holds/h_1/capture"),
            // No member named: the capture is the member's whose hold it closes.
            Some(json!({ "api_key": "k_ci", "model": "gpt-5", "cost": "0.50" })),
        )
        .await;
    assert_eq!(status, 200, "{captured}");

    let (status, d) = daily(&app, org, "").await;
    assert_eq!(status, 200, "{d}");
    // $1.50 + $3.00 + $0.75 at the default markup, three calls.
    assert_eq!(
        (d["total"]["billed"].as_str(), d["total"]["calls"].as_u64()),
        (Some("5.25"), Some(3)),
        "{d}"
    );
    let today = chrono::Utc::now().date_naive();
    let days = d["days"].as_array().unwrap();
    assert_eq!(days.last().unwrap()["day"], today.to_string(), "{d}");
    assert_eq!(
        days.len() as u32,
        today.format("%d").to_string().parse::<u32>().unwrap(),
        "every day of the month so far"
    );
    assert_eq!(days.last().unwrap()["billed"], "5.25");
    let owner = row(&d["by_member"], "u_owner");
    assert_eq!(
        (owner["billed"].as_str(), owner["calls"].as_u64()),
        (Some("2.25"), Some(2))
    );
    let nobody = row(&d["by_member"], "(unattributed)");
    assert_eq!(
        (nobody["billed"].as_str(), nobody["calls"].as_u64()),
        (Some("3.00"), Some(1))
    );
    assert_eq!(d["by_member"][0]["id"], "(unattributed)", "largest first: {d}");
    assert_eq!(row(&d["by_api_key"], "k_ci")["billed"], "2.25");
    assert_eq!(row(&d["by_model"], "gpt-5")["billed"], "2.25");
    assert_eq!(row(&d["by_model"], "(unattributed)")["billed"], "3.00");
    assert_eq!(row(&d["by_kind"], "llm")["calls"], 3);

    // The ledger entry keeps what the report said, the model included.
    let (_, history) = app
        .dashboard(
            "GET",
            &format!("/v1/orgs/{org}/history?kind=usage"),
            "u_owner",
            None,
        )
        .await;
    let models: Vec<&Value> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["model"])
        .collect();
    assert!(models.contains(&&json!("gpt-5")), "{history}");

    // Other consumables (issue 17) count under their kind and feature, beside the calls.
    report(
        &app,
        org,
        json!({ "request_id": "r_sms", "member": "u_owner", "kind": "sms", "feature": "rag", "cost": "0.10" }),
    )
    .await;
    report(
        &app,
        org,
        json!({ "request_id": "r_mail", "kind": "email", "feature": "rag", "cost": "0.20", "member": "u_owner" }),
    )
    .await;
    let (_, d) = daily(&app, org, "").await;
    assert_eq!(
        (d["total"]["billed"].as_str(), d["total"]["calls"].as_u64()),
        (Some("5.70"), Some(5))
    );
    assert_eq!(row(&d["by_kind"], "llm")["billed"], "5.25");
    assert_eq!(row(&d["by_kind"], "sms")["billed"], "0.15");
    assert_eq!(row(&d["by_kind"], "email")["calls"], 1);
    assert_eq!(row(&d["by_feature"], "rag")["billed"], "0.45");
    assert_eq!(row(&d["by_feature"], "(unattributed)")["calls"], 3);
    assert_eq!(
        row(&d["by_model"], "(unattributed)")["billed"],
        "3.45",
        "no model for an SMS"
    );
    // History groups them too: by consumable and by feature, in pages and in the CSV.
    let (_, sms) = app
        .dashboard(
            "GET",
            &format!("/v1/orgs/{org}/history?consumable=sms"),
            "u_owner",
            None,
        )
        .await;
    let entries = sms["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{sms}");
    assert_eq!(
        (entries[0]["consumable"].as_str(), entries[0]["feature"].as_str()),
        (Some("sms"), Some("rag"))
    );
    let (_, rag) = app
        .dashboard(
            "GET",
            &format!("/v1/orgs/{org}/history?feature=rag"),
            "u_owner",
            None,
        )
        .await;
    assert_eq!(rag["entries"].as_array().unwrap().len(), 2, "{rag}");
    let (_, purchases) = app
        .dashboard(
            "GET",
            &format!("/v1/orgs/{org}/history?kind=purchase"),
            "u_owner",
            None,
        )
        .await;
    assert_eq!(
        purchases["entries"][0].get("consumable"),
        None,
        "a purchase is not a use"
    );
    for (query, code) in [
        ("consumable=fax", "unknown_kind"),
        ("feature=chat", "unknown_feature"),
    ] {
        let (status, body) = app
            .dashboard("GET", &format!("/v1/orgs/{org}/history?{query}"), "u_owner", None)
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }

    // Bad ranges write nothing and say why.
    for query in [
        "?from=2026-13-01",
        "?from=2026-11-30&to=2026-11-01",
        "?from=2026-01-01&to=2026-12-31",
        "?to=26-11-30",
    ] {
        let (status, body) = daily(&app, org, query).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_date")),
            "{query}: {body}"
        );
    }
    // A past range holds nothing.
    let (status, past) = daily(&app, org, "?from=2026-01-01&to=2026-01-31").await;
    assert_eq!(
        (
            status,
            past["total"]["calls"].as_u64(),
            past["days"].as_array().unwrap().len()
        ),
        (200, Some(0), 31)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_on_the_orgs_own_key_are_counted_unbilled() {
    let org = "org_numbers_byok";
    let (app, _moto) = app(org, "byok").await;
    let call = json!({ "request_id": "r_1", "member": "u_owner", "api_key": "k_1", "model": "gpt-5", "cost": "2.00" });
    let answer = report(&app, org, call.clone()).await;
    assert_eq!(answer["billed_to"], "provider_key", "{answer}");
    report(&app, org, call).await;
    // Calls at the same instant add to the same day's counters: each is recorded once.
    let at_once = (2..18).map(|i| {
        report(
            &app,
            org,
            json!({ "request_id": format!("r_{i}"), "member": "u_owner", "model": "gpt-5", "cost": "1.00" }),
        )
    });
    futures::future::join_all(at_once).await;
    let (_, d) = daily(&app, org, "").await;
    assert_eq!(
        (
            d["total"]["billed"].as_str(),
            d["total"]["unbilled"].as_str(),
            d["total"]["calls"].as_u64()
        ),
        (Some("0.00"), Some("27.00"), Some(17)),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_shows_money_movements_and_holds_only_when_asked() {
    let org = "org_numbers_holds";
    let (app, _moto) = app(org, "credits").await;
    for (hold, then) in [("h_1", "release"), ("h_2", "capture")] {
        let (status, body) = app
            .runtime(
                "POST",
                &format!("/v1/orgs/{org}/holds"),
                Some(json!({ "hold_id": hold, "amount": "5.00" })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let body = if then == "capture" {
            json!({ "cost": "1.00" })
        } else {
            json!({})
        };
        let (status, answer) = app
            .runtime("POST", &format!("/v1/orgs/{org}/holds/{hold}/{then}"), Some(body))
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let kinds = async |query: &str| -> Vec<String> {
        let (status, h) = app
            .dashboard("GET", &format!("/v1/orgs/{org}/history{query}"), "u_owner", None)
            .await;
        assert_eq!(status, 200, "{h}");
        h["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(kinds("").await, ["capture", "purchase"]);
    assert_eq!(
        kinds("?include=holds").await,
        ["capture", "hold", "release", "hold", "purchase"]
    );
    assert_eq!(kinds("?kind=release").await, ["release"]);
    let (status, body) = app
        .dashboard(
            "GET",
            &format!("/v1/orgs/{org}/history?include=everything"),
            "u_owner",
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (_, card) = app
        .dashboard("GET", &format!("/v1/orgs/{org}/balance"), "u_owner", None)
        .await;
    let recent: Vec<&str> = card["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(recent, ["capture", "purchase"], "{card}");
}
