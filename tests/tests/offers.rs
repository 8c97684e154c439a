//! `GET /v1/orgs/{org}/checkout`: what the billing page offers, to whoever may buy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::App;

#[tokio::test]
async fn offers_name_the_catalog_for_whoever_may_buy() {
    let app = App::start(None).await;
    app.org_with_members(
        "u_owner",
        "org_a",
        &[("u_member", "member"), ("u_admin", "admin")],
    )
    .await;
    let (status, owner) = app
        .dashboard("GET", "/v1/orgs/org_a/checkout", "u_owner", None)
        .await;
    assert_eq!(status, 200, "{owner}");
    assert_eq!(
        (
            owner["bulk_usd"].as_str(),
            owner["custom_min_usd"].as_str(),
            owner["custom_max_usd"].as_str(),
            owner["credits_per_usd"].as_u64(),
        ),
        (Some("100.00"), Some("10.00"), Some("10000.00"), Some(200)),
        "{owner}"
    );
    // Reference 001's packages, by default.
    let ids: Vec<&str> = owner["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["starter", "professional", "club_800"], "{owner}");
    // Owners alone buy by default: members, admins and strangers are refused.
    for who in ["u_member", "u_admin", "u_stranger"] {
        let (status, refused) = app.dashboard("GET", "/v1/orgs/org_a/checkout", who, None).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{who}: {refused}"
        );
    }
}
