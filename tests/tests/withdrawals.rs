//! Withdrawals of earned credits, across the functions: an owner asks (account), an
//! operator settles (usage, IAM), once, paid or failed, never both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agent_credits_domain::{OrgId, PageRequest, Usd, Wallet, WalletStore};
use common::{App, operator_event};
use serde_json::{Value, json};

const ORG: &str = "org_a";

async fn operator(app: &App, path: &str, body: Value) -> (u16, Value) {
    let (status, body, _) = app
        .send("usage", &operator_event("POST", path, Some(&body)))
        .await;
    (status, body)
}

async fn wallet(app: &App) -> Wallet {
    app.account
        .store
        .wallet(&OrgId::parse(ORG).unwrap())
        .await
        .unwrap()
}

/// added − taken back = balance + spent + expired + withdrawn.
fn adds_up(w: &Wallet) -> bool {
    w.accounts_for_every_credit().unwrap()
}

async fn earned(app: &App, amount: &str, id: &str) {
    let (status, body) = operator(
        app,
        &format!("/v1/orgs/{ORG}/grants"),
        json!({ "kind": "referral", "amount_usd": amount, "request_id": id }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

async fn withdraw(app: &App, sub: &str, amount: &str, id: &str) -> (u16, Value) {
    app.dashboard(
        "POST",
        &format!("/v1/orgs/{ORG}/withdrawals"),
        sub,
        Some(json!({ "amount_usd": amount, "request_id": id })),
    )
    .await
}

#[tokio::test]
async fn an_owner_withdraws_earned_credits_and_an_operator_settles_it_once() {
    let app = App::start(None).await;
    app.org_with_members("u_owner", ORG, &[("u_admin", "admin")])
        .await;
    earned(&app, "40.00", "ref_1").await;

    // What may be withdrawn, and what may not.
    let (status, body) = withdraw(&app, "u_admin", "30.00", "wd_1").await;
    assert_eq!(status, 403, "an admin is no owner: {body}");
    for (amount, code) in [
        ("10.00", "below_minimum"),
        ("25.005", "fraction_of_a_cent"),
        ("40.01", "not_withdrawable"),
    ] {
        let (_, body) = withdraw(&app, "u_owner", amount, "wd_bad").await;
        assert_eq!(body["error"]["code"], code, "{amount}: {body}");
    }

    let (status, made) = withdraw(&app, "u_owner", "30.00", "wd_1").await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(
        (
            made["withdrawal"]["state"].as_str(),
            made["withdrawable"].as_str()
        ),
        (Some("pending"), Some("10.00"))
    );
    let (status, again) = withdraw(&app, "u_owner", "30.00", "wd_1").await;
    assert_eq!(
        (status, again["replayed"].as_bool()),
        (200, Some(true)),
        "{again}"
    );
    let (status, other) = withdraw(&app, "u_owner", "26.00", "wd_1").await;
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
    let w = wallet(&app).await;
    assert_eq!(
        (w.buckets.earned, w.lifetime_withdrawn),
        (Usd::parse("10").unwrap(), Usd::parse("30").unwrap())
    );
    assert!(adds_up(&w), "{w:?}");

    // Paid and failed at the same instant: exactly one of them settles it.
    let paid = format!("/v1/orgs/{ORG}/withdrawals/wd_1/paid");
    let failed = format!("/v1/orgs/{ORG}/withdrawals/wd_1/failed");
    let (a, b) = tokio::join!(
        operator(&app, &paid, json!({ "payout_reference": "wire_1" })),
        operator(&app, &failed, json!({ "reason": "account closed" })),
    );
    let mut codes = [a.0, b.0];
    codes.sort();
    assert_eq!(codes, [200, 409], "{a:?} {b:?}");
    let loser = if a.0 == 409 { &a.1 } else { &b.1 };
    assert_eq!(loser["error"]["code"], "withdrawal_settled");
    let paid_won = a.0 == 200;
    let w = wallet(&app).await;
    let back = if paid_won { "10" } else { "40" };
    assert_eq!(w.buckets.earned, Usd::parse(back).unwrap(), "{w:?}");
    assert!(adds_up(&w), "{w:?}");
    // The same step again answers it, and moves nothing more.
    let (status, replay) = if paid_won {
        operator(&app, &paid, json!({ "payout_reference": "wire_1" })).await
    } else {
        operator(&app, &failed, json!({ "reason": "account closed" })).await
    };
    assert_eq!(
        (status, replay["replayed"].as_bool()),
        (200, Some(true)),
        "{replay}"
    );
    assert_eq!(wallet(&app).await.buckets.earned, Usd::parse(back).unwrap());

    // A withdrawal nobody asked for.
    let (status, none) = operator(
        &app,
        &format!("/v1/orgs/{ORG}/withdrawals/wd_none/paid"),
        json!({ "payout_reference": "x" }),
    )
    .await;
    assert_eq!(
        (status, none["error"]["code"].as_str()),
        (404, Some("withdrawal_not_found"))
    );

    // The list and the history show every step.
    let (status, list) = app
        .dashboard("GET", &format!("/v1/orgs/{ORG}/withdrawals"), "u_owner", None)
        .await;
    assert_eq!(status, 200, "{list}");
    let state = if paid_won { "paid" } else { "failed" };
    assert_eq!(list["withdrawals"][0]["state"], state, "{list}");
    assert_eq!(list["minimum_usd"], "25.00");
    let history = app
        .account
        .store
        .history(&OrgId::parse(ORG).unwrap(), PageRequest::first(10))
        .await
        .unwrap()
        .entries;
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    let settled = if paid_won {
        "withdrawal_paid"
    } else {
        "withdrawal_returned"
    };
    assert_eq!(kinds, [settled, "withdrawal", "referral"]);
    assert!(history[0].note.is_some());
}

#[tokio::test]
async fn a_failed_payout_gives_its_credits_back_once_however_often_it_is_sent() {
    let app = App::start(None).await;
    app.org_with_members("u_owner", ORG, &[]).await;
    earned(&app, "50.00", "ref_1").await;
    let (status, made) = withdraw(&app, "u_owner", "50.00", "wd_1").await;
    assert_eq!(status, 201, "{made}");
    let failed = format!("/v1/orgs/{ORG}/withdrawals/wd_1/failed");
    let body = json!({ "reason": "account closed" });
    let answers = futures::future::join_all((0..8).map(|_| operator(&app, &failed, body.clone()))).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert_eq!(
        answers.iter().filter(|(_, b)| b["replayed"] == false).count(),
        1,
        "{answers:?}"
    );
    let w = wallet(&app).await;
    assert_eq!(
        (w.buckets.earned, w.lifetime_withdrawn),
        (Usd::parse("50").unwrap(), Usd::ZERO)
    );
    assert!(adds_up(&w), "{w:?}");
    // Paid after it failed: refused, nothing moves.
    let (status, late) = operator(
        &app,
        &format!("/v1/orgs/{ORG}/withdrawals/wd_1/paid"),
        json!({ "payout_reference": "wire_9" }),
    )
    .await;
    assert_eq!(
        (status, late["error"]["code"].as_str()),
        (409, Some("withdrawal_settled"))
    );
    assert_eq!(wallet(&app).await.buckets.earned, Usd::parse("50").unwrap());
}

#[tokio::test]
async fn operators_list_what_to_pay_and_a_settlement_is_one_reference_and_never_during_a_dispute() {
    let mut app = App::start(None).await;
    app.org_with_members("u_owner", ORG, &[]).await;
    earned(&app, "60.00", "ref_1").await;
    let (status, _) = withdraw(&app, "u_owner", "30.00", "wd_1").await;
    assert_eq!(status, 201);

    // The minimum goes up: a retry of the withdrawal made is still answered as made.
    app.account.withdrawal_minimum = Usd::parse("50").unwrap();
    let (status, again) = withdraw(&app, "u_owner", "30.00", "wd_1").await;
    assert_eq!(
        (status, again["replayed"].as_bool()),
        (200, Some(true)),
        "{again}"
    );
    let (_, new) = withdraw(&app, "u_owner", "30.00", "wd_2").await;
    assert_eq!(new["error"]["code"], "below_minimum", "{new}");

    let pending = || async {
        let (status, body, _) = app
            .send("usage", &operator_event("GET", "/v1/withdrawals/pending", None))
            .await;
        assert_eq!(status, 200, "{body}");
        body["withdrawals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["org"].as_str().unwrap().to_owned(),
                    w["withdrawal"]["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(pending().await, [(ORG.to_owned(), "wd_1".to_owned())]);

    // A dispute opens: nothing is paid out until it closes.
    use aws_sdk_dynamodb::types::AttributeValue::S;
    let set_state = |state: &'static str, reason: Option<&'static str>| {
        let mut u = app
            .client
            .update_item()
            .table_name(common::TABLE)
            .key("pk", S(format!("ORG#{ORG}")))
            .key("sk", S("WALLET".into()))
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":s", S(state.into()));
        u = match reason {
            Some(r) => u
                .update_expression("SET #s = :s, pause_reason = :r")
                .expression_attribute_values(":r", S(r.into())),
            None => u.update_expression("SET #s = :s REMOVE pause_reason"),
        };
        u.send()
    };
    set_state("paused", Some("disputed")).await.unwrap();
    let paid = format!("/v1/orgs/{ORG}/withdrawals/wd_1/paid");
    let (status, refused) = operator(&app, &paid, json!({ "payout_reference": "wire_1" })).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("org_paused")),
        "{refused}"
    );
    set_state("active", None).await.unwrap();

    let (status, settled) = operator(&app, &paid, json!({ "payout_reference": "wire_1" })).await;
    assert_eq!(status, 200, "{settled}");
    // The same step with another reference is another payout: refused, not answered.
    let (status, other) = operator(&app, &paid, json!({ "payout_reference": "wire_2" })).await;
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused")),
        "{other}"
    );
    // Failed after it was paid: refused, nothing comes back.
    let failed = format!("/v1/orgs/{ORG}/withdrawals/wd_1/failed");
    let (status, late) = operator(&app, &failed, json!({ "reason": "too late" })).await;
    assert_eq!(
        (status, late["error"]["code"].as_str()),
        (409, Some("withdrawal_settled")),
        "{late}"
    );
    assert!(pending().await.is_empty());
}
