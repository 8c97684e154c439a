//! Referral codes at org creation (the account function): a known org's code is recorded
//! once on the new org's profile; anything else is refused and writes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::App;
use serde_json::json;

#[tokio::test]
async fn an_org_created_with_a_referral_code_records_its_referrer_and_a_bad_code_writes_nothing() {
    let app = App::start(None).await;
    app.org_with_members("u_ref", "org_ref", &[]).await;
    let before = app.dump().await;
    for code in ["org_nobody", "org_new", "@u_ref"] {
        let (status, body) = app
            .create_org(
                "u_new",
                "org_new",
                json!({ "billing_mode": "credits", "referred_by": code }),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("unknown_referrer")),
            "{code}: {body}"
        );
    }
    // A member of the referring org refers no org of their own.
    let (status, body) = app
        .create_org(
            "u_ref",
            "org_mine",
            json!({ "billing_mode": "credits", "referred_by": "org_ref" }),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_referrer")),
        "{body}"
    );
    assert_eq!(app.dump().await, before);
    let (status, created) = app
        .create_org(
            "u_new",
            "org_new",
            json!({ "billing_mode": "credits", "referred_by": "org_ref" }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, org) = app.dashboard("GET", "/v1/orgs/org_new", "u_new", None).await;
    assert_eq!(
        (status, org["org"]["referred_by"].as_str()),
        (200, Some("org_ref")),
        "{org}"
    );
}
